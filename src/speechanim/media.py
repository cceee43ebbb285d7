"""Video and audio I/O through ffmpeg-python, driving the ffmpeg binary that imageio-ffmpeg ships.

No system ffmpeg and no ffprobe are needed: probing parses ``ffmpeg -i`` and counts frames with
``imageio_ffmpeg.count_frames_and_secs``.  Every failure raises :class:`MediaError` whose message
starts with the file's path and says what is wrong with it.

Conventions: frames are ``uint8`` arrays of shape ``(T, H, W, 3)`` in RGB order; audio is mono
``float32`` in ``[-1, 1]``.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import imageio_ffmpeg
import numpy as np
from scipy.io import wavfile

from .fileio import atomic_open

# ffmpeg's decoder messages at ``-v error`` that do not mean the input is damaged.
_HARMLESS = ("Warning MVs not available",)


class MediaError(ValueError):
    """A media file cannot be used; the message names the file and the problem."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    duration: float  # seconds, n_frames / fps
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file")


def _first_problem(stderr: bytes) -> str | None:
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not any(h in line for h in _HARMLESS):
            return line
    return None


def _ffmpeg_info(path: Path) -> str:
    """What ``ffmpeg -i`` says about a file's streams (the probe this package uses: no ffprobe ships)."""
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True).stderr.decode(
        "utf-8", "replace")


def audio_rate(path: str | os.PathLike) -> int | None:
    """The sample rate of a file's first audio track (None if it shows none)."""
    match = re.search(r"Stream #\S+.*?: Audio: .*?(\d+) Hz", _ffmpeg_info(Path(path)))
    return int(match.group(1)) if match else None


_AUDIO_LAYOUT = re.compile(r"Stream #\S+.*?: Audio: .*?(\d+) Hz, (mono|stereo|\d+ channels|[\w.()]+)")


def _channel_count(layout: str) -> int | None:
    """Channels of an ffmpeg channel layout name: mono 1, stereo 2, "6 channels" 6; None for a layout named
    otherwise (5.1, 2.1, quad, ...: read with ffmpeg's own mix), whose leading digit is not its channel count."""
    count = re.fullmatch(r"(\d+) channels", layout)
    return 1 if layout == "mono" else 2 if layout == "stereo" else int(count.group(1)) if count else None


def audio_layout(path: str | os.PathLike) -> tuple[int, int | None] | None:
    """(sample rate, channels) of a file's first audio track (None if it shows none; channels None
    for a layout named otherwise, e.g. 5.1)."""
    match = _AUDIO_LAYOUT.search(_ffmpeg_info(Path(path)))
    return (int(match.group(1)), _channel_count(match.group(2))) if match else None


def _parse_streams(path: Path, text: str) -> tuple[int, int, float, int | None, int | None, bool]:
    """Width, height, fps, audio rate, audio channels and whether there is audio, from what ffmpeg
    logs about its input (``ffmpeg -i``, or a decode's log at level info)."""
    if "Invalid data found" in text or "Error opening input" in text:
        raise MediaError(f"{path}: not a video or audio file ffmpeg can read")
    video = re.search(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})", text)
    if video is None:
        raise MediaError(f"{path}: has no video stream")
    width, height = int(video.group(1)), int(video.group(2))
    fps_match = re.search(r"Stream #\S+.*?: Video: .*?([\d.]+) fps", text)
    if fps_match is None:
        fps_match = re.search(r"Stream #\S+.*?: Video: .*?([\d.]+)k? tbr", text)
    if fps_match is None:
        raise MediaError(f"{path}: video stream has no frame rate")
    fps = float(fps_match.group(1))
    audio = _AUDIO_LAYOUT.search(text)
    rate = channels = None
    if audio:
        rate, channels = int(audio.group(1)), _channel_count(audio.group(2))
    return width, height, fps, rate, channels, audio is not None


def _stream_info(path: Path) -> tuple[int, int, float, int | None, int | None, bool]:
    """:func:`_parse_streams` of ``ffmpeg -i``."""
    _check_exists(path)
    return _parse_streams(path, _ffmpeg_info(path))


# ffmpeg's log with ``-loglevel level+info``: each line's level in brackets after its context prefixes
_LEVEL_LINE = re.compile(r"^((?:\[[^\]]*\] )*?)\[(panic|fatal|error|warning|info|verbose|debug|trace)\] ?(.*)$")
_PROBLEM_LEVELS = ("panic", "fatal", "error")


def _split_log(stderr: bytes) -> tuple[str, bytes]:
    """A ``level+info`` log as (every line without its level tag, the lines ``-v error`` would print)."""
    lines, problems = [], []
    for line in stderr.decode("utf-8", "replace").splitlines():
        m = _LEVEL_LINE.match(line)
        if m is None:
            lines.append(line)
            continue
        plain = m.group(1) + m.group(3)
        lines.append(plain)
        if m.group(2) in _PROBLEM_LEVELS:
            problems.append(plain)
    return "\n".join(lines), "\n".join(problems).encode("utf-8")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate, size and audio stream of a video, without ffprobe."""
    path = Path(path)
    width, height, fps, rate, channels, has_audio = _stream_info(path)
    try:
        n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as err:
        raise MediaError(f"{path}: cannot count frames ({err})") from err
    if n_frames <= 0:
        raise MediaError(f"{path}: video stream has no frames")
    return VideoInfo(path, n_frames, fps, width, height, n_frames / fps, has_audio, rate, channels)


def _decode_rgb(path: Path, fps: float | None, loglevel: str) -> tuple[bytes, bytes, bool]:
    """Raw rgb24 frames of a video (resampled to ``fps`` if given), ffmpeg's log, and whether it failed."""
    stream = ffmpeg.input(str(path)).video
    if fps is not None:
        stream = stream.filter("fps", fps=fps)
    try:
        out, err = (
            stream
            .output("pipe:", format="rawvideo", pix_fmt="rgb24")
            .global_args("-hide_banner", "-nostats", "-loglevel", loglevel, "-nostdin")
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as e:
        return b"", e.stderr, True
    return out, err, False


def read_video(path: str | os.PathLike, *, strict: bool = True, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Decode every frame of a video as ``(T, H, W, 3)`` uint8 RGB; also return its fps.

    With ``strict`` (the default) any decoder error, as a truncated or damaged file gives, raises
    :class:`MediaError` instead of returning the frames ffmpeg managed to salvage.  With ``fps``, a
    video at another rate is resampled to it on decode (ffmpeg's ``fps`` filter: frames dropped or
    repeated at the nearest time), and ``fps`` is returned.
    """
    path = Path(path)
    _check_exists(path)
    # One ffmpeg both decodes and, logging at level info, tells the stream's size and rate; the
    # problems are the lines of level error and above, what ``-v error`` prints.  Only when the
    # video must be resampled is it decoded again, through the fps filter.
    out, log, failed = _decode_rgb(path, None, "level+info")
    text, problems = _split_log(log)
    # the input's streams only: what follows "Stream mapping:" describes the output
    width, height, in_fps, *_ = _parse_streams(path, text.split("\nStream mapping:")[0])
    out_fps = in_fps
    if not failed and fps is not None and abs(fps - in_fps) > 1e-3:
        out_fps = float(fps)
        out, problems, failed = _decode_rgb(path, out_fps, "error")
    if failed:
        raise MediaError(f"{path}: cannot decode video ({_first_problem(problems) or 'ffmpeg failed'})")
    problem = _first_problem(problems)
    if strict and problem:
        raise MediaError(f"{path}: corrupt or truncated video ({problem})")
    frame_bytes = width * height * 3
    if len(out) == 0:
        raise MediaError(f"{path}: video stream has no frames")
    if len(out) % frame_bytes:
        raise MediaError(f"{path}: decoded {len(out)} bytes, not a whole number of {width}x{height} frames")
    frames = np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)
    return frames, out_fps


def read_video_and_audio(path: str | os.PathLike, sample_rate: int, *,
                         fps: float | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
    """:func:`read_video` (strict) and :func:`read_audio` of the same file in one ffmpeg process.

    Returns ``(frames, fps, audio)``, the same arrays the two functions give.  The one process is
    used only when it decodes both tracks without any problem and the video needs no resampling;
    otherwise (damaged file, no audio track, another frame rate) the video is read by
    :func:`read_video`, with its errors, and ``audio`` is ``None``: read it apart (or from elsewhere).
    """
    path = Path(path)
    _check_exists(path)
    with tempfile.TemporaryDirectory(prefix="speechanim-audio-") as td:
        pcm = Path(td) / "audio.f32"
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "level+info", "-nostdin", "-i", str(path),
               "-map", "0:v", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:",
               "-f", "f32le", "-ac", "1", "-acodec", "pcm_f32le", "-ar", str(int(sample_rate)), "-map", "0:a:0",
               str(pcm)]
        run = subprocess.run(cmd, capture_output=True)
        text, problems = _split_log(run.stderr)
        audio = np.fromfile(pcm, np.float32) if run.returncode == 0 and pcm.is_file() else np.zeros(0, np.float32)
    finite_audio(audio, path)
    try:
        width, height, in_fps, *_ = _parse_streams(path, text.split("\nStream mapping:")[0])
    except MediaError:
        width = height = in_fps = 0
    clean = run.returncode == 0 and not _first_problem(problems) and audio.size > 0 and width > 0
    same_rate = fps is None or abs(fps - in_fps) <= 1e-3
    if clean and same_rate and run.stdout and len(run.stdout) % (width * height * 3) == 0:
        return np.frombuffer(run.stdout, np.uint8).reshape(-1, height, width, 3), in_fps, audio
    frames, out_fps = read_video(path, fps=fps)
    return frames, out_fps, None


def read_audio(path: str | os.PathLike, sample_rate: int, *, strict: bool = True, channels: int = 1) -> np.ndarray:
    """The first audio track of any file ffmpeg reads (video or audio), as mono float32 at ``sample_rate``
    (ffmpeg's mono mix: a stereo track's ``(L + R) / sqrt(2)``); ``channels`` > 1: ``(samples, channels)``
    (the track's own channels when it has that many)."""
    path = Path(path)
    _check_exists(path)
    try:
        out, err = (
            ffmpeg.input(str(path))
            .output("pipe:", format="f32le", acodec="pcm_f32le", ac=int(channels), ar=int(sample_rate), map="0:a:0")
            .global_args("-v", "error", "-nostdin")
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as e:
        msg = e.stderr.decode("utf-8", "replace")
        if "matches no streams" in msg:
            raise MediaError(f"{path}: has no audio track") from None
        if "Invalid data found" in msg:
            raise MediaError(f"{path}: not an audio or video file ffmpeg can read") from None
        raise MediaError(f"{path}: cannot decode audio ({_first_problem(e.stderr) or 'ffmpeg failed'})") from None
    problem = _first_problem(err)
    if strict and problem:
        raise MediaError(f"{path}: corrupt or truncated audio ({problem})")
    audio = np.frombuffer(out[:len(out) // (4 * channels) * 4 * channels], np.float32).copy()
    if audio.size == 0:
        raise MediaError(f"{path}: audio track is empty")
    return finite_audio(audio if channels == 1 else audio.reshape(-1, channels), path)


def finite_audio(audio: np.ndarray, path: Path) -> np.ndarray:
    """``audio``, refused when a sample is NaN or infinite (a float WAV can hold them: they made black videos)."""
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise MediaError(f"{path}: the audio holds {bad:,} NaN or infinite samples (of {audio.size:,})")
    return audio


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono float samples in ``[-1, 1]`` as 16-bit PCM WAV (atomically)."""
    path = Path(path)
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    with atomic_open(path, "wb") as f:
        wavfile.write(f, int(sample_rate), pcm)
    return path


#: The most pixels (width x height) a photo may have: 64 megapixels, more than a phone camera's
#: photo (the model sees a 128 x 96 crop of it). Checked on the file's header, before decoding: a
#: 400-megapixel PNG would need 1.2 GB as RGB, and a few kilobytes of PNG can declare that.
MAX_IMAGE_PIXELS = 64_000_000


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A photo file as a photo viewer shows it: ``(H, W, 3)`` uint8 RGB.

    Pillow decodes it: the EXIF orientation is applied (a phone's portrait photo stands upright);
    CMYK becomes RGB (through the embedded ICC profile when there is one); greyscale, palette and
    16-bit images become 8-bit RGB (16 bits scaled, not clipped); alpha is composited on white; an
    animated image gives its first frame. A file whose header declares more than
    :data:`MAX_IMAGE_PIXELS` pixels is refused before any pixel is decoded. Every failure raises
    :class:`MediaError` naming the file and the reason.
    """
    import warnings

    from PIL import Image

    path = Path(path)
    _check_exists(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
            image = Image.open(path)
    except Image.DecompressionBombError as e:  # Pillow's own check of the header (above twice its limit)
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise MediaError(_too_large(path, int(pixels.group(1)) if pixels else None)) from None
    except (OSError, ValueError, SyntaxError):  # no known signature, or a damaged header (UnidentifiedImageError...)
        raise MediaError(f"{path}: not an image file that can be read") from None
    with image:
        _check_image_size(path, image.size)
        try:
            return _photo_rgb(image)
        except (OSError, ValueError, SyntaxError) as e:  # a truncated or damaged file, a mode Pillow cannot convert
            raise MediaError(f"{path}: cannot decode the image ({image.format} {image.mode}: {e})") from None


def _check_image_size(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels."""
    width, height = size
    if width < 1 or height < 1:
        raise MediaError(f"{path}: image has no pixels ({width} x {height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(_too_large(path, width * height, f"{width} x {height} pixels, "))


def _too_large(path: Path, pixels: int | None, dims: str = "") -> str:
    size = f" ({dims}{pixels / 1e6:.0f} megapixels)" if pixels else ""
    return (f"{path}: image too large{size}: at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels are read "
            f"(MAX_IMAGE_PIXELS); scale it down first")


def _photo_rgb(image) -> np.ndarray:
    """A Pillow image, decoded and converted as :func:`read_image` says, as ``(H, W, 3)`` uint8."""
    from PIL import Image, ImageOps

    image.seek(0)  # an animated image: its first frame
    image = ImageOps.exif_transpose(image)  # decodes, and turns the pixels as the EXIF orientation says
    mode = image.mode
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(image))
    if mode.startswith("I") or mode == "F":  # 16- or 32-bit greyscale (Pillow's own conversion clips at 255)
        return np.repeat(_grey_to_uint8(np.asarray(image), mode)[:, :, None], 3, axis=2)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:  # alpha, or a clear colour
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _grey_to_uint8(grey: np.ndarray, mode: str) -> np.ndarray:
    """Integer greyscale as 16-bit (0..65535 scaled to 0..255, rounded); float ("F") as 0..1."""
    if mode == "F":
        if not np.isfinite(grey).all():
            raise ValueError("its pixels hold NaN or infinite values")
        return np.rint(np.clip(grey, 0.0, 1.0) * 255.0).astype(np.uint8)
    grey = np.clip(grey, 0, 65535).astype(np.uint32)
    return ((grey * 255 + 32767) // 65535).astype(np.uint8)


def _cmyk_to_rgb(image):
    """CMYK to RGB through the image's ICC profile (as a photo viewer converts it), else Pillow's formula."""
    from PIL import ImageCms

    icc = image.info.get("icc_profile")
    if icc:
        import io

        try:
            return ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                             ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a damaged profile: the plain formula below
    return image.convert("RGB")


# Codec settings: "h264" gives an mp4 (H.264 + AAC) for people; "mpeg1" gives a GRID-like .mpg
# (MPEG-1 video + MPEG audio layer II in an MPEG program stream).
#: The file name endings each codec's container is written under (the container is the codec's, always).
SUFFIXES = {"h264": (".mp4", ".m4v"), "mpeg1": (".mpg", ".mpeg")}

_CODECS = {
    "h264": dict(format="mp4", vcodec="libx264", pix_fmt="yuv420p", acodec="aac", audio_bitrate="128k",
                 movflags="+faststart"),
    "mpeg1": dict(format="mpeg", vcodec="mpeg1video", pix_fmt="yuv420p", acodec="mp2", audio_bitrate="224k",
                  ar=44100),
}


def _pipe_in(cmd: list[str], data: np.ndarray, log: Path) -> bytes | None:
    """Run ``cmd`` with ``data``'s bytes on its stdin; ``None`` if it succeeded, else its stderr.

    One write of the whole buffer (``subprocess.run(input=...)`` writes it 4 KiB at a time, ~6,000
    system calls and polls for a 3 s clip); stderr goes to a file, so a chatty ffmpeg cannot block.
    """
    with open(log, "w+b") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.stdin.write(memoryview(data).cast("B"))
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and log say why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        if proc.wait() == 0:
            return None
        err.seek(0)
        return err.read()


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    codec: str = "h264",
    quality: int | None = None,
) -> Path:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames (and optional mono audio) into a video file.

    ``codec="h264"`` writes H.264 + AAC (mp4; ``quality`` is the x264 CRF, default 17);
    ``codec="mpeg1"`` writes MPEG-1 + MP2 at 44.1 kHz like GRID (``quality`` is the MPEG qscale, default 2).
    The file appears atomically: it is encoded under a temporary name and renamed.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"{path}: frames must be a non-empty uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if codec not in _CODECS:
        raise ValueError(f"{path}: unknown codec {codec!r}; choose one of {sorted(_CODECS)}")
    if path.suffix.lower() not in SUFFIXES[codec]:
        raise MediaError(f"{path}: writes a {_CODECS[codec]['format']} file; name it {' or '.join(SUFFIXES[codec])} "
                         f"(got {path.suffix or 'no extension'})")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory; name the video file to write")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: frame size {w}x{h} must be even for yuv420p video")
    if audio is not None and not sample_rate:
        raise ValueError(f"{path}: audio given without its sample_rate")
    settings = dict(_CODECS[codec])
    if codec == "h264":
        settings["crf"] = 17 if quality is None else quality
    else:
        settings["q:v"] = 2 if quality is None else quality
        settings["r"] = fps
    if audio is None:
        for key in ("acodec", "audio_bitrate", "ar"):
            settings.pop(key, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tempfile.TemporaryDirectory() as td:
        video_in = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", r=fps)
        streams = [video_in.video]
        if audio is not None:
            wav = write_wav(Path(td) / "audio.wav", audio, int(sample_rate))
            streams.append(ffmpeg.input(str(wav)).audio)
        cmd = (ffmpeg.output(*streams, str(tmp), **settings).global_args("-v", "error", "-nostdin")
               .overwrite_output().compile(cmd=ffmpeg_exe()))
        err = _pipe_in(cmd, np.ascontiguousarray(frames), Path(td) / "ffmpeg.log")
        if err is not None:
            tmp.unlink(missing_ok=True)
            raise MediaError(f"{path}: encoding failed ({_first_problem(err) or 'ffmpeg failed'})")
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{path}: cannot write ({e.strerror})") from None
    return path
