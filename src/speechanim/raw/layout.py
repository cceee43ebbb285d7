"""The normalised raw layout: the contract between the raw stage and everything after it.

Every dataset (GRID, TCD-TIMIT, the embedded synthetic corpus) is written by its raw rule as::

    data/raw/<dataset>/<speaker>/<utterance>.<mpg|mp4>   the video exactly as the corpus ships it
    data/raw/<dataset>/<speaker>/<utterance>.wav         the corpus's own audio track for the clip
    data/raw/<dataset>/<speaker>/<utterance>.align       word segments, GRID .align format (optional)
    data/raw/<dataset>/<speaker>/manifest.tsv            one row per utterance, written last

``manifest.tsv`` is written atomically once every file of the speaker is in place, so its presence
means the speaker is complete; it is the output the raw rules declare to Snakemake.  Its columns are
``utterance, video, audio, align, text`` (file names relative to the speaker folder; ``align`` is
empty when the corpus has no word alignment; ``text`` is the spoken sentence when known).
Clips the raw stage could not use are listed in ``skipped.tsv`` beside it with the reason.
"""
from __future__ import annotations

import csv
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..fileio import write_text_atomic

MANIFEST = "manifest.tsv"
SKIPPED = "skipped.tsv"
VIDEO_EXTENSIONS = (".mpg", ".mp4")


@dataclass(frozen=True)
class Utterance:
    utterance: str
    video: str
    audio: str
    align: str = ""
    text: str = ""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half file)."""
    write_text_atomic(path, text)


def _tsv(header: list[str], rows: list[list[str]]) -> str:
    for row in rows:
        for value in row:
            if "\t" in value or "\n" in value:
                raise ValueError(f"tab or newline inside a manifest value: {value!r}")
    return "".join("\t".join(r) + "\n" for r in [header, *rows])


def write_manifest(speaker_dir: Path, utterances: list[Utterance]) -> Path:
    """Write ``manifest.tsv`` for a speaker after checking that every file it names exists."""
    speaker_dir = Path(speaker_dir)
    names = [f.name for f in fields(Utterance)]
    rows = []
    for u in sorted(utterances, key=lambda u: u.utterance):
        for name in (u.video, u.audio, u.align):
            if name and not (speaker_dir / name).is_file():
                raise FileNotFoundError(f"{speaker_dir / name}: listed in the manifest but missing")
        rows.append([str(asdict(u)[n]) for n in names])
    path = speaker_dir / MANIFEST
    atomic_write_text(path, _tsv(names, rows))
    return path


def read_manifest(speaker_dir: Path) -> list[Utterance]:
    """Read a speaker's ``manifest.tsv`` (the path of the file or of its folder)."""
    path = Path(speaker_dir)
    if path.is_dir():
        path = path / MANIFEST
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return [Utterance(**{k: (v or "") for k, v in row.items()}) for row in reader]


def write_skipped(speaker_dir: Path, skipped: dict[str, str]) -> Path:
    """Write ``skipped.tsv`` (item -> reason) beside the manifest; an empty file when nothing was skipped."""
    rows = [[item, reason.replace("\t", " ").replace("\n", " ")] for item, reason in sorted(skipped.items())]
    path = Path(speaker_dir) / SKIPPED
    atomic_write_text(path, _tsv(["item", "reason"], rows))
    return path


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished speaker folder ``tmp`` in place of ``final`` by renames (the old one, if any, removed),
    so that a speaker folder is never half old, half new."""
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, final)
