"""A converted authors' model runs the authors' pipeline (issue 30), the project's own models keep theirs.

The authors' ``VideoAnimator`` (DinoMan/speech-driven-animation, sda/sda.py) prepares its inputs and
scales its output its own way. :func:`authors_windows` and :func:`authors_frames` below are this
test's own implementation of that, written from reading their code (not calling this project's):

* an array ``(samples, channels)`` is cut to its first channel, a file's channels are averaged
  (their pydub ``set_channels(1)``); integers are divided by their dtype's maximum (32767 for int16);
* audio at another rate is resampled over the whole signal with ``scipy.signal.resample`` (FFT) to
  ``int(samples * audio_rate / rate)`` samples;
* windows of ``audio_feat_samples``, ``int(audio_rate / video_rate)`` apart, the signal padded with
  ``(feat - stride) // 2`` zeros before and the rest after, ``(padded - feat) // stride + 1`` of them;
* frames ``125 * G + 125`` (0 to 250; this project's own models: ``127.5 * (G + 1)``).

The network is the authors' written out with torch.nn.functional (``test_sda.authors_forward``) on
a small ``.dat`` built from their layer definitions (``test_sda.fake_dat``), at GRID's 50 kHz.
Tolerance: 1 grey level (uint8 rounding of floats that agree to ~1e-5).
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import torch

from speechanim.align import (STABLE_POINTS, STABLE_POINTS_68, AlignConfig, align_image, detect_landmarks,
                             estimate_transforms, load_template, stable_positions)
from speechanim.animate import Animator
from speechanim.audio import frame_audio, normalise, resample
from speechanim.checkpoint import CheckpointError, load_checkpoint
from speechanim.generate import ImportedAdapter, to_uint8
from speechanim.media import ffmpeg_exe, read_video
from speechanim.packing import to_unit_range
from speechanim.sda import convert_file
from test_sda import AUTHORS_AUDIO, SETTINGS as SMALL, authors_forward, fake_dat, lively
from tiny_generator import tiny_generator_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE, FPS, FEAT = 50000, 25, 10000  # the released GRID model's audio_rate, video_rate, audio_feat_samples
CLIP = "bbaf2n"
SEED = 5
#: Their audio CNN at 50 kHz, 0.2 s: the first conv 250 samples (5 ms) at stride 50 (1 ms) over 10000 samples,
#: padded 100 a side (utils.calculate_padding's (ceil(10000 / 50) - 1) 50 + 250 - 10000 = 200, halved);
#: then the 200 steps left go as at 16 kHz (strides 2, 2, 2, 5, then the full-length conv).
AUDIO_LAYERS_50K = [(50, 100), *AUTHORS_AUDIO[1:]]


def authors_windows(audio: np.ndarray, rate: int, *, from_file: bool = False) -> np.ndarray:
    """The authors' audio windows ``(T, FEAT)`` float32 for ``audio`` (integers) at ``rate``."""
    if audio.ndim == 2:
        audio = audio.mean(axis=1) if from_file else audio[:, 0]
        top = 32767.0  # a file reaches them as int16 samples
    else:
        top = float(np.iinfo(audio.dtype).max) if audio.dtype.kind == "i" else 1.0  # floats: as they are
    if rate != RATE:
        audio = scipy.signal.resample(audio, int(len(audio) * RATE / float(rate)))
    speech = (np.asarray(audio, np.float64) / top).astype(np.float32)
    stride = int(RATE / float(FPS))
    pad = FEAT - stride
    padded = np.concatenate([np.zeros(pad // 2, np.float32), speech, np.zeros(pad - pad // 2, np.float32)])
    count = (len(padded) - FEAT) // stride + 1
    return np.stack([padded[k * stride:k * stride + FEAT] for k in range(count)])


def authors_frames(d: dict, still: np.ndarray, windows: np.ndarray, noise: torch.Tensor) -> np.ndarray:
    """Their networks on an aligned ``still`` (H, W, 3) uint8 and ``windows``: ``125 * G + 125``, (T, H, W, 3) float."""
    image = torch.from_numpy(still.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        _, video = authors_forward(d, image, torch.from_numpy(windows)[None], noise[None], AUDIO_LAYERS_50K)
    return (125 * video[0] + 125).permute(0, 2, 3, 1).numpy()


def hears_audio(d: dict) -> dict:
    """Make a :func:`test_sda.lively` model's frames depend on its audio, in place: with random weights
    they hardly do (the still's skips and z_id dominate: speech against silence moved them by 0.03 grey
    levels), so neither the resampling nor the channel would show in them. The audio CNN's first conv x30,
    the audio GRU x10 and the decoder's z_c inputs x4: speech against silence 8.8 grey levels, FFT against
    polyphase resampling up to 4.9 (this clip, 44.1 kHz into 50 kHz). Returns ``d``."""
    d["encoder"]["encoder.cl.0.weight"] *= 30
    for key, value in d["encoder"].items():
        if key.startswith("rnn."):
            value *= 10
    d["generator"]["dcl.0.0.weight"][:SMALL["rnn_gen_dim"]] *= 4  # their latent is [z_c, z_n, z_id]
    return d


def stereo_pcm(path, rate: int) -> np.ndarray:
    """A file's first audio track as int16 ``(samples, 2)`` at ``rate`` (what scipy's wavfile gives)."""
    run = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
                          "-ac", "2", "-ar", str(rate), "-"], capture_output=True, check=True)
    return np.frombuffer(run.stdout, "<i2").reshape(-1, 2)


@pytest.fixture(scope="module")
def sda(tmp_path_factory, grid_mini):
    """A converted GRID-rate model, the authors' state dicts it came from, a real still, and the clip's
    track as int16 stereo arrays at 44.1 kHz (its own rate) and at the model's 50 kHz. GRID's two channels
    are near copies: the second is replaced by the first reversed and halved, so the channel choice shows."""
    d = tmp_path_factory.mktemp("sda")
    src = fake_dat(d / "grid.dat", audio_rate=RATE, audio_feat_samples=FEAT)
    state = hears_audio(lively(torch.load(src, weights_only=False)))
    torch.save(state, src, _use_new_zipfile_serialization=False)
    animator = Animator(convert_file(src, d / "grid.pt"), device="cpu")
    frames, _ = read_video(grid_mini / f"{CLIP}.mpg")
    tracks = {}
    for rate in (44100, RATE):
        pcm = stereo_pcm(grid_mini / f"{CLIP}.mpg", rate)
        tracks[rate] = np.stack([pcm[:, 0], pcm[::-1, 0] // 2], axis=1)
    return animator, state, frames[0], tracks


def noise_for(animator: Animator, n: int) -> torch.Tensor:
    """The noise the animator draws for ``n`` frames from SEED (the same draws on both sides)."""
    return animator.generator.sample_noise(1, n, torch.device("cpu"), torch.Generator().manual_seed(SEED))[0]


def against_authors(animator, state, face, audio, rate, **kw) -> tuple[np.ndarray, np.ndarray]:
    """(our uint8 frames, the authors' float frames) for ``audio`` (an array, or a file with ``rate`` its own)."""
    ours = animator(face, audio, None if "from_file" in kw else rate, seed=SEED)
    samples = stereo_pcm(audio, rate) if "from_file" in kw else audio
    windows = authors_windows(samples, rate, **kw)
    theirs = authors_frames(state, animator.align(face), windows, noise_for(animator, len(windows)))
    return ours, theirs


@pytest.mark.parametrize("rate", [44100, RATE])
def test_converted_model_gives_the_authors_frames(sda, rate):
    """Stereo int16 arrays at 44.1 kHz (GRID's own rate) and at the model's 50 kHz: the authors' frames
    to 1 grey level, from the same windows (to float32 rounding)."""
    animator, state, face, tracks = sda
    audio = tracks[rate]
    ours, theirs = against_authors(animator, state, face, audio, rate)
    assert ours.shape == theirs.shape and len(ours) == int(len(audio) * RATE / rate) // (RATE // FPS)
    assert theirs.std() > 10 and theirs.min() >= 0.0 and theirs.max() <= 250.0
    assert np.abs(ours - theirs).max() <= 1.0
    np.testing.assert_allclose(animator.prepare_audio(audio, rate), authors_windows(audio, rate), atol=1e-6, rtol=0)


def test_converted_model_gives_the_authors_frames_from_a_file(sda, tmp_path):
    """A 44.1 kHz stereo WAV file: its channels averaged (their pydub ``set_channels(1)``), FFT-resampled."""
    animator, state, face, tracks = sda
    wav = tmp_path / "speech.wav"
    scipy.io.wavfile.write(wav, 44100, tracks[44100])
    ours, theirs = against_authors(animator, state, face, wav, 44100, from_file=True)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1.0


def test_a_stream_resamples_as_it_comes_and_says_by_how_much(sda):
    """Audio arriving in chunks cannot be FFT-resampled (that needs the whole recording): the stream
    resamples it polyphase as it comes (speechanim.stream.StreamResampler), which moves this model's
    frames from the authors' by up to 5.3 grey levels (mean 0.29 against 0.25 of rounding alone; 99% of
    values within 1), with this deliberately audio-sensitive model, 44.1 kHz into 50 kHz. At the model's
    rate nothing is resampled and the stream gives the authors' frames."""
    animator, state, face, tracks = sda
    for rate, worst, mean in ((44100, 6.0, 0.35), (RATE, 1.0, 0.26)):
        audio = tracks[rate]
        chunks = (audio[i:i + 3000] for i in range(0, len(audio), 3000))  # (samples, 2) int16 chunks
        streamed = np.stack(list(animator.stream(face, chunks, rate, seed=SEED, gain=1.0)))
        windows = authors_windows(audio, rate)
        theirs = authors_frames(state, animator.align(face), windows, noise_for(animator, len(windows)))
        diff = np.abs(streamed - theirs)
        assert streamed.shape == theirs.shape
        assert diff.max() <= worst and diff.mean() <= mean, (rate, diff.max(), diff.mean())


def test_the_dag_path_prepares_packed_clips_the_authors_way(sda, grid_mini):
    """``pretrained:`` (speechanim.generate.ImportedAdapter): the packed audio FFT-resampled to the
    model's rate with their padding, the still moved by the authors' stable points, frames 125 G + 125."""
    import h5py

    animator, _, face, _ = sda
    payload = load_checkpoint(animator.checkpoint)
    still = align_image(face, AlignConfig(size=(64, 48))).frames[0]  # a packed still: this project's alignment
    audio = normalise(stereo_pcm(grid_mini / f"{CLIP}.mpg", 8000)[:, 0] / 32767.0)  # packed: 8 kHz, peak 1
    with h5py.File("in-memory.h5", "w", driver="core", backing_store=False) as h5:
        g = h5.create_group("s1/clip")
        g["frames"] = np.repeat(still.transpose(2, 0, 1)[None], 75, 0)
        g["audio"] = audio
        g.attrs.update(sample_rate=8000, fps=25.0)
        adapter = ImportedAdapter(animator.generator, payload, g, animator.checkpoint)
        item = adapter.inputs({"key": "s1/clip", "audio": torch.zeros(74, 1)}, g)
    np.testing.assert_allclose(item["audio"].numpy(), authors_windows(audio, 8000)[:74], atol=1e-6, rtol=0)
    expected = estimate_transforms(stable_positions(load_template((64, 48)).points, STABLE_POINTS_68)[None],
                                   np.asarray(payload["alignment"]["stable_points"]))[0]
    np.testing.assert_allclose(adapter.forward, expected)
    g = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert to_uint8(g, authors=True).tolist() == [0, 62, 125, 188, 250]  # theirs: 125 G + 125, rounded
    assert to_uint8(g).tolist() == [0, 64, 128, 191, 255]  # this project's: 127.5 (G + 1)


def test_settings_stored_as_numpy_numbers_load_without_trust(tmp_path, sda):
    """The authors' loader takes settings stored as numpy numbers; the safe loader makes them Python
    numbers (no --trust-checkpoint), and still refuses a numpy scalar of another kind."""
    src = fake_dat(tmp_path / "numpy.dat", audio_rate=np.int64(16000), video_rate=np.int32(25),
                   audio_feat_len=np.float64(0.2), audio_feat_samples=np.int64(3200), id_enc_dim=np.int64(12),
                   sequential_noise=np.bool_(True), img_size=(np.int64(64), np.int64(48)))
    d = load_checkpoint(src)
    assert type(d["audio_rate"]) is int and type(d["audio_feat_len"]) is float and d["sequential_noise"] is True
    assert type(d["img_size"]) is tuple and all(type(v) is int for v in d["img_size"])
    assert isinstance(d["mean_face"], np.ndarray)  # arrays stay arrays
    out = Animator(convert_file(src, tmp_path / "numpy.pt"), device="cpu")
    assert (out.sample_rate, out.audio_stride, out.authors) == (16000, 640, True)
    state = torch.load(src, weights_only=False)
    state["note"] = np.str_("text")
    torch.save(state, tmp_path / "text.dat", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"text.dat: refused: it holds a numpy str_"):
        convert_file(tmp_path / "text.dat", tmp_path / "text.pt")


def test_the_projects_own_models_keep_their_pipeline(tmp_path, sda):
    """A model of this project's: the channels' mean, polyphase resampling, peak normalisation, this
    project's stable points and 127.5 (G + 1), exactly (the frames these give were checked equal, frame
    for frame, to the code's before the authors' pipeline was added, on arrays, a file and a stream)."""
    _, _, face, tracks = sda
    own = Animator(tiny_generator_checkpoint(tmp_path / "own.pt", (64, 48), 8000), device="cpu")
    assert not own.authors and own.align_config.stable_points == STABLE_POINTS
    stereo = tracks[44100]
    mono = normalise(resample(stereo.astype(np.float64).mean(axis=1) / 32767.0, 44100, 8000))
    n = -(-len(mono) // 320)
    expected_windows = frame_audio(mono, n, 8000, 25.0, 0.16)
    windows = own.prepare_audio(stereo, 44100)
    np.testing.assert_allclose(windows, expected_windows, atol=1e-6, rtol=0)
    still = own.align(face)
    np.testing.assert_array_equal(still, align_image(face, AlignConfig(size=(64, 48))).frames[0])
    fast = own.fast
    with torch.no_grad():
        g, _ = fast.run(fast.encode_identity(torch.from_numpy(to_unit_range(still.transpose(2, 0, 1).copy()))[None]),
                        torch.from_numpy(windows)[None], noise_for(own, n)[None])
    expected = ((g[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(own(face, stereo, 44100, seed=SEED), expected)


#: The clips STABLE_POINTS_68's blends were chosen on (FIT) and those they are measured on here (HELD-OUT):
#: grid-mini's sorted clips alternately; swwp2s and pwij3p (one speaker) both held out.
FIT_CLIPS = ("bbaf2n", "lbax4n", "lwbsza", "sbia1a")
HELD_OUT_CLIPS = ("brbk7n", "lrwp9a", "pwij3p", "swwp2s")
#: Mean px from dlib's point on the HELD-OUT frames, as measured when the blends were chosen (align.py):
#: 68-point 33, 36, 39, 42, 45.
HELD_OUT_MEAN = (1.096, 1.096, 0.833, 0.859, 1.126)


def test_the_authors_stable_points_are_where_a_68_point_detector_puts_them(grid_mini):
    """FaceMesh :data:`STABLE_POINTS_68` against dlib's 68-point shape predictor (the iBUG 300-W scheme
    of the authors' face_alignment; dlib's model ships with face-recognition-models) on every frame of the
    4 grid-mini clips the blends were not chosen on (300 frames, 360 x 288, FaceMesh detecting afresh in
    each, ``video=False``, as a still is aligned). Mean px per point, 68-point 33, 36, 39, 42, 45: 1.10,
    1.10, 0.83, 0.86, 1.13 (the published single points: 1.10, 1.82, 0.96, 1.14, 1.43). The inner eye corners
    are within 1 px; the subnasale and outer corners are not: each speaker's own offset between the two
    detectors, which no fixed blend chosen on other speakers removes (align.py, STABLE_POINTS_68)."""
    import dlib
    import face_recognition_models

    assert not set(FIT_CLIPS) & set(HELD_OUT_CLIPS)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    ours, single, tip, theirs = [], [], [], []
    for clip in HELD_OUT_CLIPS:
        frames = read_video(grid_mini / f"{clip}.mpg")[0]
        landmarks, found = detect_landmarks(frames, video=False)
        assert found.all()
        for frame, points in zip(frames, landmarks):
            shape = predictor(frame, detector(frame, 1)[0])
            theirs.append([(shape.part(i).x, shape.part(i).y) for i in (33, 36, 39, 42, 45)])
            ours.append(stable_positions(points, STABLE_POINTS_68))
            single.append(points[[2, 33, 133, 362, 263]])
            tip.append(points[1])
    theirs = np.array(theirs, np.float64)
    distance = np.linalg.norm(np.array(ours) - theirs, axis=2)
    error, worst = distance.mean(axis=0), distance.max(axis=0)
    before = np.linalg.norm(np.array(single) - theirs, axis=2).mean(axis=0)
    print(f"held-out {len(theirs)} frames, px to dlib (68-point 33, 36, 39, 42, 45): mean {error.round(3)}, "
          f"max {worst.round(2)}; published single points: mean {before.round(3)}")
    np.testing.assert_allclose(error, HELD_OUT_MEAN, atol=0.02)  # what align.py and docs/animate.md say
    assert error[2] <= 1.0 and error[3] <= 1.0  # the inner eye corners: within 1 px
    assert error.max() <= 1.15  # the subnasale and the outer corners: not within 1 px (see the docstring)
    assert (error[1:] < before[1:]).all() and error[0] <= before[0]  # nearer than the published points
    assert np.linalg.norm(np.array(tip) - theirs[:, 0], axis=1).mean() > 3 * error[0]  # FaceMesh 1: the nose tip
