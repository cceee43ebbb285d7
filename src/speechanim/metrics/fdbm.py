"""FDBM: the frequency domain blurriness measure (De & Masilamani 2013), paper section 4.2.

"... and the frequency domain blurriness measure (FDBM) proposed in [8], which is based on the
spectrum of the image.  For these metrics larger values imply better quality."

K. De and V. Masilamani, "Image sharpness measure for blurred images in frequency domain",
Procedia Engineering 64 (2013), section 3, for an image ``I`` of ``M x N`` pixels:

1. ``F`` = the Fourier transform of ``I``;  2. ``Fc`` = ``F`` shifted so the origin is centred;
3. ``AF = |Fc|``;  4. ``M = max(AF)``;  5. ``T_H`` = the number of coefficients of ``AF``
greater than the threshold ``thres = M / 1000``;  6. ``FM = T_H / (M * N)``.

Blur removes high frequencies, so fewer coefficients clear the threshold and the score falls.
Values: a constant image (only the DC term) scores ``1 / (M N)``; a single bright pixel (a flat
spectrum) scores 1; an all-zero image (no spectrum at all) scores 0.  The score depends only on
ratios of magnitudes, so it is the same for an image and the image times any positive factor.

Frames are converted to grayscale first with :func:`speechanim.metrics.cpbd.to_gray` (ITU-R 601-2
luma, as Pillow's ``convert("L")``), the same conversion as for CPBD; the spectrum is that of the
luma values as they are (0-255, no mean removal, no window).
"""
from __future__ import annotations

import numpy as np

from .cpbd import gray_frames

__all__ = ["THRESHOLD_RATIO", "fdbm", "fdbm_frames", "fdbm_video"]

#: A coefficient counts when its magnitude exceeds max(|F|) / 1000 (De & Masilamani, step 5).
THRESHOLD_RATIO = 1.0 / 1000.0


def fdbm(image: np.ndarray) -> float:
    """FDBM of one 2-D grayscale image (any real dtype, any scale): a share in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"FDBM needs a non-empty 2-D grayscale image, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(f"FDBM needs a real-valued image, got {image.dtype}")
    image = image.astype(np.float64)
    if not np.isfinite(image).all():
        raise ValueError("FDBM image has NaN or infinite values")
    magnitude = np.abs(np.fft.fftshift(np.fft.fft2(image)))
    threshold = magnitude.max() * THRESHOLD_RATIO
    return float(np.count_nonzero(magnitude > threshold)) / image.size


def fdbm_frames(frames: np.ndarray) -> np.ndarray:
    """FDBM of each frame of a uint8 RGB ``(T, H, W, 3)`` or grayscale ``(T, H, W)`` video, ``(T,)``."""
    return np.array([fdbm(f) for f in gray_frames(frames)])


def fdbm_video(frames: np.ndarray) -> float:
    """Mean FDBM over the frames of one video (paper section 4.2: larger is sharper)."""
    return float(np.mean(fdbm_frames(frames)))
