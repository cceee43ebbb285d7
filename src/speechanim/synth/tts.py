"""Offline text-to-speech with word and phoneme timings: libespeak-ng through ctypes.

The synthetic GRID corpus speaks its sentences with eSpeak NG (the library and its data come from the
``espeakng-loader`` wheel, so no system package is needed).  :func:`synthesize` returns the waveform
together with the word and phoneme segments that eSpeak reports while it synthesises; the phoneme
segments drive the cartoon mouth (:mod:`speechanim.synth.visemes`) and the word segments become the
clip's GRID ``.align`` file (:func:`align_text`).

Timing: eSpeak reports events (word start, phoneme start, ...) with an ``audio_position`` in
milliseconds on the clock of the samples it hands back, so a segment starts at its event's
``audio_position`` and ends where the next one of its kind starts; the last word and the last phoneme
end where the speech sound ends (the trailing pause phoneme eSpeak appends, or the end of the audio).
eSpeak reports a plosive or affricate at its burst; its segment is moved back to start where the
silence of its closure starts, which is when the lips (for p, b) close.

Determinism: libespeak-ng keeps synthesis state in process-wide static variables (waveform phase,
pitch flutter, its noise generator), so the same text spoken twice in one process gives slightly
different samples.  Each call to :func:`synthesize` therefore loads the library afresh (``dlopen``),
synthesises, and unloads it (``dlclose``).  Its noise comes from two generators, both seeded with
:data:`NOISE_SEED` per call: eSpeak NG's own (1.52 and later; ``espeak_ng_Initialize`` seeds it from
the wall clock, ``time(NULL)``, so it must be reseeded with ``espeak_ng_SetRandSeed`` after every
initialisation) and libc's ``rand()`` (older eSpeak NG, and the Klatt "speechPlayer" voices), which
is switched to a private state for the duration.  The same text and :class:`Voice` thus give
bit-identical samples in any process, whatever was synthesised before.  This costs about 1 ms a call
on top of the ~3 ms that a GRID sentence takes.  Calls are serialised by a process-wide lock.
"""
from __future__ import annotations

import _ctypes
import ctypes
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from speechanim.gridformat import ALIGN_UNITS_PER_SECOND

#: eSpeak NG's native output rate; every :class:`Speech` comes at this rate.
SAMPLE_RATE = 22050

#: GRID clips last 3 s, with silence before and after the sentence.
GRID_CLIP_S = 3.0
#: Silence before the sentence in a synthetic GRID clip (real GRID clips start speaking at ~0.3-0.9 s).
GRID_LEAD_S = 0.5
#: Speaking rate (words per minute) for GRID sentences.  At 150 wpm the longest GRID sentence
#: ("place white with q seven please") lasts 2.11-2.34 s depending on the English voice variant
#: (en+m3 fastest, en+f4 slowest), so it fits in a 3 s clip after :data:`GRID_LEAD_S` with >= 0.16 s
#: of trailing silence; typical sentences last 1.6-1.9 s (real GRID speech: ~1.5-2.2 s).  Any rate
#: >= 150 fits; at 140 the slowest voice would overrun.
GRID_RATE = 150

# espeak_AUDIO_OUTPUT, espeak_Initialize options, espeak_Synth flags (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7

# espeak_EVENT_TYPE
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7

#: The seed of eSpeak's noise generators for every utterance (any fixed value; 1 is libc's default).
NOISE_SEED = 1


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),  # WORD and SENTENCE events
        ("name", ctypes.c_char_p),  # MARK and PLAY events
        ("string", ctypes.c_char * 8),  # PHONEME events: the mnemonic, NUL-terminated unless 8 bytes long
    ]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (40 bytes on x86-64: ``user_data`` at 24, ``id`` at 32)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # characters from the start of the text, 1-based
        ("length", ctypes.c_int),  # word length in characters (WORD events)
        ("audio_position", ctypes.c_int),  # ms within the generated speech
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class TTSError(RuntimeError):
    """Speech synthesis failed."""


class TTSUnavailableError(TTSError):
    """The eSpeak NG library or its data cannot be found or loaded."""


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice and its prosody settings.

    ``name`` is given to ``espeak_SetVoiceByName``: a language voice (``"en-us"``, ``"en"``,
    ``"en-gb-x-rp"``), optionally with a variant (``"en+f2"``, ``"en+m3"``, ``"en-us+f3"``).
    Note that ``"en-gb"`` is not a voice name.
    """

    name: str = "en-us"
    rate: int = GRID_RATE  # words per minute, 80-450
    pitch: int = 50  # base pitch, 0-100 (50 = the voice's normal)
    pitch_range: int = 50  # intonation range, 0-100 (0 = monotone)
    volume: int = 100  # amplitude, 0-200 (100 = normal)
    word_gap: int = 0  # extra pause between words, units of 10 ms

    def __post_init__(self) -> None:
        for attr, lo, hi in (("rate", 80, 450), ("pitch", 0, 100), ("pitch_range", 0, 100),
                             ("volume", 0, 200), ("word_gap", 0, 1000)):
            value = getattr(self, attr)
            if not lo <= value <= hi:
                raise ValueError(f"Voice.{attr} must lie in [{lo}, {hi}], got {value}")
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"Voice.name must be an eSpeak voice name such as 'en-us', got {self.name!r}")


@dataclass(frozen=True)
class Segment:
    """A labelled stretch of time, in seconds."""

    label: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass
class Speech:
    """Synthesised speech: mono float32 samples in [-1, 1] and its word and phoneme segments.

    ``words`` are labelled with the words of the input text and are contiguous (each ends where the
    next starts); the last ends where the speech sound ends.  ``phonemes`` are labelled with eSpeak's
    phoneme mnemonics as it reports them, stress marks included (``"'aU"`` is a stressed ``aU``;
    ``"_:"`` and ``"_"`` are pauses), and tile the time from the first phoneme to the end of the audio;
    plosives and affricates start at their closure (see the module's docstring).
    """

    samples: np.ndarray
    sample_rate: int
    words: list[Segment]
    phonemes: list[Segment]
    text: str = ""
    voice: Voice | None = field(default=None, compare=False)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def speech_start(self) -> float:
        """When the first word starts (0 when there are no words)."""
        return self.words[0].start if self.words else 0.0

    @property
    def speech_end(self) -> float:
        """When the last word ends (0 when there are no words)."""
        return self.words[-1].end if self.words else 0.0


# --------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------


class _Engine:
    """Finds libespeak-ng and its data once; loads a fresh copy of the library for every synthesis."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - the wheel is a declared dependency
            raise TTSUnavailableError(
                "the 'espeakng-loader' package is not installed; it provides libespeak-ng and its data "
                "(pip install espeakng-loader)"
            ) from exc
        try:
            self.library_path = Path(espeakng_loader.get_library_path())
            self.data_path = Path(espeakng_loader.get_data_path())
        except Exception as exc:  # the loader raises RuntimeError when its data folder is missing
            raise TTSUnavailableError(f"espeakng-loader cannot locate eSpeak NG: {exc}") from exc
        if not self.library_path.is_file():
            raise TTSUnavailableError(f"libespeak-ng not found at {self.library_path}")
        if not (self.data_path / "phondata").is_file():
            raise TTSUnavailableError(f"eSpeak NG data folder {self.data_path} has no 'phondata'")
        self.lock = threading.Lock()
        try:  # libc's random generator, which eSpeak uses for its noise sources
            self._libc = ctypes.CDLL(None)
            self._libc.initstate.restype = ctypes.c_void_p
            self._libc.initstate.argtypes = [ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t]
            self._libc.setstate.restype = ctypes.c_void_p
            self._libc.setstate.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError) as exc:
            raise TTSUnavailableError(f"cannot reach libc's initstate/setstate: {exc}") from exc
        # Load once now so that a broken installation fails here, with a clear message.
        lib = self._load()
        try:
            self.version = self._version(lib)
        finally:
            self._unload(lib)

    def _load(self) -> ctypes.CDLL:
        try:
            lib = ctypes.CDLL(str(self.library_path), mode=ctypes.RTLD_LOCAL)
        except OSError as exc:
            raise TTSUnavailableError(f"cannot load libespeak-ng from {self.library_path}: {exc}") from exc
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        try:  # eSpeak NG >= 1.52 has its own noise generator, seeded from the clock at initialisation
            lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        except AttributeError:  # older versions draw their noise from libc's rand() only
            pass
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                     _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if rate != SAMPLE_RATE:
            self._unload(lib, terminate=False)
            raise TTSUnavailableError(
                f"espeak_Initialize with data {self.data_path} returned {rate} (expected the sample rate "
                f"{SAMPLE_RATE}); is the eSpeak NG data folder complete?"
            )
        return lib

    @staticmethod
    def _unload(lib: ctypes.CDLL, terminate: bool = True) -> None:
        if terminate:
            lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)

    @staticmethod
    def _version(lib: ctypes.CDLL) -> str:
        info = lib.espeak_Info(None)
        return info.decode(errors="replace") if info else "unknown"

    def synthesize(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int, int, int, str]]]:
        """Raw samples (int16) and events ``(type, text_position, length, audio_position_ms, mnemonic)``."""
        chunks: list[np.ndarray] = []
        events: list[tuple[int, int, int, int, str]] = []

        def on_synth(wav: ctypes._Pointer, n_samples: int, event_list: ctypes._Pointer) -> int:
            if wav and n_samples > 0:
                chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
            i = 0
            while event_list[i].type != _EVENT_LIST_TERMINATED:
                ev = event_list[i]
                mnemonic = ev.id.string.decode("utf-8", errors="replace") if ev.type == _EVENT_PHONEME else ""
                events.append((ev.type, ev.text_position, ev.length, ev.audio_position, mnemonic))
                i += 1
            return 0

        callback = _SynthCallback(on_synth)
        encoded = text.encode("utf-8")
        rand_state = ctypes.create_string_buffer(128)
        with self.lock:
            lib = self._load()
            try:
                lib.espeak_SetSynthCallback(callback)
                if lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                    raise TTSError(f"eSpeak NG has no voice named {voice.name!r} (try 'en-us', 'en', 'en+f2')")
                for param, value in ((_RATE, voice.rate), (_VOLUME, voice.volume), (_PITCH, voice.pitch),
                                     (_RANGE, voice.pitch_range), (_WORDGAP, voice.word_gap)):
                    if lib.espeak_SetParameter(param, value, 0) != _EE_OK:
                        raise TTSError(f"espeak_SetParameter({param}, {value}) failed")
                # Noise: eSpeak's own generator was seeded from the clock by espeak_Initialize, and
                # libc's rand() (older eSpeak, Klatt voices) is shared with the process: seed both.
                if hasattr(lib, "espeak_ng_SetRandSeed") and lib.espeak_ng_SetRandSeed(NOISE_SEED) != _EE_OK:
                    raise TTSError("espeak_ng_SetRandSeed failed")
                previous = self._libc.initstate(NOISE_SEED, rand_state, len(rand_state))
                try:
                    err = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                finally:
                    self._libc.setstate(previous)
                if err != _EE_OK:
                    raise TTSError(f"espeak_Synth failed with error {err} for {text!r}")
            finally:
                self._unload(lib)
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return samples, events


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


def engine_version() -> str:
    """The version string of the libespeak-ng in use (e.g. ``"1.52-dev"``); loads the engine."""
    return _get_engine().version


# --------------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------------


#: Stress and emphasis marks that eSpeak prefixes to phoneme mnemonics (``'`` primary, ``,`` secondary).
_STRESS_MARKS = "',=%"
#: Plosives and affricates: eSpeak reports them at their release (the burst), after a silent closure.
STOP_PHONEMES = frozenset({"p", "b", "t", "d", "k", "g", "t#", "d#", "tS", "dZ", "?"})
_MIN_PHONEME_S = 0.001
_CLOSURE_SILENCE = 2e-3  # |sample| below this (-54 dBFS) counts as the silence of a stop closure
_CLOSURE_MIN_S = 0.003


def _is_pause(mnemonic: str) -> bool:
    return mnemonic.startswith("_")


def _closure_start(samples: np.ndarray, release_s: float, floor_s: float) -> float:
    """Where the silent closure before a stop released at ``release_s`` begins (not before ``floor_s``).

    eSpeak's phoneme event for a plosive marks its burst; the lips or tongue close earlier, during
    the silence that precedes it.  Returns ``release_s`` when no silence of at least 3 ms precedes it.
    """
    step = max(1, SAMPLE_RATE // 1000)  # 1 ms blocks
    release = int(round(release_s * SAMPLE_RATE))
    floor = int(np.ceil(floor_s * SAMPLE_RATE))
    cursor = release
    while cursor - step >= floor and np.abs(samples[cursor - step:cursor]).max(initial=0.0) < _CLOSURE_SILENCE:
        cursor -= step
    if (release - cursor) / SAMPLE_RATE < _CLOSURE_MIN_S:
        return release_s
    return cursor / SAMPLE_RATE


def synthesize(text: str, voice: Voice = Voice()) -> Speech:
    """Speak ``text`` with ``voice``; deterministic (the same text and voice give identical samples)."""
    if not text.strip():
        raise ValueError("nothing to synthesise: the text is empty")
    raw, events = _get_engine().synthesize(text, voice)
    if raw.size == 0:
        raise TTSError(f"eSpeak NG produced no audio for {text!r}")
    samples = (raw.astype(np.float32) / 32768.0).clip(-1.0, 1.0)
    total = len(samples) / SAMPLE_RATE

    def seconds(ms: int) -> float:
        return min(max(ms, 0) / 1000.0, total)

    phoneme_events = [(seconds(pos), m) for kind, _, _, pos, m in events if kind == _EVENT_PHONEME]
    starts = [start for start, _ in phoneme_events]
    for i, (start, label) in enumerate(phoneme_events):
        if label.lstrip(_STRESS_MARKS) in STOP_PHONEMES:
            floor = starts[i - 1] + _MIN_PHONEME_S if i > 0 else 0.0
            starts[i] = _closure_start(samples, start, floor)
    phonemes = [
        Segment(label, starts[i], starts[i + 1] if i + 1 < len(starts) else total)
        for i, (_, label) in enumerate(phoneme_events)
    ]
    phonemes = [p for p in phonemes if p.end > p.start]

    # The speech sound ends where the trailing pause starts (or with the audio).
    sound_end = total
    for p in reversed(phonemes):
        if not _is_pause(p.label):
            sound_end = p.end
            break

    word_events = [(seconds(pos), pos_chars, length) for kind, pos_chars, length, pos, _ in events
                   if kind == _EVENT_WORD]
    words: list[Segment] = []
    for i, (start, pos_chars, length) in enumerate(word_events):
        first = max(pos_chars - 1, 0)  # text_position is 1-based, in characters
        label = text[first:first + length].strip() or f"<{first}>"
        end = word_events[i + 1][0] if i + 1 < len(word_events) else max(sound_end, start)
        words.append(Segment(label, start, end))
    return Speech(samples=samples, sample_rate=SAMPLE_RATE, words=words, phonemes=phonemes, text=text, voice=voice)


#: How GRID words are spelt for eSpeak when the plain word is misread: eSpeak reads the letter "a"
#: as the article ("uh"), and after "at" merges it into the preceding word (no word event at all);
#: "eh" is read as the letter name /eI/ by every English voice.
GRID_SPOKEN_FORMS: dict[str, str] = {"a": "eh"}


def synthesize_words(words: Sequence[str], voice: Voice = Voice(),
                     spoken_forms: dict[str, str] | None = None) -> Speech:
    """Speak a sequence of words, one word segment each, labelled with the given words.

    Each word is spoken as ``spoken_forms.get(word, word)`` (default :data:`GRID_SPOKEN_FORMS`); the
    spoken form must be a single token.  Raises :class:`TTSError` when eSpeak does not report exactly
    one word per input word (it sometimes merges or splits words), so the labels are never misaligned.
    """
    forms = GRID_SPOKEN_FORMS if spoken_forms is None else spoken_forms
    words = list(words)
    spoken = [forms.get(w, w) for w in words]
    for word, form in zip(words, spoken):
        if not form or len(form.split()) != 1:
            raise ValueError(f"word {word!r} must be spoken as a single token, got {form!r}")
    speech = synthesize(" ".join(spoken), voice)
    if len(speech.words) != len(words):
        raise TTSError(
            f"eSpeak reported {len(speech.words)} words ({' '.join(w.label for w in speech.words)!r}) for the "
            f"{len(words)} words {' '.join(spoken)!r}; give the misread word a spoken form"
        )
    speech.words = [Segment(word, seg.start, seg.end) for word, seg in zip(words, speech.words)]
    speech.text = " ".join(words)
    return speech


def _shift(segments: Sequence[Segment], offset: float) -> list[Segment]:
    return [Segment(s.label, s.start + offset, s.end + offset) for s in segments]


def pad_to(speech: Speech, duration_s: float, lead_s: float) -> Speech:
    """Place ``speech`` in a clip of exactly ``duration_s`` seconds after ``lead_s`` seconds of silence.

    The clip has ``round(duration_s * rate)`` samples; the speech starts at sample
    ``round(lead_s * rate)`` and every segment is shifted by that many samples' time.  Raises
    :class:`ValueError` when the speech does not fit (choose a faster rate or a shorter lead).
    """
    if lead_s < 0:
        raise ValueError(f"lead_s must be >= 0, got {lead_s}")
    rate = speech.sample_rate
    n_total = int(round(duration_s * rate))
    n_lead = int(round(lead_s * rate))
    if n_lead + len(speech.samples) > n_total:
        raise ValueError(
            f"{speech.duration:.3f} s of speech after {lead_s:.3f} s of lead does not fit in a "
            f"{duration_s:.3f} s clip: speak faster (Voice.rate) or shorten the lead"
        )
    samples = np.zeros(n_total, np.float32)
    samples[n_lead:n_lead + len(speech.samples)] = speech.samples
    offset = n_lead / rate
    return replace(speech, samples=samples, words=_shift(speech.words, offset),
                   phonemes=_shift(speech.phonemes, offset))


def align_text(words: Sequence[Segment], duration_s: float, *, silence: str = "sil", pause: str = "sp") -> str:
    """GRID ``.align`` text for word segments in a clip of ``duration_s`` seconds.

    One ``start end word`` line per segment in units of 1/25000 s (1000 units = one 25 fps frame),
    with ``silence`` segments from 0 to the first word and from the last word to the end of the clip,
    and ``pause`` segments filling any gap between words, e.g. ``"0 12500 sil\\n12500 18000 bin\\n..."``.
    """
    units = ALIGN_UNITS_PER_SECOND
    end_units = int(round(duration_s * units))
    lines: list[str] = []
    cursor = 0
    for w in words:
        start, end = int(round(w.start * units)), int(round(w.end * units))
        if start < cursor or end < start or end > end_units:
            raise ValueError(f"word segment {w} overlaps its predecessor or lies outside the {duration_s} s clip")
        if start > cursor:
            lines.append(f"{cursor} {start} {silence if cursor == 0 else pause}")
        label = "".join(w.label.split()) or pause
        lines.append(f"{start} {end} {label}")
        cursor = end
    if cursor < end_units:
        lines.append(f"{cursor} {end_units} {silence}")
    return "".join(line + "\n" for line in lines)
