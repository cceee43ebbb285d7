"""Live audio in, frames out: the pieces behind ``Animator.stream`` and ``speechanim animate --stream``.

Audio arrives in chunks of any size. :class:`StreamResampler` brings it to the model's rate with
the same polyphase filter as the offline path (``scipy.signal.resample_poly``), emitting each
output sample once the filter's few input samples of look-ahead have arrived; :class:`AudioFramer`
cuts the generator's windows, window ``k`` centred on frame ``k``, each as soon as its last sample
is in: with 0.16 s windows a frame waits for 80 ms of audio after its centre, and no longer. The
windows equal :func:`speechanim.audio.frame_audio`'s on the whole recording (tests check it).

Sources: :func:`pcm_chunks` (raw 16-bit PCM, e.g. stdin) and :func:`growing_wav_chunks` (a WAV file
still being written). Sink: :class:`Y4MWriter`, a YUV4MPEG2 stream that ``ffplay -`` and ``mpv -``
show as it arrives.
"""
from __future__ import annotations

import math
import os
import struct
import time
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
from scipy.signal import resample_poly

__all__ = ["StreamResampler", "AudioFramer", "pcm_chunks", "growing_wav_chunks", "Y4MWriter", "rgb_to_yuv444"]


class StreamResampler:
    """Polyphase resampling of a stream, equal to ``resample_poly`` on the whole signal.

    ``resample_poly`` is time-invariant for shifts that are whole multiples of ``down`` input
    samples, and each output sample reads only ``10 * max(up, down) / up`` input samples either
    side (its filter's half-length). So each call resamples the buffered tail from an aligned start
    far enough back, and emits the outputs whose filter support has fully arrived.
    """

    def __init__(self, rate_in: int, rate_out: int):
        g = math.gcd(int(rate_in), int(rate_out))
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


def _wav_header(f: BinaryIO, path: Path) -> tuple[int, int, int, int]:
    """(sample rate, channels, bits, offset of the data) of a PCM WAV file."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    fmt = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise ValueError(f"{path}: WAV header ends before its data chunk")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = f.read(size + (size & 1))
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag not in (1, 0xFFFE) or bits != 16:
                raise ValueError(f"{path}: a growing WAV must be 16-bit PCM, got format {tag}, {bits} bits")
            fmt = (rate, channels, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError(f"{path}: WAV data chunk before its fmt chunk")
            return (*fmt, f.tell())
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)


def growing_wav_chunks(path: str | os.PathLike, *, idle_s: float = 2.0, poll_s: float = 0.02,
                       chunk_bytes: int = 3200) -> tuple[int, Iterator[np.ndarray]]:
    """A 16-bit PCM WAV file that another program is still writing: its sample rate, and its samples
    (mono float32, channels averaged) as they appear. Ends when the file has not grown for ``idle_s``."""
    path = Path(path)
    deadline = time.monotonic() + idle_s
    while True:  # wait for the header itself
        try:
            f = open(path, "rb")
            rate, channels, _, offset = _wav_header(f, path)
            break
        except (FileNotFoundError, ValueError) as e:
            if "f" in locals():
                f.close()
            if time.monotonic() > deadline or (isinstance(e, ValueError) and "ends before" not in str(e)):
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
                    yield pcm.mean(axis=1)

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


def iter_chunks(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Chunks as 1-D arrays (a 2-D ``(samples, channels)`` chunk is averaged to mono)."""
    for c in chunks:
        c = np.asarray(c)
        yield c.mean(axis=1) if c.ndim == 2 else c.ravel()
