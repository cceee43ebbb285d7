"""Learning curves: each kept epoch of a training run scored on validation clips, next to the still image.

    .venv/bin/python benchmarks/learning_curves.py --models results/synthgrid/models \\
        --val data/packed/synthgrid/val.h5 --syncnet results/synthgrid/syncnet.pt \\
        [--variants l1 full static] [--clips 24] [--out docs/learning-curves.csv] [--plot docs/learning-curves.png] \\
        [--every K] [--resume] [--lipreader results/<dataset>/lipreader.pt]

Reads ``<models>/<variant>/epochs/epoch<k>.pt``, the checkpoints training keeps with
``keep_epochs: true`` (the evidence run, workflow/configs/evidence.yaml, sets it). For each one it
generates ``--clips`` validation clips (spread evenly over the speakers, not the mirrored copies;
noise seed 0) and scores them as ``speechanim.evaluate`` does: PSNR over frames 2..T, LMD and the
mouth-opening correlation r (mediapipe lip points), LSE-C (the dataset's SyncNet), blinks per second,
and with ``--lipreader`` the WER of the dataset's lipreader on the clips' words.
The same clips' still image repeated (the control every model must beat) and the real videos are
scored once and written as rows with step 0 and variant ``still`` / ``real``. Prints the table and,
per variant, the first step at which it passes the still image on PSNR, LMD and LSE-C. The CSV is
rewritten after every checkpoint; ``--resume`` keeps its rows and scores only the epochs it lacks.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from speechanim.align import detect_landmarks
from speechanim.checkpoint import load_checkpoint, load_generator
from speechanim.evaluate import still_video
from speechanim.generate import clip_noise, clip_seed, generate_batch
from speechanim.metrics.blinks import blinks_from_landmarks
from speechanim.metrics.lmd import lmd, mouth_correlation
from speechanim.metrics.quality import video_quality
from speechanim.packing import WholeClips, clip_keys
from speechanim.syncnet import SyncScorer

METRICS = ("psnr", "lmd", "mouth_r", "lse_c", "blinks_per_s", "wer")
SIGN = {"psnr": 1, "lmd": -1, "lse_c": 1, "wer": -1}  # the metrics a model must pass the still image on (+1: higher is better)


def pick_clips(path: Path, n: int) -> list[int]:
    """Indices (into WholeClips) of n clips spread evenly over the sorted keys, mirrored copies left out."""
    with h5py.File(path, "r") as h5:
        keys = clip_keys(h5)
    own = [i for i, k in enumerate(keys) if not k.endswith("_mirror")]
    return [own[int(j)] for j in np.linspace(0, len(own) - 1, min(n, len(own))).round()]


def score(videos: list[np.ndarray], reals: list[dict], scorer: SyncScorer, reader=None) -> dict[str, float]:
    """Mean metrics of (T, H, W, 3) uint8 videos against the real clips (frames, landmarks, audio, words);
    WER over all their words when a lipreader is given (else nan)."""
    from speechanim.metrics.wer import wer

    rows = {m: [] for m in METRICS if m not in ("blinks_per_s", "wer")}
    seconds = blinks = 0.0
    for video, real in zip(videos, reals):
        marks, _ = detect_landmarks(video, video=True)
        rows["psnr"].append(video_quality(real["frames"][1:], video[1:]).psnr)
        rows["lmd"].append(lmd(real["landmarks"], marks, video.shape[2]))
        rows["mouth_r"].append(mouth_correlation(real["landmarks"], marks))
        rows["lse_c"].append(scorer.score(video, real["audio"], real["rate"], real["fps"]).lse_c)
        blinks += blinks_from_landmarks(marks, real["fps"]).count
        seconds += len(video) / real["fps"]
    out = {m: float(np.mean([v for v in vals if v is not None])) for m, vals in rows.items() if m != "blinks_per_s"}
    out["blinks_per_s"] = blinks / seconds
    out["wer"] = (wer([r["words"] for r in reals], [reader.transcribe(v) for v in videos]) if reader is not None
                  else float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, required=True, help="folder of <variant>/epochs/epoch<k>.pt")
    ap.add_argument("--val", type=Path, required=True, help="packed validation clips")
    ap.add_argument("--syncnet", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["l1", "full", "static"])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--lipreader", type=Path, default=None, help="the dataset's lipreader: a WER column")
    ap.add_argument("--every", type=int, default=1, help="score every k-th kept epoch (and the last)")
    ap.add_argument("--out", type=Path, default=Path("docs/learning-curves.csv"))
    ap.add_argument("--plot", type=Path, default=Path("docs/learning-curves.png"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in --out and score only the kept epochs it lacks")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    clips = WholeClips(args.val)
    items = [clips[i] for i in pick_clips(args.val, args.clips)]
    reals = []
    with h5py.File(args.val, "r") as h5:
        for it in items:
            g = h5[it["key"]]
            frames = g["frames"][()].transpose(0, 2, 3, 1)
            reals.append({"frames": frames, "landmarks": detect_landmarks(frames, video=True)[0],
                          "audio": g["audio"][()], "rate": int(g.attrs["sample_rate"]), "fps": float(g.attrs["fps"]),
                          "words": str(g.attrs["words"])})
    scorer = SyncScorer.load(args.syncnet)
    reader = None
    if args.lipreader:
        from speechanim.lipreader import LipReader

        reader = LipReader.load(args.lipreader)
    rows = [dict(variant="still", epoch=0, step=0, **score([still_video(r["frames"]) for r in reals], reals, scorer, reader)),
            dict(variant="real", epoch=0, step=0, **score([r["frames"] for r in reals], reals, scorer, reader))]
    print(f"{len(items)} validation clips of {args.val}; still image: " + ", ".join(f"{k} {rows[0][k]:.4g}" for k in METRICS))
    if args.resume and args.out.is_file():
        with open(args.out, newline="") as f:
            rows += [{"wer": float("nan"), **{k: (v if k == "variant" else int(v) if k in ("epoch", "step") else float(v))
                                             for k, v in r.items()}}
                     for r in csv.DictReader(f) if r["variant"] not in ("still", "real")]
    done = {(r["variant"], r["epoch"]) for r in rows}
    for variant in args.variants:
        kept = sorted((args.models / variant / "epochs").glob("epoch*.pt"))
        if not kept:
            print(f"{variant}: no kept epochs under {args.models / variant / 'epochs'} (train with keep_epochs: true)")
            continue
        kept = [p for i, p in enumerate(kept) if i % args.every == args.every - 1 or p == kept[-1]]
        for path in kept:
            if (variant, int(re.search(r"(\d+)", path.stem).group(1))) in done:
                continue
            t0 = time.time()
            generator, _ = load_generator(path)
            payload = load_checkpoint(path)
            epoch = int(re.search(r"(\d+)", path.stem).group(1))
            steps = sum(int(r["steps"]) for r in payload["history"][:epoch])
            noise = [clip_noise(generator, len(it["audio"]), clip_seed(0, it["key"])) for it in items]
            videos = []
            for s in range(0, len(items), 8):
                batch = items[s:s + 8]
                out = generate_batch(generator, torch.stack([it["still"] for it in batch]),
                                     [it["audio"] for it in batch], noise[s:s + 8])
                videos += [f.numpy().transpose(0, 2, 3, 1) for f in out]
            row = dict(variant=variant, epoch=epoch, step=steps, **score(videos, reals, scorer, reader))
            rows.append(row)
            write_rows(rows, args.out)  # after each checkpoint: an interrupted run keeps what it scored
            print(f"{variant:7s} epoch {epoch:3d} step {steps:6d}: " + ", ".join(f"{k} {row[k]:.4g}" for k in METRICS)
                  + f" ({time.time() - t0:.0f} s)", flush=True)
    order = ["still", "real", "l1", "l1_advimg", "full", "static"]
    rows.sort(key=lambda r: (order.index(r["variant"]) if r["variant"] in order else len(order), r["epoch"]))
    write_rows(rows, args.out)
    print(f"wrote {args.out}")
    still = rows[0]
    for variant in dict.fromkeys(r["variant"] for r in rows if r["variant"] not in ("still", "real")):
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        passes = []
        for m, sign in SIGN.items():
            if not np.isfinite(still[m]):
                continue
            first = next((r["step"] for r in mine if sign * (r[m] - still[m]) > 0), None)
            best = max(sign * r[m] for r in mine) * sign
            passes.append(f"{m} at step {first}" if first is not None else f"{m} never (best {best:.4g} vs {still[m]:.4g})")
        print(f"{variant}: passes the still image on " + "; ".join(passes))
    plot(rows, args.plot)
    print(f"wrote {args.plot}")
    return 0


def write_rows(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["variant", "epoch", "step", *METRICS], lineterminator="\n")
        w.writeheader()
        w.writerows({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"psnr": "PSNR, frames 2..T (dB) - higher is better", "lmd": "LMD - lower is better",
              "mouth_r": "mouth-opening r - higher is better", "lse_c": "LSE-C - higher is better",
              "blinks_per_s": "blinks per second", "wer": "WER (lipreader) - lower is better"}
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["variant"] not in ("still", "real")))
    metrics = [m for m in METRICS if np.isfinite(rows[0][m])]  # no WER column without a lipreader
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    for ax, m in zip(axes, metrics):
        for v in variants:
            mine = [r for r in rows if r["variant"] == v]
            ax.plot([r["step"] for r in mine], [r[m] for r in mine], marker="o", ms=3, label=v)
        for ref, style in (("still", "k--"), ("real", "g:")):
            value = next(r[m] for r in rows if r["variant"] == ref)
            ax.axhline(value, color=style[0], linestyle=style[1:], label=f"{ref} image" if ref == "still" else "real video")
        ax.set_title(titles[m], fontsize=9)
        ax.set_xlabel("training steps")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
