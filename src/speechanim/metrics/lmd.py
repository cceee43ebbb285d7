"""Mouth landmark distance (LMD) and mouth-opening correlation: lip sync against the real clip.

LMD (Chen, Li, Maddox, Duan, Xu, "Lip Movements Generation at a Glance", ECCV 2018): the
Euclidean distance between corresponding mouth landmarks of the real and the generated frame,
averaged over the lip points and the frames of a clip, then over clips.  Here the points are
mediapipe's 40 lip-contour points (outer and inner lips, ``FACEMESH_LIPS``) found on the aligned
crops, and each distance is divided by the crop's width, so that 64 x 48 and 128 x 96 crops give
comparable numbers.  Lower is better; identical videos give 0.

Mouth-opening correlation: the inner-lip gap (points 13 and 14) of each frame, generated against
real, as a Pearson r per clip, averaged over clips.  Higher is better; identical videos give 1.  A
mouth that does not move (a gap constant to within :data:`FROZEN_PX`, e.g. the still image
repeated) carries no correlation with the speech: its r is reported as 0, not left undefined.

Frames where mediapipe finds no face in either video are left out; a clip with fewer than
:data:`MIN_FRAMES` frames found in both has no value (``None``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["FROZEN_PX", "INNER_LIPS", "MIN_FRAMES", "lip_indices", "lmd", "mouth_correlation", "mouth_opening"]

#: Upper and lower inner-lip midpoints of mediapipe's face mesh.
INNER_LIPS = (13, 14)

#: A gap whose standard deviation over the clip is below this many pixels is a frozen mouth.
FROZEN_PX = 1e-3

#: Fewest frames with a face in both videos for a clip to get a value.
MIN_FRAMES = 3


def lip_indices() -> list[int]:
    """The 40 face-mesh indices of the lip contours (mediapipe's ``FACEMESH_LIPS``), sorted."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    return sorted({i for edge in FACEMESH_LIPS for i in edge})


def _check(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.shape != fake.shape or real.ndim != 3 or real.shape[2] != 2 or real.shape[1] < 468:
        raise ValueError(f"landmarks must be two (T, 478, 2) face-mesh arrays of one shape, got {real.shape} and {fake.shape}")
    both = np.isfinite(real).all(axis=(1, 2)) & np.isfinite(fake).all(axis=(1, 2))
    return real, fake, both


def lmd(real: np.ndarray, fake: np.ndarray, width: int) -> float | None:
    """Mean lip-point distance between two clips' ``(T, 478, 2)`` landmarks, over the crop width."""
    if width <= 0:
        raise ValueError(f"crop width must be positive, got {width}")
    real, fake, both = _check(real, fake)
    if both.sum() < MIN_FRAMES:
        return None
    lips = lip_indices()
    d = np.linalg.norm(real[both][:, lips] - fake[both][:, lips], axis=-1)
    return float(d.mean() / width)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap of each frame in pixels, ``(T,)`` (NaN where no face was found)."""
    landmarks = np.asarray(landmarks, np.float64)
    return np.linalg.norm(landmarks[:, INNER_LIPS[0]] - landmarks[:, INNER_LIPS[1]], axis=-1)


def mouth_correlation(real: np.ndarray, fake: np.ndarray) -> float | None:
    """Pearson r of the inner-lip gaps of two clips; 0 when either mouth is frozen."""
    real, fake, both = _check(real, fake)
    if both.sum() < MIN_FRAMES:
        return None
    a, b = mouth_opening(real[both]), mouth_opening(fake[both])
    if a.std() < FROZEN_PX or b.std() < FROZEN_PX:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
