"""The synthetic corpus's face renderer and its speech-independent motion tracks."""
from __future__ import annotations

import numpy as np
import pytest

from speechanim.align import detect_landmarks
from speechanim.synth import motion
from speechanim.synth.face import (KEYPOINTS, FaceIdentity, FaceState, keypoints, lip_gap_px, random_identity, render,
                                   render_frames, states_from_arrays, states_to_arrays)

H, W = 288, 360
#: mediapipe FaceMesh: upper and lower lid of the eye on the image's left.
LID_UPPER, LID_LOWER = 159, 145


def identities(n: int, first: int = 0) -> list[FaceIdentity]:
    return [random_identity(np.random.default_rng(first + i)) for i in range(n)]


def mp_gap(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[..., 14, :] - landmarks[..., 13, :], axis=-1)


# --------------------------------------------------------------------------------------------------
# Rendering


def test_render_format_and_determinism():
    idt = random_identity(np.random.default_rng(0))
    state = FaceState(jaw_open=0.6, roll=3.0, yaw=-2.0, tx=4.0, eye_open=0.5)
    img = render(idt, state)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert np.array_equal(img, render(idt, state))  # deterministic
    assert np.array_equal(img, render(random_identity(np.random.default_rng(0)), state))
    assert img.std() > 20  # a picture, not a flat colour
    small = render(idt, state, height=144, width=180)
    assert small.shape == (144, 180, 3)


def test_identities_differ():
    a, b = identities(2)
    assert a != b
    diff = np.abs(render(a).astype(int) - render(b).astype(int)).mean()
    assert diff > 10, diff
    assert len({i.skin for i in identities(12)}) > 6
    assert len({i.hair_style for i in identities(12)}) >= 3


def test_identity_round_trip():
    idt = random_identity(np.random.default_rng(5))
    again = FaceIdentity.from_dict(idt.to_dict())
    assert again == idt and np.array_equal(render(again), render(idt))
    with pytest.raises(ValueError, match="no field"):
        FaceIdentity.from_dict({"horns": 2})


def test_states_arrays_round_trip():
    states = [FaceState(jaw_open=0.1 * i, eye_open=1 - 0.1 * i, tx=i) for i in range(5)]
    arrays = states_to_arrays(states)
    assert set(arrays) == set(FaceState.names()) and all(len(v) == 5 for v in arrays.values())
    assert states_from_arrays(arrays) == [FaceState(**{k: float(np.float32(getattr(s, k))) for k in FaceState.names()})
                                          for s in states]
    partial = states_from_arrays({"jaw_open": np.array([0.0, 1.0])})
    assert partial[1] == FaceState(jaw_open=1.0)
    with pytest.raises(ValueError, match="no field"):
        states_from_arrays({"smile": np.zeros(3)})
    with pytest.raises(ValueError, match="lengths"):
        states_from_arrays({"tx": np.zeros(3), "ty": np.zeros(4)})


def test_drawn_mouth_follows_jaw_open():
    idt = random_identity(np.random.default_rng(1))
    gaps = [lip_gap_px(idt, FaceState(jaw_open=j)) for j in np.linspace(0, 1, 6)]
    assert gaps[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(gaps) > 0) and gaps[-1] > 15
    # the open mouth shows more dark inner-mouth pixels than the closed one
    mouth = keypoints(idt, FaceState(jaw_open=1.0))
    x, y = mouth["lip_upper_inner"].round().astype(int)
    box = (slice(y - 5, y + 25), slice(x - 25, x + 25))
    dark = [(render(idt, FaceState(jaw_open=j))[box].max(axis=2) < 80).sum() for j in (0.0, 0.5, 1.0)]
    assert dark[0] < dark[1] < dark[2], dark


def test_pose_moves_the_face():
    idt = random_identity(np.random.default_rng(2))
    still = keypoints(idt)
    moved = keypoints(idt, FaceState(tx=7.0, ty=-3.0))
    for name in KEYPOINTS:
        assert np.allclose(moved[name] - still[name], [7.0, -3.0])
    rolled = keypoints(idt, FaceState(roll=10.0))
    eyes = rolled["eye_right"] - rolled["eye_left"]
    assert np.degrees(np.arctan2(eyes[1], eyes[0])) == pytest.approx(10.0, abs=0.01)
    bigger = keypoints(idt, FaceState(scale=1.1))
    ratio = np.linalg.norm(bigger["chin"] - bigger["eye_left"]) / np.linalg.norm(still["chin"] - still["eye_left"])
    assert ratio == pytest.approx(1.1, rel=1e-6)
    turned = keypoints(idt, FaceState(yaw=5.0))  # the nose (deepest point) moves more than the eyes
    assert turned["nose_tip"][0] - still["nose_tip"][0] > turned["eye_left"][0] - still["eye_left"][0] > 0


def test_light_gain_scales_brightness():
    idt = random_identity(np.random.default_rng(3))
    base = render(idt).astype(float).mean()
    assert render(idt, FaceState(light_gain=1.1)).astype(float).mean() == pytest.approx(1.1 * base, rel=0.02)
    turned = render(idt, FaceState(light_turn=np.pi)).astype(float)
    assert np.abs(turned - render(idt).astype(float)).mean() > 2  # the shading moves with the light


def test_blink_hides_the_eyes():
    idt = random_identity(np.random.default_rng(4))
    x, y = keypoints(idt)["eye_left"].round().astype(int)
    box = (slice(y - 8, y + 8), slice(x - 16, x + 16))

    def sclera(img: np.ndarray) -> int:  # bright, unsaturated pixels
        return int(((img.min(axis=2) > 160) & (img.max(axis=2) - img.min(axis=2) < 25)).sum())

    assert sclera(render(idt)[box]) > 8
    assert sclera(render(idt, FaceState(eye_open=0.0))[box]) == 0


# --------------------------------------------------------------------------------------------------
# What mediapipe sees (the requirement: detected in >= 99 % of frames, inner lips follow the mouth)


@pytest.fixture(scope="module")
def detected():
    """Random identities in neutral and extreme states, detected frame by frame (static mode)."""
    states = [FaceState(), FaceState(jaw_open=0.5), FaceState(jaw_open=1.0, lip_width=1.0),
              FaceState(jaw_open=0.3, lip_round=1.0, eye_open=0.0, brow_raise=1.0),
              FaceState(jaw_open=0.1, lip_tuck=1.0, brow_frown=1.0, gaze_x=1.0),
              FaceState(jaw_open=0.8, tx=9.0, ty=-7.0, roll=-7.0, yaw=6.0, pitch=-5.0, scale=1.06, light_gain=0.9)]
    faces = identities(16, first=100)
    frames = np.stack([render(idt, st) for idt in faces for st in states])
    landmarks, found = detect_landmarks(frames, video=False)
    drawn = np.array([lip_gap_px(idt, st) for idt in faces for st in states])
    return faces, states, landmarks.reshape(len(faces), len(states), -1, 2), found.reshape(len(faces), len(states)), \
        drawn.reshape(len(faces), len(states))


def test_mediapipe_finds_every_face(detected):
    _, _, _, found, _ = detected
    assert found.mean() >= 0.99, f"found {found.sum()} of {found.size}"


def test_mediapipe_inner_lips_follow_the_drawn_mouth(detected):
    _, _, landmarks, found, drawn = detected
    gap = mp_gap(landmarks)
    assert np.nanmean(gap[:, 0]) < 3.0  # closed
    assert np.nanmean(gap[:, 2]) > 15.0  # wide open
    assert np.nanmean(gap[:, 1]) > 2.5 * np.nanmean(gap[:, 0])
    r = np.corrcoef(gap[found], drawn[found])[0, 1]
    assert r > 0.9, r
    # within 3 px of the drawn gap on average: the 13-14 distance measures the drawn opening
    assert np.nanmean(np.abs(gap - drawn)) < 3.0


def test_keypoints_match_mediapipe(detected):
    faces, states, landmarks, found, _ = detected
    errors = {name: [] for name in KEYPOINTS}
    for f, idt in enumerate(faces):
        for s, st in enumerate(states):
            if found[f, s]:
                kp = keypoints(idt, st)
                for name, index in KEYPOINTS.items():
                    errors[name].append(np.linalg.norm(kp[name] - landmarks[f, s, index]))
    for name, e in errors.items():
        assert np.mean(e) < 4.0, (name, np.mean(e))


def test_mediapipe_sees_blinks(detected):
    _, states, landmarks, _, _ = detected
    lids = np.linalg.norm(landmarks[:, :, LID_UPPER] - landmarks[:, :, LID_LOWER], axis=-1)
    closed = [i for i, st in enumerate(states) if st.eye_open == 0.0]
    opened = [i for i, st in enumerate(states) if st.eye_open == 1.0]
    assert np.nanmean(lids[:, closed]) < 0.4 * np.nanmean(lids[:, opened])


# --------------------------------------------------------------------------------------------------
# Motion tracks


def test_motion_tracks_format_and_determinism():
    style = motion.random_style(np.random.default_rng(0))
    a = motion.motion_tracks(np.random.default_rng(1), style, 75, 25.0)
    b = motion.motion_tracks(np.random.default_rng(1), style, 75, 25.0)
    assert set(a.tracks) == set(motion.MOTION_FIELDS) <= set(FaceState.names())
    for name, values in a.tracks.items():
        assert values.shape == (75,) and values.dtype == np.float32, name
        assert np.array_equal(values, b.tracks[name]), name
        assert np.all(np.isfinite(values))
    assert a.blinks == b.blinks
    c = motion.motion_tracks(np.random.default_rng(2), style, 75, 25.0)
    assert not np.array_equal(a.tracks["tx"], c.tracks["tx"])
    frames = render_frames(random_identity(np.random.default_rng(0)), states_from_arrays(a.tracks), 144, 180)
    assert frames.shape == (75, 144, 180, 3)
    with pytest.raises(ValueError):
        motion.motion_tracks(np.random.default_rng(0), style, 0, 25.0)


def test_random_styles_stay_in_their_ranges():
    styles = [motion.random_style(np.random.default_rng(i)) for i in range(50)]
    rates = np.array([s.blink_rate_hz for s in styles])
    assert rates.min() >= 0.2 and rates.max() <= 0.5 and rates.std() > 0.05
    for s in styles:
        assert s.blink_min_s == 0.1 and s.blink_max_s == 0.3


def test_blinks_rate_duration_and_shape():
    """Blinks: ~rate per second, 100-300 ms, every blink with a fully shut frame, eyes open otherwise."""
    fps, n = 25.0, 75
    style = motion.MotionStyle(blink_rate_hz=0.35)
    t = motion.frame_times(n, fps)
    counts, lengths = [], []
    for seed in range(300):
        m = motion.motion_tracks(np.random.default_rng(seed), style, n, fps)
        eye = m.tracks["eye_open"]
        assert eye.min() >= 0.0 and eye.max() <= 1.0
        inside = np.zeros(n, bool)
        for start, end in m.blinks:
            lengths.append(end - start)
            during = (t >= start) & (t < end)
            inside |= during
            if start >= 0 and end <= n / fps:  # whole blinks within the clip show a shut frame
                assert eye[during].min() == pytest.approx(0.0, abs=1e-6), (seed, start, end)
        assert np.all(eye[~inside] == 1.0)
        counts.append(sum(1 for s, _ in m.blinks if 0 <= s < n / fps))
    rate = np.mean(counts) / (n / fps)
    # the refractory gap after each blink lowers the rate a little below the Poisson rate
    assert 0.25 <= rate <= 0.4, rate
    assert min(lengths) >= 0.1 and max(lengths) <= 0.3


def test_blink_closure_profile():
    t = np.linspace(0, 0.2, 201)
    c = motion.blink_closure(t, 0.0, 0.2, 25.0)
    assert c[0] == 0.0 and c.max() == 1.0
    shut = t[c == 1.0]
    assert shut.max() - shut.min() >= 0.04 - 1e-3  # held for a frame
    assert shut.min() < 0.2 - shut.max()  # closes faster than it opens


def test_smooth_noise_amplitude_and_smoothness():
    rng = np.random.default_rng(0)
    x = np.concatenate([motion.smooth_noise(rng, 75, 25.0, 2.0, 0.7) for _ in range(400)])
    assert x.std() == pytest.approx(2.0, rel=0.15)
    one = motion.smooth_noise(np.random.default_rng(1), 75, 25.0, 2.0, 0.7)
    assert np.abs(np.diff(one)).max() < 0.5  # sways, does not jitter


def test_brows_and_gaze_move_sometimes():
    style = motion.MotionStyle(brow_rate_hz=0.3, frown_rate_hz=0.1, gaze_spread=0.3)
    tracks = [motion.motion_tracks(np.random.default_rng(s), style, 75, 25.0).tracks for s in range(40)]
    raised = np.mean([t["brow_raise"].max() > 0.2 for t in tracks])
    frowned = np.mean([t["brow_frown"].max() > 0.1 for t in tracks])
    assert 0.3 < raised < 1.0 and 0.05 < frowned < 0.8
    for t in tracks:
        assert 0.0 <= t["brow_raise"].min() and t["brow_raise"].max() <= 1.0
        assert np.abs(t["gaze_x"]).max() <= 1.0
        assert len(np.unique(t["gaze_x"])) <= 12  # fixations: few distinct values
