"""Training speed of each variant, and (with --run) whole training runs on a synthetic corpus.

    .venv/bin/python benchmarks/bench_train.py [--model JSON] [--training JSON] [--steps 8] [--threads N]
    .venv/bin/python benchmarks/bench_train.py --run [--clips 300] [--variants full static] ...

Default sizes are the embedded default, read from config.yaml (``embedded_default``); --model
and --training override them like the CLI's options (``--model '{}' --training '{}'`` with
``--paper`` starts from the paper's sizes instead).

Speed: one ``speechanim.train.train_step`` (generator forward, discriminator step, generator step)
on random batches of ``batch_size`` clips x ``n_frames`` frames; the variants take turns step by step
(``--steps`` x ``--repeats`` steps each, after two warm-up steps) and each is timed by its median
step; prints steps/s and training frames/s per variant, steps per CPU-second of this process
(steadier than the wall clock on a shared machine) and each variant's speed relative to ``l1``. Then the data loader: batches/s of the trainer's own DataLoader
(``TrainingWindows`` of ``n_frames``, ``batch_size``, ``num_workers`` as configured) over
``--data`` (default: the packed embedded corpus if it is there, else a written one), as a multiple
of the fastest variant's step rate: with ``num_workers`` 0 the loader runs in the training process,
between steps, so it should be several times faster than a step.

--run: writes a corpus of drawn talking faces (tests/train_fixtures.py: a face per clip, blinking
eyes, a mouth whose opening follows the loudness of a voiced syllable train) with ``--clips``
clips of 75 frames, mirrored (2x), and ``--val-clips`` validation clips of other faces; trains each
variant with ``speechanim.train.train`` (with the default's epochs: 6 x 150 steps, minutes per
variant; shorten with ``--training '{"max_epochs": 2}'``); then reports wall time, epochs, the best validation PSNR
and how well the generated mouth follows the audio on the validation clips: the Pearson
correlation, per clip, between the mouth darkness of the generated frames and the true opening,
averaged (1 = perfect, 0 = no relation; the real frames give ~1.0), and the clip PSNR of the
generated video next to that of the still image repeated (a generator that ignores the audio).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic-corpus writer

from speechanim.checkpoint import load_generator  # noqa: E402
from speechanim.losses import Batch, GANLoss  # noqa: E402
from speechanim.models import device  # noqa: E402
from speechanim.packing import WholeClips  # noqa: E402
from speechanim.train import (  # noqa: E402
    PRECISIONS,
    VARIANTS,
    TrainConfig,
    build_networks,
    build_optimisers,
    config_from_json,
    train,
    train_step,
    variant_model_config,
)
from speechanim.models import ModelConfig  # noqa: E402

def embedded_default() -> tuple[dict, dict]:
    """The embedded default's ModelConfig and TrainConfig overrides, read from config.yaml as the DAG
    reads them (workflow/rules/common.smk's model_json: the model section plus the preprocessing sizes)."""
    import yaml

    from speechanim.config import model_json

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    return json.loads(model_json(config)), dict(config["training"])


def step_runner(variant: str, model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple[Callable[[], None], dict]:
    """One variant's networks, optimisers and a random batch; a function running one training step on
    them (synchronised on CUDA), and the networks' parameter counts."""
    dev = device()
    model_cfg = variant_model_config(variant, model_cfg)
    torch.manual_seed(0)
    nets = {n: m.to(dev).train() for n, m in build_networks(variant, model_cfg).items()}
    opts, _ = build_optimisers(nets, train_cfg)
    criterion = GANLoss(variant, nets.get("frame_discriminator"), nets.get("sequence_discriminator"),
                        train_cfg.lambda_l1, sync_disc=nets.get("sync_discriminator"), lambda_sync=train_cfg.lambda_sync,
                        samples_per_frame=round(model_cfg.sample_rate / 25))  # 25 fps: the corpora's rate
    b, t, (h, w) = train_cfg.batch_size, train_cfg.n_frames, model_cfg.image_size
    batch = Batch(torch.rand(b, 3, h, w, device=dev) * 2 - 1, torch.rand(b, t, 3, h, w, device=dev) * 2 - 1,
                  torch.randn(b, t, model_cfg.window, device=dev) * 0.3)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=train_cfg.precision == "bf16"):
            train_step(nets, opts, criterion, batch)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return step, {n: sum(p.numel() for p in m.parameters()) for n, m in nets.items()}


def speeds(variants: list[str], model_cfg: ModelConfig, train_cfg: TrainConfig, steps: int, repeats: int,
           precisions: list[str] | None = None) -> dict:
    """Each variant's (and, with ``precisions``, each variant-precision pair's, keyed ``"full bf16"``) median
    wall and CPU time of one step over ``steps x repeats`` steps, taking turns step by step after two warm-up
    steps each: a change in the machine's load (the other core's jobs, the clock) then falls on every one
    alike, so their ratios hold even on a busy machine, where timing one after another gave ratios that moved
    by +-0.1."""
    from dataclasses import replace

    keys = {v: (v, train_cfg) for v in variants} if not precisions else {
        f"{v} {p}": (v, replace(train_cfg, precision=p)) for v in variants for p in precisions}
    runners = {k: step_runner(v, model_cfg, cfg) for k, (v, cfg) in keys.items()}
    for step, _ in runners.values():
        step()
        step()
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(steps * repeats):
        for k, (step, _) in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    b, t = train_cfg.batch_size, train_cfg.n_frames
    return {k: {"steps_per_s": 1 / np.median(wall[k]), "frames_per_s": b * t / np.median(wall[k]),
                "steps_per_cpu_s": 1 / np.median(cpu[k]), "params": runners[k][1]} for k in keys}


def loader_speed(path: Path, model_cfg: ModelConfig, train_cfg: TrainConfig, batches: int) -> dict:
    """Batches/s (wall, and per CPU-second of this process) of the trainer's DataLoader over ``path``."""
    from torch.utils.data import DataLoader

    from speechanim.packing import TrainingWindows, worker_init

    ds = TrainingWindows(path, train_cfg.n_frames, window_s=model_cfg.audio_window_s, uint8=True)  # as the trainer
    if len(ds) < train_cfg.batch_size:
        raise SystemExit(f"{path}: {len(ds)} clips of >= {train_cfg.n_frames} frames, fewer than one batch")
    torch.manual_seed(0)
    loader = DataLoader(ds, train_cfg.batch_size, shuffle=True, drop_last=True, num_workers=train_cfg.num_workers,
                        worker_init_fn=worker_init)
    done, t0, c0 = 0, 0.0, 0.0
    while done < batches:
        for _ in loader:  # a new pass (and its workers) when one ends; the first batch is a warm-up
            if t0 == 0.0:
                t0, c0 = time.perf_counter(), time.process_time()
                continue
            done += 1
            if done == batches:
                break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"batches_per_s": done / wall, "batches_per_cpu_s": done / cpu if train_cfg.num_workers == 0 else None,
            "clips": len(ds)}


def mouth_following(gen, val_path: Path, truth: dict, seed: int = 0) -> tuple[float, float, float]:
    """(mean per-clip correlation of generated mouth darkness with the true opening, PSNR of the
    generated clips, PSNR of the still repeated) on the validation clips; PSNR here is per clip with
    the squared error pooled over its frames (dB on a [0, 1] scale)."""
    from train_fixtures import mouth_box, mouth_darkness

    ds = WholeClips(val_path, window_s=gen.cfg.audio_window_s)
    corrs, psnr, psnr_still = [], [], []
    rng = torch.Generator(next(gen.parameters()).device).manual_seed(seed)
    dev = next(gen.parameters()).device
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            fake = gen(item["still"][None].to(dev), item["audio"][None].to(dev), generator=rng)[0].cpu()
            face, openings = truth[item["key"]]
            dark = mouth_darkness(fake.numpy(), mouth_box(face, gen.cfg.image_size))
            corrs.append(np.corrcoef(dark, openings)[0, 1] if dark.std() > 1e-8 else 0.0)
            for out, pred in ((psnr, fake), (psnr_still, item["still"][None].expand_as(item["frames"]))):
                mse = ((pred - item["frames"]) / 2).square().mean()  # pooled over the clip: a still frame
                out.append(float(10 * torch.log10(1 / mse)))  # identical to the first has no infinite PSNR
    return float(np.mean(corrs)), float(np.mean(psnr)), float(np.mean(psnr_still))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="{}", help="JSON ModelConfig overrides (on top of the embedded sizes)")
    ap.add_argument("--training", default="{}", help="JSON TrainConfig overrides (on top of the embedded settings)")
    ap.add_argument("--paper", action="store_true", help="start from the paper's sizes, not the embedded ones")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS,
                    help="step speed in each (training.precision), and bf16's speed-up over fp32")
    ap.add_argument("--run", action="store_true", help="whole training runs on a synthetic corpus")
    ap.add_argument("--clips", type=int, default=300, help="--run: training clips before mirroring")
    ap.add_argument("--val-clips", type=int, default=24)
    ap.add_argument("--workdir", type=Path, default=None, help="--run: keep the corpus and models here")
    ap.add_argument("--data", type=Path, default=None,
                    help="packed clips for the loader timing (default: data/packed/synthgrid/train.h5 if there)")
    ap.add_argument("--loader-batches", type=int, default=60, help="batches timed for the loader (0: skip)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base_model, base_training = ({}, {}) if args.paper else embedded_default()
    model_cfg = config_from_json(ModelConfig, json.dumps({**base_model, **json.loads(args.model)}), "--model")
    train_cfg = config_from_json(TrainConfig, json.dumps({**base_training, **json.loads(args.training)}), "--training")
    dev = device()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"model {json.dumps({**base_model, **json.loads(args.model)})}; batch {train_cfg.batch_size} clips x "
          f"{train_cfg.n_frames} frames; {where}")

    if not args.run:
        rates = speeds(args.variants, model_cfg, train_cfg, args.steps, args.repeats, args.precisions)
        for key, r in rates.items():
            v, p = key.split()
            l1 = rates.get(f"l1 {p}")
            vs_l1 = f"  {r['steps_per_cpu_s'] / l1['steps_per_cpu_s']:4.2f}x l1" if l1 else ""
            vs_fp32 = (f"  {r['steps_per_cpu_s'] / rates[f'{v} fp32']['steps_per_cpu_s']:4.2f}x fp32"
                       if p != "fp32" and f"{v} fp32" in rates else "")
            print(f"  {v:10s} {p:4s} {r['steps_per_s']:6.2f} steps/s  {r['frames_per_s']:7.0f} frames/s  "
                  f"{r['steps_per_cpu_s']:6.2f} steps/CPU-s{vs_l1}{vs_fp32}  "
                  f"({', '.join(f'{n} {n_p:,}' for n, n_p in r['params'].items())} parameters)")
        if args.loader_batches:
            data = args.data or Path(__file__).resolve().parents[1] / "data/packed/synthgrid/train.h5"
            if args.data is None and not data.is_file():
                from train_fixtures import write_talking_faces

                data = Path(tempfile.mkdtemp(prefix="bench_train_")) / "train.h5"
                write_talking_faces(data, 48, n_frames=75, image_size=model_cfg.image_size,
                                    sample_rate=model_cfg.sample_rate, seed=0)
            r = loader_speed(data, model_cfg, train_cfg, args.loader_batches)
            fastest = max(rates.values(), key=lambda x: x["steps_per_s"])
            per_cpu = (f", {r['batches_per_cpu_s']:.1f} batches/CPU-s = "
                       f"{r['batches_per_cpu_s'] / fastest['steps_per_cpu_s']:.1f}x") if r["batches_per_cpu_s"] else ""
            print(f"  loader     {r['batches_per_s']:6.2f} batches/s = {r['batches_per_s'] / fastest['steps_per_s']:.1f}x "
                  f"the fastest variant's steps/s{per_cpu} ({data}, {r['clips']} clips, "
                  f"{train_cfg.num_workers} workers)")
        return

    from train_fixtures import write_talking_faces

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_train_"))
    work.mkdir(parents=True, exist_ok=True)
    size, rate = model_cfg.image_size, model_cfg.sample_rate
    t0 = time.time()
    train_path = work / f"train-{size[0]}x{size[1]}-{rate}-{args.clips}.h5"  # reused if there
    if not train_path.exists():
        write_talking_faces(train_path, args.clips, n_frames=75, image_size=size, sample_rate=rate, seed=0, mirror=True)
    val_path = work / "val.h5"
    truth = write_talking_faces(val_path, args.val_clips, n_frames=75, image_size=size, sample_rate=rate, seed=1,
                                speaker_prefix="v")
    with h5py.File(train_path) as h5:
        n_train = sum(len(h5[s]) for s in h5)
    print(f"corpus: {n_train} training clips (with mirrors), {args.val_clips} validation clips, 75 frames, "
          f"{time.time() - t0:.1f} s to write; training {json.dumps({**base_training, **json.loads(args.training)})}")
    for v in args.variants:
        t0 = time.time()
        out = Path(tempfile.mkdtemp(prefix=f"{v}-", dir=work))  # a fresh run, never a resumed one
        result = train(dataset="bench", variant=v, train_path=train_path, val_path=val_path, out_dir=out,
                       model_cfg=model_cfg, train_cfg=train_cfg, progress=False)
        wall = time.time() - t0
        gen, _ = load_generator(result["generator"], dev)
        corr, psnr, psnr_still = mouth_following(gen, val_path, truth)
        print(f"  {v:10s} {wall:6.1f} s, {result['epochs']} epochs (best {result['best_epoch']}): "
              f"val PSNR {psnr:.2f} dB "
              f"(still image {psnr_still:.2f} dB), mouth-audio correlation {corr:.2f}; {out}")


if __name__ == "__main__":
    main()
