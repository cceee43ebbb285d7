"""Reconstruction metrics PSNR and SSIM (paper section 4.2, Tables 2 and 3).

"We use common reconstruction metrics such as the peak signal-to-noise ratio (PSNR) and the
structural similarity (SSIM) index to evaluate the generated videos."  Both compare a generated
video with the ground-truth video of the same utterance, frame by frame (the frames must already
correspond: same count, same size, same alignment).  Larger is better.

Aggregation: each metric is computed per frame, averaged over the frames of a video, and the
per-video values are averaged over the videos (:func:`video_quality`, :func:`mean_quality`).

Exact settings (scikit-image 0.26, ``skimage.metrics``):

* **PSNR** ``peak_signal_noise_ratio(reference, generated, data_range=255)`` on the uint8 RGB
  frame: ``10 log10(255^2 / MSE)`` with the MSE over all pixels and all three channels, in dB.
  A frame identical to its reference has MSE 0 and PSNR ``inf``; that ``inf`` is kept (it then
  dominates the means) rather than capped, so that it is visible.
* **SSIM** ``structural_similarity(reference, generated, data_range=255, channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``, i.e. the setting of Wang,
  Bovik, Sheikh & Simoncelli (2004): an 11 x 11 Gaussian window of sigma 1.5 (truncated at 3.5
  sigma), population (not sample) covariances, ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``; the
  SSIM map is computed per RGB channel, averaged over the map (border half-windows excluded, as
  scikit-image does) and then over the three channels.  scikit-image's defaults (7 x 7 uniform
  window, sample covariance) give different numbers (0.697 vs 0.678 on one pair of images).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "DATA_RANGE",
    "SSIM_SETTINGS",
    "Quality",
    "mean_quality",
    "psnr",
    "psnr_frames",
    "ssim",
    "ssim_frames",
    "video_quality",
]

#: Pixel values are uint8: the dynamic range L of PSNR and SSIM is 255.
DATA_RANGE = 255

#: Keyword arguments of ``skimage.metrics.structural_similarity``: Wang et al. (2004)'s setting.
SSIM_SETTINGS: dict = dict(data_range=DATA_RANGE, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                           use_sample_covariance=False)


def _check_pair(reference: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, generated = np.asarray(reference), np.asarray(generated)
    for name, v in (("reference", reference), ("generated", generated)):
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"{name} frames must be uint8 RGB (T, H, W, 3), got {v.dtype} {v.shape}")
    if reference.shape != generated.shape:
        raise ValueError(f"reference and generated videos differ in shape: {reference.shape} vs {generated.shape}")
    if len(reference) == 0:
        raise ValueError("the videos have no frames")
    return reference, generated


def psnr_frames(reference: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each generated frame against its reference frame, ``(T,)``; ``inf`` where equal."""
    reference, generated = _check_pair(reference, generated)
    with np.errstate(divide="ignore"):
        return np.array([peak_signal_noise_ratio(r, g, data_range=DATA_RANGE) for r, g in zip(reference, generated)])


def ssim_frames(reference: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """SSIM of each generated frame against its reference frame (Wang et al.'s setting), ``(T,)``."""
    reference, generated = _check_pair(reference, generated)
    if min(reference.shape[1:3]) < 11:
        raise ValueError(f"SSIM needs frames of at least 11x11 pixels (its Gaussian window), got {reference.shape[1:3]}")
    return np.array([structural_similarity(r, g, **SSIM_SETTINGS) for r, g in zip(reference, generated)])


def psnr(reference: np.ndarray, generated: np.ndarray) -> float:
    """Mean over the frames of the per-frame PSNR (dB) of one video."""
    return float(np.mean(psnr_frames(reference, generated)))


def ssim(reference: np.ndarray, generated: np.ndarray) -> float:
    """Mean over the frames of the per-frame SSIM of one video."""
    return float(np.mean(ssim_frames(reference, generated)))


@dataclass(frozen=True)
class Quality:
    """PSNR (dB) and SSIM of one video, or their means over ``n_videos`` videos."""

    psnr: float
    ssim: float
    n_videos: int = 1


def video_quality(reference: np.ndarray, generated: np.ndarray) -> Quality:
    """PSNR and SSIM of one generated video against its ground truth (frame means)."""
    return Quality(psnr=psnr(reference, generated), ssim=ssim(reference, generated))


def mean_quality(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Quality:
    """Per-video PSNR and SSIM averaged over videos; ``pairs`` yields ``(reference, generated)``.

    Each video counts once whatever its length (the mean of the per-video frame means).
    """
    per_video = [video_quality(r, g) for r, g in pairs]
    if not per_video:
        raise ValueError("no videos to average")
    return Quality(psnr=float(np.mean([q.psnr for q in per_video])),
                   ssim=float(np.mean([q.ssim for q in per_video])), n_videos=len(per_video))
