"""Score generated test videos with every metric of the paper (section 4.2), one JSON per method.

    # a model's videos (rows "L1 loss", ..., "Proposed Model", "Baseline")
    python -m speechanim.evaluate --real data/packed/<ds>/test.h5 --generated results/<ds>/generated/full.h5 \\
        --lipreader results/<ds>/lipreader.pt --out results/<ds>/metrics/full.json
    # the ground-truth row: the real test videos themselves
    python -m speechanim.evaluate --real data/packed/<ds>/test.h5 --lipreader ... --out results/<ds>/metrics/ground_truth.json

Per video (generated against the real clip with the same key; the still image is the real clip's
first aligned frame, the one the generator was given):

* PSNR, SSIM (:mod:`speechanim.metrics.quality`) -- N/A for the ground-truth row
* FDBM, CPBD sharpness, ACD identity distance (dlib's ResNet face descriptor, not OpenFace)
* the lipreader's transcript, scored as WER over all test words
* blink count and durations (eye aspect ratio from mediapipe landmarks); a video in which
  mediapipe finds no face at all has no blink values, and the blink rate and duration are over the
  ``blink_clips`` videos that have them

Each per-video value is the mean over frames (every ``frame_step``-th frame for the sharpness and
identity metrics; the paper uses every frame, ``frame_step: 1``), and the reported value the mean
over videos (WER: word errors over all words).  ``max_clips`` scores N test clips spread evenly
over the sorted keys (the same clips for every method) with the image metrics and blinks; the lipreader, which
costs milliseconds a clip, reads every test clip (``wer_videos``), since WER on a few clips is too
noisy to tell methods apart.  A per-clip CSV is written beside the JSON (``scored``: whether the
clip has the image metrics).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from .packing import clip_keys


class EvaluationError(ValueError):
    pass


def _frames(h5: h5py.File, key: str) -> np.ndarray:
    return h5[key]["frames"][()].transpose(0, 2, 3, 1)


def score_clip(real: np.ndarray, fake: np.ndarray | None, fps: float, frame_step: int) -> dict[str, Any]:
    """Every per-video metric of one clip; ``fake`` None scores the real video (ground truth)."""
    from .align import detect_landmarks
    from .metrics.acd import acd
    from .metrics.blinks import blinks_from_landmarks, eye_aspect_ratio
    from .metrics.cpbd import cpbd_video
    from .metrics.fdbm import fdbm_video
    from .metrics.quality import video_quality

    video = real if fake is None else fake
    row: dict[str, Any] = {}
    if fake is not None:
        if fake.shape != real.shape:
            raise EvaluationError(f"generated frames {fake.shape} and real frames {real.shape} differ")
        q = video_quality(real, fake)
        row.update(psnr=q.psnr, ssim=q.ssim)
    sub = video[::frame_step]
    row["fdbm"] = fdbm_video(sub)
    row["cpbd"] = cpbd_video(sub, fit_blocks=True)  # frames smaller than a block (the embedded 64 x 48): one block
    row["acd"] = acd(real[0], video, frame_step=frame_step)
    landmarks, _ = detect_landmarks(video, video=True)
    if np.isfinite(eye_aspect_ratio(landmarks)).any():
        blinks = blinks_from_landmarks(landmarks, fps)
        row["blinks"] = blinks.count
        row["blink_frames"] = int(sum(b - a for a, b in blinks.blinks))
    else:  # mediapipe finds no face in any frame (e.g. a failed model): blinks cannot be measured
        row["blinks"] = row["blink_frames"] = None
    row["seconds"] = len(video) / fps
    return row


def evaluate(real_path: str | os.PathLike, generated_path: str | os.PathLike | None, lipreader_path: str | os.PathLike | None,
             *, frame_step: int = 1, max_clips: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Score one method (``generated_path``) or the ground truth (``None``) on a packed test file."""
    from .lipreader import LipReader, wer

    if frame_step < 1:
        raise EvaluationError(f"frame_step must be >= 1, got {frame_step}")
    if max_clips is not None and max_clips < 1:
        raise EvaluationError(f"max_clips must be >= 1 (None: every clip), got {max_clips}")
    with h5py.File(real_path, "r") as real:
        every = [k for k in clip_keys(real) if not k.endswith("_mirror")]
        if not every:
            raise EvaluationError(f"{real_path}: no test clips")
        keys = every
        if max_clips and len(keys) > max_clips:  # evenly spread, so that every test speaker counts
            keys = [keys[int(i)] for i in np.linspace(0, len(keys) - 1, max_clips).round()]
        scored = set(keys)
        reader = LipReader.load(lipreader_path) if lipreader_path else None
        needed = every if reader is not None else keys  # the lipreader reads every test clip
        fake = h5py.File(generated_path, "r") if generated_path else None
        try:
            if fake is not None:
                missing = [k for k in needed if k not in fake]
                if missing:
                    raise EvaluationError(f"{generated_path}: lacks {len(missing)} test clips, e.g. {missing[0]}")
            rows = []
            for key in tqdm(needed, desc=f"evaluate {Path(generated_path or real_path).name}", unit="clip", disable=not progress):
                g = real[key]
                fps = float(g.attrs["fps"])
                real_frames = _frames(real, key)
                fake_frames = _frames(fake, key) if fake is not None else None
                if fake_frames is not None and fake_frames.shape != real_frames.shape:
                    raise EvaluationError(f"{generated_path}: clip {key} has frames {fake_frames.shape} (T, H, W, 3) "
                                          f"but the real clip in {real_path} has {real_frames.shape}")
                row = {"key": key, "words": str(g.attrs["words"]), "fps": fps, "scored": key in scored}
                if key in scored:
                    row.update(score_clip(real_frames, fake_frames, fps, frame_step))
                if reader is not None:
                    row["transcript"] = reader.transcribe(real_frames if fake_frames is None else fake_frames)
                rows.append(row)
        finally:
            if fake is not None:
                fake.close()

    def mean(name: str) -> float | None:
        values = [r[name] for r in rows if r.get(name) is not None and np.isfinite(r[name])]
        return float(np.mean(values)) if values else None

    # blinks over the clips where mediapipe found a face (a video without one has no measurable blinks)
    measured = [r for r in rows if r.get("blinks") is not None]
    seconds = sum(r["seconds"] for r in measured)
    blink_count = sum(r["blinks"] for r in measured)
    blink_seconds = sum(r["blink_frames"] / r["fps"] for r in measured)
    summary: dict[str, Any] = {
        "real": str(real_path),
        "generated": str(generated_path) if generated_path else None,
        "n_videos": len(scored),
        "frame_step": frame_step,
        "psnr": mean("psnr"),
        "ssim": mean("ssim"),
        "fdbm": mean("fdbm"),
        "cpbd": mean("cpbd"),
        "acd": mean("acd"),
        "wer": wer([r["words"] for r in rows], [r["transcript"] for r in rows]) if reader is not None else None,
        "wer_videos": len(rows) if reader is not None else None,
        "blinks_per_s": blink_count / seconds if measured else None,
        "blink_duration_s": blink_seconds / blink_count if blink_count else None,
        "blink_clips": len(measured),
    }
    return {"summary": summary, "clips": rows}


def write_results(result: dict[str, Any], out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = result["clips"]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    tmp = out.with_name(f".{out.stem}.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out.with_suffix(".csv"))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result["summary"], indent=2) + "\n")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--real", required=True, type=Path, help="the packed test file")
    p.add_argument("--generated", type=Path, default=None, help="generated videos (omit for the ground-truth row)")
    p.add_argument("--lipreader", type=Path, default=None, help="the dataset's lipreader checkpoint (WER)")
    p.add_argument("--out", required=True, type=Path, help="summary JSON (a per-clip CSV goes beside it)")
    p.add_argument("--frame-step", type=int, default=1, help="score every k-th frame for FDBM, CPBD, ACD (paper: 1)")
    p.add_argument("--max-clips", type=int, default=None, help="image metrics on N test clips spread evenly over the file (default all); the lipreader reads all")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.frame_step < 1:
        p.error("--frame-step must be >= 1")
    if args.max_clips is not None and args.max_clips < 1:
        p.error("--max-clips must be >= 1 (leave it out for every clip)")
    try:
        result = evaluate(args.real, args.generated, args.lipreader, frame_step=args.frame_step,
                          max_clips=args.max_clips, progress=not args.no_progress)
    except (OSError, ValueError, KeyError) as e:
        print(f"speechanim.evaluate: error: {e}", file=sys.stderr)
        return 1
    write_results(result, args.out)
    print(json.dumps(result["summary"], indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
