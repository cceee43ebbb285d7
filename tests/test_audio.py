import warnings

import numpy as np
import pytest

from speechanim.audio import (SilentAudioError, check_audible, check_mix, fit_length, frame_audio, mix_to_mono, normalise,
                              resample, samples_per_frame, window_samples)


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


# Values below are worked out by hand from each function's documented rule (mutation testing, docs/mutants.md).

def test_samples_per_frame_and_window_samples_round_to_whole_samples():
    assert samples_per_frame(16000, 25) == 640 and samples_per_frame(50000, 25.0) == 2000
    assert samples_per_frame(16000, 25.000000001) == 640  # within 1e-6 samples of a whole number
    with pytest.raises(ValueError, match=r"^sample rate 22050 Hz is not a whole number of samples per frame at "
                                         r"29\.97 fps$"):
        samples_per_frame(22050, 29.97)
    assert window_samples(16000, 0.16) == 2560 and window_samples(50000, 0.2) == 10000
    assert window_samples(16000, 0.0001) == 2  # 1.6 samples rounds to 2, not down to 1


def test_resample_keeps_a_tone_at_its_frequency_and_the_length_in_seconds():
    t_in = np.arange(4410) / 44100
    tone = np.sin(2 * np.pi * 100 * t_in)
    out = resample(tone, 44100, 16000)  # gcd 100: up 160, down 441
    assert out.dtype == np.float32 and out.shape == (1600,)
    t_out = np.arange(1600) / 16000
    np.testing.assert_allclose(out[200:1400], np.sin(2 * np.pi * 100 * t_out)[200:1400], atol=2e-3)
    same = resample(np.array([1, 2, 3]), 16000.0, 16000)
    assert same.dtype == np.float32 and same.tolist() == [1.0, 2.0, 3.0]


def test_check_audible_measures_the_rms_around_the_mean():
    square = np.tile([0.5, -0.5], 50) + 3.0  # RMS 0.5 once its offset of 3 is removed
    check_audible(square, silence_rms=0.5)  # exactly at the threshold: audible
    with pytest.raises(SilentAudioError, match=r"^x\.wav: silent audio track \(RMS 5\.00e-01 < 6e-01\)$"):
        check_audible(square, silence_rms=0.6, source="x.wav")
    with pytest.raises(SilentAudioError, match=r"^audio: silent audio track \(RMS 0\.00e\+00 < 1e-04\)$"):
        check_audible(np.full(100, 3.0))  # a constant (a DC offset) is silence
    with pytest.raises(SilentAudioError, match=r"RMS 0\.00e\+00"):
        check_audible(np.zeros(0))
    check_audible(np.tile([2e-4, -2e-4], 10))  # the default threshold is 1e-4
    # half-precision samples are measured in double precision: +-1.5e-4 (RMS 1.5e-4 > 1e-4) squares to 2.25e-8,
    # which float16 (smallest step 6e-8) would round to 0, calling the track silent
    check_audible(np.tile(np.array([1.5e-4, -1.5e-4], np.float16), 10))


def test_check_mix_refuses_only_a_silent_mix_of_channels_that_are_not():
    with pytest.raises(SilentAudioError, match=r"^in\.wav: its 2 channels cancel out when mixed to mono \(RMS 0\.0e\+00 "
                                               r"mixed, 7\.0e-01 in channel 2: one is the other inverted\?\); keep one "
                                               r"channel, e\.g\. ffmpeg -i IN -af 'pan=mono\|c0=c0' OUT\.wav$"):
        check_mix([0.1, 0.7], 0.0, source="in.wav")
    with pytest.raises(SilentAudioError, match="channel 1"):
        check_mix([[0.5], [0.5]], 0.0)  # any shape of per-channel values; the first loudest is named
    with pytest.raises(SilentAudioError):
        check_mix([0.0, 0.5], 0.4, silence_rms=0.5)  # a channel exactly at the threshold is not silent
    check_mix([0.5, 0.5], 0.5, silence_rms=0.5)  # the mix exactly at the threshold is not silent
    check_mix([0.4, 0.4], 0.0, silence_rms=0.5)  # every channel silent: nothing cancelled
    check_mix([0.7], 0.0)  # one channel: nothing to cancel
    with pytest.raises(SilentAudioError, match=r"^audio: its 2 channels cancel out"):
        check_mix([0.5, 0.5], 0.0)  # no source named: the message says "audio"


def test_mix_to_mono_averages_the_channels_and_refuses_cancelling_ones():
    left = np.array([0.0, 1.0, 0.0, -1.0])
    np.testing.assert_array_equal(mix_to_mono(np.stack([left, 0.5 * left], axis=1)), 0.75 * left)
    np.testing.assert_array_equal(mix_to_mono(np.stack([left, left, -left], axis=1)), left / 3)
    with pytest.raises(SilentAudioError, match=r"^a\.wav: its 2 channels cancel out"):
        mix_to_mono(np.stack([left, -left], axis=1), source="a.wav")
    # each channel's RMS around its own mean is sqrt(1/2) = 0.707; the mix (a constant 5) has none
    with pytest.raises(SilentAudioError):
        mix_to_mono(np.stack([left + 5, -left + 5], axis=1), silence_rms=0.7)
    mix_to_mono(np.stack([left, -left], axis=1) * 0.5, silence_rms=0.8)  # channels of RMS 0.35 < 0.8: silent too
    # the same quiet channels on opposite offsets +5 and -5 (the mix is 0): each channel's RMS is taken around its
    # own mean, 0.35 < 0.8, so the offsets are not mistaken for sound that cancelled
    mix_to_mono(np.stack([0.5 * left + 5, -0.5 * left - 5], axis=1), silence_rms=0.8)
    with pytest.raises(SilentAudioError, match=r"^audio: its 2 channels cancel out"):  # two samples are enough
        mix_to_mono(np.array([[1.0, -1.0], [-1.0, 1.0]]))  # channels of RMS 1, the mix 0; no source: "audio"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "mean of empty slice" warning: there is nothing to measure
        assert mix_to_mono(np.zeros((0, 2))).shape == (0,)
    one = np.array([1.0, -2.0])
    assert mix_to_mono(one) is one
    np.testing.assert_array_equal(mix_to_mono(np.array([[1.0, -1.0]])), [0.0])  # one sample: no RMS to compare
    np.testing.assert_array_equal(mix_to_mono(left[:, None]), left)


def test_normalise_removes_the_offset_and_scales_the_peak_to_one():
    y = normalise(np.array([1.0, 2.0, 3.0, 6.0]))  # mean 3: -2, -1, 0, 3, then / 3
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [-2 / 3, -1 / 3, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(normalise(np.array([0.0, 0.0, -4.0, 0.0])), [1 / 3, 1 / 3, -1.0, 1 / 3], rtol=1e-6)
    with pytest.raises(SilentAudioError, match=r"^b: silent audio track \(RMS .* < 1e\+01\)$"):
        normalise(np.array([1.0, 2.0, 3.0, 6.0]), silence_rms=10, source="b")
    with pytest.raises(SilentAudioError, match=r"^audio: silent audio track"):
        normalise(np.full(10, 0.5))  # no source named: the message says "audio"
    # whatever the sample type, the arithmetic is float32: half-precision samples come out exact to float32,
    # not rounded to float16's 11 bits (-2/3 would be -0.6665)
    for samples in (np.array([1, 2, 3, 6], np.int16), np.array([1, 2, 3, 6], np.float16)):
        np.testing.assert_allclose(normalise(samples), [-2 / 3, -1 / 3, 0.0, 1.0], rtol=1e-6)


def test_fit_length_trims_or_pads_with_zeros_at_the_end():
    np.testing.assert_array_equal(fit_length(np.arange(1.0, 8.0), 3, 2), [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(fit_length(np.arange(1.0, 7.0), 3, 2), [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(fit_length(np.arange(1.0, 4.0), 3, 2), [1, 2, 3, 0, 0, 0])


def test_frame_audio_with_an_odd_padding_a_stride_and_untrimmed_audio():
    ramp = np.arange(1.0, 501.0)  # 1000 Hz at 10 fps: 100 samples a frame; 5 frames
    w = frame_audio(ramp, 5, 1000, 10, 0.155)  # 155-sample windows: 27 zeros before, 28 after
    assert w.dtype == np.float32 and w.shape == (5, 155)
    assert np.all(w[0, :27] == 0) and w[0, 27] == 1 and w[1, 0] == 100 - 27 + 1
    assert w[4, 126] == 500 and np.all(w[4, 127:] == 0)  # window k, sample j: sample 100 k + j - 27 of the audio
    w = frame_audio(ramp, 3, 1000, 10, 0.155)  # trimmed to 3 frames: nothing of frame 3 is heard
    assert w[2, 126] == 300 and np.all(w[2, 127:] == 0)
    w = frame_audio(ramp, 3, 1000, 10, 0.155, trim=False)  # the samples after the last frame are kept
    assert w[2, 126] == 300 and w[2, 154] == 328
    w = frame_audio(ramp[:250], 3, 1000, 10, 0.155, trim=False)  # too short: zero-padded to 3 frames
    assert w[2, 27 + 49] == 250 and np.all(w[2, 27 + 50:] == 0)
    w = frame_audio(ramp, 4, 1000, 10, 0.2, stride=50)  # windows 50 samples apart: 75 zeros before
    assert w.shape == (4, 200) and w[1, 75 - 50] == 1 and w[3, 75] == 151
    with pytest.raises(ValueError, match=r"^window of 99 samples is shorter than one video frame \(100 samples\)$"):
        frame_audio(ramp, 5, 1000, 10, 0.099)
    frame_audio(ramp, 5, 1000, 10, 0.1)  # a window of exactly one frame is allowed
