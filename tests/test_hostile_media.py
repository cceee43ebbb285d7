"""Hostile inputs, round 2 (issue 28): photos read wrong, config values the schema let through and a
config that hangs the check, streams that never end or grow with their length, and raw tracebacks or
misleading errors. One test per class, parametrized over its examples; each checks that the bad case
is refused (or read right) and that no input file changed."""
from __future__ import annotations

import hashlib
import math
import os
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.io import wavfile

from speechanim.animate import Animator, ImageError, read_image
from speechanim.audio import SilentAudioError
from speechanim.cli import main as cli
from speechanim.config import ConfigError, load_config, validate_config
from speechanim.evaluate import EvaluationError, evaluate
from speechanim.evaluate import main as evaluate_cli
from speechanim.media import MAX_IMAGE_PIXELS, probe, read_audio, read_video, write_wav
from speechanim.packing import Clip, write_clip
from speechanim.stream import StreamResampler, growing_wav_chunks
from tiny_generator import tiny_generator_checkpoint

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 48)
RATE = 8000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digest(*paths: Path) -> dict[str, str]:
    """Each file's SHA-256: compared before and after, it shows that nothing was lost or changed."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_generator_checkpoint(tmp_path_factory.mktemp("ckpt") / "generator.pt", SIZE, RATE)


@pytest.fixture(scope="module")
def animator(ckpt):
    return Animator(ckpt, device="cpu")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, grid_mini):
    """A real face photo (GRID's first frame, PNG) and a second of its speech (16 kHz WAV)."""
    d = tmp_path_factory.mktemp("inputs")
    frames, _ = read_video(grid_mini / "bbaf2n.mpg")
    Image.fromarray(frames[0]).save(d / "face.png")
    speech = read_audio(grid_mini / "bbaf2n.mpg", 16000)[:16000]
    write_wav(d / "speech.wav", speech, 16000)
    return {"face": frames[0], "image": d / "face.png", "wav": d / "speech.wav", "speech": speech, "dir": d}


# ------------------------------------------------------------------ 1. photos read as a photo viewer shows them


def _pattern(h: int = 40, w: int = 30) -> np.ndarray:
    """An RGB image no rotation or mirror maps onto itself."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:8, :5] = (255, 0, 0)
    return img


def _exif(orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# What a viewer shows of a file stored with each EXIF orientation, as numpy turns of the stored pixels.
_SHOWN = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1),
          2: lambda a: a[:, ::-1]}


def _write_case(case: str, d: Path) -> tuple[Path, np.ndarray | str]:
    """A photo file for ``case`` and what reading it must give: the RGB array a viewer shows, or the
    start of the refusal's message."""
    img = _pattern()
    path = d / f"{case}.png"
    if case.startswith("exif"):
        orientation = int(case[4:])
        Image.fromarray(img).save(path, exif=_exif(orientation))
        return path, _SHOWN[orientation](img)
    if case == "cmyk_tiff":
        path = d / "cmyk.tif"
        Image.fromarray(img).convert("CMYK").save(path)  # naive CMYK: converts back exactly
        return path, img
    if case == "grey16":
        grey = (np.arange(40 * 30).reshape(40, 30) * 53).astype(np.uint16)
        Image.fromarray(grey).save(path)
        expected = ((grey.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return path, np.repeat(expected[:, :, None], 3, axis=2)
    if case == "rgb16":
        import cv2

        rgb16 = np.minimum(img.astype(np.uint32) * 257 + 50, 65535).astype(np.uint16)  # not 8 bits scaled
        cv2.imwrite(str(path), np.ascontiguousarray(rgb16[..., ::-1]))
        return path, img
    if case == "rgba":
        rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
        rgba[:20, :, 3] = 0  # the top half fully transparent: white
        Image.fromarray(rgba).save(path)
        expected = img.copy()
        expected[:20] = 255
        return path, expected
    if case == "palette_clear":
        pal = Image.fromarray(img).quantize(16)
        pal.save(path, transparency=0)
        expected = np.asarray(pal.convert("RGB")).copy()
        expected[np.asarray(pal) == 0] = 255
        return path, expected
    if case == "grey_alpha":
        la = np.dstack([img[..., 0], np.full(img.shape[:2], 255, np.uint8)])
        Image.fromarray(la, "LA").save(path)
        return path, np.repeat(img[..., :1], 3, axis=2)
    if case in ("too_large_400mp", "too_large_100mp"):
        side = 20000 if case.endswith("400mp") else 10000
        path.write_bytes(_png_header(side, side))
        return path, "image too large"
    if case == "truncated":
        Image.fromarray(img).save(path)
        path.write_bytes(path.read_bytes()[:300])
        return path, "cannot decode the image"
    if case == "not_an_image":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        return path, "not an image file that can be read"
    raise AssertionError(case)


def _png_header(width: int, height: int) -> bytes:
    """A few dozen bytes of PNG that declare ``width x height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("case", ["exif3", "exif6", "exif8", "exif2", "cmyk_tiff", "grey16", "rgb16", "rgba",
                                  "palette_clear", "grey_alpha", "too_large_400mp", "too_large_100mp",
                                  "truncated", "not_an_image"])
def test_photos_are_read_as_a_viewer_shows_them_or_refused_with_the_reason(case, tmp_path):
    path, expected = _write_case(case, tmp_path)
    before = digest(path)
    if isinstance(expected, str):
        start = time.monotonic()
        with pytest.raises(ImageError, match=rf"^{re.escape(str(path))}: {expected}"):
            read_image(path)
        assert time.monotonic() - start < 2.0  # refused from the header: nothing decoded
    else:
        got = read_image(path)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert np.abs(got.astype(int) - expected).max() <= 1, case
    assert digest(path) == before


def test_the_pixel_limit_is_documented():
    assert MAX_IMAGE_PIXELS == 64_000_000
    assert "64 megapixels" in (REPO / "docs" / "design.md").read_text()  # "Media I/O"


@pytest.mark.parametrize("case", ["exif3_jpeg", "exif6_jpeg", "cmyk_jpeg_with_icc", "cmyk_jpeg"])
def test_a_turned_or_cmyk_face_photo_gives_the_upright_face(case, animator, inputs, tmp_path):
    """The photo a phone or a print workflow writes: the still the generator sees is the upright
    RGB face's (was: an upside-down talking head, and "no face found" for CMYK)."""
    face = inputs["face"]
    upright = animator.align(face)
    path = tmp_path / f"{case}.jpg"
    if case.startswith("exif"):
        orientation = int(case[4])
        stored = np.rot90(face, 2) if orientation == 3 else np.rot90(face, 1)  # shown: turned back upright
        Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=_exif(orientation), quality=95)
    else:
        cmyk = Image.fromarray(face).convert("CMYK")
        if case.endswith("icc"):
            from PIL import ImageCms

            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
            cmyk.save(path, quality=95, icc_profile=srgb)  # a wrong-kind profile: the plain formula is used
        else:
            cmyk.save(path, quality=95)
    before = digest(path)
    still = animator.align(path)
    assert np.abs(still.astype(int) - upright).mean() < 6, case
    assert digest(path) == before


# ------------------------------------------------------------------ 2. config values the schema let through; a hanging config


@pytest.mark.parametrize("section, key, value, message", [
    ("preprocess", "audio_window_s", math.nan, "preprocess.audio_window_s: nan is not a finite number"),
    ("training", "lambda_l1", math.inf, "training.lambda_l1: inf is not a finite number"),
    ("download", "timeout_s", math.inf, "download.timeout_s: inf is not a finite number"),
    ("lipreader", "lr", -math.inf, "lipreader.lr: -inf is not a finite number"),
    ("preprocess", "image_size", [1000000, 1000000], "preprocess.image_size.0: 1000000 is greater than the maximum of 1024"),
    ("training", "batch_size", 10 ** 9, "training.batch_size: 1000000000 is greater than the maximum of 4096"),
    ("training", "n_frames", 10 ** 8, "training.n_frames: 100000000 is greater than the maximum of 10000"),
])
def test_nan_inf_and_absurd_sizes_are_refused_naming_the_key(section, key, value, message, tmp_path):
    data = yaml.safe_load((REPO / "config.yaml").read_text())
    data[section][key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))  # YAML's own spelling: .nan, .inf
    before = digest(path)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{path}: {message}" in str(e.value)
    assert digest(path) == before
    if not isinstance(value, list):  # typed on snakemake's command line, it arrives as a string
        data[section][key] = yaml.safe_dump(value).split("\n")[0]
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate_config(data)


def _laughs(levels: int = 9, under: str | None = None) -> str:
    """A "billion laughs": each level a list of nine aliases of the one before (9^levels values)."""
    names = "abcdefghijklmnop"
    lines = [f"{names[0]}: &{names[0]} [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [{', '.join([f'*{names[i - 1]}'] * 9)}]")
    if under:  # the last level under a section the schema does not describe (free-form: every value walked)
        lines.append(f"{under}: {{deep: *{names[levels - 1]}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, text, message", [
    ("laughs.yaml", _laughs(), "more than 20,000 values"),
    ("laughs_in_model.yaml", _laughs(8, under="model"), "more than 20,000 values"),
    ("deep.yaml", "model: " + "[" * 60 + "1" + "]" * 60 + "\n", "nested more than 20 levels deep"),
])
def test_a_config_of_nested_aliases_or_depth_is_refused_at_once(name, text, message, tmp_path):
    path = tmp_path / name
    path.write_text(text)
    assert len(text) < 1000
    before = digest(path)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    assert time.monotonic() - start < 5.0  # was > 90 s
    assert digest(path) == before


def test_the_readme_says_a_config_file_is_code():
    for page in ("README.md", "docs/configuration.md"):
        text = " ".join((REPO / page).read_text().split())
        assert "__use_yte__: true" in text and "as trusted as the Snakefile" in text, page


# ------------------------------------------------------------------ 3. streams that never end, memory that grows with length


def _wav_bytes(rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1, fmt_size: int = 16,
               samples: np.ndarray | None = None, data_first: bool = False) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    fmt = fmt + b"\0" * max(0, fmt_size - 16) if fmt_size >= 16 else fmt[:fmt_size]
    data = b"" if samples is None else samples.astype("<i2").tobytes()
    chunks = [b"fmt " + struct.pack("<I", fmt_size) + fmt, b"data" + struct.pack("<I", len(data)) + data]
    if data_first:
        chunks.reverse()
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("argv, message", [
    (["--idle", "nan"], "argument --idle: 'nan' is not a finite number of seconds above 0"),
    (["--idle", "inf"], "argument --idle: 'inf' is not a finite number"),
    (["--idle", "-1"], "argument --idle: '-1' is not a finite number"),
    (["--rate", "1"], "argument --rate: '1' is not a sample rate from 4000 to 384000 Hz"),
    (["--rate", "1000000000"], "argument --rate: '1000000000' is not a sample rate"),
    (["--rate", "16k"], "argument --rate: '16k' is not a sample rate"),
])
def test_stream_settings_that_would_never_end_are_refused_by_the_command_line(argv, message, ckpt, inputs, tmp_path,
                                                                             capsys):
    out = tmp_path / "out.mp4"
    audio = "-" if "--rate" in argv else str(inputs["wav"])
    before = digest(inputs["wav"], inputs["image"])
    with pytest.raises(SystemExit) as e:
        cli(["animate", "--stream", "--audio", audio, "--image", str(inputs["image"]), "--checkpoint", str(ckpt),
             "-o", str(out), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists() and digest(inputs["wav"], inputs["image"]) == before


@pytest.mark.parametrize("call, message", [
    (lambda path: growing_wav_chunks(path, idle_s=math.nan), "idle_s"),
    (lambda path: growing_wav_chunks(path, idle_s=0.1, poll_s=math.inf), "poll_s"),
    (lambda path: StreamResampler(1, 16000), "input sample rate: must be a whole number of Hz from 4000"),
    (lambda path: StreamResampler(16000, 10 ** 9), "output sample rate"),
])
def test_the_stream_library_refuses_them_too(call, message, inputs):
    with pytest.raises(ValueError, match=message):
        call(inputs["wav"])


def test_a_live_stream_at_1_hz_is_refused_before_any_frame(animator, inputs):
    chunks = iter([inputs["speech"][:1600]])
    with pytest.raises(ValueError, match="audio stream: sample_rate: must be a whole number of Hz from 4000"):
        next(animator.stream(inputs["face"], chunks, sample_rate=1))


def _numpy_peak(run) -> int:
    """Peak bytes numpy (and Python) allocated while ``run()`` ran (tracemalloc sees numpy's buffers)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["offline pass", "live stream"])
def test_memory_does_not_grow_with_the_length_of_the_audio(kind, animator, ckpt, inputs, tmp_path, capfd):
    """Working memory of 10 s and 40 s of audio: the same (was: ~28 MB more a minute offline, every frame
    and sample kept by the live stream). The mp4s hold every frame and the sound: nothing dropped."""
    animator.align(inputs["face"])  # the face detector loads on first use: not the pass's memory
    peaks = {}
    for seconds in (10, 40):
        wav = tmp_path / f"speech{seconds}.wav"
        speech = np.tile(inputs["speech"], seconds)
        write_wav(wav, speech, 16000)
        out = tmp_path / f"out{seconds}.mp4"
        before = digest(wav, inputs["image"])
        if kind == "offline pass":
            def run():
                for _ in animator.frames(inputs["face"], wav):
                    pass
            peaks[seconds] = _numpy_peak(run)
            from speechanim.animate import animate_file
            animate_file(inputs["image"], wav, animator, out, progress=False)
        else:
            argv = ["animate", "--stream", "--audio", str(wav), "--idle", "0.2", "--image", str(inputs["image"]),
                    "--checkpoint", str(ckpt), "-o", str(out), "--device", "cpu", "--no-progress"]
            peaks[seconds] = _numpy_peak(lambda: cli(argv))
        assert digest(wav, inputs["image"]) == before
        info = probe(out)
        assert info.n_frames == seconds * 25 and info.has_audio and info.audio_rate == 16000
    capfd.readouterr()
    growth = peaks[40] - peaks[10]
    assert growth < 1 << 20, f"{kind}: {growth / 1e6:.1f} MB more for 30 s more audio"


# ------------------------------------------------------------------ 4. raw tracebacks and misleading errors


@pytest.mark.parametrize("case, message", [
    ("fmt_size_huge", "malformed WAV header: its fmt chunk says 4294967295 bytes"),
    ("zero_channels", "malformed WAV header: 0 channels"),
    ("rate_zero", "the WAV header's sample rate: must be a whole number of Hz from 4000"),
    ("rate_one", "the WAV header's sample rate: must be a whole number of Hz from 4000"),
    ("data_before_fmt", "malformed WAV header: its data chunk comes before its fmt chunk"),
    ("fmt_cut_short", "malformed WAV header: its fmt chunk says 8 bytes"),
    ("float_extensible", "a growing WAV must be 16-bit PCM, got format 3, 16 bits"),
    ("not_riff", "not a WAV file"),
])
def test_malformed_wav_headers_fed_to_the_stream_are_named(case, message, ckpt, inputs, tmp_path, capfd):
    tone = (np.sin(np.arange(1600) / 3) * 8000).astype(np.int16)
    data = {
        "fmt_size_huge": lambda: _wav_bytes(samples=tone)[:16] + struct.pack("<I", 0xFFFFFFFF) + _wav_bytes()[20:],
        "zero_channels": lambda: _wav_bytes(channels=0, samples=tone),
        "rate_zero": lambda: _wav_bytes(rate=0, samples=tone),
        "rate_one": lambda: _wav_bytes(rate=1, samples=tone),
        "data_before_fmt": lambda: _wav_bytes(samples=tone, data_first=True),
        "fmt_cut_short": lambda: _wav_bytes(fmt_size=8, samples=tone),
        "float_extensible": lambda: _extensible(subformat=3),
        "not_riff": lambda: b"OggS" + bytes(60),
    }[case]()
    path = tmp_path / f"{case}.wav"
    path.write_bytes(data)
    before = digest(path)
    out = tmp_path / "out.mp4"
    rc = cli(["animate", "--stream", "--audio", str(path), "--idle", "0.2", "--image", str(inputs["image"]),
              "--checkpoint", str(ckpt), "-o", str(out)])
    lines = capfd.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"speechanim animate: error: {path}: "), lines
    assert message in lines[0] and "Traceback" not in lines[0]
    assert not out.exists() and digest(path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def _extensible(subformat: int) -> bytes:
    """WAVE_FORMAT_EXTENSIBLE, 16 bits, whose sub-format GUID says ``subformat`` (3: IEEE float)."""
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4) + struct.pack("<H", subformat) + bytes(14)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 4) + b"\0\0\0\0"
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("port", ["99999", "-1", "http", "65536"])
def test_an_impossible_port_is_refused_by_the_command_line(port, tmp_path, capsys):
    db = tmp_path / "study.sqlite"
    with pytest.raises(SystemExit) as e:
        cli(["study", "serve", "--study", str(tmp_path), "--db", str(db), "--port", port])
    assert e.value.code == 2
    assert f"argument --port: '{port}' is not a port from 0 (any free port) to 65535" in capsys.readouterr().err
    assert not db.exists()


def _inverted_stereo(path: Path, speech: np.ndarray, channels: int = 2) -> Path:
    pcm = np.round(speech * 20000).astype(np.int16)
    columns = [pcm, -pcm] + [np.zeros_like(pcm)] * (channels - 2)
    wavfile.write(path, 16000, np.stack(columns, axis=1))
    return path


@pytest.mark.parametrize("source", ["stereo file", "5-channel file", "array", "growing wav"])
def test_phase_inverted_stereo_is_not_called_silent(source, animator, inputs, tmp_path):
    """Its channels cancel out when mixed to mono: refused saying so, not "silent audio track"."""
    speech = inputs["speech"]
    path = _inverted_stereo(tmp_path / "inverted.wav", speech, 5 if source.startswith("5") else 2)
    before = digest(path)
    with pytest.raises(SilentAudioError, match=r"channels cancel out when mixed to mono .* one is the other inverted"):
        if source == "array":
            animator.prepare_audio(np.stack([speech, -speech], axis=1), 16000)
        elif source == "growing wav":
            rate, chunks = growing_wav_chunks(path, idle_s=0.1)
            list(chunks)
        else:
            animator.prepare_audio(path)
    assert digest(path) == before
    # a truly silent stereo file is still called silent, and one channel alone is heard
    wavfile.write(tmp_path / "silent.wav", 16000, np.zeros((16000, 2), np.int16))
    with pytest.raises(SilentAudioError, match="silent audio track"):
        animator.prepare_audio(tmp_path / "silent.wav")
    assert len(animator.prepare_audio(np.stack([speech, np.zeros_like(speech)], axis=1), 16000)) == 25


def _packed(path: Path, *, fps: float = 25.0, drop: str | None = None, frames_shape=None) -> Path:
    rng = np.random.default_rng(0)
    clip = Clip("s1", "u1", rng.integers(0, 256, (10, 64, 48, 3), dtype=np.uint8),
                (rng.standard_normal(10 * 640) * 0.1).astype(np.float32), np.zeros((10, 478, 2), np.float32),
                25.0, 16000, "bin blue at f two now")
    with h5py.File(path, "w") as h5:
        write_clip(h5, clip)
        g = h5["s1/u1"]
        g.attrs["fps"] = fps
        if drop:
            del g[drop]
        if frames_shape is not None:
            del g["frames"]
            g.create_dataset("frames", data=np.zeros(frames_shape, np.uint8))
    return path


@pytest.mark.parametrize("case, culprit, message", [
    ("real_not_hdf5", "real", "cannot read the packed test clips"),
    ("generated_not_hdf5", "generated", "cannot read the generated clips"),
    ("fps_zero", "real", "clip s1/u1: its fps 0 and sample_rate 16000 must be positive"),
    ("no_audio", "real", "clip s1/u1: "),
    ("generated_frames_2d", "generated", "clip s1/u1: its frames have shape (10, 64), not (T, 3, H, W)"),
])
def test_evaluate_errors_name_the_file_and_the_clip(case, culprit, message, tmp_path, capsys):
    real = _packed(tmp_path / "test.h5", fps=0.0 if case == "fps_zero" else 25.0,
                   drop="audio" if case == "no_audio" else None)
    generated = _packed(tmp_path / "generated.h5", frames_shape=(10, 64) if case == "generated_frames_2d" else None)
    if case == "real_not_hdf5":
        real.write_text("not an HDF5 file\n")
    if case == "generated_not_hdf5":
        generated.write_bytes(b"\0" * 100)
    before = digest(real, generated)
    named = real if culprit == "real" else generated
    with pytest.raises(EvaluationError, match=rf"^{re.escape(str(named))}: .*{re.escape(message)}"):
        evaluate(real, generated, None, max_clips=1)
    out = tmp_path / "metrics.json"
    rc = evaluate_cli(["--real", str(real), "--generated", str(generated), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and f"speechanim.evaluate: error: {named}" in err and "Traceback" not in err
    assert not out.exists() and digest(real, generated) == before


def test_a_closed_stdout_is_one_line_and_loses_nothing(ckpt, inputs, tmp_path):
    """The frames' reader goes away mid-stream: the frames made so far are in the mp4, one line says so;
    a stdout closed from the start is refused for --frames-out -. Never a traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = digest(inputs["wav"], inputs["image"])
    pcm = (np.tile(inputs["speech"], 20) * 32767).astype("<i2").tobytes()  # 20 s
    out = tmp_path / "live.mp4"
    cmd = [sys.executable, "-m", "speechanim.cli", "animate", "--stream", "--audio", "-", "--rate", "16000",
           "--image", str(inputs["image"]), "--checkpoint", str(ckpt), "-o", str(out), "--frames-out", "-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdin.write(pcm[:32000 * 2])  # 2 s: the first frames come out
    proc.stdin.flush()
    assert proc.stdout.readline().startswith(b"YUV4MPEG2")
    proc.stdout.read(10 * (6 + 3 * 64 * 48))
    proc.stdout.close()  # the player closed
    try:
        proc.stdin.write(pcm[32000 * 2:])
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("speechanim animate: error: --frames-out -: its reader closed the pipe after ")
    made = int(lines[0].split("after ")[1].split()[0])
    assert 10 <= made < 500 and str(out) in lines[0]
    assert probe(out).n_frames == made  # nothing made was lost
    # stdout closed before the command starts (``>&-``)
    out2 = tmp_path / "closed.mp4"
    res = subprocess.run([*cmd[:-3], str(out2), "--frames-out", "-"], input=pcm[:3200], capture_output=True, env=env,
                         preexec_fn=lambda: os.close(1), timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr.decode()
    assert res.stderr.decode().strip() == "speechanim animate: error: --frames-out -: standard output is closed"
    assert not out2.exists() and digest(inputs["wav"], inputs["image"]) == before
