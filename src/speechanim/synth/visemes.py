"""Phoneme segments to per-video-frame mouth parameters (visemes with coarticulation).

The synthetic GRID corpus renders a cartoon face whose mouth follows the speech.  This module turns
the phoneme segments that :func:`speechanim.synth.tts.synthesize` reports (eSpeak NG's English
mnemonics) into four mouth parameters per video frame:

``jaw_open``   in [0, 1]   0 = lips together, 1 = widest opening
``lip_width``  in [-1, 1]  + spread (as in "ee"), - narrow/pursed (as in "oo")
``lip_round``  in [0, 1]   lip rounding and protrusion
``lip_tuck``   in [0, 1]   lower lip tucked under the upper teeth (f, v)

Each phoneme maps to one viseme class (two for diphthongs, e.g. ``aI`` = open then spread), and each
class gives a target for every parameter and a *dominance* per parameter: how strongly the phoneme
holds that parameter against its neighbours (after Cohen & Massaro's coarticulation model).  A
phoneme holds its target over a plateau inside its segment and its dominance falls off as a
Gaussian of the distance to that plateau with a scale of ``smoothing_s`` (50 ms) times the class's
own width factor; the mouth at time ``t`` is the dominance-weighted mean of all targets.  So

* bilabials (p b m) dominate the jaw and really close the mouth (jaw_open ~0) even when short, while
  lip rounding flows through them ("blue" rounds its b);
* every closure (p b m f v) is held for at least one video frame, so it is never lost between
  two sampled frames;
* silences (before and after the sentence, pauses) hold the mouth closed and neutral.

Plosives (and affricates) start at their closure in :mod:`~speechanim.synth.tts` segments; their
plateau is the first 60 % of the segment (the closure), not its centre.

Frame ``k`` of a clip covers ``[k/fps, (k+1)/fps)`` and is sampled at its centre ``(k + 0.5)/fps``,
the convention of :mod:`speechanim.audio` (whose audio window ``k`` is centred on the same time).
Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import numpy as np

#: The mouth parameters, in the column order of :meth:`MouthTrack.as_array`.
PARAMETERS = ("jaw_open", "lip_width", "lip_round", "lip_tuck")
#: Default Gaussian scale of the dominance fall-off (seconds).
SMOOTHING_S = 0.05
_REST_DOMINANCE = 1e-4  # a closed neutral mouth with negligible weight, so that the mean is always defined
_STRESS_MARKS = "',=%"


class PhonemeSegment(Protocol):
    """Anything with a phoneme label and start and end times in seconds (e.g. ``tts.Segment``)."""

    label: str
    start: float
    end: float


@dataclass(frozen=True)
class Viseme:
    """A mouth shape class: its parameter targets and how strongly it holds each of them."""

    name: str
    jaw_open: float
    lip_width: float
    lip_round: float
    lip_tuck: float
    dominance: tuple[float, float, float, float]  # per parameter, in the order of PARAMETERS
    spread: float = 1.0  # width of the dominance fall-off, as a multiple of the smoothing scale
    closure: bool = False  # held for at least one video frame (a visible lip closure or tuck)

    @property
    def target(self) -> np.ndarray:
        return np.array([self.jaw_open, self.lip_width, self.lip_round, self.lip_tuck], np.float64)


#: The viseme classes.
VISEMES: dict[str, Viseme] = {v.name: v for v in (
    #        name                jaw   width  round  tuck   dominance (jaw, width, round, tuck)
    Viseme("silence",            0.00,  0.00,  0.00,  0.0,  (1.0, 1.0, 1.0, 1.0)),
    Viseme("bilabial",           0.00,  0.00,  0.00,  0.0,  (40.0, 2.0, 0.3, 5.0), spread=0.5, closure=True),
    Viseme("labiodental",        0.10,  0.10,  0.00,  1.0,  (10.0, 1.5, 0.3, 40.0), spread=0.5, closure=True),
    Viseme("dental",             0.22,  0.15,  0.00,  0.0,  (1.5, 0.8, 0.3, 3.0)),
    Viseme("alveolar",           0.18,  0.15,  0.00,  0.0,  (1.2, 0.6, 0.3, 3.0), spread=0.8),
    Viseme("postalveolar",       0.15, -0.40,  0.60,  0.0,  (2.0, 2.0, 2.0, 3.0)),
    Viseme("velar",              0.28,  0.05,  0.00,  0.0,  (0.8, 0.4, 0.3, 3.0), spread=0.8),
    Viseme("glottal",            0.35,  0.00,  0.00,  0.0,  (0.3, 0.3, 0.3, 3.0)),
    Viseme("rounded_glide",      0.12, -0.85,  0.95,  0.0,  (2.0, 4.0, 5.0, 3.0)),
    Viseme("rhotic",             0.25, -0.35,  0.45,  0.0,  (1.0, 1.5, 1.5, 3.0)),
    Viseme("palatal",            0.18,  0.60,  0.00,  0.0,  (1.0, 1.5, 0.5, 3.0)),
    Viseme("open_vowel",         0.90,  0.25,  0.00,  0.0,  (1.0, 1.0, 1.0, 3.0)),
    Viseme("open_rounded_vowel", 0.70, -0.35,  0.55,  0.0,  (1.0, 1.5, 1.5, 3.0)),
    Viseme("mid_vowel",          0.55,  0.20,  0.00,  0.0,  (1.0, 1.0, 1.0, 3.0)),
    Viseme("spread_vowel",       0.32,  0.80,  0.00,  0.0,  (1.0, 2.0, 1.0, 3.0)),
    Viseme("rounded_vowel",      0.28, -0.75,  0.90,  0.0,  (1.0, 3.0, 3.0, 3.0)),
)}

_VOWEL_CLASSES = frozenset({"open_vowel", "open_rounded_vowel", "mid_vowel", "spread_vowel", "rounded_vowel"})

#: eSpeak NG's English phoneme mnemonics (stress marks removed) -> viseme class(es).  Two classes make
#: a diphthong: the first held early in the segment, the second late.  The mnemonics that eSpeak
#: emits for the GRID vocabulary are all here (see the tests); the rest cover other English words.
PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    # consonants
    **{p: ("bilabial",) for p in ("p", "b", "m")},
    **{p: ("labiodental",) for p in ("f", "v")},
    **{p: ("dental",) for p in ("T", "D")},
    **{p: ("alveolar",) for p in ("t", "d", "n", "s", "z", "l", "t#", "d#", "t2", "d2", "n-", "l#", "z#", "s#",
                                  "@L", "L")},
    **{p: ("postalveolar",) for p in ("S", "Z", "tS", "dZ")},
    **{p: ("velar",) for p in ("k", "g", "N", "x")},
    **{p: ("glottal",) for p in ("h", "?")},
    **{p: ("rounded_glide",) for p in ("w", "W")},
    **{p: ("rhotic",) for p in ("r", "r-", "R", "3", "3:")},
    "j": ("palatal",),
    ";": ("palatal",),  # eSpeak's linking glide between "by" and a vowel ("by i" = b aI ; 'aI)
    # monophthongs
    **{p: ("open_vowel",) for p in ("a", "aa", "a2", "A:", "A@", "A", "V")},
    **{p: ("open_rounded_vowel",) for p in ("0", "0#", "O", "O:", "O@", "o@", "o")},
    **{p: ("mid_vowel",) for p in ("E", "E2", "E3", "e", "e#", "@", "@2", "@5", "a#", "e@", "3@")},
    **{p: ("spread_vowel",) for p in ("i", "i:", "I", "I2", "I#", "y")},
    **{p: ("rounded_vowel",) for p in ("u:", "U", "u", "u@")},
    # diphthongs
    "aI": ("open_vowel", "spread_vowel"),
    "aI@": ("open_vowel", "mid_vowel"),
    "aI3": ("open_vowel", "rhotic"),
    "aU": ("open_vowel", "rounded_vowel"),
    "aU@": ("open_vowel", "mid_vowel"),
    "eI": ("mid_vowel", "spread_vowel"),
    "oU": ("open_rounded_vowel", "rounded_vowel"),
    "OI": ("open_rounded_vowel", "spread_vowel"),
    "i@": ("spread_vowel", "mid_vowel"),
    "i@3": ("spread_vowel", "rhotic"),
    "U@": ("rounded_vowel", "mid_vowel"),
}

# Fallbacks by first character, for mnemonics missing from the table.
_FALLBACK_BY_INITIAL: dict[str, str] = {
    **dict.fromkeys("pbm", "bilabial"), **dict.fromkeys("fv", "labiodental"), **dict.fromkeys("TD", "dental"),
    **dict.fromkeys("tdnszlL", "alveolar"), **dict.fromkeys("SZ", "postalveolar"), **dict.fromkeys("kgNxqc", "velar"),
    **dict.fromkeys("h?", "glottal"), **dict.fromkeys("wW", "rounded_glide"), **dict.fromkeys("rR3", "rhotic"),
    "j": "palatal", **dict.fromkeys("aAV", "open_vowel"), **dict.fromkeys("oO0", "open_rounded_vowel"),
    **dict.fromkeys("eE@", "mid_vowel"), **dict.fromkeys("iIy", "spread_vowel"), **dict.fromkeys("uU", "rounded_vowel"),
}

#: Plosives and affricates: segments start at the closure, which is their first ~60 %.
_STOPS = frozenset({"p", "b", "t", "d", "k", "g", "t#", "d#", "t2", "d2", "tS", "dZ", "?"})
_CLOSURE_FRACTION = 0.6


def split_stress(label: str) -> tuple[str, int]:
    """``"'aU"`` -> ``("aU", 1)``: the bare mnemonic and its stress (1 primary, 2 secondary, 0 none)."""
    stress = 1 if label.startswith("'") else 2 if label.startswith(",") else 0
    return label.lstrip(_STRESS_MARKS), stress


def viseme_classes(label: str) -> tuple[Viseme, ...]:
    """The viseme class(es) of an eSpeak phoneme label (stress marks allowed); pauses are silence."""
    base, _ = split_stress(label)
    if not base or base.startswith("_"):
        return (VISEMES["silence"],)
    names = PHONEME_VISEMES.get(base) or (_FALLBACK_BY_INITIAL.get(base[0], "mid_vowel"),)
    return tuple(VISEMES[n] for n in names)


@dataclass
class MouthTrack:
    """Per-frame mouth parameters, float32 arrays of shape ``(n_frames,)``, frame ``k`` at ``(k+0.5)/fps``."""

    jaw_open: np.ndarray
    lip_width: np.ndarray
    lip_round: np.ndarray
    lip_tuck: np.ndarray
    fps: float

    def __len__(self) -> int:
        return len(self.jaw_open)

    def as_array(self) -> np.ndarray:
        """``(n_frames, 4)`` float32, columns in the order of :data:`PARAMETERS`."""
        return np.stack([getattr(self, p) for p in PARAMETERS], axis=1).astype(np.float32)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {p: getattr(self, p) for p in PARAMETERS}

    @property
    def times(self) -> np.ndarray:
        return frame_times(len(self), self.fps)


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Centres of video frames ``0 .. n_frames-1``: ``(k + 0.5) / fps`` seconds."""
    return (np.arange(n_frames) + 0.5) / fps


@dataclass(frozen=True)
class _Key:
    """One target held over ``[a, b]`` with per-parameter dominance."""

    a: float
    b: float
    target: np.ndarray
    dominance: np.ndarray
    spread: float


def _keys(phonemes: Sequence[PhonemeSegment], t_min: float, t_max: float, min_hold_s: float) -> list[_Key]:
    """Targets for the phonemes, with silence filling the time before, between and after them."""
    segments = sorted(((float(p.start), float(p.end), p.label) for p in phonemes if p.end > p.start))
    filled: list[tuple[float, float, str]] = []
    cursor = t_min
    for start, end, label in segments:
        if start > cursor:
            filled.append((cursor, start, "_"))
        filled.append((start, end, label))
        cursor = max(cursor, end)
    if cursor < t_max:
        filled.append((cursor, t_max, "_"))

    keys: list[_Key] = []
    for start, end, label in filled:
        base, stress = split_stress(label)
        classes = viseme_classes(label)
        d = end - start
        if classes[0].name == "silence":
            spans = [(start, end)]  # a silence is a state: held over its whole length
        elif len(classes) == 2:  # diphthong: onset early, offset late
            spans = [(start + 0.15 * d, start + 0.45 * d), (start + 0.65 * d, end - 0.1 * d)]
        elif base in _STOPS:  # plosive: the closure, at the start of the segment
            spans = [(start, start + _CLOSURE_FRACTION * d)]
        else:
            spans = [(start + 0.25 * d, end - 0.25 * d)]
        for viseme, (a, b) in zip(classes, spans):
            if viseme.closure and b - a < min_hold_s:  # hold visible closures for >= one frame
                centre = 0.5 * (a + b)
                a, b = centre - 0.5 * min_hold_s, centre + 0.5 * min_hold_s
            target = viseme.target
            if viseme.name in _VOWEL_CLASSES:  # unstressed vowels open the jaw less
                target = target.copy()
                target[0] *= {1: 1.0, 2: 0.9, 0: 0.8}[stress]
            keys.append(_Key(a, b, target, np.asarray(viseme.dominance, np.float64), viseme.spread))
    return keys


def mouth_curves(phonemes: Sequence[PhonemeSegment], times: Iterable[float] | np.ndarray, *,
                 smoothing_s: float = SMOOTHING_S, min_hold_s: float = 0.0,
                 clip_start: float = 0.0, clip_end: float | None = None) -> np.ndarray:
    """Mouth parameters at arbitrary ``times`` (seconds): ``(len(times), 4)`` float64.

    Silence fills ``[clip_start, clip_end]`` wherever no phoneme lies (``clip_end`` defaults to the
    later of the last phoneme's end and the last time).  Closures (p b m f v) are held for at least
    ``min_hold_s`` seconds.
    """
    if smoothing_s <= 0:
        raise ValueError(f"smoothing_s must be > 0, got {smoothing_s}")
    t = np.asarray(list(times) if not isinstance(times, np.ndarray) else times, np.float64).reshape(-1)
    last = max([float(p.end) for p in phonemes] + [float(t.max()) if t.size else 0.0])
    end = last if clip_end is None else max(clip_end, last)
    start = min([clip_start] + [float(p.start) for p in phonemes] + ([float(t.min())] if t.size else []))
    keys = _keys(phonemes, start, end, min_hold_s)

    num = np.zeros((t.size, len(PARAMETERS)))
    den = np.full((t.size, len(PARAMETERS)), _REST_DOMINANCE)  # rest: closed neutral mouth (target 0)
    for key in keys:
        dist = np.maximum(0.0, np.maximum(key.a - t, t - key.b))
        weight = np.exp(-np.square(dist / (smoothing_s * key.spread)))[:, None] * key.dominance[None, :]
        num += weight * key.target[None, :]
        den += weight
    out = num / den
    out[:, 0] = out[:, 0].clip(0.0, 1.0)
    out[:, 1] = out[:, 1].clip(-1.0, 1.0)
    out[:, 2:] = out[:, 2:].clip(0.0, 1.0)
    return out


def mouth_track(phonemes: Sequence[PhonemeSegment], n_frames: int = 75, fps: float = 25.0, *,
                smoothing_s: float = SMOOTHING_S) -> MouthTrack:
    """Mouth parameters for ``n_frames`` video frames at ``fps``, frame ``k`` sampled at ``(k+0.5)/fps``.

    ``phonemes`` are timed in the clip's time (e.g. the phonemes of ``tts.pad_to(speech, 3.0, lead)``);
    the clip is silent (mouth closed) wherever no phoneme lies.
    """
    if n_frames <= 0 or fps <= 0:
        raise ValueError(f"n_frames and fps must be positive, got {n_frames} and {fps}")
    times = frame_times(n_frames, fps)
    curves = mouth_curves(phonemes, times, smoothing_s=smoothing_s, min_hold_s=1.0 / fps * 1.001,
                          clip_start=0.0, clip_end=n_frames / fps).astype(np.float32)
    return MouthTrack(*(curves[:, i].copy() for i in range(len(PARAMETERS))), fps=fps)
