"""Blinks: blink rate and mean blink duration from the eye aspect ratio (paper sections 1, 4.4).

The paper's temporal model "produc[es] not only synchronized mouth movements but also natural
facial expressions, such as eyebrow raises, frowns and blinks" (section 1, Fig. 7); the natural
blink statistics of generated videos are measured here, from face-mesh landmarks.

Eye aspect ratio (Soukupova & Cech 2016), per eye, from six eye-contour points::

    EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)

with p1, p4 the eye corners and p2/p6, p3/p5 facing points of the upper and lower lids.  On
mediapipe's 478-point face mesh (:data:`EYE_INDICES`): the eye on the image's left
``(33, 160, 158, 133, 153, 144)`` and on the image's right ``(362, 385, 387, 263, 373, 380)``.
A frame's EAR is the mean of both eyes; it is scale-free (~0.2-0.35 open, ~0.05 shut).

Blink detection:

* **Open-eye reference** ``open_ear``: the median EAR of the clip (eyes are open most of the
  time: people blink for ~0.1-0.4 s every 2-10 s), or a value the caller passes (e.g. the EAR of
  the still image the video was generated from).  The median is wrong if the eyes are shut for
  half the clip or more.
* **Closed** frames: ``EAR < ratio * open_ear`` with ``ratio = 0.7`` (:data:`CLOSED_RATIO`).
  The threshold is relative so that it works for narrow and wide eyes alike (the eight grid-mini
  speakers' open EAR ranges from 0.22 to 0.35).  On those real clips (128 x 96 crops) the
  blinks checked by eye dip to 0.12-0.32 of the median at their deepest, lids lowered almost shut
  (which mediapipe under-reads) to 0.51-0.65, and open-eye frames stay at or above 0.85.  On the
  embedded default's 64 x 48 crops mediapipe still tracks the face: six synthgrid test clips gave
  the same blink counts (0, 0, 2, 0, 1, 0) at 64 x 48 as at 128 x 96.
* A **blink** is a maximal run of closed frames lasting at least :data:`MIN_BLINK_S` (0.06 s: two
  frames at 25 fps; ``min_frames`` overrides it).  A human blink takes 0.1-0.4 s: on the eight
  grid-mini clips and the embedded default's 24 real test clips every blink is 2-10 frames below the
  threshold, while a generator's one-frame flicker over the eyes (speckle that mediapipe reads as a
  shut lid) is the most common false blink (docs/results.md, "Blinks").  A run cut by the clip's start or end
  counts, with the duration seen.  Frames without landmarks (NaN) are not closed: they end a run.
* **Rate** = blinks / clip duration (``T / fps``), in blinks per second; **mean duration** = the
  mean run length / ``fps`` in seconds (NaN when there is no blink).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLOSED_RATIO",
    "EYE_INDICES",
    "MIN_BLINK_S",
    "BlinkStats",
    "blinks_from_frames",
    "blinks_from_landmarks",
    "eye_aspect_ratio",
    "eye_motion",
    "find_blinks",
    "min_blink_frames",
]

#: Face-mesh indices (p1..p6) of the eye on the image's left and on the image's right.
EYE_INDICES: tuple[tuple[int, ...], tuple[int, ...]] = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))

#: A frame is closed when its EAR is below this fraction of the open-eye EAR.
CLOSED_RATIO = 0.7

#: The shortest closure that counts as a blink, in seconds (two frames at 25 fps).
MIN_BLINK_S = 0.06


def min_blink_frames(fps: float) -> int:
    """Frames a run of closed frames needs to last :data:`MIN_BLINK_S` at ``fps`` (2 at 25 fps)."""
    return max(1, math.ceil(MIN_BLINK_S * fps - 1e-9))


def eye_aspect_ratio(landmarks: np.ndarray, *, per_eye: bool = False) -> np.ndarray:
    """EAR of each frame from ``(T, 478, 2)`` landmarks: ``(T,)`` mean of both eyes, or ``(T, 2)``
    (image-left eye, image-right eye) with ``per_eye=True``.  NaN where landmarks are NaN."""
    landmarks = np.asarray(landmarks, np.float64)
    n_needed = max(max(e) for e in EYE_INDICES) + 1
    if landmarks.ndim != 3 or landmarks.shape[2] != 2 or landmarks.shape[1] < n_needed:
        raise ValueError(f"landmarks must be (T, 478, 2) face-mesh points, got shape {landmarks.shape}")
    ears = []
    for eye in EYE_INDICES:
        p = landmarks[:, list(eye)]
        vertical = np.linalg.norm(p[:, 1] - p[:, 5], axis=-1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=-1)
        horizontal = 2.0 * np.linalg.norm(p[:, 0] - p[:, 3], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ears.append(np.where(horizontal > 0, vertical / horizontal, np.nan))
    both = np.stack(ears, axis=1)
    return both if per_eye else both.mean(axis=1)


def find_blinks(ear: np.ndarray, *, ratio: float = CLOSED_RATIO, open_ear: float | None = None,
                min_frames: int = 1) -> list[tuple[int, int]]:
    """Blinks in an EAR sequence: ``[start, stop)`` frame ranges of runs with
    ``EAR < ratio * open_ear`` lasting at least ``min_frames`` (``open_ear``: the median EAR)."""
    ear = np.asarray(ear, np.float64)
    if ear.ndim != 1:
        raise ValueError(f"EAR must be a 1-D sequence, got shape {ear.shape}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames}")
    finite = np.isfinite(ear)
    if not finite.any():
        raise ValueError("no frame has an eye aspect ratio (no face found in any frame)")
    if open_ear is None:
        open_ear = float(np.median(ear[finite]))
    if not open_ear > 0:
        raise ValueError(f"open-eye EAR must be positive, got {open_ear}")
    closed = finite & (np.where(finite, ear, np.inf) < ratio * open_ear)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], closed.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_frames]


@dataclass(frozen=True)
class BlinkStats:
    """Blinks of one clip.

    count: number of blinks; rate: blinks per second; mean_duration: seconds (NaN if none);
    blinks: ``[start, stop)`` frame ranges; open_ear and threshold: the EAR reference and cut;
    duration: clip length in seconds; ear: the per-frame EAR.
    """

    count: int
    rate: float
    mean_duration: float
    blinks: tuple[tuple[int, int], ...]
    open_ear: float
    threshold: float
    duration: float
    ear: np.ndarray


def blinks_from_landmarks(landmarks: np.ndarray, fps: float, *, ratio: float = CLOSED_RATIO,
                          open_ear: float | None = None, min_frames: int | None = None) -> BlinkStats:
    """Blink rate and mean duration of a clip from its ``(T, 478, 2)`` face-mesh landmarks; runs
    shorter than ``min_frames`` (default: :func:`min_blink_frames` of ``fps``) are not blinks."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if min_frames is None:
        min_frames = min_blink_frames(fps)
    ear = eye_aspect_ratio(landmarks)
    if len(ear) == 0:
        raise ValueError("the clip has no frames")
    blinks = find_blinks(ear, ratio=ratio, open_ear=open_ear, min_frames=min_frames)
    if open_ear is None:
        open_ear = float(np.median(ear[np.isfinite(ear)]))
    duration = len(ear) / fps
    lengths = [b - a for a, b in blinks]
    return BlinkStats(
        count=len(blinks),
        rate=len(blinks) / duration,
        mean_duration=float(np.mean(lengths)) / fps if lengths else float("nan"),
        blinks=tuple(blinks),
        open_ear=float(open_ear),
        threshold=float(ratio * open_ear),
        duration=duration,
        ear=ear,
    )


def blinks_from_frames(frames: np.ndarray, fps: float, *, ratio: float = CLOSED_RATIO,
                       open_ear: float | None = None, min_frames: int | None = None) -> BlinkStats:
    """Blink statistics of a uint8 RGB ``(T, H, W, 3)`` clip: landmarks from mediapipe's face mesh
    (:func:`speechanim.align.detect_landmarks`, tracking through the clip), then
    :func:`blinks_from_landmarks`.  Works on 128 x 96 and 64 x 48 aligned crops."""
    from ..align import detect_landmarks

    landmarks, _ = detect_landmarks(frames, video=True)
    return blinks_from_landmarks(landmarks, fps, ratio=ratio, open_ear=open_ear, min_frames=min_frames)


def eye_motion(frames: np.ndarray, landmarks: np.ndarray, *, start: int = 1) -> float:
    """How much the eyes change over a clip: the standard deviation over the frames from index ``start``
    on (1: frames 2..T, as PSNR skips the still the generator was given) of the mean grey level (mean
    of R, G, B; 0-255) inside the two eye boxes.

    ``frames`` is uint8 RGB ``(T, H, W, 3)``; the boxes come from ``landmarks`` (the *real* clip's
    ``(T, 478, 2)`` face mesh, so a generated clip is measured where the real eyes are): each eye's
    :data:`EYE_INDICES` points over all frames, plus one pixel around, clipped to the frame. A clip
    whose eyes never change (the still image repeated) gives 0; blinks, gaze and head motion raise it.
    A diagnostic for why no blink is found: it needs no landmarks on the generated frames.
    """
    frames = np.asarray(frames)
    landmarks = np.asarray(landmarks, np.float64)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB (T, H, W, 3), got {frames.dtype} {frames.shape}")
    eye_aspect_ratio(landmarks)  # checks the landmarks' shape
    if len(landmarks) != len(frames) or len(frames) <= start + 1:
        raise ValueError(f"need landmarks for each of more than {start + 1} frames, got {len(landmarks)} for {len(frames)}")
    grey = frames[start:].astype(np.float64).mean(-1)
    h, w = grey.shape[1:]
    signals = []
    for eye in EYE_INDICES:
        pts = landmarks[:, list(eye)].reshape(-1, 2)
        pts = pts[np.isfinite(pts).all(1)]
        if not len(pts):
            raise ValueError("the landmarks of an eye are NaN in every frame")
        (x0, y0), (x1, y1) = np.floor(pts.min(0)).astype(int) - 1, np.ceil(pts.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"an eye's box ({x0}, {y0})-({x1}, {y1}) lies outside the {w} x {h} frame")
        signals.append(grey[:, y0:y1 + 1, x0:x1 + 1].mean((1, 2)))
    signal = np.mean(signals, 0)
    return float((signal - signal[0]).std())  # shifted by its first value: exactly 0 when it never changes
