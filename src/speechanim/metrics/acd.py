"""ACD: the average content distance (Tulyakov et al. 2018, MoCoGAN), paper section 4.2.

"We verify the identity of the speaker using the average content distance (ACD) [24], which
measures the average Euclidean distance of the still image representation, obtained using
OpenFace [1], from the representation of the generated frames."  Lower is better.

The representation
------------------
OpenFace's network cannot be had offline (its packages download the weights at run time), so the
face representation here is dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``:
a ResNet with 29 convolutional layers giving a 128-d embedding, 99.38 % on LFW; two faces closer than 0.6
are the same person by dlib's rule), with dlib's 5-point shape predictor to cut the 150 x 150 face
chip it expects.  Both model files come from the ``face-recognition-models`` package (0.3.0) and
run on ``dlib-bin`` (20.0.1); nothing is downloaded.  The numbers are therefore on dlib's scale,
not OpenFace's: they are comparable between the models of this project, not with the paper's
values (0.74e-4 for ground truth of the same person).

Where the face is (the ``box``)
-------------------------------
The shape predictor needs a face rectangle.  dlib's HOG face detector (no upsampling, the best
scoring detection; one 2x upsampling if none) finds the face in the 128 x 96 aligned crops of the
GRID model, though they are small: in 120 of 120 frames sampled from the eight grid-mini clips,
always at the same box ``(6, 26)-(93, 112)``, because alignment puts every face in the same place.
Using the whole crop as the rectangle instead changes each descriptor by 0.074 on average (max
0.13) yet leaves the ACD almost unchanged (same person 0.183 vs 0.180, different people 0.772 vs
0.771 on those clips).  On the embedded default's 64 x 48 crops dlib (with its upsampling) still
finds the face, and the ACD of six real synthgrid test clips was 0.09-0.15 at 64 x 48 against
0.09-0.17 at 128 x 96.  So :func:`acd` detects the face once, in the still image, and uses that
box for the still and for every frame (all aligned crops of the same size); the detector is not
run on generated frames, whose blur could make it miss or move.  If the still has no detectable
face the whole frame is the rectangle.  :func:`embed` can also detect per frame (``box="detect"``)
for unaligned video.

Cost: dlib's descriptor (this wheel has no BLAS) takes 0.15-0.18 s per frame on one free core
(0.27 s with the other core busy), whatever the frame size -- about 12 s for a 75-frame GRID clip;
the detector adds ~1 ms.  ``frame_step`` in :func:`acd` uses every k-th frame to trade accuracy
for time.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

__all__ = ["Box", "DESCRIPTOR_SIZE", "SAME_PERSON_THRESHOLD", "acd", "embed", "face_box", "model_paths"]

#: Length of dlib's face descriptor.
DESCRIPTOR_SIZE = 128

#: dlib's rule: descriptors closer than this are the same person (99.38 % on LFW).
SAME_PERSON_THRESHOLD = 0.6

#: A face rectangle ``(left, top, right, bottom)`` in pixels, right and bottom inclusive (dlib's).
Box = tuple[int, int, int, int]
BoxSpec = Union[Box, Literal["detect", "frame"]]

_MODELS = {
    "shape_predictor": "shape_predictor_5_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
}


def model_paths() -> dict[str, Path]:
    """Paths of the dlib model files shipped by ``face-recognition-models``.

    Found without importing that package (its ``__init__`` needs ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ACD needs the package face-recognition-models==0.3.0 (dlib's face models): pip install it")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    paths = {key: folder / name for key, name in _MODELS.items()}
    for path in paths.values():
        if not path.is_file():
            raise RuntimeError(f"{path}: dlib model file missing; reinstall face-recognition-models==0.3.0")
    return paths


@lru_cache(maxsize=None)
def _dlib_models() -> tuple[Any, Any, Any]:
    try:
        import dlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError("ACD needs dlib (pip install dlib-bin==20.0.1.post1)") from err
    paths = model_paths()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(paths["shape_predictor"]))
    recogniser = dlib.face_recognition_model_v1(str(paths["recognition"]))
    return detector, predictor, recogniser


def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 RGB (T, H, W, 3) or one image (H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError(f"{name}: no frames")
    return frames


def face_box(image: np.ndarray) -> Box | None:
    """dlib's HOG face detection in one uint8 RGB image: the best-scoring box, or None.

    Tries the image as it is, then upsampled once (faces down to ~40 px) if nothing was found.
    """
    image = np.ascontiguousarray(_check_frames(image, "image")[0])
    detector, _, _ = _dlib_models()
    for upsample in (0, 1):
        rects, scores, _ = detector.run(image, upsample, 0.0)
        if len(rects):
            best = rects[int(np.argmax(scores))]
            return (best.left(), best.top(), best.right(), best.bottom())
    return None


def embed(frames: np.ndarray, *, box: BoxSpec = "detect") -> np.ndarray:
    """dlib face descriptors of each frame, ``(T, 128)`` float64.

    ``frames`` is uint8 RGB ``(T, H, W, 3)`` (or one image ``(H, W, 3)``).  ``box`` says where the
    face is: ``"detect"`` runs :func:`face_box` on each frame (``ValueError`` naming the frames
    where it finds none), ``"frame"`` takes the whole frame, a ``(left, top, right, bottom)``
    tuple (inclusive, dlib's convention) is used for every frame.
    """
    import dlib

    frames = _check_frames(frames)
    _, predictor, recogniser = _dlib_models()
    t, h, w, _ = frames.shape
    if isinstance(box, str):
        if box == "frame":
            boxes: list[Box | None] = [(0, 0, w - 1, h - 1)] * t
        elif box == "detect":
            boxes = [face_box(f) for f in frames]
            missing = [i for i, b in enumerate(boxes) if b is None]
            if missing:
                shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
                raise ValueError(f"no face found by dlib's detector in {len(missing)} of {t} frames: {shown}")
        else:
            raise ValueError(f"box must be 'detect', 'frame' or (left, top, right, bottom), got {box!r}")
    else:
        if len(box) != 4:
            raise ValueError(f"box must be (left, top, right, bottom), got {box!r}")
        left, top, right, bottom = (int(v) for v in box)
        if not (0 <= left < right and 0 <= top < bottom):
            raise ValueError(f"box {box!r} is empty or outside the frame")
        boxes = [(left, top, right, bottom)] * t
    out = np.empty((t, DESCRIPTOR_SIZE))
    first: dict[tuple[bytes, Box], int] = {}  # an identical frame and box (a still repeated) is described once
    for i, (frame, b) in enumerate(zip(frames, boxes)):
        frame = np.ascontiguousarray(frame)
        j = first.setdefault((frame.tobytes(), tuple(b)), i)
        if j < i:
            out[i] = out[j]
            continue
        shape = predictor(frame, dlib.rectangle(*b))
        out[i] = np.asarray(recogniser.compute_face_descriptor(frame, shape))
    return out


def acd(still: np.ndarray, frames: np.ndarray, *, box: BoxSpec | None = None, frame_step: int = 1) -> float:
    """Average content distance: mean Euclidean distance between the descriptor of the ``still``
    image (uint8 RGB ``(H, W, 3)``) and those of the ``frames`` (``(T, H, W, 3)``).

    ``box=None`` (the default, for aligned crops): the face box is detected in the still and used
    for the still and every frame, which must then be the still's size; with no face found in the
    still, the whole frame is used.  Any other ``box`` is passed to :func:`embed` for both.
    ``frame_step`` uses frames ``0, k, 2k, ...`` only (``1``: all).
    """
    still = _check_frames(still, "still")
    if len(still) != 1:
        raise ValueError(f"still must be one image (H, W, 3), got {len(still)} frames")
    frames = _check_frames(frames)
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    if box is None:
        if frames.shape[1:] != still.shape[1:]:
            raise ValueError(f"frames {frames.shape[1:3]} and still {still.shape[1:3]} differ in size: "
                             "pass box='detect' to find the face in each")
        box = face_box(still[0]) or "frame"
    frames = frames[::frame_step]
    if frames.shape[1:] == still.shape[1:]:  # one call: a frame identical to the still is not described again
        both = embed(np.concatenate([still, frames]), box=box)
        reference, descriptors = both[0], both[1:]
    else:
        reference, descriptors = embed(still, box=box)[0], embed(frames, box=box)
    return float(np.linalg.norm(descriptors - reference, axis=1).mean())
