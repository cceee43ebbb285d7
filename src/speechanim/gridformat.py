"""The GRID corpus's formats: sentences encoded in file names and ``.align`` word alignments.

GRID (Cooke et al. 2006) sentences follow a fixed six-slot grammar, and each clip's file name is the
first letter (or the digit) of each word: ``bbaf2n`` is "bin blue at f two now".

``.align`` files hold one segment a line, ``start end word``, in units of 1/25000 s; with 25 fps
video, 1000 units are one frame.  Silences are labelled ``sil`` (and short pauses ``sp``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ALIGN_UNITS_PER_SECOND = 25_000

COMMANDS = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
COLOURS = {"b": "blue", "g": "green", "r": "red", "w": "white"}
PREPOSITIONS = {"a": "at", "b": "by", "i": "in", "w": "with"}
LETTERS = {c: c for c in "abcdefghijklmnopqrstuvxyz"}  # every letter but w
DIGITS = {"z": "zero", "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
          "6": "six", "7": "seven", "8": "eight", "9": "nine"}
ADVERBS = {"a": "again", "n": "now", "p": "please", "s": "soon"}

#: The six slots of the grammar, in order.
GRAMMAR = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)
SILENCE = frozenset({"sil", "sp"})


class GridFormatError(ValueError):
    """A GRID file name or alignment that does not follow the corpus's format."""


def words_from_name(name: str) -> list[str]:
    """The six words of a GRID utterance from its file name (with or without folder and extension)."""
    stem = Path(name).stem.lower()
    if len(stem) != len(GRAMMAR):
        raise GridFormatError(f"{name}: a GRID utterance name has 6 characters, got {stem!r}")
    words = []
    for slot, (char, table) in enumerate(zip(stem, GRAMMAR), start=1):
        if char not in table:
            raise GridFormatError(f"{name}: {char!r} is not a word of slot {slot} of the GRID grammar")
        words.append(table[char])
    return words


def sentence_from_name(name: str) -> str:
    """``"bbaf2n"`` -> ``"bin blue at f two now"``."""
    return " ".join(words_from_name(name))


def name_from_words(words: list[str] | str) -> str:
    """The inverse of :func:`words_from_name`: ``"bin blue at f two now"`` -> ``"bbaf2n"``."""
    if isinstance(words, str):
        words = words.split()
    if len(words) != len(GRAMMAR):
        raise GridFormatError(f"a GRID sentence has 6 words, got {len(words)}: {' '.join(words)!r}")
    chars = []
    for slot, (word, table) in enumerate(zip(words, GRAMMAR), start=1):
        # GRID writes zero as "z"; every other word has a single key.
        keys = sorted((k for k, v in table.items() if v == word), key=lambda k: k != "z")
        if not keys:
            raise GridFormatError(f"{word!r} is not a word of slot {slot} of the GRID grammar")
        chars.append(keys[0])
    return "".join(chars)


@dataclass(frozen=True)
class Word:
    """One segment of an alignment, times in seconds."""

    word: str
    start: float
    end: float

    @property
    def is_silence(self) -> bool:
        return self.word in SILENCE

    def frames(self, fps: float = 25.0) -> tuple[int, int]:
        """The video frames ``[first, last)`` this segment covers at ``fps``."""
        return round(self.start * fps), round(self.end * fps)


def parse_align(text: str, source: str = "<align>") -> list[Word]:
    """Parse the text of a ``.align`` file into segments (seconds), silences included."""
    words: list[Word] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise GridFormatError(f"{source}:{lineno}: expected 'start end word', got {line!r}")
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise GridFormatError(f"{source}:{lineno}: start and end must be integers, got {line!r}") from None
        if end < start:
            raise GridFormatError(f"{source}:{lineno}: segment ends before it starts: {line!r}")
        if words and start < round(words[-1].end * ALIGN_UNITS_PER_SECOND):
            raise GridFormatError(f"{source}:{lineno}: segment overlaps the previous one: {line!r}")
        words.append(Word(parts[2], start / ALIGN_UNITS_PER_SECOND, end / ALIGN_UNITS_PER_SECOND))
    if not words:
        raise GridFormatError(f"{source}: no segments")
    return words


def read_align(path: str | os.PathLike, *, keep_silence: bool = False) -> list[Word]:
    """Read a ``.align`` file; silences (``sil``, ``sp``) are dropped unless ``keep_silence``."""
    path = Path(path)
    words = parse_align(path.read_text(encoding="utf-8"), str(path))
    return words if keep_silence else [w for w in words if not w.is_silence]


def format_align(words: list[Word]) -> str:
    """Write segments (seconds) back as ``.align`` text in 1/25000 s units."""
    return "".join(
        f"{round(w.start * ALIGN_UNITS_PER_SECOND)} {round(w.end * ALIGN_UNITS_PER_SECOND)} {w.word}\n" for w in words
    )
