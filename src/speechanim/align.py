"""Face alignment to a canonical face, and mirroring of aligned clips (paper section 4.1).

"All faces are aligned to the canonical face and images are normalized. We increase the size of
the training set by mirroring the training videos."  This module does the alignment and the
mirroring the way the authors' code does it (DinoMan/face-processor): landmarks on every frame,
the *stable points* (nose tip and the four eye corners) smoothed over a 7-frame window, then a
per-frame similarity transform from the smoothed stable points onto a mean face, and a warp to a
portrait crop 128 pixels high and 96 wide.  Landmarks come from mediapipe's FaceMesh (478 points
with ``refine_landmarks=True``) instead of the authors' 68-point ``face_alignment`` network;
the five stable points are the same anatomical points (see :data:`STABLE_POINTS`).

Conventions
-----------
* Frames are ``uint8`` RGB arrays ``(T, H, W, 3)``, as :func:`speechanim.media.read_video` gives.
* Landmarks are ``float64`` pixel coordinates ``(x, y)`` with pixel *centres* at integers (the
  convention of OpenCV and scikit-image): ``x = x_mediapipe * W - 0.5``.  A horizontal flip of an
  image of width ``W`` maps ``x`` to ``W - 1 - x``.
* Sizes are ``(H, W)``, height first, like array shapes.
* mediapipe numbers landmarks by the *image* side, not the person's: point 33 is the outer corner
  of the eye on the image's left whichever way the face is flipped.  Mirroring keeps that meaning
  by permuting the indices (:attr:`FaceTemplate.mirror`).
* Transforms are ``(3, 3)`` homogeneous matrices mapping source-frame pixels to crop pixels.

Details that keep a still head still: in tracking mode the tracker is settled on the first frame
before landmarks are recorded (its first, detector-boxed result differs from the tracked ones by
about a pixel), and a frame byte-identical to the one before it reuses that frame's landmarks.

The paper's "images are normalized" (pixel values to [-1, 1]) belongs to the data loading of the
models, not here: crops stay ``uint8``.

The canonical face (:class:`FaceTemplate`) is package data, ``speechanim/data/face_template.json``,
made once from the real GRID clips of grid-mini by ``workflow/scripts/make_face_template.py``;
nothing here reads anything outside the package at run time.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, Literal, Sequence

import cv2
import numpy as np
from skimage.transform import SimilarityTransform, warp

__all__ = [
    "AlignConfig",
    "AlignedClip",
    "AlignmentError",
    "DEFAULT_SIZE",
    "EYE_POINTS",
    "FaceTemplate",
    "MOUTH_POINTS",
    "N_LANDMARKS",
    "STABLE_POINTS",
    "STABLE_POINTS_68",
    "Blend",
    "align_image",
    "align_video",
    "detect_landmarks",
    "estimate_transforms",
    "fill_gaps",
    "load_template",
    "mirror_clip",
    "mirror_permutation",
    "smooth_points",
    "stable_positions",
    "transform_points",
    "warp_frames",
]

#: Number of FaceMesh landmarks with ``refine_landmarks=True`` (468 mesh points + 2 x 5 iris points).
N_LANDMARKS = 478

#: The points the similarity transform is fitted on: those the mouth and jaw do not move.
#: nose tip (68-point index 33), eye corners on the image's left, outer 33 and inner 133
#: (68-point 36 and 39), eye corners on the image's right, inner 362 and outer 263 (42 and 45).
STABLE_POINTS: tuple[int, ...] = (1, 33, 133, 362, 263)

#: A stable point made of FaceMesh points: ``(indices, weights)``, the weights >= 0 summing to 1 (a fixed
#: convex blend: the point ``sum(w * landmarks[i])``).
Blend = tuple[tuple[int, ...], tuple[float, ...]]

#: The authors' stable points (sda/sda.py ``stablePntsIDs``, 68-point 33, 36, 39, 42, 45: the bottom of
#: the nose (subnasale), image-left outer and inner eye corner, image-right inner and outer) as blends of
#: FaceMesh points, used only for the models imported from their files (:mod:`speechanim.sda`). This
#: project's own models, and the alignment of their training data, keep :data:`STABLE_POINTS`.
#:
#: Start: the published correspondence of Peizhi Yan's Mediapipe_2_Dlib_Landmarks
#: (github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, mediapipe2dlib/mp2dlib.py, ``mp2dlib_correspondence``
#: rows 34, 37, 40, 43, 46 numbered from 1: FaceMesh 2, 33, 133, 362, 263; 1 is the nose tip, 2 the
#: subnasale below it). Each point was then refined against dlib's 68-point shape predictor (the iBUG 300-W
#: scheme of the authors' face_alignment; face-recognition-models' file) on grid-mini (360 x 288, every frame
#: detected afresh, FaceMesh ``video=False``), fitted on the 300 frames of 4 clips and measured on the 300 of
#: the 4 others (FIT bbaf2n lbax4n lwbsza sbia1a / HELD-OUT brbk7n lrwp9a pwij3p swwp2s: sorted clips
#: alternately; swwp2s and pwij3p, one speaker, on the same side). Candidates: the FaceMesh points within
#: 6 px on average of the published point; blends of 1, 2 or 3 of them, weights on a 0.1 grid (0.1 ... 1),
#: minimising the mean distance to dlib's point; how many points (1, 2 or 3) chosen by leaving one FIT clip
#: out at a time (so a blend is kept only where it helps a speaker it was not fitted on). Mean (max) px
#: to dlib's point, FIT / HELD-OUT (the published single points' HELD-OUT in brackets):
#:   33 subnasale    2 (kept: no blend helped an unseen speaker)    1.20 (3.2) / 1.10 (3.4)  [1.10]
#:   36 outer, left  .5 x 161 + .5 x 25                             1.04 (7.2) / 1.10 (2.8)  [1.82]
#:   39 inner, left  .2 x 243 + .4 x 233 + .4 x 157                 0.81 (2.4) / 0.83 (2.2)  [0.96]
#:   42 inner, right 382 (the lower lid's point beside 362)         0.79 (3.4) / 0.86 (3.0)  [1.14]
#:   45 outer, right .4 x 446 + .4 x 387 + .2 x 339                 0.81 (3.6) / 1.13 (2.6)  [1.43]
#: 33, 36 and 45 stay above 1 px on unseen speakers: what is left is each speaker's own offset between the
#: two detectors (0.2 to 1.9 px over a clip, in directions that vary from speaker to speaker: not predicted
#: even by a regression on the whole mesh), over a floor of 0.56 to 0.71 px within a clip (dlib's integer
#: coordinates, its frame-to-frame jitter of 0.33 to 0.49 px on a still face, lips and eyelids moving).
#: ``tests/test_sda_pipeline.py`` measures the HELD-OUT figures; docs/animate.md has the table.
STABLE_POINTS_68: tuple[Blend, ...] = (
    ((2,), (1.0,)),                          # 68-point 33, subnasale
    ((161, 25), (0.5, 0.5)),                 # 36, image-left outer eye corner
    ((243, 233, 157), (0.2, 0.4, 0.4)),      # 39, image-left inner eye corner
    ((382,), (1.0,)),                        # 42, image-right inner eye corner
    ((446, 387, 339), (0.4, 0.4, 0.2)),      # 45, image-right outer eye corner
)

#: Eye corners, used to check an alignment: image-left outer/inner, image-right inner/outer.
EYE_POINTS: tuple[int, ...] = (33, 133, 362, 263)

#: Mouth corners (61 image-left, 291 image-right) and the inner lips (13 upper, 14 lower).
MOUTH_POINTS: tuple[int, ...] = (61, 291, 13, 14)

#: Crop size of the paper's GRID model, (height, width).
DEFAULT_SIZE: tuple[int, int] = (128, 96)

_TEMPLATE_RESOURCE = ("data", "face_template.json")


class AlignmentError(ValueError):
    """A clip or photo cannot be aligned; the message names it and says why (and which frames).

    ``clip`` is the name the caller gave, ``frames`` the indices of the frames without a usable
    face (empty when the problem is not about particular frames).
    """

    def __init__(self, clip: str, reason: str, frames: tuple[int, ...] = ()):
        self.clip = clip
        self.reason = reason
        self.frames = tuple(int(f) for f in frames)
        super().__init__(f"{clip}: {reason}")


# --------------------------------------------------------------------------------------------
# The canonical face
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceTemplate:
    """The canonical face: where each of the 478 landmarks should sit in an aligned crop.

    ``points`` is ``(478, 2)`` in the pixel coordinates of a crop of ``size = (H, W)``; it is
    mirror-symmetric about the crop's vertical centre line ``x = (W - 1) / 2``.  ``mirror`` is the
    index permutation of that symmetry: the point that lands on index ``i`` after a horizontal
    flip is ``mirror[i]`` (an involution; midline points map to themselves).
    """

    points: np.ndarray
    size: tuple[int, int]
    mirror: np.ndarray = field(repr=False)

    @property
    def stable(self) -> np.ndarray:
        """Template positions of :data:`STABLE_POINTS`, ``(5, 2)``."""
        return self.points[list(STABLE_POINTS)]

    def scaled(self, size: tuple[int, int]) -> FaceTemplate:
        """The same face in a crop of another ``(H, W)``: scaled uniformly (the face keeps its
        proportions) by the smaller of the height and width ratios, centred in the crop."""
        h, w = int(size[0]), int(size[1])
        if h <= 0 or w <= 0:
            raise ValueError(f"crop size must be positive (H, W), got {size}")
        h0, w0 = self.size
        if (h, w) == (h0, w0):
            return self
        s = min(h / h0, w / w0)
        offset = np.array([(w - w0 * s) / 2.0, (h - h0 * s) / 2.0])
        # pixel centres at integers: continuous position p + 0.5 scales, then back by 0.5
        points = (self.points + 0.5) * s - 0.5 + offset
        points.setflags(write=False)
        return FaceTemplate(points=points, size=(h, w), mirror=self.mirror)


def mirror_permutation(points: np.ndarray, width: int, *, tolerance: float = 1e-3) -> np.ndarray:
    """Index permutation of the mirror symmetry of a symmetric point set in an image of ``width``.

    For each point, the nearest point of the horizontally flipped set (``x -> width - 1 - x``).
    Raises ``ValueError`` when the set is not symmetric to within ``tolerance`` pixels or the
    nearest neighbours do not form an involutive permutation.
    """
    points = np.asarray(points, np.float64)
    flipped = points.copy()
    flipped[:, 0] = width - 1 - flipped[:, 0]
    dist = np.linalg.norm(points[:, None, :] - flipped[None, :, :], axis=-1)
    perm = dist.argmin(axis=1)
    worst = float(dist[np.arange(len(points)), perm].max())
    if worst > tolerance:
        raise ValueError(f"point set is not mirror-symmetric: a point is {worst:.3g} px from its mirror image")
    if not np.array_equal(np.sort(perm), np.arange(len(points))) or not np.array_equal(perm[perm], np.arange(len(points))):
        raise ValueError("nearest mirrored points do not form an involutive permutation")
    return perm


@lru_cache(maxsize=None)
def _base_template() -> FaceTemplate:
    ref = resources.files("speechanim").joinpath(*_TEMPLATE_RESOURCE)
    data = json.loads(ref.read_text(encoding="utf-8"))
    size = (int(data["size"][0]), int(data["size"][1]))
    points = np.asarray(data["points"], np.float64)
    if points.shape != (N_LANDMARKS, 2):
        raise ValueError(f"{ref}: expected {N_LANDMARKS} template points, got shape {points.shape}")
    points.setflags(write=False)
    perm = mirror_permutation(points, size[1])
    perm.setflags(write=False)
    return FaceTemplate(points=points, size=size, mirror=perm)


@lru_cache(maxsize=None)
def load_template(size: tuple[int, int] = DEFAULT_SIZE) -> FaceTemplate:
    """The canonical face for crops of ``size = (H, W)`` (package data, scaled if needed)."""
    return _base_template().scaled((int(size[0]), int(size[1])))


# --------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------

Border = Literal["constant", "replicate", "reflect"]
_CV2_BORDER = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}
_SKIMAGE_MODE = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}


@dataclass(frozen=True)
class AlignConfig:
    """How to align.

    size: output crop ``(H, W)``; the paper's GRID model uses 128 x 96 (portrait).
    smooth_window: frames the stable points are averaged over (odd; an even number is raised by
        one, 1 turns smoothing off).  The authors use 7.
    max_gap: longest run of frames without a face that is filled by interpolation; a longer run
        makes the clip fail with :class:`AlignmentError`.
    border: how pixels outside the source frame are filled: ``constant`` (black, as the
        authors' ``skimage.transform.warp``), ``replicate`` or ``reflect``.
    backend: ``cv2`` (``cv2.warpAffine``, the fast one) or ``skimage`` (``skimage.transform.warp``).
    min_confidence: mediapipe's face detection and tracking confidence.
    stable_target: where the five stable points go in the crop, ``((x, y), ...)`` in its
        pixels; None: the canonical face's (an imported authors' model brings its own ``mean_face``).
    stable_points: the FaceMesh points the similarity transform is fitted on, each an index or a
        :data:`Blend` of indices: :data:`STABLE_POINTS` (this project's), or :data:`STABLE_POINTS_68`
        (the authors', for their imported models).
    """

    size: tuple[int, int] = DEFAULT_SIZE
    smooth_window: int = 7
    max_gap: int = 5
    border: Border = "constant"
    backend: Literal["cv2", "skimage"] = "cv2"
    min_confidence: float = 0.5
    stable_target: tuple[tuple[float, float], ...] | None = None
    stable_points: tuple[int | Blend, ...] = STABLE_POINTS

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 8:
            raise ValueError(f"size must be (H, W) of at least 8 pixels each, got {self.size}")
        if self.smooth_window < 1:
            raise ValueError(f"smooth_window must be >= 1, got {self.smooth_window}")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if self.border not in _CV2_BORDER:
            raise ValueError(f"border must be one of {sorted(_CV2_BORDER)}, got {self.border!r}")
        if self.backend not in ("cv2", "skimage"):
            raise ValueError(f"backend must be 'cv2' or 'skimage', got {self.backend!r}")
        if not 0.0 < self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in (0, 1), got {self.min_confidence}")
        _check_stable_points(self.stable_points)
        if self.stable_target is not None:
            target = np.asarray(self.stable_target, np.float64)
            n = len(self.stable_points)
            if target.shape != (n, 2) or not np.isfinite(target).all():
                raise ValueError(f"stable_target must be {n} finite (x, y) points, got shape {target.shape}")


@dataclass(frozen=True)
class AlignedClip:
    """An aligned clip (or a photo as a clip of one frame).

    frames: ``(T, H, W, 3)`` uint8 crops.
    landmarks: ``(T, 478, 2)`` every detected landmark (gaps interpolated) in crop coordinates.
    transforms: ``(T, 3, 3)`` source-frame pixels -> crop pixels (after mirroring, the flip is
        composed in, so these are no longer similarities; the landmark index permutation is not).
    found: ``(T,)`` bool, whether the face was detected in that frame (False: interpolated).
    mirrored: whether this is the mirror image of the aligned source.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    transforms: np.ndarray
    found: np.ndarray
    mirrored: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.frames.shape[1]), int(self.frames.shape[2]))

    def __len__(self) -> int:
        return int(self.frames.shape[0])


# --------------------------------------------------------------------------------------------
# Landmark detection
# --------------------------------------------------------------------------------------------


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: frames must be uint8 RGB (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise AlignmentError(name, "clip has no frames")
    return frames


def _face_mesh(static: bool, max_faces: int, min_confidence: float) -> Any:
    import mediapipe as mp  # imported here: it takes a second and only detection needs it

    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=static,
        max_num_faces=max_faces,
        refine_landmarks=True,
        min_detection_confidence=min_confidence,
        min_tracking_confidence=min_confidence,
    )


# Idle FaceMesh graphs by (process, settings).  Making a graph (parsing its config, loading the models)
# costs about twice a reset, which closes the graph and starts it again: the same state as a new one
# (no tracked face), so a speaker's clips give the same landmarks either way.  A graph is taken out
# while in use (a nested call makes its own) and put back only when its clip went through.
_IDLE_MESHES: dict[tuple[int, bool, int, float], Any] = {}


@contextmanager
def _fresh_mesh(static: bool, max_faces: int, min_confidence: float) -> Iterator[Any]:
    """A FaceMesh graph in its initial state: an idle one reset, else a new one."""
    key = (os.getpid(), static, max_faces, min_confidence)  # a forked process makes its own
    mesh = _IDLE_MESHES.pop(key, None)
    if mesh is None:
        mesh = _face_mesh(static, max_faces, min_confidence)
    else:
        mesh.reset()
    try:
        yield mesh
    except BaseException:
        mesh.close()
        raise
    if key in _IDLE_MESHES:
        mesh.close()
    else:
        _IDLE_MESHES[key] = mesh


# Tracking mode takes its first landmarks from the face detector's box and later ones from the box
# of the previous landmarks; the two differ by about a pixel, and the tracker settles within a few
# frames.  Feeding the first frame this many times before recording makes frame 0 agree with the
# tracked frames after it (otherwise every clip would start with a jump).
_TRACKER_PRIMING = 5


def _detect(frames: np.ndarray, *, static: bool, max_faces: int, min_confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks of the first face per frame, found mask, and the number of faces per frame.

    A frame identical to the one before it gets the same landmarks (it is not run again), so
    repeated frames give exactly repeated landmarks.
    """
    t, h, w, _ = frames.shape
    landmarks = np.full((t, N_LANDMARKS, 2), np.nan)
    n_faces = np.zeros(t, np.int64)
    scale = np.array([w, h], np.float64)
    with _fresh_mesh(static, max_faces, min_confidence) as mesh:
        if not static:
            first = np.ascontiguousarray(frames[0])
            for _ in range(_TRACKER_PRIMING):
                mesh.process(first)
        for i in range(t):
            if i > 0 and np.array_equal(frames[i], frames[i - 1]):
                landmarks[i], n_faces[i] = landmarks[i - 1], n_faces[i - 1]
                continue
            result = mesh.process(np.ascontiguousarray(frames[i]))
            faces = result.multi_face_landmarks
            if not faces:
                continue
            n_faces[i] = len(faces)
            xy = np.array([(p.x, p.y) for p in faces[0].landmark], np.float64)
            landmarks[i] = xy * scale - 0.5
    return landmarks, n_faces > 0, n_faces


def detect_landmarks(frames: np.ndarray, *, video: bool = True, min_confidence: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """mediapipe FaceMesh landmarks of one face per frame.

    ``video=True`` tracks the face from frame to frame (FaceMesh ``static_image_mode=False``; the
    tracker is first settled on frame 0); ``video=False`` detects afresh in every frame.  A frame
    identical to the previous one gets the previous frame's landmarks.  Returns ``(landmarks, found)``: ``(T, 478, 2)``
    pixel coordinates (NaN where no face was found) and a ``(T,)`` bool mask.
    """
    frames = _check_frames(frames, "frames")
    landmarks, found, _ = _detect(frames, static=not video, max_faces=1, min_confidence=min_confidence)
    return landmarks, found


# --------------------------------------------------------------------------------------------
# Gaps, smoothing, transforms, warp
# --------------------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in a 1-D bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _format_runs(runs: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in runs)


def fill_gaps(landmarks: np.ndarray, found: np.ndarray, max_gap: int, *, clip: str = "clip") -> np.ndarray:
    """Fill the frames without a face by linear interpolation between the nearest found frames.

    Runs of at most ``max_gap`` missing frames are filled (at the start or end of a clip, with the
    nearest found frame's landmarks).  A longer run, or no face in any frame, raises
    :class:`AlignmentError` naming ``clip`` and the frames.  Returns a new array.
    """
    landmarks = np.asarray(landmarks, np.float64)
    found = np.asarray(found, bool)
    if landmarks.ndim != 3 or landmarks.shape[2] != 2 or found.shape != landmarks.shape[:1]:
        raise ValueError(f"{clip}: landmarks (T, N, 2) and found (T,) do not match: {landmarks.shape}, {found.shape}")
    t = len(found)
    if not found.any():
        raise AlignmentError(clip, f"no face found in any of its {t} frames", tuple(range(t)))
    runs = _runs(~found)
    long = [(a, b) for a, b in runs if b - a > max_gap]
    if long:
        missing = tuple(i for a, b in long for i in range(a, b))
        raise AlignmentError(
            clip,
            f"no face in frames {_format_runs(long)} (longest gap {max(b - a for a, b in long)} frames; "
            f"at most {max_gap} may be interpolated)",
            missing,
        )
    out = landmarks.copy()
    missing = np.flatnonzero(~found)
    if len(missing):
        known = np.flatnonzero(found)
        after = np.searchsorted(known, missing)  # position of the first found frame after each gap frame
        # the found frames either side; at the start or end of the clip both are the nearest one
        lo = known[np.maximum(after - 1, 0)]
        hi = known[np.minimum(after, len(known) - 1)]
        weight = np.where(hi > lo, (missing - lo) / np.maximum(hi - lo, 1), 0.0)[:, None, None]
        out[missing] = (1.0 - weight) * landmarks[lo] + weight * landmarks[hi]
    return out


def smooth_points(points: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``(T, K, 2)`` points over ``window`` frames (made odd).

    Near the ends the window shrinks symmetrically (frame 0 is averaged with nothing, frame 1 with
    frames 0 and 2, ...) so the average never lags a steady movement; a still head stays still.
    """
    points = np.asarray(points, np.float64)
    if window % 2 == 0:
        window += 1
    half = window // 2
    t = len(points)
    if half == 0 or t < 2:
        return points.copy()
    csum = np.concatenate([np.zeros((1,) + points.shape[1:]), np.cumsum(points, axis=0)])
    i = np.arange(t)
    k = np.minimum(half, np.minimum(i, t - 1 - i))
    total = csum[i + k + 1] - csum[i - k]
    return total / (2 * k + 1)[:, None, None]


def estimate_transforms(src_points: np.ndarray, dst_points: np.ndarray, *, clip: str = "clip") -> np.ndarray:
    """Least-squares similarity transforms (``skimage`` ``SimilarityTransform``), one per frame,
    from ``src_points (T, K, 2)`` onto ``dst_points (K, 2)``; returns ``(T, 3, 3)``."""
    src_points = np.asarray(src_points, np.float64)
    dst = np.asarray(dst_points, np.float64)
    out = np.empty((len(src_points), 3, 3))
    for i, src in enumerate(src_points):
        tform = SimilarityTransform.from_estimate(src, dst)
        if not tform or not np.isfinite(tform.params).all():
            raise AlignmentError(clip, f"cannot fit a similarity transform in frame {i} (degenerate landmarks)", (i,))
        out[i] = tform.params
    return out


def transform_points(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``(T, 3, 3)`` transforms to ``(T, N, 2)`` points."""
    transforms = np.asarray(transforms, np.float64)
    points = np.asarray(points, np.float64)
    return np.einsum("tij,tnj->tni", transforms[:, :2, :2], points) + transforms[:, None, :2, 2]


def _scale_of(matrix: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


# Above this much shrinking, the frame is first reduced with area averaging (anti-aliasing), so the
# bilinear warp never skips source pixels (matters for high-resolution sources such as TCD-TIMIT).
_PREFILTER_BELOW = 0.5


def warp_frames(
    frames: np.ndarray,
    transforms: np.ndarray,
    size: tuple[int, int],
    *,
    border: Border = "constant",
    backend: Literal["cv2", "skimage"] = "cv2",
) -> np.ndarray:
    """Warp each frame with its transform into a ``size = (H, W)`` crop; bilinear, uint8 out.

    Where a transform shrinks by more than 2x the frame is first reduced by area averaging
    (``cv2.resize(INTER_AREA)``) and the transform adjusted to match.
    """
    frames = np.asarray(frames)
    h, w = int(size[0]), int(size[1])
    out = np.empty((len(frames), h, w, 3), np.uint8)
    for i, (frame, matrix) in enumerate(zip(frames, np.asarray(transforms, np.float64))):
        scale = _scale_of(matrix)
        if scale < _PREFILTER_BELOW:
            fh, fw = frame.shape[:2]
            nw, nh = max(1, round(fw * scale)), max(1, round(fh * scale))
            frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
            # the resize maps pixel centres x -> (x + 0.5) * nw / fw - 0.5
            sx, sy = nw / fw, nh / fh
            resize = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
            matrix = matrix @ np.linalg.inv(resize)
        if backend == "cv2":
            out[i] = cv2.warpAffine(
                frame, matrix[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=_CV2_BORDER[border], borderValue=(0, 0, 0)
            )
        else:
            warped = warp(frame, np.linalg.inv(matrix), output_shape=(h, w), order=1,
                          mode=_SKIMAGE_MODE[border], cval=0.0, preserve_range=True)
            out[i] = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Whole clips and photos
# --------------------------------------------------------------------------------------------


def stable_positions(points: np.ndarray, stable_points: Sequence[int | Blend]) -> np.ndarray:
    """The stable points of landmarks ``points`` ``(..., 478, 2)``: ``(..., n, 2)``, one per entry of
    ``stable_points``: a FaceMesh index (that point, as it is) or a :data:`Blend` ``(indices, weights)``
    (``sum(w * points[..., i, :])``)."""
    points = np.asarray(points)
    if all(isinstance(p, (int, np.integer)) for p in stable_points):
        return points[..., [int(p) for p in stable_points], :]  # plain indices: exactly those points
    out = []
    for p in stable_points:
        idx, w = ((int(p),), (1.0,)) if isinstance(p, (int, np.integer)) else p
        out.append(np.tensordot(np.asarray(w, np.float64), points[..., list(idx), :], axes=([0], [points.ndim - 2])))
    return np.stack(out, axis=-2)


def _check_stable_points(stable_points) -> None:
    ok = len(stable_points) >= 2
    for p in stable_points if ok else ():
        if isinstance(p, (int, np.integer)):
            ok = 0 <= int(p) < N_LANDMARKS
        else:
            try:
                idx, w = p
                w = np.asarray(w, np.float64)
                ok = (len(idx) >= 1 and w.shape == (len(idx),) and all(0 <= int(i) < N_LANDMARKS for i in idx)
                      and bool(np.isfinite(w).all() and (w >= 0).all()) and abs(w.sum() - 1.0) < 1e-6)
            except (TypeError, ValueError):
                ok = False
        if not ok:
            break
    if not ok:
        raise ValueError(f"stable_points must be at least 2 FaceMesh indices below {N_LANDMARKS} or (indices, weights) "
                         f"blends of them (weights >= 0 summing to 1), got {stable_points}")


def _align(frames: np.ndarray, landmarks: np.ndarray, found: np.ndarray, cfg: AlignConfig, name: str) -> AlignedClip:
    points = cfg.stable_points
    target = (np.asarray(cfg.stable_target) if cfg.stable_target is not None
              else stable_positions(load_template(tuple(cfg.size)).points, points))
    stable = smooth_points(stable_positions(landmarks, points), cfg.smooth_window)
    transforms = estimate_transforms(stable, target, clip=name)
    crops = warp_frames(frames, transforms, cfg.size, border=cfg.border, backend=cfg.backend)
    return AlignedClip(frames=crops, landmarks=transform_points(transforms, landmarks), transforms=transforms, found=found.copy())


def align_video(
    frames: np.ndarray,
    cfg: AlignConfig | None = None,
    *,
    name: str = "clip",
    landmarks: np.ndarray | None = None,
    found: np.ndarray | None = None,
) -> AlignedClip:
    """Align every frame of a clip to the canonical face.

    Landmarks are tracked through the clip (or taken from ``landmarks``/``found`` when given, e.g.
    cached), gaps of at most ``cfg.max_gap`` frames are interpolated, the stable points smoothed
    over ``cfg.smooth_window`` frames, and each frame warped by the similarity transform that puts
    its smoothed stable points onto the template.  Raises :class:`AlignmentError` naming ``name``
    when the face is missing for too long.
    """
    cfg = cfg or AlignConfig()
    frames = _check_frames(frames, name)
    if landmarks is None:
        landmarks, found = detect_landmarks(frames, video=True, min_confidence=cfg.min_confidence)
    elif found is None:
        found = np.isfinite(np.asarray(landmarks)).all(axis=(1, 2))
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (len(frames), N_LANDMARKS, 2):
        raise ValueError(f"{name}: landmarks must be ({len(frames)}, {N_LANDMARKS}, 2), got {landmarks.shape}")
    found = np.asarray(found, bool)
    landmarks = fill_gaps(landmarks, found, cfg.max_gap, clip=name)
    return _align(frames, landmarks, found, cfg, name)


def align_image(image: np.ndarray, cfg: AlignConfig | None = None, *, name: str = "image") -> AlignedClip:
    """Align a single photo (``(H, W, 3)`` uint8 RGB) to the canonical face; a clip of one frame.

    The photo must show exactly one face: none, or a second one, raises :class:`AlignmentError`.
    """
    cfg = cfg or AlignConfig()
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name}: image must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
    frames = image[None]
    landmarks, found, n_faces = _detect(frames, static=True, max_faces=2, min_confidence=cfg.min_confidence)
    if n_faces[0] == 0:
        raise AlignmentError(name, "no face found in the image")
    if n_faces[0] > 1:
        raise AlignmentError(name, f"found {n_faces[0]} faces in the image; it must show exactly one")
    return _align(frames, landmarks, found, cfg, name)


def mirror_clip(aligned: AlignedClip) -> AlignedClip:
    """The mirror image of an aligned clip, itself aligned to the (symmetric) canonical face.

    Frames are flipped left-right; landmarks go to ``x -> W - 1 - x`` and are re-indexed with the
    template's mirror permutation so that each index keeps its image-side meaning (index 33 is
    again the outer corner of the image-left eye).  Mirroring twice gives back the original.
    """
    t, h, w, _ = aligned.frames.shape
    perm = load_template((h, w)).mirror
    flip = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    landmarks = aligned.landmarks.copy()
    landmarks[..., 0] = w - 1 - landmarks[..., 0]
    return replace(
        aligned,
        frames=np.ascontiguousarray(aligned.frames[:, :, ::-1]),
        landmarks=landmarks[:, perm],
        transforms=flip @ aligned.transforms,
        mirrored=not aligned.mirrored,
    )
