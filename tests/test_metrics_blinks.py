"""Blink rate and duration from the eye aspect ratio: synthetic EAR, a drawn face, real GRID clips."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from speechanim.align import N_LANDMARKS
from speechanim.media import read_video
from speechanim.metrics.blinks import (
    EYE_INDICES,
    MIN_BLINK_S,
    blinks_from_frames,
    blinks_from_landmarks,
    eye_aspect_ratio,
    eye_motion,
    find_blinks,
    min_blink_frames,
)

FPS = 25.0


def _ear_sequence(n: int = 100, blinks=((20, 24), (60, 63), (80, 81)), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ear = 0.3 + rng.normal(0, 0.01, n)
    for start, stop in blinks:
        ear[start:stop] = 0.08 + rng.normal(0, 0.01, stop - start)
    return ear


def _eye_landmarks(ears: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks whose two eyes have the given EAR: corners 20 px apart, lids +-5 EAR px."""
    t = len(ears)
    lm = np.zeros((t, N_LANDMARKS, 2))
    for eye, x0 in zip(EYE_INDICES, (20.0, 60.0)):
        p1, p2, p3, p4, p5, p6 = eye
        for i, e in enumerate(ears):
            half = e * 20.0 / 2  # |p2 - p6| = |p3 - p5| = 20 e  ->  EAR = 40 e / 40
            lm[i, p1] = (x0, 50)
            lm[i, p4] = (x0 + 20, 50)
            lm[i, p2] = (x0 + 7, 50 - half)
            lm[i, p6] = (x0 + 7, 50 + half)
            lm[i, p3] = (x0 + 13, 50 - half)
            lm[i, p5] = (x0 + 13, 50 + half)
    return lm


def test_eye_aspect_ratio_of_known_points():
    ears = np.array([0.3, 0.25, 0.05])
    lm = _eye_landmarks(ears)
    np.testing.assert_allclose(eye_aspect_ratio(lm), ears)
    np.testing.assert_allclose(eye_aspect_ratio(lm, per_eye=True), np.stack([ears, ears], 1))
    lm[1, :] = np.nan
    assert np.isnan(eye_aspect_ratio(lm)[1])
    with pytest.raises(ValueError, match="478"):
        eye_aspect_ratio(np.zeros((3, 68, 2)))


def test_synthetic_ear_sequence_with_known_blinks():
    ear = _ear_sequence()
    assert find_blinks(ear) == [(20, 24), (60, 63), (80, 81)]
    stats = blinks_from_landmarks(_eye_landmarks(ear), FPS, min_frames=1)
    assert stats.count == 3
    assert stats.blinks == ((20, 24), (60, 63), (80, 81))
    assert stats.duration == pytest.approx(4.0)
    assert stats.rate == pytest.approx(3 / 4.0)
    assert stats.mean_duration == pytest.approx((4 + 3 + 1) / 3 / FPS)
    assert stats.open_ear == pytest.approx(np.median(ear))
    assert stats.threshold == pytest.approx(0.7 * np.median(ear))
    # by default a blink lasts >= MIN_BLINK_S (2 frames at 25 fps): the one-frame dip at 80 is not one
    stats = blinks_from_landmarks(_eye_landmarks(ear), FPS)
    assert stats.blinks == ((20, 24), (60, 63))
    assert stats.rate == pytest.approx(2 / 4.0)
    assert stats.mean_duration == pytest.approx((4 + 3) / 2 / FPS)


def test_the_shortest_blink_is_fps_independent():
    assert MIN_BLINK_S == 0.06
    assert [min_blink_frames(fps) for fps in (10, 25, 29.97, 30, 50, 60)] == [1, 2, 2, 2, 3, 4]
    ear = _ear_sequence(n=150, blinks=((20, 21), (60, 62), (100, 103)))
    assert blinks_from_landmarks(_eye_landmarks(ear), 25.0).blinks == ((60, 62), (100, 103))
    assert blinks_from_landmarks(_eye_landmarks(ear), 50.0).blinks == ((100, 103),)
    assert blinks_from_landmarks(_eye_landmarks(ear), 10.0).count == 3


def test_threshold_is_relative_to_the_open_eye():
    ear = _ear_sequence()
    assert find_blinks(ear * 0.6) == find_blinks(ear)  # narrower eyes, same blinks
    # a reference from elsewhere (e.g. the still image): an absurdly high one closes every frame
    assert find_blinks(ear, open_ear=1.0) == [(0, 100)]
    # a half-closure to 0.75 of open is not a blink at ratio 0.7, is at ratio 0.8
    half = np.full(50, 0.3)
    half[10:15] = 0.225
    assert find_blinks(half) == []
    assert find_blinks(half, ratio=0.8) == [(10, 15)]


def test_min_frames_runs_at_the_ends_and_missing_frames():
    ear = _ear_sequence(blinks=((0, 2), (40, 41), (97, 100)))
    assert find_blinks(ear) == [(0, 2), (40, 41), (97, 100)]  # runs cut by the clip's ends count
    assert find_blinks(ear, min_frames=2) == [(0, 2), (97, 100)]
    ear[98] = np.nan  # no face in frame 98: not closed, so it splits the run
    assert find_blinks(ear) == [(0, 2), (40, 41), (97, 98), (99, 100)]
    stats = blinks_from_landmarks(_eye_landmarks(np.full(10, 0.3)), FPS)
    assert stats.count == 0 and stats.rate == 0.0 and np.isnan(stats.mean_duration)
    with pytest.raises(ValueError, match="no face"):
        find_blinks(np.full(5, np.nan))
    with pytest.raises(ValueError, match="fps"):
        blinks_from_landmarks(_eye_landmarks(np.full(3, 0.3)), 0)


def _cartoon_face(eyes_open: bool, h: int = 128, w: int = 96) -> np.ndarray:
    """A drawn face (oval, eyes with pupils, brows, nose, mouth), RGB; closed eyes are lines."""
    img = np.full((h, w, 3), (90, 160, 200), np.uint8)
    cx, cy = w // 2, int(h * 0.55)
    cv2.ellipse(img, (cx, cy), (int(w * 0.36), int(h * 0.36)), 0, 0, 360, (235, 190, 160), -1)
    ax, ay = int(w * 0.085), int(h * 0.035)
    for side in (-1, 1):
        ex, ey = cx + side * int(w * 0.15), cy - int(h * 0.08)
        if eyes_open:
            cv2.ellipse(img, (ex, ey), (ax, ay), 0, 0, 360, (255, 255, 255), -1)
            cv2.circle(img, (ex, ey), int(ay * 0.8), (60, 40, 30), -1)
            cv2.ellipse(img, (ex, ey), (ax, ay), 0, 0, 360, (40, 30, 30), 2)
        else:
            cv2.line(img, (ex - ax, ey), (ex + ax, ey), (40, 30, 30), 2)
        cv2.line(img, (ex - ax, ey - int(h * 0.06)), (ex + ax, ey - int(h * 0.07)), (60, 40, 30), 4)
    cv2.line(img, (cx, cy - int(h * 0.05)), (cx - int(w * 0.03), cy + int(h * 0.07)), (170, 120, 100), 2)
    cv2.line(img, (cx - int(w * 0.03), cy + int(h * 0.07)), (cx + int(w * 0.03), cy + int(h * 0.07)), (170, 120, 100), 2)
    cv2.ellipse(img, (cx, cy + int(h * 0.17)), (int(w * 0.12), int(h * 0.025)), 0, 0, 360, (170, 60, 60), -1)
    return img


def test_drawn_face_blinking_twice():
    opened, closed = _cartoon_face(True), _cartoon_face(False)
    frames = np.stack([closed if (10 <= i < 14 or 30 <= i < 34) else opened for i in range(50)])
    frames[22] = closed  # a one-frame flicker (40 ms): shorter than any blink, not counted
    stats = blinks_from_frames(frames, FPS)
    assert stats.count == 2
    assert stats.rate == pytest.approx(2 / 2.0)
    assert stats.mean_duration == pytest.approx(0.16, abs=0.04)  # 4 frames at 25 fps, +-1 frame
    (a0, b0), (a1, b1) = stats.blinks
    assert abs(a0 - 10) <= 1 and abs(b0 - 14) <= 1 and abs(a1 - 30) <= 1 and abs(b1 - 34) <= 1


def test_real_grid_clips(grid_mini):
    # bbaf2n: the speaker blinks twice (eyes shut in frames 43-44 and 51-54, checked by eye);
    # sbia1a: no blink
    frames, fps = read_video(grid_mini / "bbaf2n.mpg")
    stats = blinks_from_frames(frames, fps)
    assert stats.count == 2
    (a0, b0), (a1, b1) = stats.blinks
    assert a0 <= 43 and b0 >= 45 and a1 <= 51 and b1 >= 55
    assert 0.1 <= stats.mean_duration <= 0.3
    frames, fps = read_video(grid_mini / "sbia1a.mpg")
    assert blinks_from_frames(frames, fps).count == 0


def test_eye_motion_is_zero_for_frozen_eyes_and_grows_with_blinks():
    opened, closed = _cartoon_face(True), _cartoon_face(False)
    from speechanim.align import detect_landmarks

    landmarks, found = detect_landmarks(np.stack([opened] * 20), video=True)
    assert found.all()
    assert eye_motion(np.stack([opened] * 20), landmarks) == 0.0  # the still image repeated
    blinking = np.stack([closed if 8 <= i < 12 else opened for i in range(20)])
    # 4 of the 19 scored frames (2..T) shut: std = |difference of the box means| * sqrt(p (1 - p)), p = 4/19
    moving = eye_motion(blinking, landmarks)
    assert moving > 5.0
    # alternating: of frames 2..20, 10 shut and 9 open
    difference = eye_motion(np.stack([opened, closed] * 10), landmarks) / np.sqrt(10 / 19 * 9 / 19)
    assert moving == pytest.approx(difference * np.sqrt(4 / 19 * 15 / 19), rel=1e-6)
    assert eye_motion(blinking[8:], landmarks[8:], start=4) == 0.0  # only open frames from index 4 on
    # a change outside the eyes (the mouth) is not eye motion
    mouth = opened.copy()
    mouth[-20:] = 0
    assert eye_motion(np.stack([mouth if i % 2 else opened for i in range(20)]), landmarks) == 0.0


def test_eye_motion_refuses_what_it_cannot_measure():
    frames = np.zeros((10, 64, 48, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8 RGB"):
        eye_motion(frames.astype(np.float32), np.zeros((10, 478, 2)))
    with pytest.raises(ValueError, match="landmarks for each of more than 2 frames"):
        eye_motion(frames, np.zeros((9, 478, 2)))
    with pytest.raises(ValueError, match="NaN in every frame"):
        eye_motion(frames, np.full((10, 478, 2), np.nan))
    with pytest.raises(ValueError, match="outside the 48 x 64 frame"):
        eye_motion(frames, np.full((10, 478, 2), 500.0))


def test_eye_motion_of_known_boxes_and_grey_levels():
    """Every eye point at (3, 4) or (4, 4): each eye's box is one pixel around them, rows 3-5 and columns 2-5.
    Inside it frame t is red 3 v_t (grey v_t, the mean of R, G and B); the pixels just outside change too, and
    must not count. v = 0, 10, 20, 10, 0: frames 1-4 give 10, 20, 10, 0 (std sqrt(50)), frames 0-4 std sqrt(56)."""
    v = [0, 10, 20, 10, 0]
    frames = np.zeros((5, 10, 12, 3), np.uint8)
    for t, level in enumerate(v):
        frames[t, 3:6, 2:6, 0] = 3 * level
        frames[t, 6, :, :] = 40 * t  # the row below the box
        frames[t, :, 6, :] = 20 * t  # the column right of it
        frames[t, 2, :, 1] = 30 * t  # the row above
        frames[t, :, 1, 2] = 50 * t  # the column left of it
    lm = np.full((5, 478, 2), np.nan)
    for eye in EYE_INDICES:
        lm[:, list(eye)] = [3.0, 4.0]
        lm[:, eye[3]] = [4.0, 4.0]
    assert eye_motion(frames, lm) == pytest.approx(np.sqrt(50))
    assert eye_motion(frames, lm, start=0) == pytest.approx(np.sqrt(56))
    assert eye_motion(frames[:3], lm[:3]) == pytest.approx(5.0)  # frames 1-2: 10, 20
    with pytest.raises(ValueError, match=r"^need landmarks for each of more than 2 frames, got 2 for 2$"):
        eye_motion(frames[:2], lm[:2])
    with pytest.raises(ValueError, match=r"^need landmarks for each of more than 1 frames, got 4 for 5$"):
        eye_motion(frames, lm[:4], start=0)
    lm[2:, EYE_INDICES[1]] = np.nan  # an eye found in some frames only: its box from the frames it was found in
    assert eye_motion(frames, lm) == pytest.approx(np.sqrt(50))
    corner = np.zeros((5, 478, 2))  # points at the frame's corner: the box is clipped to rows 0-1, columns 0-1
    frames[:, :2, :2, :] = np.array(v, np.uint8)[:, None, None, None]
    assert eye_motion(frames, corner) == pytest.approx(np.sqrt(50))


def test_find_blinks_at_the_threshold_and_its_argument_checks():
    ear = np.array([1.0, 0.5, 0.49, 0.49, 1.0, 1.0])  # open EAR 1 given; ratio 0.5: closed below 0.5, not at it
    assert find_blinks(ear, ratio=0.5, open_ear=1.0) == [(2, 4)]
    assert find_blinks(ear, ratio=0.5, open_ear=1.0, min_frames=2) == [(2, 4)]
    assert find_blinks(ear, ratio=0.5, open_ear=1.0, min_frames=3) == []
    for ratio in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=rf"^ratio must be in \(0, 1\), got {ratio}$"):
            find_blinks(ear, ratio=ratio)
    with pytest.raises(ValueError, match=r"^min_frames must be >= 1, got 0$"):
        find_blinks(ear, min_frames=0)
    with pytest.raises(ValueError, match=r"^open-eye EAR must be positive, got 0\.0$"):
        find_blinks(ear, open_ear=0.0)
    with pytest.raises(ValueError, match=r"^open-eye EAR must be positive, got 0\.0$"):
        find_blinks(np.array([0.0, 0.0, 1.0]))  # the median of a clip mostly shut
    with pytest.raises(ValueError, match=r"^EAR must be a 1-D sequence, got shape \(2, 3\)$"):
        find_blinks(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^no frame has an eye aspect ratio \(no face found in any frame\)$"):
        find_blinks(np.full(3, np.inf))


def test_blink_statistics_of_a_known_clip():
    """50 frames at 25 fps (2 s) with blinks of 3 and 5 frames: 1 blink/s, mean duration 4 / 25 s."""
    ear = np.full(50, 0.3)
    ear[10:13] = 0.05
    ear[30:35] = 0.05
    s = blinks_from_landmarks(_eye_landmarks(ear), 25.0)
    assert (s.count, s.blinks, s.duration) == (2, ((10, 13), (30, 35)), 2.0)
    assert s.rate == pytest.approx(1.0) and s.mean_duration == pytest.approx(4 / 25)
    assert s.open_ear == pytest.approx(0.3) and s.threshold == pytest.approx(0.21)
    np.testing.assert_allclose(s.ear, ear)
    given = blinks_from_landmarks(_eye_landmarks(ear), 25.0, open_ear=0.1, ratio=0.6, min_frames=4)
    assert given.blinks == ((30, 35),) and given.open_ear == 0.1 and given.threshold == pytest.approx(0.06)
    with pytest.raises(ValueError, match=r"^the clip has no frames$"):
        blinks_from_landmarks(np.zeros((0, 478, 2)), 25.0)
    with pytest.raises(ValueError, match=r"^fps must be positive, got -1$"):
        blinks_from_landmarks(_eye_landmarks(ear), -1)
    with pytest.raises(ValueError, match=r"^landmarks must be \(T, 478, 2\) face-mesh points, got shape \(2, 387, 2\)$"):
        eye_aspect_ratio(np.zeros((2, 387, 2)))
    eye_aspect_ratio(np.zeros((2, 388, 2)))  # point 387 is the highest an eye uses
    flat = _eye_landmarks(np.array([0.3]))
    flat[0, EYE_INDICES[0][3]] = flat[0, EYE_INDICES[0][0]]  # the left eye's corners coincide: no EAR for it
    assert np.isnan(eye_aspect_ratio(flat, per_eye=True)[0, 0]) and eye_aspect_ratio(flat, per_eye=True)[0, 1] == \
        pytest.approx(0.3)


def _four_dips() -> np.ndarray:
    """50 frames of EAR 0.3 (the median) with dips to 0.1 (frames 10-14), 0.065 (20-24), 0.05 (30-34)
    and a one-frame 0.05 (40)."""
    ear = np.full(50, 0.3)
    ear[10:15], ear[20:25], ear[30:35], ear[40] = 0.1, 0.065, 0.05, 0.05
    return ear


def test_blinks_from_landmarks_uses_the_given_reference_ratio_and_shortest_run():
    ear = _four_dips()
    # by default: closed below 0.7 x median 0.3 = 0.21, runs of >= 2 frames at 25 fps
    assert blinks_from_landmarks(_eye_landmarks(ear), 25.0).blinks == ((10, 15), (20, 25), (30, 35))
    # open_ear 0.1 and ratio 0.6: closed below 0.06 (not the median's 0.18, nor 0.7 x 0.1 = 0.07: 0.065 is open);
    # min_frames 1 keeps the one-frame dip
    given = blinks_from_landmarks(_eye_landmarks(ear), 25.0, open_ear=0.1, ratio=0.6, min_frames=1)
    assert given.blinks == ((30, 35), (40, 41))
    assert given.threshold == pytest.approx(0.06) and given.mean_duration == pytest.approx((5 + 1) / 2 / 25)


def test_blinks_from_frames_tracks_the_face_and_passes_its_settings_on(monkeypatch):
    """The landmarks come from the face tracker (detect_landmarks with video=True, replaced here by one that returns
    known landmarks); ratio, open_ear and min_frames reach the blink detection as in the test above."""
    import speechanim.align

    frames = np.zeros((50, 8, 8, 3), np.uint8)
    calls = []

    def tracker(clip, *, video=True, min_confidence=0.5):
        calls.append((clip, video))
        return _eye_landmarks(_four_dips()), np.ones(len(clip), bool)

    monkeypatch.setattr(speechanim.align, "detect_landmarks", tracker)
    assert blinks_from_frames(frames, 25.0).blinks == ((10, 15), (20, 25), (30, 35))
    given = blinks_from_frames(frames, 25.0, open_ear=0.1, ratio=0.6, min_frames=1)
    assert given.blinks == ((30, 35), (40, 41)) and given.open_ear == 0.1
    assert len(calls) == 2 and all(clip is frames and video is True for clip, video in calls)


def test_a_frame_rate_below_one_is_a_frame_rate():
    ear = np.array([0.3, 0.05, 0.3, 0.3])  # one frame every 2 s; the shortest blink is 1 frame (ceil(0.06 x 0.5))
    stats = blinks_from_landmarks(_eye_landmarks(ear), 0.5)
    assert (stats.count, stats.duration, stats.rate, stats.mean_duration) == (1, 8.0, 1 / 8, 2.0)


def test_a_clip_without_blinks_has_nan_duration_without_a_numpy_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would be one
        stats = blinks_from_landmarks(_eye_landmarks(np.full(10, 0.3)), FPS)
    assert stats.count == 0 and np.isnan(stats.mean_duration)


def test_eye_aspect_ratio_of_integer_scaled_and_degenerate_landmarks():
    ears = np.array([0.3, 0.2, 0.1])  # lids +-3, +-2, +-1 px: every point on whole pixels
    lm = _eye_landmarks(ears)
    # unsigned pixel coordinates: the lid differences (45 - 55) must not wrap around to 65526
    np.testing.assert_allclose(eye_aspect_ratio(np.rint(lm).astype(np.uint16)), ears, rtol=1e-12)
    # scale-free: mediapipe's normalised coordinates (corners 0.2 apart here) give the same EAR as pixels
    np.testing.assert_allclose(eye_aspect_ratio(lm / 100), ears, rtol=1e-12)
    with pytest.raises(ValueError, match=r"^landmarks must be \(T, 478, 2\) face-mesh points, got shape \(3, 478, 3\)$"):
        eye_aspect_ratio(np.concatenate([lm, np.zeros((3, N_LANDMARKS, 1))], axis=2))  # 3-D points
    # eye corners that coincide (a collapsed mesh) give NaN quietly, whatever numpy's error setting:
    # x / 0 with the lids apart (frame 0), 0 / 0 with every point at one place (frame 1)
    lm[0, EYE_INDICES[0][3]] = lm[0, EYE_INDICES[0][0]]
    lm[1] = 0.0
    with np.errstate(all="raise"):
        per_eye = eye_aspect_ratio(lm, per_eye=True)
    assert np.isnan(per_eye[0, 0]) and per_eye[0, 1] == pytest.approx(0.3) and np.isnan(per_eye[1]).all()


def test_a_float32_ear_is_compared_with_the_threshold_in_double_precision():
    # float32(0.7) = 0.69999999 is below the threshold 0.7 x 1.0 (compared in float32 it would equal it)
    ear = np.array([1.0, 1.0, 0.7, 0.7, 1.0], np.float32)
    assert find_blinks(ear, open_ear=1.0) == find_blinks(ear.astype(np.float64), open_ear=1.0) == [(2, 4)]


def _edge_frames() -> np.ndarray:
    """5 frames of 10 x 12 pixels, grey 0 everywhere but at the corner pixels (0, 0) and (9, 11):
    4 v_t, v = 0, 10, 20, 10, 0."""
    frames = np.zeros((5, 10, 12, 3), np.uint8)
    for t, level in enumerate([0, 10, 20, 10, 0]):
        frames[t, 0, 0] = frames[t, 9, 11] = 4 * level
    return frames


def _points_at(x: float, y: float) -> np.ndarray:
    lm = np.full((5, N_LANDMARKS, 2), np.nan)
    for eye in EYE_INDICES:
        lm[:, list(eye)] = [x, y]
    return lm


def test_eye_boxes_at_the_frames_edges_are_clipped_to_it():
    frames = _edge_frames()
    # points at the top-left pixel: the box is rows 0-1, columns 0-1, mean v_t; frames 1-4: std sqrt(50)
    assert eye_motion(frames, _points_at(0.0, 0.0)) == pytest.approx(np.sqrt(50))
    # at the bottom-right pixel (11, 9): rows 8-9, columns 10-11
    assert eye_motion(frames, _points_at(11.0, 9.0)) == pytest.approx(np.sqrt(50))
    # 1.5 px beyond the bottom-right corner: floor - 1 = the last column and row, one pixel, grey 4 v_t
    assert eye_motion(frames, _points_at(12.5, 10.5)) == pytest.approx(4 * np.sqrt(50))
    # 2.5 px beyond the right edge (or the bottom), on a row (column) inside: no pixel of the box is in the frame
    with pytest.raises(ValueError, match=r"^an eye's box \(12, 4\)-\(11, 6\) lies outside the 12 x 10 frame$"):
        eye_motion(frames, _points_at(13.5, 5.0))
    with pytest.raises(ValueError, match=r"^an eye's box \(4, 10\)-\(6, 9\) lies outside the 12 x 10 frame$"):
        eye_motion(frames, _points_at(5.0, 11.5))


def test_eye_motion_refuses_frames_that_are_not_rgb_and_eyes_never_found():
    with pytest.raises(ValueError, match=r"^frames must be uint8 RGB \(T, H, W, 3\), got uint8 \(5, 10, 12, 4\)$"):
        eye_motion(np.zeros((5, 10, 12, 4), np.uint8), _points_at(5.0, 5.0))  # RGBA
    with pytest.raises(ValueError, match=r"^the landmarks of an eye are NaN in every frame$"):
        eye_motion(_edge_frames(), _points_at(np.nan, np.nan))
