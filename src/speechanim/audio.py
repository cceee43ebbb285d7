"""Audio framing (paper, section 3.1): one overlapping window of raw audio per video frame.

"The inputs to the generator networks consist of a single image and an audio signal, which is
divided into overlapping frames each corresponding to 0.16 seconds."

Window ``k`` is centred on video frame ``k``: frame ``k`` spans ``[k/fps, (k+1)/fps)``, so its
window covers ``[(k+0.5)/fps - w/2, (k+0.5)/fps + w/2)``. Consecutive windows are one video frame
(``rate/fps`` samples) apart, and the signal is zero-padded by ``(w - stride)/2`` samples at each
end, as in the authors' code, so the first and last windows stay centred on their frames.
"""
from __future__ import annotations

import math

import numpy as np


class SilentAudioError(ValueError):
    """The audio track holds no signal."""


def samples_per_frame(sample_rate: int, fps: float) -> int:
    """Audio samples per video frame; the rate must divide evenly by the frame rate."""
    spf = sample_rate / fps
    if abs(spf - round(spf)) > 1e-6:
        raise ValueError(f"sample rate {sample_rate} Hz is not a whole number of samples per frame at {fps} fps")
    return int(round(spf))


def window_samples(sample_rate: int, window_s: float) -> int:
    return int(round(window_s * sample_rate))


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) between integer rates, float32 out."""
    from scipy.signal import resample_poly  # imported here: scipy.signal costs ~0.8 s, and most jobs never resample

    rate_in, rate_out = int(rate_in), int(rate_out)
    if rate_in == rate_out:
        return np.asarray(audio, np.float32)
    g = math.gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def check_audible(audio: np.ndarray, *, silence_rms: float = 1e-4, source: str = "audio") -> None:
    """Refuse a track whose RMS after removing its DC offset is below ``silence_rms`` (silence)."""
    audio = np.asarray(audio, np.float64)
    rms = float(np.sqrt(np.mean((audio - audio.mean()) ** 2))) if audio.size else 0.0
    if rms < silence_rms:
        raise SilentAudioError(f"{source}: silent audio track (RMS {rms:.2e} < {silence_rms:.0e})")


def check_mix(channel_rms, mix_rms: float, *, silence_rms: float = 1e-4, source: str = "audio") -> None:
    """Refuse a mono mix that is silent while a channel is not (one channel the other inverted, so
    that their mean cancels): the recording is not silent, and saying so would mislead."""
    channel_rms = np.asarray(channel_rms, np.float64).ravel()
    if mix_rms < silence_rms and channel_rms.size > 1 and channel_rms.max() >= silence_rms:
        k = int(channel_rms.argmax())
        raise SilentAudioError(
            f"{source}: its {channel_rms.size} channels cancel out when mixed to mono (RMS {mix_rms:.1e} mixed, "
            f"{channel_rms[k]:.1e} in channel {k + 1}: one is the other inverted?); keep one channel, e.g. "
            f"ffmpeg -i IN -af 'pan=mono|c0=c0' OUT.wav")


def mix_to_mono(audio: np.ndarray, *, silence_rms: float = 1e-4, source: str = "audio") -> np.ndarray:
    """``(samples, channels)`` -> ``(samples,)``, the channels' mean; refused (:func:`check_mix`) when
    the channels cancel out. A 1-D array is returned as it is."""
    audio = np.asarray(audio)
    if audio.ndim != 2:
        return audio
    mono = audio.mean(axis=1)
    if audio.shape[1] > 1 and len(audio) > 1:
        wide = audio.astype(np.float64)
        channel_rms = np.sqrt(np.mean((wide - wide.mean(axis=0)) ** 2, axis=0))
        mix = mono.astype(np.float64)
        check_mix(channel_rms, float(np.sqrt(np.mean((mix - mix.mean()) ** 2))), silence_rms=silence_rms, source=source)
    return mono


def normalise(audio: np.ndarray, *, silence_rms: float = 1e-4, source: str = "audio") -> np.ndarray:
    """Remove the DC offset and scale to a peak of 1; a track quieter than ``silence_rms`` is refused."""
    audio = np.asarray(audio, np.float32)
    audio = audio - audio.mean()
    check_audible(audio, silence_rms=silence_rms, source=source)
    return (audio / np.abs(audio).max()).astype(np.float32)


def fit_length(audio: np.ndarray, n_frames: int, spf: int) -> np.ndarray:
    """Trim or zero-pad the audio to exactly ``n_frames`` video frames of samples."""
    n = n_frames * spf
    if len(audio) >= n:
        return audio[:n]
    return np.pad(audio, (0, n - len(audio)))


def frame_audio(audio: np.ndarray, n_frames: int, sample_rate: int, fps: float, window_s: float = 0.16, *,
                stride: int | None = None, trim: bool = True) -> np.ndarray:
    """Cut ``(n_frames, window)`` overlapping windows, window ``k`` centred on video frame ``k``.

    ``stride``: samples between windows (default: one video frame, which must be whole);
    ``trim=False`` keeps the samples after the last frame (the authors' windows read them).
    """
    spf = int(stride) if stride else samples_per_frame(sample_rate, fps)
    win = window_samples(sample_rate, window_s)
    if win < spf:
        raise ValueError(f"window of {win} samples is shorter than one video frame ({spf} samples)")
    audio = np.asarray(audio, np.float32)
    if trim:
        audio = fit_length(audio, n_frames, spf)
    elif len(audio) < n_frames * spf:
        audio = np.pad(audio, (0, n_frames * spf - len(audio)))
    left = (win - spf) // 2
    padded = np.pad(audio, (left, win - spf - left))
    starts = np.arange(n_frames) * spf
    return np.lib.stride_tricks.sliding_window_view(padded, win)[starts].copy()
