"""ACD (paper section 4.2) with dlib's face descriptor, on real faces.

dlib's descriptor takes ~0.2 s a frame on one core, so these tests embed few frames.
"""
from __future__ import annotations

import importlib

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from speechanim.align import align_image, align_video
from speechanim.media import read_video
from speechanim.metrics.acd import DESCRIPTOR_SIZE, SAME_PERSON_THRESHOLD, acd, embed, face_box, model_paths


@pytest.fixture(scope="module")
def aligned(grid_mini):
    """First 40 aligned 128 x 96 frames of three real GRID speakers (two men, one woman)."""
    out = {}
    for name in ("bbaf2n", "brbk7n", "lwbsza"):
        frames, _ = read_video(grid_mini / f"{name}.mpg")
        out[name] = align_video(frames[:40], name=name).frames
    return out


def test_model_files_ship_with_the_package():
    paths = model_paths()
    assert paths["recognition"].name == "dlib_face_recognition_resnet_model_v1.dat"
    assert all(p.stat().st_size > 1_000_000 for p in paths.values())


def test_missing_model_package_or_file_says_what_to_install(monkeypatch, tmp_path):
    """Without face-recognition-models (no spec, or a spec that is not a package) or with one of its two
    files gone, model_paths says which package to install or which file is missing."""
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec
    spec = {"face_recognition_models": None}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec[name] if name in spec else real(name, *a))
    need = r"^ACD needs the package face-recognition-models==0\.3\.0 \(dlib's face models\): pip install it$"
    with pytest.raises(RuntimeError, match=need):
        model_paths()
    spec["face_recognition_models"] = importlib.machinery.ModuleSpec("face_recognition_models", None)  # a module
    with pytest.raises(RuntimeError, match=need):
        model_paths()
    package = importlib.machinery.ModuleSpec("face_recognition_models", None, is_package=True)
    package.submodule_search_locations.append(str(tmp_path))
    spec["face_recognition_models"] = package
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "shape_predictor_5_face_landmarks.dat").write_bytes(b"x")
    gone = tmp_path / "models" / "dlib_face_recognition_resnet_model_v1.dat"
    with pytest.raises(RuntimeError) as err:
        model_paths()
    assert str(err.value) == f"{gone}: dlib model file missing; reinstall face-recognition-models==0.3.0"
    gone.write_bytes(b"x")
    assert model_paths() == {"shape_predictor": tmp_path / "models" / "shape_predictor_5_face_landmarks.dat",
                             "recognition": gone}


def test_detector_finds_the_face_in_small_aligned_crops(aligned):
    boxes = {face_box(clip[i]) for clip in aligned.values() for i in (0, 20, 39)}
    assert None not in boxes
    for left, top, right, bottom in boxes:  # inside the 96 x 128 crop, a face-sized square
        assert 0 <= left < right <= 95 and 0 <= top < bottom <= 127
        assert 70 <= right - left <= 96 and 70 <= bottom - top <= 100


def test_same_person_is_much_closer_than_another_person(aligned):
    still = aligned["bbaf2n"][0]
    same = acd(still, aligned["bbaf2n"][8::8])  # 4 later frames of the same clip
    other_man = acd(still, aligned["brbk7n"][8::8])
    woman = acd(still, aligned["lwbsza"][8::8])
    assert same < 0.3 < SAME_PERSON_THRESHOLD < min(other_man, woman)
    assert min(other_man, woman) > 2.5 * same


def test_embed_shapes_and_box_choices(aligned):
    frames = aligned["lwbsza"][:2]
    detected = embed(frames)
    assert detected.shape == (2, DESCRIPTOR_SIZE) and np.isfinite(detected).all()
    whole = embed(frames, box="frame")
    fixed = embed(frames, box=face_box(frames[0]))
    # the whole crop as the face rectangle gives nearly the same descriptor as the detected box
    assert np.linalg.norm(whole - detected, axis=1).max() < 0.2
    np.testing.assert_allclose(fixed[0], detected[0])
    # one image is a clip of one frame; the distance to itself is 0
    assert embed(frames[0], box="frame").shape == (1, DESCRIPTOR_SIZE)
    assert acd(frames[0], frames[:1]) == pytest.approx(0.0, abs=1e-9)


def test_frame_step_uses_every_kth_frame(aligned):
    still, frames = aligned["brbk7n"][0], aligned["brbk7n"][10:14]
    box = face_box(still)
    per_frame = np.linalg.norm(embed(frames, box=box) - embed(still, box=box)[0], axis=1)
    assert acd(still, frames, frame_step=3) == pytest.approx(per_frame[::3].mean())  # frames 0 and 3
    assert acd(still, frames, box=box) == pytest.approx(per_frame.mean())


def test_photos_mirror_and_another_person():
    astronaut = skimage.data.astronaut()
    mirror = np.ascontiguousarray(astronaut[:, ::-1])
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    # unaligned photos: the detector finds each face
    e = embed(np.stack([astronaut, mirror]), box="detect")
    (e_hopper,) = embed(hopper, box="detect")
    assert np.linalg.norm(e[0] - e[1]) < 0.35 < SAME_PERSON_THRESHOLD < np.linalg.norm(e[0] - e_hopper)
    # aligned to the canonical 128 x 96 face, as the generator's stills are
    crops = [align_image(img, name=n).frames[0] for img, n in ((astronaut, "astronaut"), (mirror, "mirror"), (hopper, "hopper"))]
    assert acd(crops[0], crops[1][None]) < 0.35 < SAME_PERSON_THRESHOLD < acd(crops[0], crops[2][None])


def test_errors_name_the_problem(aligned):
    frames = aligned["bbaf2n"][:2]
    flat = np.full((2, 128, 96, 3), 128, np.uint8)
    with pytest.raises(ValueError, match="no face found .* 2 of 2 frames: 0, 1"):
        embed(flat, box="detect")
    assert face_box(flat[0]) is None
    with pytest.raises(ValueError, match="differ in size"):
        acd(frames[0], np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="box must be"):
        embed(frames, box="whole")
    with pytest.raises(ValueError, match="uint8 RGB"):
        embed(frames.astype(np.float32))
    with pytest.raises(ValueError, match="frame_step"):
        acd(frames[0], frames, frame_step=0)


def test_identical_frames_are_described_once(aligned, monkeypatch):
    """The still-image control repeats one frame: dlib describes it once, and every copy gets its descriptor."""
    acd_module = importlib.import_module("speechanim.metrics.acd")  # the package's `acd` is the function
    detector, predictor, recogniser = acd_module._dlib_models()
    calls = []

    class Counting:
        def compute_face_descriptor(self, frame, shape):
            calls.append(frame.tobytes())
            return recogniser.compute_face_descriptor(frame, shape)

    monkeypatch.setattr(acd_module, "_dlib_models", lambda: (detector, predictor, Counting()))
    clip = aligned["bbaf2n"]
    frames = np.stack([clip[0], clip[5], clip[0], clip[5], clip[0]])
    out = embed(frames, box="frame")
    assert len(calls) == 2 and len(set(calls)) == 2
    np.testing.assert_array_equal(out[2], out[0])
    np.testing.assert_array_equal(out[3], out[1])
    calls.clear()
    assert acd(clip[0], np.stack([clip[0]] * 6), frame_step=1) == 0.0  # the still repeated: one description
    assert len(calls) == 1


class _FakeDlib:
    """Stand-ins for dlib's detector, shape predictor and descriptor, recording what they are given: the
    descriptor of a frame is (its mean grey level, 0, ..., 0), so distances are known by hand."""

    def __init__(self, boxes_at=None):
        self.boxes_at = boxes_at or {}  # upsample -> [(rect, score)]
        self.runs, self.rects = [], []

    def run(self, image, upsample, threshold):
        self.runs.append((upsample, threshold))
        found = self.boxes_at.get(upsample, [])
        return [r for r, _ in found], [s for _, s in found], [0] * len(found)

    def __call__(self, frame, rect):  # the shape predictor
        self.rects.append((rect.left(), rect.top(), rect.right(), rect.bottom()))
        return "shape"

    def compute_face_descriptor(self, frame, shape):
        out = np.zeros(DESCRIPTOR_SIZE)
        out[0] = frame.mean()
        return out


@pytest.fixture()
def fake_dlib(monkeypatch):
    import dlib

    acd_module = importlib.import_module("speechanim.metrics.acd")
    fake = _FakeDlib({1: [(dlib.rectangle(1, 2, 30, 40), 0.2), (dlib.rectangle(3, 4, 50, 60), 0.9)]})
    monkeypatch.setattr(acd_module, "_dlib_models", lambda: (fake, fake, fake))
    return fake


def test_acd_is_the_mean_distance_to_the_stills_descriptor(fake_dlib):
    """Frames of grey levels 10, 13, 14 and 10 against a still of 10: distances 0, 3, 4, 0, mean 7 / 4;
    every 2nd frame (10, 14): 2; every 3rd (10, 10): 0."""
    still = np.full((64, 48, 3), 10, np.uint8)
    frames = np.stack([np.full((64, 48, 3), v, np.uint8) for v in (10, 13, 14, 10)])
    assert acd(still, frames) == pytest.approx(7 / 4)
    assert acd(still, frames, frame_step=2) == pytest.approx(2.0)
    assert acd(still, frames, frame_step=3) == pytest.approx(0.0)
    # the box: detected in the still (dlib found nothing at upsample 0, two faces at 1: the best scoring one)
    assert fake_dlib.runs[:2] == [(0, 0.0), (1, 0.0)] and set(fake_dlib.rects) == {(3, 4, 50, 60)}
    fake_dlib.rects.clear()
    assert acd(still, frames, box="frame") == pytest.approx(7 / 4)
    assert set(fake_dlib.rects) == {(0, 0, 47, 63)}  # the whole frame, right and bottom inclusive
    fake_dlib.boxes_at.clear()  # no face in the still: the whole frame
    fake_dlib.rects.clear()
    assert acd(still, frames) == pytest.approx(7 / 4) and set(fake_dlib.rects) == {(0, 0, 47, 63)}
    big = np.full((1, 80, 60, 3), 13, np.uint8)  # another size: described apart with its own box
    assert acd(still, big, box="frame") == pytest.approx(3.0)


def test_embed_checks_the_box_and_names_the_frames_without_a_face(fake_dlib):
    frames = np.stack([np.full((64, 48, 3), v, np.uint8) for v in range(12)])
    out = embed(frames, box=(2, 3, 40, 50))
    assert out.shape == (12, DESCRIPTOR_SIZE) and out[:, 0].tolist() == list(range(12))
    assert set(fake_dlib.rects) == {(2, 3, 40, 50)}
    embed(frames[:1], box=(0, 0, 1, 1))  # the smallest box
    for box in ((2, 3, 2, 50), (2, 3, 40, 3), (-1, 3, 40, 50), (2, -1, 40, 50)):
        with pytest.raises(ValueError, match=r"^box \(.*\) is empty or outside the frame$"):
            embed(frames, box=box)
    with pytest.raises(ValueError, match=r"^box must be \(left, top, right, bottom\), got \(1, 2, 3\)$"):
        embed(frames, box=(1, 2, 3))
    with pytest.raises(ValueError, match=r"^box must be 'detect', 'frame' or \(left, top, right, bottom\), got 'face'$"):
        embed(frames, box="face")
    fake_dlib.boxes_at.clear()
    with pytest.raises(ValueError, match=r"^no face found by dlib's detector in 12 of 12 frames: 0, 1, 2, 3, 4, 5, 6, 7, "
                                         r"8, 9 \.\.\.$"):
        embed(frames, box="detect")
    with pytest.raises(ValueError, match=r"in 10 of 10 frames: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9$"):
        embed(frames[:10], box="detect")
    with pytest.raises(ValueError, match=r"in 11 of 11 frames: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 \.\.\.$"):
        embed(frames[:11], box="detect")  # more than 10: the first 10 and " ..."
    with pytest.raises(ValueError, match=r"^frames must be uint8 RGB \(T, H, W, 3\) or one image \(H, W, 3\), got "
                                         r"uint8 \(1, 12, 64, 48\)$"):
        embed(frames[..., 0])  # 3-D is one image: (H, W, 3) is what it must be
    with pytest.raises(ValueError, match=r"^frames: no frames$"):
        embed(frames[:0])
    with pytest.raises(ValueError, match=r"^still must be one image \(H, W, 3\), got 2 frames$"):
        acd(frames[:2], frames)
    with pytest.raises(ValueError, match=r"^still must be uint8 RGB \(T, H, W, 3\) or one image \(H, W, 3\), got "
                                         r"float32 \(1, 64, 48, 3\)$"):
        acd(frames[0].astype(np.float32), frames)  # the message names the argument that is wrong
    with pytest.raises(ValueError, match=r"^image must be uint8 RGB"):
        face_box(frames[0, ..., 0])
    with pytest.raises(ValueError, match=r"^frames \(64, 48\) and still \(32, 48\) differ in size: pass box='detect' "
                                         r"to find the face in each$"):
        acd(frames[0, :32], frames)
    with pytest.raises(ValueError, match=r"^frame_step must be >= 1, got 0$"):
        acd(frames[0], frames, frame_step=0)
