"""Face alignment and mirroring (paper section 4.1) on the real GRID clips of grid-mini."""
from __future__ import annotations

import json
from importlib import resources

import cv2
import numpy as np
import pytest

from speechanim.align import (
    EYE_POINTS,
    N_LANDMARKS,
    STABLE_POINTS,
    AlignConfig,
    AlignedClip,
    AlignmentError,
    align_image,
    align_video,
    detect_landmarks,
    fill_gaps,
    load_template,
    mirror_clip,
    mirror_permutation,
    smooth_points,
    transform_points,
    warp_frames,
)
from speechanim.media import read_video

EYES = list(EYE_POINTS)
MOUTH_CORNERS = [61, 291]
STABLE = list(STABLE_POINTS)


def _errors(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Distances (pixels) of ``(T, K, 2)`` points from ``(K, 2)`` template positions."""
    return np.linalg.norm(points - template[None], axis=-1)


def _redetect(crops: np.ndarray, factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """mediapipe landmarks found afresh on aligned crops (upsampled ``factor`` times), in crop pixels."""
    big = np.stack([cv2.resize(c, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC) for c in crops])
    landmarks, found = detect_landmarks(big, video=True)
    return (landmarks + 0.5) / factor - 0.5, found


@pytest.fixture(scope="module")
def videos(grid_mini_clips) -> dict[str, np.ndarray]:
    return {p.stem: read_video(p)[0] for p in grid_mini_clips}


@pytest.fixture(scope="module")
def aligned(videos) -> dict[str, AlignedClip]:
    return {name: align_video(frames, name=name) for name, frames in videos.items()}


@pytest.fixture(scope="module")
def template():
    return load_template()


# ---------------------------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------------------------


def test_template_is_package_data_symmetric_and_placed_like_the_authors_crops(template):
    ref = resources.files("speechanim").joinpath("data", "face_template.json")
    data = json.loads(ref.read_text())
    assert data["made_by"] == "workflow/scripts/make_face_template.py" and data["size"] == [128, 96]
    assert template.size == (128, 96) and template.points.shape == (N_LANDMARKS, 2)
    h, w = template.size
    pts = template.points
    # mirror-symmetric: flipped and re-indexed it is itself
    flipped = pts.copy()
    flipped[:, 0] = w - 1 - flipped[:, 0]
    np.testing.assert_allclose(flipped[template.mirror], pts, atol=1e-3)
    # portrait crop filled by the face: eyes at about 40 % of the height, mouth in the lower half,
    # chin inside the crop, the face oval (234, 454) close to the sides
    assert 0.33 < pts[EYES, 1].mean() / h < 0.42
    assert 0.6 < pts[[13, 14], 1].mean() / h < 0.8
    assert pts[[13, 14], 1].mean() < pts[152, 1] < h - 1
    assert pts[234, 0] < 0.15 * w and pts[454, 0] > 0.85 * w
    assert pts[33, 0] < pts[133, 0] < (w - 1) / 2 < pts[362, 0] < pts[263, 0]  # image-side numbering


def test_mirror_permutation_pairs_the_image_sides(template):
    perm = template.mirror
    assert np.array_equal(perm[perm], np.arange(N_LANDMARKS))
    pairs = {33: 263, 133: 362, 61: 291, 468: 473, 1: 1, 4: 4, 13: 13, 14: 14, 152: 152}
    for a, b in pairs.items():
        assert perm[a] == b and perm[b] == a
    with pytest.raises(ValueError, match="not mirror-symmetric"):
        mirror_permutation(template.points + np.array([3.0, 0.0]), template.size[1])


def test_template_scales_to_other_crop_sizes(template):
    double = load_template((256, 192))
    np.testing.assert_allclose(double.points, (template.points + 0.5) * 2 - 0.5)
    square = load_template((128, 128))  # same height, wider: same face, centred
    np.testing.assert_allclose(square.points[:, 1], template.points[:, 1])
    np.testing.assert_allclose(square.points[:, 0], template.points[:, 0] + 16)
    assert np.array_equal(square.mirror, template.mirror)


# ---------------------------------------------------------------------------------------------
# Alignment of real clips
# ---------------------------------------------------------------------------------------------


def test_all_grid_mini_clips_align_onto_the_template(aligned, template):
    assert len(aligned) == 8
    eye_errors, mouth_errors = [], []
    for name, clip in aligned.items():
        assert clip.frames.shape == (75, 128, 96, 3) and clip.frames.dtype == np.uint8, name
        assert clip.landmarks.shape == (75, N_LANDMARKS, 2) and clip.transforms.shape == (75, 3, 3), name
        assert clip.found.all() and not clip.mirrored
        assert 40 < clip.frames.mean() < 200  # a picture, not the black border
        eye_errors.append(_errors(clip.landmarks[:, EYES], template.points[EYES]))
        mouth_errors.append(_errors(clip.landmarks[:, MOUTH_CORNERS], template.points[MOUTH_CORNERS]))
    eye, mouth = np.stack(eye_errors), np.stack(mouth_errors)
    print(f"\ntransformed landmarks vs template (px): eye corners max {eye.max():.2f} mean {eye.mean():.2f}; "
          f"mouth corners max {mouth.max():.2f} mean {mouth.mean():.2f}")
    # every frame of every clip: eye corners within a few pixels (speakers' faces differ from the
    # mean face, the head moves within the 7-frame smoothing window); the mouth moves when speaking
    assert eye.max() < 5.0 and eye.mean() < 1.5
    assert mouth.max() < 7.0 and mouth.mean() < 3.0


def test_landmarks_detected_again_on_the_crops_sit_on_the_template(aligned, template):
    eye_errors, mouth_errors, warp_errors = [], [], []
    for name, clip in aligned.items():
        again, found = _redetect(clip.frames)
        assert found.all(), f"{name}: no face found again in frames {np.flatnonzero(~found)}"
        eye_errors.append(_errors(again[:, EYES], template.points[EYES]))
        mouth_errors.append(_errors(again[:, MOUTH_CORNERS], template.points[MOUTH_CORNERS]))
        # the crop is where the transform says: detections on it agree with transformed detections
        warp_errors.append(np.linalg.norm(again[:, EYES + MOUTH_CORNERS] - clip.landmarks[:, EYES + MOUTH_CORNERS], axis=-1))
    eye, mouth, warp = np.stack(eye_errors), np.stack(mouth_errors), np.stack(warp_errors)
    print(f"\nlandmarks detected again on the 128x96 crops vs template (px): eye corners max {eye.max():.2f} "
          f"mean {eye.mean():.2f}; mouth corners max {mouth.max():.2f} mean {mouth.mean():.2f}; "
          f"vs transformed landmarks max {warp.max():.2f} mean {warp.mean():.2f}")
    assert eye.max() < 5.0 and eye.mean() < 1.5
    assert mouth.max() < 7.0 and mouth.mean() < 3.0
    assert warp.max() < 2.0 and warp.mean() < 0.6


def test_still_head_gives_a_still_crop(videos):
    frame = videos["bbaf2n"][40]
    still = np.repeat(frame[None], 20, axis=0)
    clip = align_video(still, name="still")
    for i in range(1, 20):
        assert np.array_equal(clip.frames[i], clip.frames[0]), f"frame {i} differs"
        assert np.array_equal(clip.transforms[i], clip.transforms[0])
    # with camera noise the frames differ and the landmarks jitter; smoothing keeps the crop still
    rng = np.random.default_rng(0)
    noisy = np.clip(still + rng.normal(0.0, 2.0, still.shape).round(), 0, 255).astype(np.uint8)
    landmarks, found = detect_landmarks(noisy)
    source = np.repeat(landmarks[:1, STABLE], 20, axis=0)

    def motion(window: int) -> float:
        """Largest frame-to-frame movement of the crop (crop pixels) at the face's stable points."""
        cfg = AlignConfig(smooth_window=window)
        moved = transform_points(align_video(noisy, cfg, landmarks=landmarks, found=found).transforms, source)
        return float(np.linalg.norm(np.diff(moved, axis=0), axis=-1).max())

    smoothed, raw = motion(7), motion(1)
    print(f"\nstill head with noise: crop moves at most {smoothed:.3f} px from frame to frame smoothed, {raw:.3f} px unsmoothed")
    assert smoothed < 0.1 and smoothed < raw / 2


def test_smoothing_averages_over_a_centred_window():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(30, 5, 2))
    out = smooth_points(points, 7)
    np.testing.assert_allclose(out[10], points[7:14].mean(axis=0))
    np.testing.assert_allclose(out[1], points[0:3].mean(axis=0))  # shrinks symmetrically at the ends
    np.testing.assert_allclose(out[0], points[0])
    line = np.arange(30.0)[:, None, None] * np.ones((1, 5, 2))
    np.testing.assert_allclose(smooth_points(line, 6), line)  # no lag on steady motion; 6 -> 7
    np.testing.assert_allclose(smooth_points(points, 1), points)


@pytest.mark.parametrize("angle,scale,shift", [(10, 1.0, (0, 0)), (0, 0.8, (0, 0)), (0, 1.0, (25, -15)), (10, 0.8, (25, -15))])
def test_rotated_scaled_shifted_face_aligns_onto_the_template(videos, template, angle, scale, shift):
    frame = videos["bbaf2n"][10]
    h, w = frame.shape[:2]
    moved = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    moved[:, 2] += shift
    image = cv2.warpAffine(frame, moved, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    base, clip = align_image(frame), align_image(image)
    errors = _errors(clip.landmarks[:, EYES + MOUTH_CORNERS], template.points[EYES + MOUTH_CORNERS])
    assert errors.max() < 3.5
    # the alignment undoes the movement: composed with it, the transform is the original one ...
    composed = clip.transforms[0] @ np.vstack([moved, [0, 0, 1]])
    face = np.linalg.inv(base.transforms[0]) @ np.c_[template.points[STABLE], np.ones(len(STABLE))].T
    gap = np.linalg.norm((composed @ face - base.transforms[0] @ face)[:2], axis=0)
    # ... and the crops look alike (what differs is mediapipe's own sub-pixel scatter between the
    # two pictures, which moves the crop by a fraction of a pixel)
    diff = np.abs(clip.frames.astype(float) - base.frames).mean()
    print(f"\nrotate {angle} scale {scale} shift {shift}: eye/mouth corners max {errors.max():.2f} px from the template, "
          f"transform off by {gap.max():.2f} px, crops differ by {diff:.2f} grey levels")
    assert gap.max() < 1.0
    assert diff < 5.0


def test_warp_backends_agree(videos):
    frames = videos["lrwp9a"][:10]
    fast = align_video(frames, AlignConfig(backend="cv2"))
    slow = align_video(frames, AlignConfig(backend="skimage"))
    np.testing.assert_allclose(fast.transforms, slow.transforms)
    assert np.abs(fast.frames.astype(float) - slow.frames).mean() < 1.0


def test_large_source_is_reduced_before_the_warp(videos, template):
    """A 3x larger picture (the face shrinks 4x into the crop) goes through the area-averaging
    reduction; the crop must come out where the plain warp puts it for the original picture."""
    frame = videos["lwbsza"][5]
    big = cv2.resize(frame, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    base, clip = align_image(frame), align_image(big)
    assert np.sqrt(np.linalg.det(clip.transforms[0, :2, :2])) < 0.5  # the reduction path is taken
    assert _errors(clip.landmarks[:, EYES], template.points[EYES]).max() < 4.0
    assert np.abs(clip.frames.astype(float) - base.frames).mean() < 4.0


@pytest.mark.parametrize("scale", [0.8, 0.45, 0.2])
@pytest.mark.parametrize("backend", ["cv2", "skimage"])
def test_warp_puts_a_point_where_the_transform_says(scale, backend):
    """Geometry of the warp, with and without the reduction for large shrinking: the centroid of a
    smooth blob lands on the transformed blob centre to within a twentieth of a pixel."""
    h, w = 900, 1100
    centre = np.array([500.3, 400.7])
    sigma = 2.5 / scale  # 2.5 crop pixels
    yy, xx = np.mgrid[0:h, 0:w]
    blob = 250.0 * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    image = np.repeat(np.rint(blob).astype(np.uint8)[..., None], 3, axis=-1)
    angle = np.deg2rad(10.0)
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 0.0], [scale * np.sin(angle), scale * np.cos(angle), 0.0], [0, 0, 1]])
    matrix[:2, 2] = np.array([47.3, 60.6]) - matrix[:2, :2] @ centre
    crop = warp_frames(image[None], matrix[None], (128, 96), backend=backend)[0, ..., 0].astype(float)
    cy, cx = np.mgrid[0:128, 0:96]
    found = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    assert np.linalg.norm(found - [47.3, 60.6]) < 0.05


def test_other_crop_size(videos, template):
    clip = align_video(videos["sbia1a"][:15], AlignConfig(size=(256, 192)))
    assert clip.frames.shape == (15, 256, 192, 3)
    big = load_template((256, 192))
    assert _errors(clip.landmarks[:, EYES], big.points[EYES]).max() < 10.0


# ---------------------------------------------------------------------------------------------
# Frames without a face
# ---------------------------------------------------------------------------------------------


def test_short_blank_gap_is_interpolated(videos):
    frames = videos["swwp2s"].copy()
    frames[30:34] = 0  # 4 blank frames <= max_gap 5
    landmarks, found = detect_landmarks(frames)
    assert np.array_equal(np.flatnonzero(~found), np.arange(30, 34))
    filled = fill_gaps(landmarks, found, 5, clip="swwp2s")
    for k, i in enumerate(range(30, 34), start=1):
        np.testing.assert_allclose(filled[i], landmarks[29] + (landmarks[34] - landmarks[29]) * k / 5)
    clip = align_video(frames, name="swwp2s", landmarks=landmarks, found=found)
    assert clip.frames.shape == (75, 128, 96, 3) and np.array_equal(clip.found, found)
    assert np.isfinite(clip.landmarks).all()


def test_gaps_at_the_ends_hold_the_nearest_face():
    landmarks = np.arange(10.0)[:, None, None] * np.ones((1, N_LANDMARKS, 2))
    found = np.ones(10, bool)
    found[[0, 1, 9]] = False
    filled = fill_gaps(np.where(found[:, None, None], landmarks, np.nan), found, 2)
    np.testing.assert_allclose(filled[:2], landmarks[[2, 2]])
    np.testing.assert_allclose(filled[9], landmarks[8])
    np.testing.assert_allclose(filled[2:9], landmarks[2:9])


def test_long_blank_run_fails_naming_the_clip_and_frames(videos):
    frames = videos["pwij3p"].copy()
    frames[20:40] = 0
    with pytest.raises(AlignmentError, match=r"pwij3p\.mpg: no face in frames 20-39") as err:
        align_video(frames, name="pwij3p.mpg")
    assert err.value.clip == "pwij3p.mpg" and err.value.frames == tuple(range(20, 40))


def test_clip_without_any_face_fails():
    frames = np.full((10, 120, 160, 3), 128, np.uint8)
    with pytest.raises(AlignmentError, match=r"blank\.mp4: no face found in any of its 10 frames"):
        align_video(frames, name="blank.mp4")


# ---------------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------------


def test_photo_aligns(videos, template):
    clip = align_image(videos["lbax4n"][0], name="still.png")
    assert clip.frames.shape == (1, 128, 96, 3) and clip.found.tolist() == [True]
    assert _errors(clip.landmarks[:, EYES], template.points[EYES]).max() < 5.0


def test_photo_without_a_face_fails(videos):
    background = np.ascontiguousarray(videos["lbax4n"][0][:, :70])  # the blue wall beside the speaker
    with pytest.raises(AlignmentError, match=r"wall\.png: no face found in the image"):
        align_image(background, name="wall.png")


def test_photo_with_two_faces_fails(videos):
    two = np.concatenate([videos["bbaf2n"][0], videos["sbia1a"][0]], axis=1)
    with pytest.raises(AlignmentError, match=r"pair\.png: found 2 faces in the image; it must show exactly one"):
        align_image(two, name="pair.png")


# ---------------------------------------------------------------------------------------------
# Mirroring
# ---------------------------------------------------------------------------------------------


def test_mirrored_clip_is_aligned_and_mirroring_twice_gives_it_back(aligned, template):
    clip = aligned["brbk7n"]
    mirrored = mirror_clip(clip)
    assert mirrored.mirrored and mirrored.frames.shape == clip.frames.shape
    assert np.array_equal(mirrored.frames, clip.frames[:, :, ::-1])
    # still aligned: the stable points sit on the template exactly as well as before
    before = _errors(clip.landmarks[:, STABLE], template.points[STABLE])
    after = _errors(mirrored.landmarks[:, STABLE], template.points[STABLE])
    np.testing.assert_allclose(np.sort(after.ravel()), np.sort(before.ravel()), atol=1e-6)
    assert after.mean() < 1.5
    # index semantics follow the image side: point 33 is on the left of the mirrored crop
    assert (mirrored.landmarks[:, 33, 0] < mirrored.landmarks[:, 263, 0]).all()
    # the detector agrees with the mirrored landmarks
    again, found = _redetect(mirrored.frames)
    assert found.all()
    gap = np.linalg.norm(again[:, EYES + MOUTH_CORNERS] - mirrored.landmarks[:, EYES + MOUTH_CORNERS], axis=-1)
    assert gap.max() < 2.0
    # the transforms map source pixels into the mirrored crop
    h, w = clip.size
    src = np.array([[100.0, 120.0], [200.0, 80.0]])
    np.testing.assert_allclose(transform_points(mirrored.transforms[:1], src[None])[0, :, 0],
                               w - 1 - transform_points(clip.transforms[:1], src[None])[0, :, 0])
    twice = mirror_clip(mirrored)
    assert not twice.mirrored
    assert np.array_equal(twice.frames, clip.frames)
    np.testing.assert_allclose(twice.landmarks, clip.landmarks, atol=1e-9)
    np.testing.assert_allclose(twice.transforms, clip.transforms, atol=1e-9)
    assert np.array_equal(twice.found, clip.found)


def test_config_is_checked():
    with pytest.raises(ValueError, match="border"):
        AlignConfig(border="wrap")
    with pytest.raises(ValueError, match="smooth_window"):
        AlignConfig(smooth_window=0)
    with pytest.raises(ValueError, match="frames must be uint8"):
        align_video(np.zeros((3, 10, 10), np.uint8))
