"""Can the synchronisation discriminator hear the speech on its own? D_sync (speechanim.models.SyncDiscriminator)
trained alone, no generator, on real snippets with their own audio (real) against the same frames with audio
at least 5 frames away (fake), then asked on held-out clips how often the in-sync snippet scores above the
shifted one (0.5: chance).

    .venv/bin/python benchmarks/sync_disc_alone.py --train data/packed/synthgrid/train.h5 \\
        --test data/packed/synthgrid/test.h5 --lr 1e-4 1e-3 [--steps 900] [--model '{"sync_disc_dim": 256}']

Sizes are the embedded default's (config.yaml's model section and frame size) with --model's overrides;
16-frame windows, batches of 8 as the trainer draws them; seeded. Prints, per learning rate, the share on 64
windows of the training file and of the test file, and the last step's loss (2 ln 2 = 1.386: chance).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from speechanim.audio import samples_per_frame
from speechanim.losses import audio_snippets, frame_snippets, sample_snippet_starts
from speechanim.models import ModelConfig, SyncDiscriminator
from speechanim.packing import TrainingWindows, WholeClips

REPO = Path(__file__).resolve().parents[1]
WINDOW, BATCH = 16, 8


def embedded_model(overrides: dict) -> ModelConfig:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return ModelConfig(**{**config["model"], "image_size": config["preprocess"]["image_size"], **overrides})


def ranked_above(d: SyncDiscriminator, h5: Path, cfg: ModelConfig, spf: int, windows: int = 64) -> float:
    """Share of ``windows`` seeded windows of ``h5`` whose in-sync snippet scores above a shifted one."""
    clips = WholeClips(h5, window_s=cfg.audio_window_s)
    rng = np.random.default_rng(1)
    picks = rng.choice(len(clips), windows, replace=False)
    above: list[float] = []
    with torch.no_grad():  # training mode (batch statistics), as GAN training runs it
        for b0 in range(0, windows - BATCH + 1, BATCH):
            items = [clips[int(i)] for i in picks[b0:b0 + BATCH]]
            starts = [int(rng.integers(0, len(it["frames"]) - WINDOW + 1)) for it in items]
            real = torch.stack([it["frames"][s:s + WINDOW] for it, s in zip(items, starts)])
            audio = torch.stack([it["audio"][s:s + WINDOW] for it, s in zip(items, starts)])
            start, shifted = sample_snippet_starts(BATCH, WINDOW, d.frames, generator=torch.Generator().manual_seed(b0))
            frames = frame_snippets(real, start, d.frames)
            r = d(frames, audio_snippets(audio, start, d.frames, spf))
            s = d(frames, audio_snippets(audio, shifted, d.frames, spf))
            above += (r > s).float().tolist()
    return float(np.mean(above))


def train_alone(train: Path, cfg: ModelConfig, spf: int, lr: float, steps: int) -> tuple[SyncDiscriminator, float]:
    torch.manual_seed(0)
    np.random.seed(0)  # TrainingWindows draws each window's start from numpy's global generator
    rng = np.random.default_rng(0)
    windows = TrainingWindows(train, WINDOW, window_s=cfg.audio_window_s)
    d = SyncDiscriminator(cfg)
    opt = torch.optim.Adam(d.parameters(), lr, betas=(0.5, 0.999))
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        items = [windows[int(j)] for j in rng.choice(len(windows), BATCH, replace=False)]
        real, audio = torch.stack([it["frames"] for it in items]), torch.stack([it["audio"] for it in items])
        start, shifted = sample_snippet_starts(BATCH, WINDOW, d.frames)
        frames = frame_snippets(real, start, d.frames)
        r = d(frames, audio_snippets(audio, start, d.frames, spf))
        s = d(frames, audio_snippets(audio, shifted, d.frames, spf))
        loss = (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                + F.binary_cross_entropy_with_logits(s, torch.zeros_like(s)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d, float(loss.detach())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4, 1e-3])
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--model", default="{}", help="JSON ModelConfig overrides on the embedded sizes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = embedded_model(json.loads(args.model))
    spf = samples_per_frame(cfg.sample_rate, args.fps)
    for lr in args.lr:
        d, loss = train_alone(args.train, cfg, spf, lr, args.steps)
        print(f"lr {lr:g}, {args.steps} steps: in sync above shifted in {ranked_above(d, args.train, cfg, spf):.0%} "
              f"of training windows, {ranked_above(d, args.test, cfg, spf):.0%} of test windows; last loss {loss:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
