"""Phonemes to per-frame mouth parameters: closures, openings, silences and agreement with the audio."""
from __future__ import annotations

import numpy as np
import pytest

from speechanim import gridformat
from speechanim.synth.tts import GRID_CLIP_S, GRID_LEAD_S, Segment, Voice, pad_to, synthesize_words
from speechanim.synth.visemes import (PARAMETERS, PHONEME_VISEMES, VISEMES, frame_times, mouth_curves, mouth_track,
                                      split_stress, viseme_classes)

FPS, N_FRAMES = 25, 75
SENTENCES = [  # (words, voice)
    ("bin blue at f two now", "en-us"),
    ("place green by m seven please", "en-us"),
    ("lay white with q zero again", "en+f2"),
    ("set red in x nine soon", "en+m3"),
    ("bin white at a one soon", "en"),
    ("place red with b four again", "en-gb-x-rp"),
    ("lay green by p eight now", "en-us+f3"),
    ("set blue in v three please", "en-us"),
]
OPEN_VOWELS = {"a", "aa", "A:", "A@", "aI", "aU", "V"}
BILABIALS = {"p", "b", "m"}


@pytest.fixture(scope="module")
def clips():
    """(padded speech, mouth track) for each sentence."""
    out = []
    for words, voice in SENTENCES:
        clip = pad_to(synthesize_words(words.split(), Voice(voice)), GRID_CLIP_S, GRID_LEAD_S)
        out.append((clip, mouth_track(clip.phonemes, N_FRAMES, FPS)))
    return out


def frames_in(seg: Segment) -> np.ndarray:
    """Frames whose centre lies in the segment, or the nearest frame when none does."""
    t = frame_times(N_FRAMES, FPS)
    inside = np.nonzero((t >= seg.start) & (t < seg.end))[0]
    return inside if inside.size else np.array([int(np.argmin(np.abs(t - seg.centre)))])


def rms_per_frame(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    spf = sample_rate // FPS
    return np.sqrt(np.mean(samples[:N_FRAMES * spf].astype(np.float64).reshape(N_FRAMES, spf) ** 2, axis=1))


def test_frame_convention():
    assert np.allclose(frame_times(3, 25.0), [0.02, 0.06, 0.10])


def test_track_shape_dtype_and_ranges(clips):
    for _, track in clips:
        assert len(track) == N_FRAMES
        for name, values in track.as_dict().items():
            assert values.shape == (N_FRAMES,) and values.dtype == np.float32, name
        assert track.as_array().shape == (N_FRAMES, len(PARAMETERS))
        assert track.jaw_open.min() >= 0 and track.jaw_open.max() <= 1
        assert track.lip_width.min() >= -1 and track.lip_width.max() <= 1
        for values in (track.lip_round, track.lip_tuck):
            assert values.min() >= 0 and values.max() <= 1
        assert track.jaw_open.max() > 0.5  # the mouth does open


def test_every_grid_phoneme_has_a_viseme():
    slots = [sorted(set(table.values())) for table in gridformat.GRAMMAR]
    seen: set[str] = set()
    for i in range(max(len(s) for s in slots)):
        words = [slot[(i + 3 * k) % len(slot)] for k, slot in enumerate(slots)]
        for voice in ("en-us", "en-gb-x-rp"):
            seen |= {split_stress(p.label)[0] for p in synthesize_words(words, Voice(voice)).phonemes}
    missing = {p for p in seen if not p.startswith("_") and p not in PHONEME_VISEMES}
    assert not missing, f"eSpeak mnemonics without a viseme: {sorted(missing)}"
    assert {"b", "p", "m", "f", "v", "aI", "aU", "u:", "i:", "E"} <= seen


def test_viseme_table():
    assert split_stress("'aU") == ("aU", 1) and split_stress(",E") == ("E", 2) and split_stress("n") == ("n", 0)
    assert [v.name for v in viseme_classes("'aU")] == ["open_vowel", "rounded_vowel"]
    assert viseme_classes("_:")[0].name == "silence"
    assert viseme_classes("m")[0].jaw_open == 0.0
    assert VISEMES["labiodental"].lip_tuck == 1.0
    assert VISEMES["rounded_vowel"].lip_round > 0.8 and VISEMES["rounded_vowel"].lip_width < 0
    assert VISEMES["spread_vowel"].lip_width > 0.5
    assert viseme_classes("kx")[0].name == "velar"  # unknown mnemonics fall back on their first letter
    assert viseme_classes(";")[0].name == "palatal"


def test_bilabials_close_the_mouth(clips):
    checked = 0
    for clip, track in clips:
        for seg in clip.phonemes:
            if split_stress(seg.label)[0] in BILABIALS:
                assert track.jaw_open[frames_in(seg)].min() < 0.1, (clip.text, seg)
                checked += 1
    assert checked >= 10


def test_short_bilabial_still_closes():
    """A 20 ms /m/ between open vowels, shorter than a frame, still gives a closed frame."""
    phonemes = [Segment("'a", 0.50, 0.70), Segment("m", 0.70, 0.72), Segment("'a", 0.72, 0.92)]
    track = mouth_track(phonemes, 30, FPS)
    assert track.jaw_open.min() < 0.1
    assert track.jaw_open.max() > 0.7


def test_open_vowels_open_wider_than_bilabials(clips):
    vowel_jaw, bilabial_jaw = [], []
    for clip, track in clips:
        for seg in clip.phonemes:
            base = split_stress(seg.label)[0]
            if base in OPEN_VOWELS:
                vowel_jaw.append(track.jaw_open[frames_in(seg)].max())
            elif base in BILABIALS:
                bilabial_jaw.append(track.jaw_open[frames_in(seg)].min())
    assert len(vowel_jaw) >= 5
    assert np.mean(vowel_jaw) > 0.6
    assert min(vowel_jaw) > max(bilabial_jaw) + 0.2


def test_rounding_spreading_and_tuck(clips):
    for clip, track in clips:
        for seg in clip.phonemes:
            base = split_stress(seg.label)[0]
            frames = frames_in(seg)
            if base == "u:" and seg.duration > 0.08:
                assert track.lip_round[frames].max() > 0.6 and track.lip_width[frames].min() < -0.4, seg
            if base == "i:" and seg.duration > 0.08:
                assert track.lip_width[frames].max() > 0.5 and track.lip_round[frames].min() < 0.3, seg
            if base in ("f", "v"):
                assert track.lip_tuck[frames].max() > 0.7, seg


def test_silence_keeps_the_mouth_closed(clips):
    t = frame_times(N_FRAMES, FPS)
    for clip, track in clips:
        before = t < clip.speech_start - 0.1
        after = t > clip.speech_end + 0.15
        assert before.sum() >= 8 and after.sum() >= 3
        for values in track.as_dict().values():
            assert np.abs(values[before]).max() < 0.02
            assert np.abs(values[after]).max() < 0.02


def test_jaw_follows_the_speech_energy(clips):
    correlations = []
    for clip, track in clips:
        rms = rms_per_frame(clip.samples, clip.sample_rate)
        correlations.append(float(np.corrcoef(track.jaw_open, rms)[0, 1]))
    print(f"jaw_open vs RMS per frame: r = {np.round(correlations, 3)}; mean {np.mean(correlations):.3f}")
    assert np.mean(correlations) > 0.65
    assert min(correlations) > 0.5


def test_motion_is_smooth(clips):
    for _, track in clips:
        assert np.abs(np.diff(track.jaw_open)).max() < 0.6
        assert np.abs(np.diff(track.lip_width)).max() < 1.0  # rounded <-> spread can take one frame


def test_mouth_curves_at_arbitrary_times():
    phonemes = [Segment("'a", 0.2, 0.4)]
    curves = mouth_curves(phonemes, np.array([0.0, 0.3, 1.0]), clip_end=1.0)
    assert curves.shape == (3, 4)
    assert curves[0, 0] < 0.01 and curves[2, 0] < 0.01 and curves[1, 0] > 0.8
    with pytest.raises(ValueError):
        mouth_curves(phonemes, [0.3], smoothing_s=0.0)
    with pytest.raises(ValueError):
        mouth_track(phonemes, 0, FPS)
