"""Live audio in, frames out: the pieces behind ``Animator.stream`` and ``speechanim animate --stream``.

Audio arrives in chunks of any size. :class:`StreamResampler` brings it to the model's rate with
the same polyphase filter as the offline path (``scipy.signal.resample_poly``), emitting each
output sample once the filter's few input samples of look-ahead have arrived; :class:`AudioFramer`
cuts the generator's windows, window ``k`` centred on frame ``k``, each as soon as its last sample
is in: with 0.16 s windows a frame waits for 80 ms of audio after its centre, and no longer. The
windows equal :func:`speechanim.audio.frame_audio`'s on the whole recording (tests check it). A model
converted from the authors' files hears a recording FFT-resampled over its whole length
(:func:`speechanim.sda.authors_resample`), which a stream cannot wait for: it is resampled here too, its
frames up to 5.3 grey levels from the authors' (``Animator.stream`` says how that was measured).

Sources: :func:`pcm_chunks` (raw 16-bit PCM, e.g. stdin), :func:`growing_wav_chunks` (a WAV file
still being written) and :func:`audio_file_chunks` (any file ffmpeg reads, decoded a piece at a
time). Sinks: :class:`Y4MWriter`, a YUV4MPEG2 stream that ``ffplay -`` and ``mpv -`` show as it
arrives, and :class:`Mp4Writer`, the mp4 written as its frames come.

Memory does not grow with the stream's length: every buffer here holds at most one chunk plus one
window (the resampler's look-ahead, the framer's window), and :class:`Mp4Writer` keeps nothing: the
frames go to an ffmpeg encoder and the sound to a file beside the mp4 as they come.
"""
from __future__ import annotations

import math
import os
import re
import struct
import subprocess
import time
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
from scipy.signal import resample_poly

from .audio import mix_to_mono
from .media import MediaError, SUFFIXES, ffmpeg_exe

__all__ = ["StreamResampler", "AudioFramer", "pcm_chunks", "growing_wav_chunks", "audio_file_chunks", "Y4MWriter",
           "Mp4Writer", "rgb_to_yuv444", "check_rate", "check_seconds", "MIN_RATE", "MAX_RATE"]

#: The sample rates a stream may have (Hz): from below telephone audio's 8 kHz to beyond studio
#: audio's 192 kHz. Outside them the resampler's work per input sample explodes (1 Hz to a 16 kHz
#: model is 16,000 output samples, 640 frames, per input sample: a stream that never ends).
MIN_RATE, MAX_RATE = 4000, 384000


def check_rate(rate, name: str = "sample rate") -> int:
    """``rate`` as a whole number of Hz within [:data:`MIN_RATE`, :data:`MAX_RATE`]; else ValueError naming ``name``."""
    try:
        whole = float(rate).is_integer() and not isinstance(rate, bool)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or not MIN_RATE <= int(rate) <= MAX_RATE:
        raise ValueError(f"{name}: must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}, got {rate!r}")
    return int(rate)


def check_seconds(value, name: str) -> float:
    """``value`` as a finite, positive number of seconds; else ValueError naming ``name`` (NaN would never time out)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name}: must be a finite number of seconds above 0, got {value!r}")
    return seconds


class StreamResampler:
    """Polyphase resampling of a stream, equal to ``resample_poly`` on the whole signal.

    ``resample_poly`` is time-invariant for shifts that are whole multiples of ``down`` input
    samples, and each output sample reads only ``10 * max(up, down) / up`` input samples either
    side (its filter's half-length). So each call resamples the buffered tail from an aligned start
    far enough back, and emits the outputs whose filter support has fully arrived.
    """

    def __init__(self, rate_in: int, rate_out: int):
        rate_in, rate_out = check_rate(rate_in, "input sample rate"), check_rate(rate_out, "output sample rate")
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = int(rate_out) // g, int(rate_in) // g
        self.margin = math.ceil(10 * max(self.up, self.down) / self.up) + 1  # input samples of look-ahead
        self._buf = np.zeros(0, np.float64)
        self._start = 0  # input index of _buf[0]
        self.n_in = 0
        self.n_out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add input samples; return the output samples that are now final."""
        samples = np.asarray(samples, np.float64).ravel()
        if self.up == self.down == 1:
            self.n_in += len(samples)
            self.n_out += len(samples)
            return samples.astype(np.float32)
        self._buf = np.concatenate([self._buf, samples])
        self.n_in += len(samples)
        ready = max(0, (self.n_in - self.margin) * self.up // self.down)
        return self._emit(ready, final=False)

    def close(self) -> np.ndarray:
        """The remaining output samples (the signal ends: zeros after it, as offline)."""
        if self.up == self.down == 1:
            return np.zeros(0, np.float32)
        return self._emit(-(-self.n_in * self.up // self.down), final=True)

    def _emit(self, total: int, final: bool) -> np.ndarray:
        if total <= self.n_out:
            return np.zeros(0, np.float32)
        y = resample_poly(self._buf, self.up, self.down)
        offset = self._start * self.up // self.down  # output index of y[0]
        out = y[self.n_out - offset:total - offset]
        self.n_out = total
        if not final:  # keep the input the next outputs' filters reach back to, from an aligned start
            keep = max(0, (self.n_out * self.down // self.up - self.margin) // self.down * self.down)
            if keep > self._start:
                self._buf = self._buf[keep - self._start:]
                self._start = keep
        return out.astype(np.float32)


class AudioFramer:
    """Cut the generator's audio windows from a stream, each as soon as its samples are in.

    ``stride`` samples between windows (one video frame), ``window`` samples each, window ``k``
    covering ``[k * stride - left, k * stride - left + window)`` with ``left = (window - stride) // 2``
    and zeros before the start (as :func:`speechanim.audio.frame_audio`). ``frames``: how many there
    are once the stream ends, ``"ceil"`` (``ceil(samples / stride)``, this project's rule) or
    ``"floor"`` (the authors'). ``gain`` scales the samples (live audio cannot be peak-normalised).
    """

    def __init__(self, rate_in: int, rate_out: int, stride: int, window: int, *, frames: str = "ceil",
                 gain: float = 1.0):
        if window < stride:
            raise ValueError(f"window of {window} samples is shorter than one video frame ({stride} samples)")
        if frames not in ("ceil", "floor"):
            raise ValueError(f"frames must be 'ceil' or 'floor', got {frames!r}")
        self.resampler = StreamResampler(rate_in, rate_out)
        self.stride, self.window, self.frames, self.gain = int(stride), int(window), frames, float(gain)
        self.left = (self.window - self.stride) // 2
        self._buf = np.zeros(self.left, np.float32)  # the signal with its leading zeros
        self._start = 0  # index of _buf[0] in the padded signal
        self.n_samples = 0  # samples at the model's rate so far
        self.n_windows = 0  # windows emitted

    @property
    def lookahead(self) -> int:
        """Samples (at the model's rate) a window needs after its frame's centre."""
        return self.window - self.left - self.stride // 2

    def _take(self, limit: int) -> list[np.ndarray]:
        out = []
        while self.n_windows < limit:
            a = self.n_windows * self.stride - self._start
            if a + self.window > len(self._buf):
                break
            out.append(self._buf[a:a + self.window].copy())
            self.n_windows += 1
        drop = self.n_windows * self.stride - self._start
        if drop > 0:
            self._buf, self._start = self._buf[drop:], self._start + drop
        return out

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add input samples (mono, ``rate_in``); return the windows now complete, ``(window,)`` float32."""
        new = self.resampler.push(samples) * np.float32(self.gain)
        self.n_samples += len(new)
        self._buf = np.concatenate([self._buf, new.astype(np.float32)])
        return self._take(math.inf)

    def close(self) -> list[np.ndarray]:
        """The stream ended: the remaining windows, zero-padded at the end."""
        new = self.resampler.close() * np.float32(self.gain)
        self.n_samples += len(new)
        total = (-(-self.n_samples // self.stride) if self.frames == "ceil" else self.n_samples // self.stride)
        need = (total - 1) * self.stride + self.window - self._start
        self._buf = np.concatenate([self._buf, new.astype(np.float32)])
        if need > len(self._buf):
            self._buf = np.concatenate([self._buf, np.zeros(need - len(self._buf), np.float32)])
        return self._take(total)


def pcm_chunks(stream: BinaryIO, *, chunk_bytes: int = 3200) -> Iterator[np.ndarray]:
    """Mono 16-bit little-endian PCM from a byte stream (e.g. ``sys.stdin.buffer``) as it arrives,
    float32 in [-1, 1]; ends at end of file. Reads at most ``chunk_bytes`` at a time."""
    read = getattr(stream, "read1", stream.read)
    carry = b""
    while True:
        data = read(chunk_bytes)
        if not data:
            break
        data = carry + data
        carry = data[len(data) // 2 * 2:]
        if len(data) >= 2:
            yield np.frombuffer(data[:len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0


_INCOMPLETE = "WAV header ends before its data chunk"  # the writer has not written it all yet: wait


def _wav_header(f: BinaryIO, path: Path) -> tuple[int, int, int, int]:
    """(sample rate, channels, bits, offset of the data) of a 16-bit PCM WAV file; a malformed
    header raises ValueError naming the file and what is wrong with it."""
    head = f.read(12)
    if len(head) < 12 and b"RIFF".startswith(head[:4]):
        raise ValueError(f"{path}: {_INCOMPLETE}")
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise ValueError(f"{path}: {_INCOMPLETE}")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            if not 16 <= size <= 64:  # PCM's is 16, 18 or 40 bytes
                raise ValueError(f"{path}: malformed WAV header: its fmt chunk says {size} bytes (PCM's has 16 to 40)")
            body = f.read(size + (size & 1))
            if len(body) < size:
                raise ValueError(f"{path}: {_INCOMPLETE}")
            fmt = _wav_format(body, path)
        elif cid == b"data":
            if fmt is None:
                raise ValueError(f"{path}: malformed WAV header: its data chunk comes before its fmt chunk")
            return (*fmt, f.tell())
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)


def _wav_format(body: bytes, path: Path) -> tuple[int, int, int]:
    """(sample rate, channels, bits) from a WAV fmt chunk, which must describe 16-bit PCM at a sane rate."""
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the format is its sub-format GUID's first field
        tag = struct.unpack("<H", body[24:26])[0]
    if tag != 1 or bits != 16:
        raise ValueError(f"{path}: a growing WAV must be 16-bit PCM, got format {tag}, {bits} bits")
    if not 1 <= channels <= 64:
        raise ValueError(f"{path}: malformed WAV header: {channels} channels")
    check_rate(rate, f"{path}: the WAV header's sample rate")
    return rate, channels, bits


def growing_wav_chunks(path: str | os.PathLike, *, idle_s: float = 2.0, poll_s: float = 0.02,
                       chunk_bytes: int = 3200) -> tuple[int, Iterator[np.ndarray]]:
    """A 16-bit PCM WAV file that another program is still writing: its sample rate, and its samples
    (mono float32, channels averaged) as they appear. Ends when the file has not grown for ``idle_s``."""
    path = Path(path)
    idle_s, poll_s = check_seconds(idle_s, "idle_s (--idle)"), check_seconds(poll_s, "poll_s")
    deadline = time.monotonic() + idle_s
    while True:  # wait for the header itself
        f = None
        try:
            f = open(path, "rb")
            rate, channels, _, offset = _wav_header(f, path)
            break
        except (FileNotFoundError, ValueError) as e:
            if f is not None:
                f.close()
            if time.monotonic() > deadline or (isinstance(e, ValueError) and _INCOMPLETE not in str(e)):
                raise
            time.sleep(poll_s)
    frame = 2 * channels

    def chunks() -> Iterator[np.ndarray]:
        with f:
            f.seek(offset)
            carry, last = b"", time.monotonic()
            while True:
                data = f.read(chunk_bytes)
                if not data:
                    if time.monotonic() - last > idle_s:
                        return
                    time.sleep(poll_s)
                    continue
                last = time.monotonic()
                data = carry + data
                cut = len(data) // frame * frame
                carry = data[cut:]
                if cut:
                    pcm = np.frombuffer(data[:cut], "<i2").astype(np.float32).reshape(-1, channels) / 32768.0
                    yield mix_to_mono(pcm, source=str(path))

    return rate, chunks()


def rgb_to_yuv444(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` uint8 Y, Cb, Cr planes (BT.601, limited range, as
    ffmpeg's default for y4m)."""
    rgb = frame.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    cb = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    cr = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    return np.clip(np.rint(np.stack([y, cb, cr])), 0, 255).astype(np.uint8)


class Y4MWriter:
    """Frames to a YUV4MPEG2 stream (4:4:4), flushed after each frame: ``... | ffplay -`` or ``mpv -``."""

    def __init__(self, out: BinaryIO, size: tuple[int, int], fps: float):
        self.out = out
        h, w = size
        num, den = (int(fps), 1) if float(fps).is_integer() else (int(round(fps * 1000)), 1000)
        out.write(f"YUV4MPEG2 W{w} H{h} F{num}:{den} Ip A1:1 C444\n".encode("ascii"))
        out.flush()

    def write(self, frame: np.ndarray) -> None:
        self.out.write(b"FRAME\n" + rgb_to_yuv444(frame).tobytes())
        self.out.flush()


def iter_chunks(chunks: Iterable[np.ndarray], *, first_channel: bool = False) -> Iterator[np.ndarray]:
    """Chunks as 1-D arrays (a 2-D ``(samples, channels)`` chunk is averaged to mono, refused if its
    channels cancel out: :func:`speechanim.audio.mix_to_mono`; ``first_channel``: its first channel,
    as the authors take an array's, for their imported models)."""
    for c in chunks:
        c = np.asarray(c)
        if c.ndim == 2:
            yield c[:, 0] if first_channel else mix_to_mono(c, source="audio stream")
        else:
            yield c.ravel()


# --------------------------------------------------------------------------------------------------
# A whole file, a piece at a time


#: Samples per chunk of :func:`audio_file_chunks` (256 KiB of float32: 4 s at 16 kHz).
FILE_CHUNK_SAMPLES = 1 << 16


def audio_file_chunks(path: str | os.PathLike, rate: int, *,
                      chunk_samples: int = FILE_CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """The first audio track of any file ffmpeg reads, mono float32 at ``rate``, a chunk at a time:
    the samples of :func:`speechanim.media.read_audio` (the same ffmpeg decode) in memory bounded by
    one chunk. Iterating it again decodes the file again. A decoder problem (no audio track, not a
    media file, a damaged or truncated file) raises :class:`~speechanim.media.MediaError` naming
    the file when the decode ends, as ``read_audio`` would have raised it."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
           "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(int(rate)), "pipe:"]
    with open(os.devnull, "rb") as null, _log_file() as log:
        proc = subprocess.Popen(cmd, stdin=null, stdout=subprocess.PIPE, stderr=log)
        try:
            total = 0
            while True:
                data = proc.stdout.read(4 * int(chunk_samples))
                if not data:
                    break
                total += len(data) // 4
                yield np.frombuffer(data[:len(data) // 4 * 4], np.float32)
        finally:
            proc.stdout.close()
            if proc.poll() is None:  # the caller stopped early
                proc.kill()
            code = proc.wait()
        log.seek(0)
        _raise_audio_problem(path, code, log.read().decode("utf-8", "replace"), total)


def _log_file():
    import tempfile

    return tempfile.TemporaryFile(prefix="speechanim-ffmpeg-")


def _raise_audio_problem(path: Path, code: int, log: str, samples: int) -> None:
    """The error :func:`speechanim.media.read_audio` gives for the same ffmpeg outcome (none if clean)."""
    problem = next((line.strip() for line in log.splitlines() if line.strip()), None)
    if code < 0:
        return  # killed because the caller stopped reading: nothing to report
    if code != 0:
        if "matches no streams" in log:
            raise MediaError(f"{path}: has no audio track")
        if "Invalid data found" in log:
            raise MediaError(f"{path}: not an audio or video file ffmpeg can read")
        raise MediaError(f"{path}: cannot decode audio ({problem or 'ffmpeg failed'})")
    if problem:
        raise MediaError(f"{path}: corrupt or truncated audio ({problem})")
    if samples == 0:
        raise MediaError(f"{path}: audio track is empty")


def channel_rms(path: str | os.PathLike) -> np.ndarray:
    """The RMS level of each channel of a file's first audio track (ffmpeg's ``astats``; memory: none
    of the samples), to tell a recording whose channels cancel when mixed to mono from a silent one."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0",
           "-af", "astats=measure_overall=none:measure_perchannel=RMS_level", "-f", "null", "-"]
    log = subprocess.run(cmd, capture_output=True).stderr.decode("utf-8", "replace")
    levels = re.findall(r"RMS level dB: (-?inf|-?[\d.]+)", log)
    return np.array([0.0 if "inf" in db else 10 ** (float(db) / 20) for db in levels])


class Mp4Writer:
    """An mp4 (H.264 + AAC, :func:`speechanim.media.write_video`'s settings) written while its frames
    and sound arrive, in memory that does not grow: each frame goes straight to an ffmpeg encoding a
    video-only file, the sound to a raw 16-bit file (both beside ``path``, hidden), and :meth:`close`
    muxes them into ``path`` (renamed into place: it appears whole or not at all). The sound is either
    pushed (:meth:`write_audio`, mono samples at ``audio_rate``) or taken from ``audio_file`` (its first
    track, mixed down to mono, at its own rate). Use it as a context manager: an error leaves nothing."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: float, *, audio_rate: int | None = None,
                 audio_file: str | os.PathLike | None = None, quality: int = 17):
        self.path = Path(path)
        if self.path.suffix.lower() not in SUFFIXES["h264"]:
            raise MediaError(f"{self.path}: the video is written as mp4; name it .mp4 "
                             f"(got {self.path.suffix or 'no extension'})")
        if self.path.is_dir():
            raise MediaError(f"{self.path}: is a directory; name the video file to write")
        h, w = size
        if h % 2 or w % 2:
            raise ValueError(f"{self.path}: frame size {w}x{h} must be even for yuv420p video")
        self.size, self.fps, self.audio_rate, self.audio_file = (h, w), float(fps), audio_rate, audio_file
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stem = self.path.parent / f".{self.path.name}.tmp{os.getpid()}"
        self._video, self._pcm, self._out = (Path(f"{stem}.video.mp4"), Path(f"{stem}.pcm"),
                                             Path(f"{stem}{self.path.suffix}"))
        self._log = _log_file()
        self._sound = open(self._pcm, "wb") if audio_rate else None
        cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", repr(self.fps), "-i", "pipe:", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(quality),
               "-f", "mp4", str(self._video)]
        self._encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def write(self, frames: np.ndarray) -> None:
        """One ``(H, W, 3)`` frame or several ``(T, H, W, 3)``, uint8 RGB."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[-3:] != (*self.size, 3):
            raise ValueError(f"{self.path}: frames must be uint8 {(*self.size, 3)}, got {frames.dtype} {frames.shape}")
        try:
            self._encoder.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            raise MediaError(f"{self.path}: the encoder stopped ({self._problem() or 'ffmpeg failed'})") from None
        self.frames += 1 if frames.ndim == 3 else len(frames)

    def write_audio(self, samples: np.ndarray) -> None:
        """Mono samples in [-1, 1] at ``audio_rate``, stored as 16-bit PCM (as write_video stores them)."""
        pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767).astype("<i2")
        self._sound.write(pcm.tobytes())

    def close(self) -> Path:
        """Finish the encoding, mux the sound in, and rename the mp4 into place; returns its path."""
        try:
            self._encoder.stdin.close()
            if self._encoder.wait() != 0:
                raise MediaError(f"{self.path}: encoding failed ({self._problem() or 'ffmpeg failed'})")
            if self.frames == 0:
                raise MediaError(f"{self.path}: no frames to write")
            if self._sound is not None:
                self._sound.close()
            self._mux()
            os.replace(self._out, self.path)
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        return self.path

    def _mux(self) -> None:
        cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(self._video)]
        if self.audio_rate:
            cmd += ["-f", "s16le", "-ar", str(int(self.audio_rate)), "-ac", "1", "-i", str(self._pcm)]
        elif self.audio_file is not None:
            cmd += ["-i", str(self.audio_file)]
        cmd += ["-map", "0:v"]
        if self.audio_rate or self.audio_file is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "1"]
        cmd += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", str(self._out)]
        run = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        if run.returncode != 0:
            problem = next((ln for ln in run.stderr.decode("utf-8", "replace").splitlines() if ln.strip()), None)
            raise MediaError(f"{self.path}: muxing the sound in failed ({problem or 'ffmpeg failed'})")

    def _problem(self) -> str | None:
        self._log.seek(0)
        return next((ln.strip() for ln in self._log.read().decode("utf-8", "replace").splitlines() if ln.strip()), None)

    def abort(self) -> None:
        """Stop the encoder and remove what was written (the target is left as it was)."""
        if self._encoder.poll() is None:
            self._encoder.kill()
        self._encoder.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self._encoder.stdin, self._sound, self._log):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        for tmp in (self._video, self._pcm, self._out):
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
