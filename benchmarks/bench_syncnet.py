"""SyncNet scorer speed: training time per epoch and scoring time per clip.

    .venv/bin/python benchmarks/bench_syncnet.py [--config JSON] [--epochs 1] [--threads N]
    .venv/bin/python benchmarks/bench_syncnet.py --train data/packed/synthgrid/train.h5 --val data/packed/synthgrid/val.h5

Trains ``speechanim.syncnet.train`` for ``--epochs`` epochs (defaults: the embedded SyncNetConfig
and its steps per epoch) on ``--train`` / ``--val``, or, without them, on drawn talking faces
(tests/train_fixtures.py: ``--clips`` clips mirrored, 75 frames at 64 x 48 and 16 kHz), and prints
the seconds per epoch (training steps and the validation together, as in the history CSV) and
the process's CPU time, then
the milliseconds to score one 75-frame clip with ``SyncScorer.score`` (mouth crops, spectrogram,
both streams and the 31 offsets), best of ``--repeats``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic-corpus writer

from speechanim.packing import clip_keys, read_clip  # noqa: E402
from speechanim.syncnet import SyncNetConfig, SyncScorer, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="{}", help="JSON SyncNetConfig overrides")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train", type=Path, default=None, help="packed training HDF5 (default: synthetic faces)")
    ap.add_argument("--val", type=Path, default=None, help="packed validation HDF5")
    ap.add_argument("--clips", type=int, default=60, help="synthetic training clips before mirroring")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SyncNetConfig.from_overrides({**json.loads(args.config), "epochs": args.epochs, "patience": args.epochs})
    work = Path(tempfile.mkdtemp(prefix="bench_syncnet_"))
    if args.train is None or args.val is None:
        from train_fixtures import write_talking_faces

        args.train, args.val = work / "train.h5", work / "val.h5"
        write_talking_faces(args.train, args.clips, sample_rate=16000, seed=0, mirror=True)
        write_talking_faces(args.val, 20, sample_rate=16000, seed=1, speaker_prefix="v")
    print(f"SyncNet {json.dumps(cfg.to_dict())}; cpu, {torch.get_num_threads()} threads"
          if not torch.cuda.is_available() else f"SyncNet on {torch.cuda.get_device_name()}")

    t0, c0 = time.perf_counter(), time.process_time()
    rows = train(args.train, args.val, work / "syncnet.pt", cfg, progress=False)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    for r in rows:
        print(f"  epoch {r['epoch']}: {r['seconds']:.1f} s ({cfg.steps_per_epoch} steps of {cfg.batch_size} pairs "
              f"+ validation), val offset accuracy {r['val_offset_accuracy']:.2f}, "
              f"+5 frames {r['val_shift_accuracy']:.2f}")
    print(f"  training: {total:.1f} s in all (reading the files included; {cpu:.1f} s of CPU time, which a busy "
          f"machine does not inflate), {np.mean([r['seconds'] for r in rows]):.1f} s per epoch")

    scorer = SyncScorer.load(work / "syncnet.pt")
    with h5py.File(args.val, "r") as h5:
        clip = read_clip(h5, clip_keys(h5)[0])
    scorer.score(clip.frames, clip.audio, clip.sample_rate, clip.fps)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        scorer.score(clip.frames, clip.audio, clip.sample_rate, clip.fps)
        times.append(time.perf_counter() - t0)
    print(f"  scoring: {1000 * min(times):.1f} ms per {len(clip.frames)}-frame clip "
          f"({clip.frames.shape[1]} x {clip.frames.shape[2]}, {clip.sample_rate} Hz), best of {args.repeats}")


if __name__ == "__main__":
    main()
