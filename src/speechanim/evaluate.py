"""Score generated test videos with every metric of the paper (section 4.2), one JSON per method.

    # a model's videos (rows "L1 loss", ..., "Proposed Model", "Baseline")
    python -m speechanim.evaluate --real data/packed/<ds>/test.h5 --generated results/<ds>/generated/full.h5 \\
        --lipreader results/<ds>/lipreader.pt --out results/<ds>/metrics/full.json
    # the ground-truth row: the real test videos themselves
    python -m speechanim.evaluate --real data/packed/<ds>/test.h5 --lipreader ... --out results/<ds>/metrics/ground_truth.json
    # the controls: the still image repeated, the real video with its audio shifted (0.8 s, wrapping)
    python -m speechanim.evaluate --real ... --control still|shifted_audio --syncnet ... --out ...
    # the real clips' landmarks, found once per dataset (rule reference_landmarks), then read with --reference
    python -m speechanim.evaluate --real data/packed/<ds>/test.h5 --max-clips 24 --write-reference landmarks.h5

Per video (generated against the real clip with the same key; the still image is the real clip's
first aligned frame, the one the generator was given):

* PSNR, SSIM (:mod:`speechanim.metrics.quality`) over frames 2..T (frame 1 is the still itself for
  the still-image control, and its PSNR would be infinite) -- N/A for the ground-truth row
* LMD and the mouth-opening correlation against the real clip (:mod:`speechanim.metrics.lmd`)
* AV offset, LSE-D and LSE-C from the dataset's SyncNet (:mod:`speechanim.syncnet`), with the audio
* FDBM, CPBD sharpness, ACD identity distance (dlib's ResNet face descriptor, not OpenFace)
* the lipreader's transcript, scored as WER over all test words
* blink count and durations (eye aspect ratio from mediapipe landmarks); a video in which
  mediapipe finds no face at all has no blink values, and the blink rate and duration are over the
  ``blink_clips`` videos that have them
* silence motion (paper Fig. 8: the static baseline "opening the mouth when words are not spoken"):
  the mean absolute change of the lower half of the frame (grey levels, 0-255) from one frame to the
  next, over the pairs of frames whose whole audio window is silent (:func:`silent_frames`); None
  for a clip without silence

Each per-video value is the mean over frames (every ``frame_step``-th frame for the sharpness and
identity metrics; the paper uses every frame, ``frame_step: 1``), and the reported value the mean
over videos (WER: word errors over all words).  ``max_clips`` scores N test clips spread evenly
over the sorted keys (the same clips for every method) with the image metrics and blinks; the lipreader, which
costs milliseconds a clip, reads every test clip (``wer_videos``), since WER on a few clips is too
noisy to tell methods apart.  A per-clip CSV is written beside the JSON (``scored``: whether the
clip has the image metrics).  The sync scores, like WER, are over every test clip.

The controls are scored by the same code (``--control``): ``still``, frame 0 of the real clip
repeated for the clip's length, with every metric; ``shifted_audio``, the real frames with the audio
rolled by ``shift_s`` (0.8 s: beyond the +-15-frame sync search) -- only the sync scores read the audio, so only they are given.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from .fileio import atomic_open, refuse_clashing_paths, write_text_atomic
from .packing import clip_group, clip_keys


class EvaluationError(ValueError):
    pass


#: Controls scored like methods: the still image repeated, and the real video with shifted audio.
CONTROLS = ("still", "shifted_audio")

#: The shifted-audio control's offset (s): 20 frames at 25 fps, beyond the sync search of +-15 frames.
SHIFT_S = 0.8

#: A clip's sync is right when the found AV offset is within this many frames of 0.
SYNC_TOLERANCE = 1


def _frames(h5: h5py.File, key: str) -> np.ndarray:
    frames = clip_group(h5, key)["frames"][()]
    if frames.ndim != 4 or frames.shape[1] != 3 or len(frames) == 0:
        raise EvaluationError(f"its frames have shape {frames.shape}, not (T, 3, H, W)")
    return frames.transpose(0, 2, 3, 1)


#: What reading or scoring a clip raises when a file is not what it should be (h5py: KeyError, OSError).
_CLIP_ERRORS = (KeyError, ValueError, OSError, IndexError, TypeError, ZeroDivisionError, AttributeError)


@contextmanager
def _naming(where: str):
    """Re-raise a reading or scoring error as :class:`EvaluationError` that starts with ``where`` (the
    file and the clip): h5py's and the metrics' own messages name neither. A message that already
    starts with the file's name is passed on as it is."""
    try:
        yield
    except _CLIP_ERRORS as e:
        detail = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if detail.startswith(where.split(": ")[0]):
            raise
        raise EvaluationError(f"{where}: {detail}") from e


def _open_h5(path: str | os.PathLike, what: str) -> h5py.File:
    """``path`` opened for reading; a missing or non-HDF5 file raises :class:`EvaluationError` naming it."""
    with _naming(f"{path}: cannot read {what}"):
        return h5py.File(path, "r")


def _clip_rates(g: h5py.Group) -> tuple[float, int]:
    """A packed clip's frame rate and sample rate, which must be finite and positive."""
    fps, rate = float(g.attrs["fps"]), float(g.attrs["sample_rate"])
    if not (math.isfinite(fps) and fps > 0 and math.isfinite(rate) and rate > 0 and rate.is_integer()):
        raise EvaluationError(f"its fps {fps:g} and sample_rate {rate:g} must be positive (a whole number of Hz)")
    return fps, int(rate)


def still_video(real: np.ndarray) -> np.ndarray:
    """The still-image control: frame 0 repeated for the clip's length."""
    return np.repeat(real[:1], len(real), axis=0)


def shift_audio(audio: np.ndarray, shift_s: float, rate: int) -> np.ndarray:
    """The audio delayed by ``shift_s`` seconds, wrapping around the clip's end."""
    return np.roll(audio, int(round(shift_s * rate)))


def score_clip(real: np.ndarray, fake: np.ndarray | None, fps: float, frame_step: int,
               real_landmarks: np.ndarray | None = None) -> dict[str, Any]:
    """Every per-video image metric of one clip; ``fake`` None scores the real video (ground truth).
    ``real_landmarks``: the real clip's face-mesh landmarks if already found (:func:`reference_landmarks`)."""
    from .align import detect_landmarks
    from .metrics.acd import acd
    from .metrics.blinks import blinks_from_landmarks, eye_aspect_ratio, eye_motion
    from .metrics.cpbd import cpbd_video
    from .metrics.fdbm import fdbm_video
    from .metrics.lmd import lmd, mouth_correlation
    from .metrics.quality import video_quality

    video = real if fake is None else fake
    row: dict[str, Any] = {}
    if real_landmarks is None:
        real_landmarks, _ = detect_landmarks(real, video=True)
    landmarks = real_landmarks if fake is None else detect_landmarks(video, video=True)[0]
    if fake is not None:
        if fake.shape != real.shape:
            raise EvaluationError(f"generated frames {fake.shape} and real frames {real.shape} differ")
        q = video_quality(real[1:], fake[1:])  # frames 2..T: the first is the still for the control
        row.update(psnr=q.psnr, ssim=q.ssim)
        row.update(lmd=lmd(real_landmarks, landmarks, real.shape[2]), mouth_r=mouth_correlation(real_landmarks, landmarks))
    sub = video[::frame_step]
    row["fdbm"] = fdbm_video(sub)
    row["cpbd"] = cpbd_video(sub, fit_blocks=True)  # frames smaller than a block (the embedded 64 x 48): one block
    row["acd"] = acd(real[0], video, frame_step=frame_step)
    if np.isfinite(eye_aspect_ratio(landmarks)).any():
        blinks = blinks_from_landmarks(landmarks, fps)
        row["blinks"] = blinks.count
        row["blink_frames"] = int(sum(b - a for a, b in blinks.blinks))
    else:  # mediapipe finds no face in any frame (e.g. a failed model): blinks cannot be measured
        row["blinks"] = row["blink_frames"] = None
    try:  # where the real eyes are, so it needs no face found in the generated frames
        row["eye_motion"] = eye_motion(video, real_landmarks)
    except ValueError:  # no real eye landmarks (or too short a clip)
        row["eye_motion"] = None
    row["seconds"] = len(video) / fps
    return row


#: A frame is silent when every 1/fps audio chunk in its window is this far below the clip's loudest chunk.
SILENCE_DB = -30.0


def silent_frames(audio: np.ndarray, n_frames: int, rate: int, fps: float, window_s: float = 0.16,
                  silence_db: float = SILENCE_DB) -> np.ndarray:
    """Boolean (n_frames,): whether the audio window the generator hears for each frame (``window_s``,
    centred on the frame) is silent, i.e. each of its chunks' RMS is ``silence_db`` below the loudest chunk's."""
    spf = int(round(rate / fps))
    audio = np.asarray(audio, dtype=np.float64)[: n_frames * spf]
    audio = np.pad(audio, (0, n_frames * spf - len(audio)))
    rms = np.sqrt((audio.reshape(n_frames, spf) ** 2).mean(axis=1))
    if rms.max() == 0:
        return np.ones(n_frames, dtype=bool)
    quiet = 20 * np.log10(np.maximum(rms / rms.max(), 1e-12)) < silence_db
    half = int(round(window_s * fps / 2))
    padded = np.pad(quiet, half, constant_values=True)  # the window's zero padding at the clip's ends is silent
    return np.array([padded[t : t + 2 * half + 1].all() for t in range(n_frames)])


def silence_motion(video: np.ndarray, silent: np.ndarray) -> float | None:
    """Mean absolute change of the lower half of the frame (the mouth; grey levels) between consecutive
    frames that are both silent; None if no two consecutive frames are."""
    pairs = np.flatnonzero(silent[1:] & silent[:-1]) + 1
    if len(pairs) == 0:
        return None
    lower = video[:, video.shape[1] // 2 :].astype(np.float32)
    return float(np.abs(lower[pairs] - lower[pairs - 1]).mean())


def scored_keys(keys: list[str], max_clips: int | None) -> list[str]:
    """The clips scored with the image metrics: all, or ``max_clips`` spread evenly over the sorted
    keys (so that every test speaker counts; the same clips for every method)."""
    if max_clips and len(keys) > max_clips:
        return [keys[int(i)] for i in np.linspace(0, len(keys) - 1, max_clips).round()]
    return keys


def reference_landmarks(real_path: str | os.PathLike, out: str | os.PathLike, *, max_clips: int | None = None,
                        progress: bool = True) -> Path:
    """The face-mesh landmarks of the real test clips that :func:`evaluate` scores (``max_clips``),
    found once per dataset and written to an HDF5 file (one ``(T, 478, 2)`` dataset per clip key):
    every method's LMD and mouth correlation and the real videos' blinks read them instead of
    running mediapipe on the same real frames again."""
    from .align import detect_landmarks
    from .fileio import atomic_path

    with _open_h5(real_path, "the packed test clips") as real:
        keys = scored_keys([k for k in clip_keys(real) if not k.endswith("_mirror")], max_clips)
        if not keys:
            raise EvaluationError(f"{real_path}: no test clips")
        with atomic_path(out) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["real"], f.attrs["max_clips"] = str(real_path), max_clips or 0
                for key in tqdm(keys, desc="real landmarks", unit="clip", disable=None if progress else True):
                    with _naming(f"{real_path}: clip {key}"):
                        f.create_dataset(key, data=detect_landmarks(_frames(real, key), video=True)[0])
    return Path(out)


def _load_reference(path: str | os.PathLike, real: h5py.File, keys: list[str]) -> dict[str, np.ndarray]:
    """The real clips' landmarks of ``keys`` from a :func:`reference_landmarks` file, checked against the clips."""
    with _open_h5(path, "the real clips' landmarks") as f:
        missing = [k for k in keys if k not in f]
        if missing:
            raise EvaluationError(f"{path}: no landmarks for {len(missing)} of the scored clips, e.g. {missing[0]} "
                                  f"(written for max_clips {f.attrs.get('max_clips')})")
        with _naming(f"{path}: the landmarks"):
            out = {k: f[k][()] for k in keys}
    for k, lm in out.items():
        with _naming(f"{real.filename}: clip {k}"):
            t = real[k]["frames"].shape[0]
        if lm.shape != (t, 478, 2):
            raise EvaluationError(f"{path}: the landmarks of {k} have shape {lm.shape}, not ({t}, 478, 2)")
    return out


def sync_row(scorer, video: np.ndarray, audio: np.ndarray, rate: int, fps: float) -> dict[str, Any]:
    s = scorer.score(video, audio, rate, fps)
    return {"av_offset": s.offset, "lse_d": s.lse_d, "lse_c": s.lse_c}


def evaluate(real_path: str | os.PathLike, generated_path: str | os.PathLike | None, lipreader_path: str | os.PathLike | None,
             *, syncnet_path: str | os.PathLike | None = None, control: str | None = None, shift_s: float = SHIFT_S,
             frame_step: int = 1, max_clips: int | None = None, reference: str | os.PathLike | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Score one method (``generated_path``), a control (``control``) or the ground truth (neither)
    on a packed test file.  ``reference``: the real clips' landmarks (:func:`reference_landmarks`)."""
    from .lipreader import LipReader
    from .metrics.wer import wer

    if frame_step < 1:
        raise EvaluationError(f"frame_step must be >= 1, got {frame_step}")
    if max_clips is not None and max_clips < 1:
        raise EvaluationError(f"max_clips must be >= 1 (None: every clip), got {max_clips}")
    if control is not None and control not in CONTROLS:
        raise EvaluationError(f"unknown control {control!r}: one of {', '.join(CONTROLS)}")
    if control is not None and generated_path is not None:
        raise EvaluationError("a control is made from the real clips: give no generated file with it")
    if control == "shifted_audio" and syncnet_path is None:
        raise EvaluationError("the shifted-audio control is scored by the sync metrics only: give the SyncNet")
    image_metrics = control != "shifted_audio"  # the shifted-audio control's frames are the real ones
    with _open_h5(real_path, "the packed test clips") as real:
        every = [k for k in clip_keys(real) if not k.endswith("_mirror")]
        if not every:
            raise EvaluationError(f"{real_path}: no test clips")
        keys = scored_keys(every, max_clips)
        scored = set(keys) if image_metrics else set()
        real_landmarks = _load_reference(reference, real, keys) if reference and image_metrics else {}
        reader = LipReader.load(lipreader_path) if lipreader_path and image_metrics else None
        syncnet = None
        if syncnet_path:
            from .syncnet import SyncScorer

            syncnet = SyncScorer.load(syncnet_path)
        needed = every if (reader is not None or syncnet is not None) else keys  # WER and sync: every clip
        fake = _open_h5(generated_path, "the generated clips") if generated_path else None
        try:
            if fake is not None:
                missing = [k for k in needed if k not in fake]
                if missing:
                    raise EvaluationError(f"{generated_path}: lacks {len(missing)} test clips, e.g. {missing[0]}")
            rows = []
            name = Path(generated_path).name if generated_path else (control or "ground_truth")
            for key in tqdm(needed, desc=f"evaluate {name}", unit="clip", disable=None if progress else True):
                with _naming(f"{real_path}: clip {key}"):  # every error below names its file and clip
                    g = clip_group(real, key)
                    fps, rate = _clip_rates(g)
                    words, real_frames = str(g.attrs["words"]), _frames(real, key)
                    real_audio = g["audio"][()] if key in scored or syncnet is not None else None
                fake_frames = None
                if fake is not None:
                    with _naming(f"{generated_path}: clip {key}"):
                        fake_frames = _frames(fake, key)
                if control == "still":
                    fake_frames = still_video(real_frames)
                if fake_frames is not None and fake_frames.shape != real_frames.shape:
                    raise EvaluationError(f"{generated_path}: clip {key} has frames {fake_frames.shape} (T, H, W, 3) "
                                          f"but the real clip in {real_path} has {real_frames.shape}")
                video = real_frames if fake_frames is None else fake_frames
                row = {"key": key, "words": words, "fps": fps, "scored": key in scored}
                against = f" against {real_path}" if generated_path else ""
                with _naming(f"{generated_path or real_path}: clip {key}{against}: scoring failed"):
                    if key in scored:
                        row.update(score_clip(real_frames, fake_frames, fps, frame_step, real_landmarks.get(key)))
                        silent = silent_frames(real_audio, len(video), rate, fps)
                        row["silence_motion"] = silence_motion(video, silent)
                    if reader is not None:
                        row["transcript"] = reader.transcribe(video)
                    if syncnet is not None:
                        audio = real_audio
                        if control == "shifted_audio":
                            audio = shift_audio(audio, shift_s, rate)
                        row.update(sync_row(syncnet, video, audio, rate, fps))
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
    synced = [r for r in rows if r.get("av_offset") is not None]
    summary: dict[str, Any] = {
        "real": str(real_path),
        "generated": str(generated_path) if generated_path else None,
        "control": control,
        "shift_s": shift_s if control == "shifted_audio" else None,
        "n_videos": len(scored),
        "frame_step": frame_step,
        "psnr": mean("psnr"),
        "ssim": mean("ssim"),
        "fdbm": mean("fdbm"),
        "cpbd": mean("cpbd"),
        "acd": mean("acd"),
        "lmd": mean("lmd"),
        "mouth_r": mean("mouth_r"),
        "lmd_clips": sum(r.get("lmd") is not None for r in rows),
        "lse_d": mean("lse_d"),
        "lse_c": mean("lse_c"),
        "sync_ok": float(np.mean([abs(r["av_offset"]) <= SYNC_TOLERANCE for r in synced])) if synced else None,
        "sync_videos": len(synced) if synced else None,
        "wer": wer([r["words"] for r in rows], [r["transcript"] for r in rows]) if reader is not None else None,
        "wer_videos": len(rows) if reader is not None else None,
        "blinks_per_s": blink_count / seconds if measured else None,
        "blink_duration_s": blink_seconds / blink_count if blink_count else None,
        "blink_clips": len(measured),
        "eye_motion": mean("eye_motion"),
        "silence_motion": mean("silence_motion"),
        "silence_clips": sum(r.get("silence_motion") is not None for r in rows),
    }
    return {"summary": summary, "clips": rows}


def write_results(result: dict[str, Any], out: str | os.PathLike) -> Path:
    out = Path(out)
    rows = result["clips"]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with atomic_open(out.with_suffix(".csv")) as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    write_text_atomic(out, json.dumps(result["summary"], indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--real", required=True, type=Path, help="the packed test file")
    p.add_argument("--generated", type=Path, default=None, help="generated videos (omit for the ground-truth row)")
    p.add_argument("--lipreader", type=Path, default=None, help="the dataset's lipreader checkpoint (WER)")
    p.add_argument("--syncnet", type=Path, default=None, help="the dataset's SyncNet checkpoint (AV offset, LSE-D, LSE-C)")
    p.add_argument("--control", choices=CONTROLS, default=None,
                   help="score a control made from the real clips: the still image repeated, or the real video with shifted audio")
    p.add_argument("--shift-s", type=float, default=SHIFT_S, help="audio shift of the shifted_audio control (default %(default)s s)")
    p.add_argument("--out", type=Path, default=None, help="summary JSON (a per-clip CSV goes beside it)")
    p.add_argument("--frame-step", type=int, default=1, help="score every k-th frame for FDBM, CPBD, ACD (paper: 1)")
    p.add_argument("--max-clips", type=int, default=None, help="image metrics on N test clips spread evenly over the file (default all); the lipreader reads all")
    p.add_argument("--reference", type=Path, default=None,
                   help="the real clips' landmarks (written by --write-reference), instead of finding them again")
    p.add_argument("--write-reference", type=Path, default=None, metavar="OUT",
                   help="only find the landmarks of the real clips to be scored (--max-clips) and write them to OUT")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if (args.out is None) == (args.write_reference is None):
        p.error("give --out (scores) or --write-reference (the real clips' landmarks), one of them")
    if args.frame_step < 1:
        p.error("--frame-step must be >= 1")
    if args.max_clips is not None and args.max_clips < 1:
        p.error("--max-clips must be >= 1 (leave it out for every clip)")
    refuse_clashing_paths(p, {"--real": args.real, "--generated": args.generated, "--lipreader": args.lipreader,
                              "--syncnet": args.syncnet, "--reference": args.reference},
                          {"--out": args.out, "--out's per-clip CSV": args.out and args.out.with_suffix(".csv"),
                           "--write-reference": args.write_reference})
    try:
        if args.write_reference:
            reference_landmarks(args.real, args.write_reference, max_clips=args.max_clips, progress=not args.no_progress)
            return 0
        result = evaluate(args.real, args.generated, args.lipreader, syncnet_path=args.syncnet, control=args.control,
                          shift_s=args.shift_s, frame_step=args.frame_step, max_clips=args.max_clips,
                          reference=args.reference, progress=not args.no_progress)
    except (OSError, ValueError, KeyError) as e:
        print(f"speechanim.evaluate: error: {e}", file=sys.stderr)
        return 1
    write_results(result, args.out)
    print(json.dumps(result["summary"], indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
