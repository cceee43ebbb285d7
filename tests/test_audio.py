import numpy as np
import pytest

from speechanim.audio import SilentAudioError, fit_length, frame_audio, normalise, samples_per_frame


def test_window_k_is_centred_on_frame_k():
    rate, fps, n = 16000, 25, 75
    spf = samples_per_frame(rate, fps)
    assert spf == 640
    # a click in the middle of video frame 30 must sit in the middle of window 30
    audio = np.zeros(n * spf, np.float32)
    centre_30 = 30 * spf + spf // 2
    audio[centre_30] = 1.0
    windows = frame_audio(audio, n, rate, fps, 0.16)
    assert windows.shape == (75, 2560)
    assert np.argmax(windows[30]) == 2560 // 2
    # the windows overlap: the click is in 4 windows (0.16 s / 0.04 s), 29..32 (half-open windows)
    assert sorted(np.nonzero(windows.max(axis=1))[0].tolist()) == [29, 30, 31, 32]
    # each window is the signal itself, shifted by one frame's worth of samples
    ramp = np.arange(n * spf, dtype=np.float32)
    w = frame_audio(ramp, n, rate, fps, 0.16)
    assert w[10, 0] == 10 * spf - 960 and w[10, -1] == 10 * spf + 1599
    assert np.all(np.diff(w[10]) == 1)


def test_ends_are_zero_padded_and_length_fits():
    rate, fps = 16000, 25
    ones = np.ones(10 * 640 - 100, np.float32)  # slightly short of 10 frames
    w = frame_audio(ones, 10, rate, fps, 0.16)
    assert w.shape == (10, 2560)
    assert np.all(w[0, :960] == 0) and np.all(w[0, 960:] == 1)
    assert np.all(w[-1, -960:] == 0)
    assert len(fit_length(np.ones(5000), 5, 640)) == 3200


def test_rate_must_fit_the_frame_rate():
    with pytest.raises(ValueError, match="whole number"):
        samples_per_frame(22050, 29.97)


def test_normalise_and_silence():
    x = np.sin(np.linspace(0, 100, 8000)).astype(np.float32) * 0.1 + 0.5
    y = normalise(x)
    assert abs(y.mean()) < 1e-3 and np.abs(y).max() == pytest.approx(1.0)
    with pytest.raises(SilentAudioError, match="clip.wav: silent audio track"):
        normalise(np.zeros(8000, np.float32), source="clip.wav")
