"""The preprocessing stage end to end on grid-mini: align throughput and HDF5 training-window throughput.

    .venv/bin/python benchmarks/bench_preprocess.py [--clips ../shared/data/grid-mini] [--cores 1] \\
        [--windows 480] [--batch 8]

1. align: the whole ``python -m speechanim.preprocess align`` path in this process (manifest, video
   and audio decoding, normalisation, landmark tracking, smoothing, warp, HDF5 writes) for one
   speaker made of grid-mini's clips, pinned to ``--cores`` cores (``os.sched_setaffinity``; OpenCV's
   pool set to match).  Printed as frames per second per core.  Stage by stage timings of the
   alignment alone are in ``benchmarks/bench_align.py``.
2. pack: the speaker packed as a training set with mirroring (``preprocess pack --mirror``).
3. windows: :class:`speechanim.packing.TrainingWindows` of 16 frames from the packed file through a
   ``DataLoader`` (batch ``--batch``, windows drawn with replacement) with 0 and with 2 workers, all
   cores.  Worker start-up is timed apart from the steady rate (measured after the first batch).
   With 0 workers the batch is collated in this process, where ``torch.stack`` runs on torch's
   intra-op threads; on a small machine that can cost more than reading the windows, so the
   0-worker case is also run with ``torch.set_num_threads(1)`` (workers always collate on one thread).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader, RandomSampler

from speechanim.align import AlignConfig, align_video
from speechanim.media import read_video
from speechanim.packing import TrainingWindows, worker_init
from speechanim.preprocess import main as preprocess
from speechanim.raw.layout import Utterance, write_manifest
from speechanim.splits import write_split

REPO = Path(__file__).resolve().parents[1]


def _raw_speaker(clips: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True)
    for clip in clips:
        shutil.copy(clip, dest / clip.name)
    write_manifest(dest, [Utterance(c.stem, c.name, "", "", "") for c in clips])
    return dest


def _windows_per_s(path: Path, workers: int, n_windows: int, batch: int) -> tuple[float, float]:
    ds = TrainingWindows(path, n_frames=16)
    sampler = RandomSampler(ds, replacement=True, num_samples=n_windows + batch)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, worker_init_fn=worker_init)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)  # the first batch: worker start-up, file opening
    t1 = time.perf_counter()
    n = sum(len(b["key"]) for b in it)
    t2 = time.perf_counter()
    return n / (t2 - t1), t1 - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=REPO.parent / "shared" / "data" / "grid-mini")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--windows", type=int, default=480)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    clips = sorted(args.clips.glob("*.mpg"))
    if not clips:
        raise SystemExit(f"{args.clips}: no .mpg clips")

    all_cores = os.sched_getaffinity(0)
    cores = sorted(all_cores)[: max(1, min(args.cores, len(all_cores)))]
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        raw = _raw_speaker(clips, root / "raw" / "bench" / "s1")
        aligned, packed = root / "aligned" / "s1.h5", root / "packed" / "train.h5"

        os.sched_setaffinity(0, set(cores))
        cv2.setNumThreads(len(cores))
        align_video(read_video(clips[0])[0][:2], AlignConfig())  # load mediapipe's models outside the timing
        t0 = time.perf_counter()
        rc = preprocess(["align", "--raw", str(raw), "--out", str(aligned), "--skipped", str(root / "s1.tsv")])
        align_s = time.perf_counter() - t0
        os.sched_setaffinity(0, all_cores)
        cv2.setNumThreads(len(all_cores))
        if rc != 0:
            raise SystemExit("align failed")

        split = write_split(root / "split.tsv", {"s1": "train"})
        t0 = time.perf_counter()
        preprocess(["pack", "--split", str(split), "--part", "train", "--mirror", "--out", str(packed), str(aligned)])
        pack_s = time.perf_counter() - t0

        n_frames = sum(len(read_video(c)[0]) for c in clips)
        print(f"\n{len(clips)} clips, {n_frames} frames; align on {len(cores)} core(s) {cores}, loading on {len(all_cores)}")
        print(f"align (whole CLI path)   {n_frames / align_s / len(cores):8.1f} frames/s/core "
              f"({align_s / len(clips):.2f} s per 75-frame clip)")
        print(f"pack + mirror            {2 * len(clips) / pack_s:8.1f} clips/s written ({pack_s:.2f} s for {2 * len(clips)})")
        default_threads = torch.get_num_threads()
        for workers, threads in ((0, default_threads), (0, 1), (2, default_threads)):
            torch.set_num_threads(threads)
            rate, startup = _windows_per_s(packed, workers, args.windows, args.batch)
            print(f"TrainingWindows 16 frames, {workers} workers, torch threads {threads}: {rate:8.1f} windows/s "
                  f"(batch {args.batch}; first batch after {startup:.2f} s)")
        torch.set_num_threads(default_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
