"""The paper's evaluation metrics (section 4.2), one module per metric.

* :mod:`.quality` -- PSNR and SSIM against the ground-truth video (reconstruction).
* :mod:`.cpbd` -- CPBD sharpness (Narvekar & Karam 2009).
* :mod:`.fdbm` -- FDBM sharpness (De & Masilamani 2013).
* :mod:`.acd` -- average content distance (identity), with dlib's face descriptor.
* :mod:`.blinks` -- blink rate and duration from the eye aspect ratio (the paper's blinks, Fig. 7).

Frames are ``uint8`` RGB ``(T, H, W, 3)``.  Per-video values are means over frames; the
evaluation averages them over videos.  The word error rate (LipNet) is not here.  ``acd`` needs
``dlib-bin`` and ``face-recognition-models``, imported only when it is called.

Note: ``speechanim.metrics.acd``, ``.cpbd`` and ``.fdbm`` name the *functions* once this package
is imported (they shadow their modules); import module contents with
``from speechanim.metrics.cpbd import ...``.
"""
from .acd import acd, embed, face_box
from .blinks import BlinkStats, blinks_from_frames, blinks_from_landmarks, eye_aspect_ratio, eye_motion, find_blinks
from .cpbd import cpbd, cpbd_frames, cpbd_video, to_gray
from .fdbm import fdbm, fdbm_frames, fdbm_video
from .quality import Quality, mean_quality, psnr, psnr_frames, ssim, ssim_frames, video_quality

__all__ = [
    "BlinkStats",
    "Quality",
    "acd",
    "blinks_from_frames",
    "blinks_from_landmarks",
    "cpbd",
    "cpbd_frames",
    "cpbd_video",
    "embed",
    "eye_aspect_ratio",
    "eye_motion",
    "face_box",
    "fdbm",
    "fdbm_frames",
    "fdbm_video",
    "find_blinks",
    "mean_quality",
    "psnr",
    "psnr_frames",
    "ssim",
    "ssim_frames",
    "to_gray",
    "video_quality",
]
