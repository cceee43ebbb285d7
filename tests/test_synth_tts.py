"""Offline TTS through libespeak-ng: timings, determinism, voices, padding and GRID alignments."""
from __future__ import annotations

import numpy as np
import pytest

from speechanim import gridformat
from speechanim.synth import tts
from speechanim.synth.tts import (GRID_CLIP_S, GRID_LEAD_S, SAMPLE_RATE, Segment, TTSError, TTSUnavailableError,
                                  Voice, align_text, pad_to, synthesize, synthesize_words)

SENTENCES = [
    "bin blue at f two now",
    "place green by m seven please",
    "lay white with q zero again",
    "set red in x nine soon",
]


@pytest.fixture(scope="module")
def spoken() -> list[tts.Speech]:
    return [synthesize(s) for s in SENTENCES]


def f0_hz(speech: tts.Speech) -> float:
    """Median fundamental frequency over voiced 40 ms frames (autocorrelation, 60-500 Hz)."""
    x, sr = speech.samples.astype(np.float64), speech.sample_rate
    n = int(0.04 * sr)
    lo, hi = int(sr / 500), int(sr / 60)
    frames = [x[i:i + n] for i in range(0, len(x) - n, n // 2)]
    loud = max(np.sqrt(np.mean(f ** 2)) for f in frames)
    estimates = []
    for f in frames:
        if np.sqrt(np.mean(f ** 2)) < 0.3 * loud:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[n - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            estimates.append(sr / lag)
    assert len(estimates) >= 5, "too few voiced frames"
    return float(np.median(estimates))


def test_speech_format(spoken):
    for speech in spoken:
        assert speech.sample_rate == SAMPLE_RATE == 22050
        assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
        assert np.abs(speech.samples).max() <= 1.0
        assert np.abs(speech.samples).max() > 0.1  # not silent
        assert 1.0 < speech.duration < 3.0


def test_word_timings_ordered_and_within_audio(spoken):
    for text, speech in zip(SENTENCES, spoken):
        assert [w.label for w in speech.words] == text.split()
        for prev, word in zip(speech.words, speech.words[1:]):
            assert word.start == prev.end  # contiguous: a word ends where the next starts
        for word in speech.words:
            assert 0.0 <= word.start < word.end <= speech.duration
            assert word.duration > 0.05
        assert speech.duration - speech.words[-1].end < 0.05


def test_phoneme_segments_tile_the_speech(spoken):
    for speech in spoken:
        ph = speech.phonemes
        assert len(ph) >= 10
        for prev, seg in zip(ph, ph[1:]):
            assert seg.start == prev.end and seg.end > seg.start
        assert ph[0].start <= speech.words[0].start + 0.06
        assert ph[-1].end == pytest.approx(speech.duration)
        assert ph[-1].label.startswith("_")  # eSpeak ends with a pause


def test_speech_energy_lies_within_the_words(spoken):
    for speech in spoken:
        x, sr = speech.samples.astype(np.float64), speech.sample_rate
        energy = x ** 2
        inside = sum(energy[int(w.start * sr):int(np.ceil(w.end * sr))].sum() for w in speech.words)
        assert inside / energy.sum() > 0.999
        for w in speech.words:  # every word segment holds sound
            seg = x[int(w.start * sr):int(w.end * sr)]
            assert np.sqrt(np.mean(seg ** 2)) > 0.02, w


def test_phoneme_mnemonics_of_a_grid_sentence(spoken):
    bare = [p.label.lstrip("',") for p in spoken[0].phonemes if not p.label.startswith("_")]
    assert bare == ["b", "I", "n", "b", "l", "u:", "a", "t#", "E", "f", "t", "u:", "n", "aU"]
    assert "'aU" in [p.label for p in spoken[0].phonemes]  # stress marks are kept


def test_stops_start_at_their_closure(spoken):
    """eSpeak reports p/b at the burst; the segment starts at the preceding silence (closed lips)."""
    checked = 0
    for speech in spoken:
        x, sr = speech.samples, speech.sample_rate
        for seg in speech.phonemes:
            if seg.label in ("p", "b") and seg.duration > 0.03:
                head = x[int(seg.start * sr):int((seg.start + 0.015) * sr)]
                assert np.abs(head).max() < 0.01, seg
                checked += 1
    assert checked >= 4


def test_deterministic_whatever_came_before():
    first = synthesize(SENTENCES[0])
    synthesize(SENTENCES[1], Voice("en+f2", rate=200, pitch=80))  # disturb eSpeak's internal state
    synthesize("the quick brown fox jumps over the lazy dog", Voice("en+m3"))
    again = synthesize(SENTENCES[0])
    assert np.array_equal(first.samples, again.samples)
    assert first.words == again.words and first.phonemes == again.phonemes


def test_voices_differ_in_audio_and_pitch():
    male = synthesize(SENTENCES[1], Voice("en-us"))
    female = synthesize(SENTENCES[1], Voice("en+f2"))
    assert male.samples.shape != female.samples.shape or not np.array_equal(male.samples, female.samples)
    assert f0_hz(female) > 1.3 * f0_hz(male)
    low = synthesize(SENTENCES[1], Voice("en-us", pitch=20))
    high = synthesize(SENTENCES[1], Voice("en-us", pitch=80))
    assert f0_hz(high) > 1.2 * f0_hz(low)


def test_rate_sets_duration():
    slow = synthesize(SENTENCES[2], Voice(rate=100))
    fast = synthesize(SENTENCES[2], Voice(rate=200))
    assert 1.6 < slow.duration / fast.duration < 2.4


def test_pad_to_places_speech_and_shifts_timings(spoken):
    speech = spoken[1]
    clip = pad_to(speech, GRID_CLIP_S, GRID_LEAD_S)
    n_lead = round(GRID_LEAD_S * SAMPLE_RATE)
    assert len(clip.samples) == round(GRID_CLIP_S * SAMPLE_RATE) == 66150
    assert clip.samples.dtype == np.float32
    assert not clip.samples[:n_lead].any()
    assert np.array_equal(clip.samples[n_lead:n_lead + len(speech.samples)], speech.samples)
    assert not clip.samples[n_lead + len(speech.samples):].any()
    offset = n_lead / SAMPLE_RATE
    for before, after in zip(speech.words + speech.phonemes, clip.words + clip.phonemes):
        assert after.label == before.label
        assert after.start == pytest.approx(before.start + offset)
        assert after.end == pytest.approx(before.end + offset)
    assert speech.words[0].start == 0.0  # the original is unchanged


def test_pad_to_refuses_what_does_not_fit(spoken):
    with pytest.raises(ValueError, match="does not fit"):
        pad_to(spoken[1], 2.0, 0.5)
    with pytest.raises(ValueError):
        pad_to(spoken[1], 3.0, -0.1)


def test_longest_grid_sentence_fits_a_grid_clip():
    for name in ("en-us", "en+f4"):  # en+f4 is the slowest English variant
        speech = synthesize_words("place white with q seven please".split(), Voice(name))
        clip = pad_to(speech, GRID_CLIP_S, GRID_LEAD_S)
        assert GRID_CLIP_S - clip.words[-1].end > 0.1


def test_align_text_parses_back(spoken):
    clip = pad_to(spoken[0], GRID_CLIP_S, GRID_LEAD_S)
    text = align_text(clip.words, GRID_CLIP_S)
    lines = text.splitlines()
    assert all(len(line.split()) == 3 for line in lines)
    assert lines[0] == f"0 {round(clip.words[0].start * 25000)} sil" == "0 12500 sil"
    assert lines[-1].endswith(" 75000 sil")
    segments = gridformat.parse_align(text)
    assert [s.word for s in segments] == ["sil", *SENTENCES[0].split(), "sil"]
    for prev, seg in zip(segments, segments[1:]):
        assert seg.start == prev.end
    for word, seg in zip(clip.words, segments[1:-1]):
        assert abs(seg.start - word.start) <= 0.5 / 25000 and abs(seg.end - word.end) <= 0.5 / 25000


def test_align_text_fills_gaps_and_checks_order():
    words = [Segment("bin", 0.5, 0.7), Segment("blue", 0.8, 1.0)]
    assert align_text(words, 1.2) == "0 12500 sil\n12500 17500 bin\n17500 20000 sp\n20000 25000 blue\n25000 30000 sil\n"
    with pytest.raises(ValueError):
        align_text(list(reversed(words)), 1.2)
    with pytest.raises(ValueError):
        align_text(words, 0.9)


def test_synthesize_words_labels_grid_words_and_says_letter_a():
    speech = synthesize_words(["bin", "blue", "at", "a", "two", "now"])
    assert [w.label for w in speech.words] == ["bin", "blue", "at", "a", "two", "now"]
    a = speech.words[3]
    inside = [p.label.lstrip("',") for p in speech.phonemes if a.start <= p.start < a.end]
    assert "eI" in inside  # the letter name, not the article


def test_every_grid_word_gets_its_own_segment():
    """25 sentences cover every word of every slot; each must give exactly six word segments."""
    slots = [sorted(set(table.values())) for table in gridformat.GRAMMAR]
    for i in range(max(len(s) for s in slots)):
        words = [slot[(i + 3 * k) % len(slot)] for k, slot in enumerate(slots)]
        speech = synthesize_words(words)
        assert [w.label for w in speech.words] == words


def test_errors():
    with pytest.raises(TTSError, match="no voice"):
        synthesize("hello", Voice("en-gb"))
    with pytest.raises(ValueError):
        synthesize("   ")
    with pytest.raises(ValueError):
        Voice(rate=10)
    with pytest.raises(ValueError):
        Voice(pitch=101)


def test_unloadable_library_gives_a_clear_error(monkeypatch, tmp_path):
    import espeakng_loader

    monkeypatch.setattr(tts, "_engine", None)
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(tmp_path / "libespeak-ng.so"))
    with pytest.raises(TTSUnavailableError, match="libespeak-ng"):
        synthesize("hello")
    bogus = tmp_path / "libespeak-ng.so"
    bogus.write_bytes(b"not a shared library")
    with pytest.raises(TTSUnavailableError, match="cannot load"):
        synthesize("hello")
