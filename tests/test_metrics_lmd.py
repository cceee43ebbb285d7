"""LMD and the mouth-opening correlation (speechanim.metrics.lmd): known inputs, then a real GRID face."""
from __future__ import annotations

import numpy as np
import pytest

from speechanim.align import AlignConfig, align_video, detect_landmarks
from speechanim.media import read_video
from speechanim.metrics.lmd import INNER_LIPS, lip_indices, lmd, mouth_correlation, mouth_opening


def landmarks(n_frames: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(10, 40, (n_frames, 478, 2))


def test_lip_points_are_mediapipes_forty_lip_contour_points():
    lips = lip_indices()
    assert len(lips) == 40
    assert {61, 291, 13, 14, 0, 17} <= set(lips)  # corners, inner and outer midpoints
    assert 33 not in lips and 152 not in lips  # an eye corner, the chin


def test_identical_clips_give_lmd_zero_and_r_one():
    lm = landmarks()
    assert lmd(lm, lm, 48) == 0.0
    assert mouth_correlation(lm, lm) == pytest.approx(1.0)


def test_lmd_is_the_lip_shift_over_the_crop_width():
    lm = landmarks()
    moved = lm.copy()
    moved[:, lip_indices()] += np.array([3.0, 4.0])  # 5 px, lips only
    moved[:, 33] += 100.0  # an eye point: not a lip point, not counted
    assert lmd(lm, moved, 50) == pytest.approx(5.0 / 50)


def test_lmd_is_the_mean_over_lip_points_and_frames_of_uneven_shifts():
    """A shift that differs between points and frames tells the mean from any other summary: every
    other lip point moves 5 px (3, 4), the rest 0 px, in the even frames, and twice that in the odd
    ones; the mean distance is (2.5 + 5) / 2 = 3.75 px, where the largest would be 10 px and the
    mean of each frame's largest 7.5 px."""
    lm = landmarks(n_frames=6)
    moved = lm.copy()
    lips = lip_indices()
    for t in range(len(lm)):
        moved[t, lips[::2]] += np.array([3.0, 4.0]) * (1 + t % 2)
    assert lmd(lm, moved, 50) == pytest.approx(3.75 / 50, rel=1e-9)
    assert lmd(moved, lm, 50) == pytest.approx(3.75 / 50, rel=1e-9)  # a distance: symmetric


def test_frozen_mouth_has_no_correlation():
    lm = landmarks()
    frozen = np.repeat(lm[:1], len(lm), axis=0)
    assert mouth_correlation(lm, frozen) == 0.0
    assert mouth_correlation(frozen, lm) == 0.0


def test_opening_follows_the_inner_lips_and_an_inverted_mouth_correlates_negatively():
    lm = landmarks()
    gap = np.linspace(1.0, 9.0, len(lm))
    lm[:, INNER_LIPS[0]] = [20.0, 30.0]
    lm[:, INNER_LIPS[1], 0] = 20.0
    lm[:, INNER_LIPS[1], 1] = 30.0 + gap
    np.testing.assert_allclose(mouth_opening(lm), gap)
    inverted = lm.copy()
    inverted[:, INNER_LIPS[1], 1] = 30.0 + gap[::-1]
    assert mouth_correlation(lm, inverted) == pytest.approx(-1.0)


def test_frames_without_a_face_are_left_out_and_too_few_give_none():
    lm = landmarks()
    other = lm.copy()
    other[5:] = np.nan
    assert lmd(lm, other, 48) == 0.0  # frames 0-4 compared
    other[2:] = np.nan
    assert lmd(lm, other, 48) is None and mouth_correlation(lm, other) is None


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="face-mesh"):
        lmd(landmarks(), landmarks(10), 48)
    with pytest.raises(ValueError, match="width"):
        lmd(landmarks(), landmarks(), 0)


def test_real_face_talking_vs_still_and_vs_itself(grid_mini):
    """A real GRID clip aligned at 64 x 48: against itself LMD 0 and r 1; its first frame repeated
    (the still-image control) has a frozen mouth (r 0) and a positive LMD; the clip played
    backwards moves, but not with the speech (r well below 1)."""
    frames, _ = read_video(grid_mini / "lwbsza.mpg")
    aligned = align_video(frames[10:50], AlignConfig(size=(64, 48)), name="lwbsza").frames
    real, found = detect_landmarks(aligned)
    assert found.all()
    still, _ = detect_landmarks(np.repeat(aligned[:1], len(aligned), axis=0))
    backwards, _ = detect_landmarks(aligned[::-1].copy())
    assert lmd(real, real, 48) == 0.0 and mouth_correlation(real, real) == pytest.approx(1.0)
    assert mouth_correlation(real, still) == 0.0
    assert lmd(real, still, 48) > 0.005
    assert mouth_correlation(real, backwards) < 0.7


def test_edges_of_the_frame_count_the_point_count_and_the_frozen_threshold():
    """Exactly MIN_FRAMES = 3 frames with a face in both give a value; a frame with one NaN coordinate in either
    video is left out; a 468-point mesh (without the irises) is accepted, 467 points are not; a gap whose standard
    deviation is 1.5e-3 px (above FROZEN_PX = 1e-3) is a moving mouth, one of 0.75e-3 px a frozen one."""
    lm = landmarks(n_frames=4)
    moved = lm.copy()
    moved[:, lip_indices()] += np.array([3.0, 4.0])
    moved[0, 200, 1] = np.nan  # frame 0 (a non-lip point) has no face: frames 1-3 remain
    assert lmd(lm, moved, 10) == pytest.approx(0.5)
    lm2 = lm.copy()
    lm2[1, 0, 0] = np.inf  # and frame 1 in the other video: two frames remain
    assert lmd(lm2, moved, 10) is None
    assert lmd(lm[:, :468], moved[:, :468], 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"^landmarks must be two \(T, 478, 2\) face-mesh arrays of one shape, got "
                                         r"\(4, 467, 2\) and \(4, 467, 2\)$"):
        lmd(lm[:, :467], moved[:, :467], 10)
    with pytest.raises(ValueError, match=r"got \(4, 478\) and \(4, 478\)$"):
        mouth_correlation(lm[..., 0], lm[..., 0])
    with pytest.raises(ValueError, match=r"^crop width must be positive, got -1$"):
        lmd(lm, moved, -1)
    gap = np.array([5.0, 5.0, 5.0, 5.0])
    base = landmarks(n_frames=4)
    base[:, INNER_LIPS[0]] = [20.0, 30.0]
    base[:, INNER_LIPS[1]] = np.stack([np.full(4, 20.0), 30.0 + gap], axis=1)
    moving = base.copy()
    moving[:, INNER_LIPS[1], 1] = 30.0 + gap + np.array([0.0, 0.003, 0.0, 0.003])  # std 0.0015 px: moving
    tiny = base.copy()
    tiny[:, INNER_LIPS[1], 1] = 30.0 + gap + np.array([0.0, 0.0015, 0.0, 0.0015])  # std 0.00075 px: frozen
    assert mouth_correlation(moving, moving) == pytest.approx(1.0)
    assert mouth_correlation(tiny, moving) == 0.0 and mouth_correlation(moving, tiny) == 0.0


def _mouth(gaps: np.ndarray) -> np.ndarray:
    """Landmarks whose inner-lip gap is exactly ``gaps`` (upper lip at the origin, lower lip straight below it)."""
    lm = landmarks(n_frames=len(gaps))
    lm[:, INNER_LIPS[0]] = 0.0
    lm[:, INNER_LIPS[1]] = np.stack([np.zeros(len(gaps)), gaps], axis=1)
    return lm


def test_the_boundaries_themselves_a_gap_std_of_exactly_frozen_px_moves_and_three_frames_and_width_one_count():
    """At the thresholds: a gap whose standard deviation is exactly FROZEN_PX (gaps 0, 2e-3, 0, 2e-3: std 1e-3
    to the last bit) is not frozen (the rule is `std < FROZEN_PX`), so it correlates with a mouth moving the same
    way (r = 1); exactly MIN_FRAMES = 3 frames give an r; a crop width of 1 px is allowed (lip shift 5 px -> 5.0)."""
    edge = _mouth(np.array([0.0, 2e-3, 0.0, 2e-3]))
    assert mouth_opening(edge).std() == 1e-3
    big = _mouth(np.array([0.0, 1.0, 0.0, 1.0]))
    assert mouth_correlation(edge, big) == pytest.approx(1.0) and mouth_correlation(big, edge) == pytest.approx(1.0)
    three = _mouth(np.array([0.0, 0.5, 1.0]))
    assert mouth_correlation(three, three) == pytest.approx(1.0)
    lm = landmarks(n_frames=4)
    moved = lm.copy()
    moved[:, lip_indices()] += np.array([3.0, 4.0])
    assert lmd(lm, moved, 1) == pytest.approx(5.0)


def test_a_frame_without_a_face_in_the_real_clip_alone_is_left_out_not_the_clip():
    """A NaN in one frame of the real video leaves that frame out (frames 1-3 remain: LMD 0.5), not the clip."""
    lm = landmarks(n_frames=4)
    moved = lm.copy()
    moved[:, lip_indices()] += np.array([3.0, 4.0])
    lm[0, 300, 0] = np.nan
    assert lmd(lm, moved, 10) == pytest.approx(0.5)
    gaps = np.array([1.0, 2.0, 3.0, 5.0])
    real, fake = _mouth(gaps), _mouth(gaps[::-1].copy())
    real[0, 300, 1] = np.nan
    assert mouth_correlation(real, fake) == pytest.approx(np.corrcoef(gaps[1:], gaps[::-1][1:])[0, 1])


def test_float32_landmarks_are_measured_in_float64():
    """Landmarks given as float32 are converted to float64 before any arithmetic: the LMD and the gaps equal those
    of the same values given as float64 to float64's precision (float32 arithmetic is off by ~1e-7 here)."""
    rng = np.random.default_rng(3)
    real = rng.uniform(1000, 1001, (6, 478, 2)).astype(np.float32)
    fake = (real + rng.uniform(-0.01, 0.01, real.shape)).astype(np.float32)
    want = lmd(real.astype(np.float64), fake.astype(np.float64), 7)
    assert lmd(real, fake, 7) == want and lmd(real, fake.astype(np.float64), 7) == want
    assert lmd(real.astype(np.float64), fake, 7) == want
    assert np.array_equal(mouth_opening(real), mouth_opening(real.astype(np.float64)))
    assert mouth_opening(real).dtype == np.float64
