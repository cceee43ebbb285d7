"""Animating a photo with a recording: speechanim.animate (Animator, animate_file) and the
``speechanim animate`` command, on a real GRID frame and its audio."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.io

from speechanim.align import AlignConfig, AlignmentError, align_image
from speechanim.animate import FPS, Animator, ImageError, animate_file, as_rgb_uint8, read_image
from speechanim.cli import main
from speechanim.media import MediaError, probe, read_audio, read_video, write_wav
from tiny_generator import tiny_generator_checkpoint

SIZE = (64, 48)
RATE = 8000
CLIP = "bbaf2n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_generator_checkpoint(tmp_path_factory.mktemp("ckpt") / "generator.pt", SIZE, RATE)


@pytest.fixture(scope="module")
def animator(ckpt):
    return Animator(ckpt, device="cpu")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, grid_mini):
    """The clip's first frame as a PNG and its audio as a 44.1 kHz WAV (the mpg's own rate)."""
    d = tmp_path_factory.mktemp("inputs")
    video = grid_mini / f"{CLIP}.mpg"
    frames, _ = read_video(video)
    skimage.io.imsave(d / "face.png", frames[0], check_contrast=False)
    audio = read_audio(video, 44100)
    write_wav(d / "speech.wav", audio, 44100)
    return {"frame": frames[0], "frames": frames, "image": d / "face.png", "wav": d / "speech.wav",
            "audio": audio, "video": video, "dir": d}


def test_photo_is_aligned_like_the_training_data(animator, inputs):
    still = animator.align(inputs["image"])
    expected = align_image(inputs["frame"], AlignConfig(size=SIZE)).frames[0]
    assert still.shape == (*SIZE, 3) and still.dtype == np.uint8
    np.testing.assert_array_equal(still, expected)
    # any size: a photo twice as large gives (nearly) the same crop
    big = np.repeat(np.repeat(inputs["frame"], 2, axis=0), 2, axis=1)
    assert np.abs(animator.align(big).astype(np.int16) - expected).mean() < 12


def test_animator_makes_one_frame_per_25th_of_a_second(animator, inputs):
    frames = animator(inputs["frame"], inputs["wav"])
    n = math.ceil(len(inputs["audio"]) / 44100 * FPS)
    assert frames.shape == (n, *SIZE, 3) and frames.dtype == np.uint8
    assert frames.std() > 3.0 and np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() > 0.1
    # a cut recording: T = ceil(duration * 25) (1.01 s -> 26 frames)
    short = animator(inputs["frame"], inputs["audio"][:int(1.01 * 44100)], sample_rate=44100)
    assert len(short) == 26


def test_any_rate_array_or_file_gives_the_same_windows(animator, inputs):
    from_wav = animator.prepare_audio(inputs["wav"])  # 44.1 kHz file, resampled by ffmpeg
    from_mpg = animator.prepare_audio(inputs["video"])  # the video's own track
    from_44k = animator.prepare_audio(inputs["audio"], 44100)  # an array, resampled here
    pcm16 = np.round(np.clip(inputs["audio"], -1, 1) * 32767).astype(np.int16)  # GRID's decoded peaks pass 1
    stereo = np.stack([pcm16, pcm16], axis=1)  # (samples, channels) int16, as scipy's wavfile gives
    from_int = animator.prepare_audio(stereo, 44100)
    n = math.ceil(len(inputs["audio"]) / 44100 * FPS)
    for w in (from_wav, from_mpg, from_44k, from_int):
        assert w.shape == (n, int(0.16 * RATE)) and w.dtype == np.float32
        assert np.abs(w).max() <= 1.0 + 1e-6
    # resampling paths agree on the signal (ffmpeg's and scipy's filters differ slightly)
    for w in (from_mpg, from_44k, from_int):
        assert np.corrcoef(from_wav.ravel(), w.ravel())[0, 1] > 0.98
    with pytest.raises(ValueError, match="needs its sample_rate"):
        animator.prepare_audio(inputs["audio"])


def test_streaming_chunks_and_seeds(animator, inputs):
    whole = animator(inputs["frame"], inputs["wav"], seed=1)
    again = animator(inputs["frame"], inputs["wav"], seed=1)
    np.testing.assert_array_equal(whole, again)
    chunked = animator(inputs["frame"], inputs["wav"], seed=1, chunk_frames=7)
    assert np.abs(chunked.astype(np.int16) - whole).max() <= 1
    streamed = np.stack(list(animator.stream(inputs["frame"], inputs["wav"], seed=1)))
    assert streamed.shape == whole.shape and np.abs(streamed.astype(np.int16) - whole).max() <= 1
    other = animator(inputs["frame"], inputs["wav"], seed=2)
    assert not np.array_equal(other, whole)


def test_animate_file_writes_mp4_with_the_original_audio(animator, inputs, tmp_path):
    out = animate_file(inputs["image"], inputs["wav"], animator, tmp_path / "out.mp4")
    info = probe(out)
    assert info.n_frames == math.ceil(len(inputs["audio"]) / 44100 * FPS) == 75
    assert (info.fps, info.width, info.height) == (FPS, SIZE[1], SIZE[0])
    assert info.has_audio and info.audio_rate == 44100  # the recording's own rate, not the model's 8 kHz
    muxed = read_audio(out, 44100)
    n = min(len(muxed), len(inputs["audio"]))
    assert np.corrcoef(muxed[:n], inputs["audio"][:n])[0, 1] > 0.9


def test_image_conversions():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(as_rgb_uint8(gray), np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3], rgba[0, 1, 3] = 255, 0  # opaque red, fully transparent
    rgb = as_rgb_uint8(rgba)
    assert rgb[0, 0].tolist() == [200, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    assert as_rgb_uint8(np.full((2, 2, 3), 65535, np.uint16)).max() == 255
    assert as_rgb_uint8(np.full((2, 2), 0.5)).tolist()[0][0] == [128, 128, 128]
    with pytest.raises(ImageError, match="shape"):
        as_rgb_uint8(np.zeros((2, 2, 5), np.uint8))


# --------------------------------------------------------------------------------------------------
# Bad inputs


@pytest.fixture(scope="module")
def bad(inputs):
    d = inputs["dir"]
    gradient = np.tile(np.linspace(0, 255, 160).astype(np.uint8), (120, 1))
    skimage.io.imsave(d / "gradient.png", gradient, check_contrast=False)
    two = np.concatenate([inputs["frames"][0], inputs["frames"][40]], axis=1)
    skimage.io.imsave(d / "two.png", two, check_contrast=False)
    (d / "notes.txt").write_text("not speech\n")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {"gradient": d / "gradient.png", "two": d / "two.png", "text": d / "notes.txt", "broken": d / "broken.jpg"}


def test_library_errors_name_the_input(animator, inputs, bad):
    with pytest.raises(AlignmentError, match=r"gradient\.png: no face found"):
        animator(bad["gradient"], inputs["wav"])
    with pytest.raises(AlignmentError, match=r"two\.png: found 2 faces"):
        animator(bad["two"], inputs["wav"])
    with pytest.raises(MediaError, match=r"notes\.txt: not an audio or video file"):
        animator(inputs["frame"], bad["text"])
    with pytest.raises(ImageError, match=r"broken\.jpg: not an image file"):
        read_image(bad["broken"])


@pytest.mark.parametrize("which, flag, message", [
    ("gradient", "--image", "gradient.png: no face found in the image"),
    ("two", "--image", "two.png: found 2 faces in the image; it must show exactly one"),
    ("broken", "--image", "broken.jpg: not an image file that can be read"),
    ("text", "--audio", "notes.txt: not an audio or video file ffmpeg can read"),
])
def test_cli_bad_input_is_one_line_naming_the_file(ckpt, inputs, bad, tmp_path, capfd, which, flag, message):
    args = {"--image": str(inputs["image"]), "--audio": str(inputs["wav"])}
    args[flag] = str(bad[which])
    out = tmp_path / "out.mp4"
    rc = main(["animate", "--image", args["--image"], "--audio", args["--audio"], "--checkpoint", str(ckpt),
               "-o", str(out), "--device", "cpu"])
    captured = capfd.readouterr()
    assert rc == 1 and not out.exists()
    # only our line: the face detector's native log lines are kept off the terminal
    assert captured.err.strip().splitlines() == [f"speechanim animate: error: {bad[which].parent}{os.sep}{message}"]
    assert "Traceback" not in captured.err


def test_cli_in_a_subprocess(ckpt, inputs, tmp_path):
    out = tmp_path / "talking.mp4"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "speechanim.cli", "animate", "--image", str(inputs["image"]),
                          "--audio", str(inputs["video"]), "--checkpoint", str(ckpt), "-o", str(out),
                          "--seed", "0", "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out) and "Traceback" not in res.stderr and "W0000" not in res.stderr
    info = probe(out)
    assert info.n_frames == 75 and info.has_audio and (info.width, info.height) == (SIZE[1], SIZE[0])
