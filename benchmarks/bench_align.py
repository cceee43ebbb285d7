"""Face alignment speed on the real GRID clips of grid-mini, in frames per second per CPU core.

    .venv/bin/python benchmarks/bench_align.py [--clips ../shared/data/grid-mini] [--cores 1] [--repeats 3]

The process is pinned to ``--cores`` CPU cores (``os.sched_setaffinity``; OpenCV's thread pool is
set to the same number), so mediapipe's and OpenCV's threads share them; the figures printed are
frames per second divided by the number of cores.  Stages, each timed on its own over all clips:

* detect: mediapipe FaceMesh landmarks, tracking mode (``detect_landmarks``)
* gaps: ``fill_gaps`` (nothing to fill on grid-mini; the check itself)
* smooth: ``smooth_points`` of the stable points over 7 frames
* fit: one ``skimage`` ``SimilarityTransform`` per frame (``estimate_transforms``)
* warp cv2 / warp skimage: ``warp_frames`` to 128 x 96 with each backend
* total: ``align_video`` end to end (detection included; video decoding excluded)

The best of ``--repeats`` runs is reported for each stage.  The whole ``align_speaker`` job (decoding,
audio and the HDF5 file included) is timed by ``bench_align_speaker.py``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from speechanim.align import (
    STABLE_POINTS,
    AlignConfig,
    align_video,
    detect_landmarks,
    estimate_transforms,
    fill_gaps,
    load_template,
    smooth_points,
    warp_frames,
)
from speechanim.media import read_video

REPO = Path(__file__).resolve().parents[1]


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=REPO.parent / "shared" / "data" / "grid-mini")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    available = sorted(os.sched_getaffinity(0))
    cores = available[: max(1, min(args.cores, len(available)))]
    os.sched_setaffinity(0, set(cores))
    cv2.setNumThreads(len(cores))

    clips = sorted(args.clips.glob("*.mpg"))
    if not clips:
        raise SystemExit(f"{args.clips}: no .mpg clips")
    videos = [read_video(p)[0] for p in clips]
    n_frames = sum(len(v) for v in videos)
    cfg = AlignConfig()
    template = load_template(cfg.size)
    stable_idx = list(STABLE_POINTS)

    detect_landmarks(videos[0][:2])  # load mediapipe's models once, outside the timings
    detected = [detect_landmarks(v, video=True) for v in videos]
    filled = [fill_gaps(lm, found, cfg.max_gap, clip=p.name) for (lm, found), p in zip(detected, clips)]
    smoothed = [smooth_points(lm[:, stable_idx], cfg.smooth_window) for lm in filled]
    transforms = [estimate_transforms(s, template.stable) for s in smoothed]

    timings = {
        "detect": _best(lambda: [detect_landmarks(v, video=True) for v in videos], args.repeats),
        "gaps": _best(lambda: [fill_gaps(lm, f, cfg.max_gap) for lm, f in detected], args.repeats),
        "smooth": _best(lambda: [smooth_points(lm[:, stable_idx], cfg.smooth_window) for lm in filled], args.repeats),
        "fit": _best(lambda: [estimate_transforms(s, template.stable) for s in smoothed], args.repeats),
        "warp cv2": _best(lambda: [warp_frames(v, t, cfg.size, backend="cv2") for v, t in zip(videos, transforms)], args.repeats),
        "warp skimage": _best(
            lambda: [warp_frames(v, t, cfg.size, backend="skimage") for v, t in zip(videos, transforms)], args.repeats
        ),
        "total": _best(lambda: [align_video(v, cfg, name=p.name) for v, p in zip(videos, clips)], args.repeats),
    }

    h, w = videos[0].shape[1:3]
    print(f"{len(clips)} clips, {n_frames} frames of {w}x{h} -> {cfg.size[0]}x{cfg.size[1]} (H x W), "
          f"{len(cores)} core(s) {cores}, best of {args.repeats}")
    print(f"{'stage':<14}{'us/frame':>10}{'frames/s/core':>16}")
    for stage, seconds in timings.items():
        per_frame = seconds / n_frames
        print(f"{stage:<14}{per_frame * 1e6:>10.1f}{1.0 / per_frame / len(cores):>16.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
