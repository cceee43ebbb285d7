"""Make the canonical face, ``src/speechanim/data/face_template.json``, from the real GRID clips.

    .venv/bin/python workflow/scripts/make_face_template.py [--clips ../shared/data/grid-mini]
                                                            [--out src/speechanim/data/face_template.json]

Run once by hand; its output is committed as package data, so the pipeline never reads the clips.

1. mediapipe FaceMesh landmarks (478 points, tracking mode) on every frame of every clip, and on
   every frame flipped left-right.
2. The mirror permutation of the mesh, from the detector itself: on the flipped frames, flipped
   back (``x -> W - 1 - x``), point ``j`` lands where point ``perm[j]`` is on the original frames.
   ``perm`` is the assignment (Hungarian) with the least mean distance over all frames; it must be
   an involution.  With ``--canonical-obj`` it is checked against the exact symmetry of mediapipe's
   canonical face model (on grid-mini the two agree on all 468 mesh points).
3. Generalised Procrustes analysis on the stable points (nose tip, four eye corners): every frame's
   478 landmarks (and every flipped frame's, re-indexed with ``perm``) similarity-normalised onto
   the running mean of the stable points, then averaged.
4. Made exactly symmetric: rotated so that left-right pairs are level, centred on the midline and
   averaged with its own mirror image (re-indexed with ``perm``).
5. Placed in the 128 x 96 (H x W) portrait crop like the authors' crops: scale and height fitted
   (least squares) to the five stable points that mediapipe finds on the authors' example still
   (DinoMan/speech-driven-animation, example/image.bmp, 96 wide x 128 high, detected on a 4x
   bicubic upsampling; numbers below), the midline put on the crop's centre ``x = 47.5``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.transform import SimilarityTransform

from speechanim.align import EYE_POINTS, MOUTH_POINTS, N_LANDMARKS, STABLE_POINTS, detect_landmarks, mirror_permutation
from speechanim.media import read_video

REPO = Path(__file__).resolve().parents[2]
SIZE = (128, 96)  # (H, W) of the paper's GRID crops

# mediapipe's STABLE_POINTS (1, 33, 133, 362, 263) on the authors' example still, in its pixels.
AUTHORS_EXAMPLE_STABLE = np.array(
    [[48.64, 72.51], [24.08, 48.57], [39.43, 48.37], [59.63, 47.05], [75.37, 45.30]]
)


def _detect_clip(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    frames, _ = read_video(path)
    width = frames.shape[2]
    orig, found = detect_landmarks(frames, video=True)
    flip, found_flip = detect_landmarks(np.ascontiguousarray(frames[:, :, ::-1]), video=True)
    keep = found & found_flip
    if not keep.all():
        print(f"  {path.name}: no face in {int((~keep).sum())} frames (left out)", file=sys.stderr)
    flip = flip.copy()
    flip[..., 0] = width - 1 - flip[..., 0]  # back to the original image's coordinates
    return orig[keep], flip[keep], width


def mirror_perm_from_detector(orig: np.ndarray, flip_back: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Assignment ``perm`` with ``flip_back[:, perm[i]] ~ orig[:, i]``; also the worst matched mean
    distance (pixels) and how many points' single nearest candidate is not the assigned one."""
    cost = np.zeros((N_LANDMARKS, N_LANDMARKS))
    for a, b in zip(orig, flip_back):
        cost += np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    cost /= len(orig)
    rows, perm = linear_sum_assignment(cost)
    assert np.array_equal(rows, np.arange(N_LANDMARKS))
    if not np.array_equal(perm[perm], np.arange(N_LANDMARKS)):
        raise SystemExit("detector mirror assignment is not an involution; cannot build the template")
    matched = cost[rows, perm]
    not_nearest = int((cost.argmin(axis=1) != perm).sum())
    return perm, float(matched.max()), not_nearest


def check_against_canonical_model(perm: np.ndarray, obj_path: Path) -> None:
    """Compare ``perm`` on the 468 mesh points with the exact x -> -x symmetry of mediapipe's
    ``canonical_face_model.obj`` (mediapipe/modules/face_geometry/data; not shipped in the wheel)."""
    vertices = np.array([[float(v) for v in line.split()[1:4]] for line in obj_path.read_text().splitlines()
                         if line.startswith("v ")])
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    exact = np.linalg.norm(vertices[:, None] - mirrored[None], axis=-1).argmin(axis=1)
    wrong = np.flatnonzero(exact != perm[: len(exact)])
    if len(wrong):
        raise SystemExit(f"mirror permutation disagrees with {obj_path} at points {wrong.tolist()}")
    print(f"mirror permutation agrees with the canonical model's symmetry on all {len(exact)} mesh points", file=sys.stderr)


def procrustes_mean(shapes: np.ndarray, idx: list[int], iterations: int = 10) -> np.ndarray:
    """Mean of ``shapes (N, 478, 2)`` after similarity-normalising each on its ``idx`` points."""
    ref = shapes[0][idx]
    for _ in range(iterations):
        normalised = np.stack([SimilarityTransform.from_estimate(s[idx], ref)(s) for s in shapes])
        mean = normalised.mean(axis=0)
        # keep the reference's scale and position fixed so the iteration converges
        ref = SimilarityTransform.from_estimate(mean[idx], ref)(mean[idx])
    return mean


def symmetrise(shape: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Rotate ``shape`` so left-right pairs are level, centre its midline on x = 0, then average it
    with its mirror image re-indexed by ``perm``; the result is exactly symmetric about x = 0."""
    pairs = np.flatnonzero(perm > np.arange(len(perm)))
    vectors = shape[perm[pairs]] - shape[pairs]
    vectors *= np.sign(vectors[:, :1])  # all pointing to +x
    d = vectors.sum(axis=0)
    angle = np.arctan2(d[1], d[0])
    c, s = np.cos(-angle), np.sin(-angle)
    level = shape @ np.array([[c, s], [-s, c]])  # rotate by -angle
    midline = 0.5 * (level[pairs] + level[perm[pairs]])[:, 0].mean()
    level[:, 0] -= midline
    mirrored = level * np.array([-1.0, 1.0])
    return 0.5 * (level + mirrored[perm])


def place(shape: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale and shift a face symmetric about x = 0 into the crop: least squares of the stable points
    onto the authors' example (scale, x and y shift), then x shift replaced by the crop's centre."""
    src = shape[list(STABLE_POINTS)]
    n = len(src)
    a = np.zeros((2 * n, 3))
    a[:n, 0], a[:n, 1] = src[:, 0], 1.0
    a[n:, 0], a[n:, 2] = src[:, 1], 1.0
    b = np.concatenate([AUTHORS_EXAMPLE_STABLE[:, 0], AUTHORS_EXAMPLE_STABLE[:, 1]])
    (scale, _, ty), *_ = np.linalg.lstsq(a, b, rcond=None)
    placed = shape * scale + np.array([(SIZE[1] - 1) / 2.0, ty])
    rms = float(np.sqrt(np.mean((placed[list(STABLE_POINTS)] - AUTHORS_EXAMPLE_STABLE) ** 2)))
    return placed, rms


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=REPO.parent / "shared" / "data" / "grid-mini")
    parser.add_argument("--canonical-obj", type=Path, default=None,
                        help="optional mediapipe canonical_face_model.obj to cross-check the mirror permutation")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "speechanim" / "data" / "face_template.json")
    args = parser.parse_args(argv)

    clips = sorted(args.clips.glob("*.mpg"))
    if not clips:
        raise SystemExit(f"{args.clips}: no .mpg clips")
    origs, flips = [], []
    for path in clips:
        orig, flip, _ = _detect_clip(path)
        origs.append(orig)
        flips.append(flip)
        print(f"  {path.name}: {len(orig)} frames", file=sys.stderr)
    orig = np.concatenate(origs)
    flip = np.concatenate(flips)

    perm, worst, not_nearest = mirror_perm_from_detector(orig, flip)
    print(f"mirror permutation: {int((perm == np.arange(N_LANDMARKS)).sum())} midline points, "
          f"worst matched mean distance {worst:.2f} px, {not_nearest} points resolved by the assignment "
          "(their nearest candidate was taken by another)", file=sys.stderr)
    if args.canonical_obj is not None:
        check_against_canonical_model(perm, args.canonical_obj)

    shapes = np.concatenate([orig, flip[:, perm]])  # flipped frames re-indexed: a mirror-image sample
    mean = procrustes_mean(shapes, list(STABLE_POINTS))
    sym = symmetrise(mean, perm)
    points, fit_rms = place(sym)
    points = np.round(points, 4)

    # The package builds the permutation from the template's symmetry; it must agree with the detector's.
    nearest = mirror_permutation(points, SIZE[1])
    if not np.array_equal(nearest, perm):
        raise SystemExit(f"template symmetry disagrees with the detector's mirror permutation at {np.flatnonzero(nearest != perm)}")
    d = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(N_LANDMARKS) * 1e9
    print(f"closest two template points: {d.min():.3f} px", file=sys.stderr)

    h, w = SIZE
    eyes_y = points[list(EYE_POINTS), 1].mean()
    report = {
        "eye corners y (fraction of H)": round(float(eyes_y / h), 3),
        "outer eye corner distance (fraction of W)": round(float((points[263, 0] - points[33, 0]) / w), 3),
        "nose tip y": round(float(points[1, 1] / h), 3),
        "mouth (13/14) y": round(float(points[[13, 14], 1].mean() / h), 3),
        "chin (152) y": round(float(points[152, 1] / h), 3),
        "face oval x (234, 454)": [round(float(points[234, 0] / w), 3), round(float(points[454, 0] / w), 3)],
        "forehead top (10) y": round(float(points[10, 1] / h), 3),
        "rms to the authors' example stable points (px)": round(fit_rms, 2),
    }
    print(json.dumps(report, indent=1), file=sys.stderr)

    data = {
        "description": (
            "Canonical face for speechanim.align: mean mediapipe FaceMesh landmarks (478, refine_landmarks) "
            "placed in a portrait crop of size [H, W]. Pixel centres at integer coordinates (x = x_mediapipe * W - 0.5). "
            "Made by workflow/scripts/make_face_template.py: landmarks tracked on every frame of the grid-mini GRID clips "
            "and of the same frames flipped; generalised Procrustes (similarity) on the stable points "
            f"{list(STABLE_POINTS)} (nose tip, eye corners); mean; made exactly mirror-symmetric about x = (W - 1) / 2; "
            "scaled and shifted vertically to fit the stable points mediapipe finds on the authors' example still "
            "(DinoMan/speech-driven-animation example/image.bmp, 96 x 128)."
        ),
        "made_by": "workflow/scripts/make_face_template.py",
        "made_on": datetime.date.today().isoformat(),
        "source": {
            "clips": {p.name: _sha256(p) for p in clips},
            "frames": int(len(orig)),
            "authors_example_stable_points": AUTHORS_EXAMPLE_STABLE.tolist(),
        },
        "size": list(SIZE),
        "stable_points": list(STABLE_POINTS),
        "eye_points": list(EYE_POINTS),
        "mouth_points": list(MOUTH_POINTS),
        "placement": report,
        "points": points.tolist(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=None, separators=(",", ":")).replace('],[', '],\n[') + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
