"""Does a trained discriminator hear the speech? The sequence discriminator's (the paper's D_seq) and the
synchronisation discriminator's (D_sync, the full_sync variant) p(real) for real windows with their own
audio, with the audio shifted in time, with another clip's audio, and for the generator's own videos.

    .venv/bin/python benchmarks/seq_disc_audio.py --h5 data/packed/synthgrid/test.h5 \
        results/synthgrid/models/full/generator.pt results/synthgrid/models/full_sync/generator.pt \
        [--windows 64] [--shift 10]

Each checkpoint must hold a ``sequence_discriminator`` or a ``sync_discriminator`` (a training checkpoint of
``full`` or ``full_sync``, as ``speechanim.train`` writes it); every discriminator it holds is probed.
``--windows`` windows of the training length (``n_frames`` from the checkpoint) are cut at seeded random
starts from the clips of ``--h5`` (spread over the file) and judged in batches of 8, each discriminator in
training mode as it ran (batch statistics of each batch). D_seq judges the whole window; D_sync its
5-frame snippet at a seeded start within the window, with the same 0.2 s of the audio it is given:

* ``real``: the real frames with their own audio;
* ``shifted``: the same frames with the audio ``--shift`` frames later (0.4 s at 25 fps by default;
  wrapping at the clip's end);
* ``other``: the same frames with the next window's audio (another clip's);
* ``generated``: the generator's frames for the clip (seeded noise), the window's own audio.

A discriminator that uses the audio gives ``real`` more than ``shifted`` and ``other``; one that judges
the frames alone gives them the same. Prints the means and the share of windows with ``real`` above
``shifted`` and above ``other`` (0.5: chance).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from speechanim.checkpoint import load_checkpoint, model_config_from
from speechanim.models import Generator, SequenceDiscriminator, SyncDiscriminator
from learning_curves import pick_clips  # benchmarks/, beside this script
from speechanim.losses import audio_snippets, frame_snippets
from speechanim.packing import WholeClips

KINDS = ("real", "shifted", "other", "generated")
DISCRIMINATORS = {"sequence_discriminator": SequenceDiscriminator, "sync_discriminator": SyncDiscriminator}


def discriminators_in(checkpoint: str | Path) -> list[str]:
    """The discriminators a checkpoint holds that this probe can judge with."""
    return [name for name in DISCRIMINATORS if name in load_checkpoint(checkpoint)]


def probe(checkpoint: str | Path, h5: str | Path, *, windows: int = 64, shift: int = 10, seed: int = 0,
          batch: int = 8, which: str = "sequence_discriminator") -> dict[str, float]:
    """Mean p(real) for each of :data:`KINDS`, and ``real_above_shifted`` / ``real_above_other`` (share of
    windows), from the checkpoint's ``which`` discriminator."""
    payload = load_checkpoint(checkpoint)
    if which not in payload:
        raise SystemExit(f"{checkpoint}: has no {which.replace('_', ' ')} (a full or full_sync model's training "
                         f"checkpoint has)")
    cfg = model_config_from(payload, checkpoint)
    disc = DISCRIMINATORS[which](cfg)
    disc.load_state_dict(payload[which])
    disc.train()  # as in training: batch statistics
    gen = Generator(cfg)
    gen.load_state_dict(payload["generator"])
    gen.eval()
    t = int(payload.get("train_config", {}).get("n_frames", 16))
    spf = int(round(cfg.sample_rate / float(payload.get("fps", 25.0))))
    clips = WholeClips(h5, window_s=cfg.audio_window_s)
    picks = pick_clips(Path(h5), windows)  # spread over the file, mirrored copies left out
    rng = np.random.default_rng(seed)
    noise = torch.Generator().manual_seed(seed)
    probs: dict[str, list[float]] = {k: [] for k in KINDS}

    def judge(frames: torch.Tensor, sound: torch.Tensor, snippet: torch.Tensor) -> list[float]:
        if which == "sequence_discriminator":
            return torch.sigmoid(disc(frames, sound)).tolist()
        n = disc.frames
        return torch.sigmoid(disc(frame_snippets(frames, snippet, n), audio_snippets(sound, snippet, n, spf))).tolist()

    with torch.no_grad():
        for b0 in range(0, len(picks) - batch + 1, batch):
            items = [clips[i] for i in picks[b0:b0 + batch]]
            if any(len(it["frames"]) < t for it in items):
                raise SystemExit(f"{h5}: a clip is shorter than the {t}-frame training window")
            starts = [int(rng.integers(0, len(it["frames"]) - t + 1)) for it in items]
            snippet = torch.from_numpy(rng.integers(0, t - cfg.sync_disc_frames + 1, len(items)))
            real = torch.stack([it["frames"][s:s + t] for it, s in zip(items, starts)])
            audio = torch.stack([it["audio"][s:s + t] for it, s in zip(items, starts)])
            shifted = torch.stack([it["audio"].roll(-shift, 0)[s:s + t] for it, s in zip(items, starts)])
            made = [gen(it["still"][None], it["audio"][None], generator=noise)[0] for it in items]
            fake = torch.stack([m[s:s + t] for m, s in zip(made, starts)])
            for kind, frames, sound in (("real", real, audio), ("shifted", real, shifted),
                                        ("other", real, audio.roll(-1, 0)), ("generated", fake, audio)):
                probs[kind] += judge(frames, sound, snippet)
    if not probs["real"]:
        raise SystemExit(f"{h5}: fewer than {batch} clips to judge")
    out = {k: float(np.mean(v)) for k, v in probs.items()}
    out["real_above_shifted"] = float(np.mean(np.array(probs["real"]) > np.array(probs["shifted"])))
    out["real_above_other"] = float(np.mean(np.array(probs["real"]) > np.array(probs["other"])))
    out["windows"] = len(probs["real"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--h5", type=Path, required=True, help="packed clips (e.g. the test split)")
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--shift", type=int, default=10, help="frames the audio is moved for 'shifted'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"p(real) on {args.h5}; shifted = audio {args.shift} frames later")
    for ckpt in args.checkpoints:
        found = discriminators_in(ckpt)
        if not found:
            raise SystemExit(f"{ckpt}: holds no sequence or sync discriminator (a full or full_sync training checkpoint does)")
        for which in found:
            r = probe(ckpt, args.h5, windows=args.windows, shift=args.shift, seed=args.seed, which=which)
            print(f"{ckpt} {which}: real {r['real']:.3f}, shifted {r['shifted']:.3f}, other clip's audio "
                  f"{r['other']:.3f}, generated {r['generated']:.3f}; real above shifted in "
                  f"{r['real_above_shifted']:.0%}, above other in {r['real_above_other']:.0%} of {r['windows']} windows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
