"""Speaker-independent train/validation/test splits (paper, section 4.1).

"For the GRID dataset speakers are divided into training, validation and test sets with a
50% - 20% - 30% split respectively." For TCD-TIMIT the paper uses "the recommended data split ...
but exclude[s] some of the test speakers and use[s] them as a validation set".

A split is decided per speaker (no speaker is in two sets) from a seeded permutation of the sorted
speaker ids, so it depends only on the speaker list, the ratios and the seed.

A corpus of one speaker (GRID's speaker 1 alone, a user's own recordings) cannot be split by
speaker: :func:`utterance_split` splits its utterances instead, seeded the same way.  That is a
*speaker-dependent* protocol, a departure from the paper's: the test faces were seen in training.
Its ``split.tsv`` has an ``utterance`` column, and its keys are ``<speaker>/<utterance>``.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .fileio import atomic_open

SPLITS = ("train", "val", "test")


def ratio_split(speakers: list[str], ratios: tuple[float, float, float] = (0.5, 0.2, 0.3), seed: int = 0) -> dict[str, str]:
    """Assign speakers to train/val/test by ratios: val and test sizes are rounded, train takes the rest.

    With GRID's 33 speakers and the paper's 50/20/30 this gives 16/7/10 speakers.
    """
    if len(set(speakers)) != len(speakers):
        raise ValueError("speaker ids must be unique")
    if abs(sum(ratios) - 1) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"split ratios must be non-negative and sum to 1, got {ratios}")
    n = len(speakers)
    n_val, n_test = round(ratios[1] * n), round(ratios[2] * n)
    if n - n_val - n_test < 1 or (ratios[1] > 0 and n_val < 1) or (ratios[2] > 0 and n_test < 1):
        raise ValueError(f"{n} speakers are too few for a {ratios} split")
    order = [sorted(speakers)[i] for i in np.random.default_rng(seed).permutation(n)]
    split = {s: "test" for s in order[:n_test]}
    split.update({s: "val" for s in order[n_test:n_test + n_val]})
    split.update({s: "train" for s in order[n_test + n_val:]})
    return split


def recommended_split(speakers: list[str], test_speakers: list[str], val_speakers: list[str]) -> dict[str, str]:
    """A corpus's recommended split with some of its test speakers moved to validation."""
    missing = sorted(set(val_speakers) - set(test_speakers))
    if missing:
        raise ValueError(f"validation speakers must come from the test speakers: {', '.join(missing)}")
    return {s: "val" if s in val_speakers else "test" if s in test_speakers else "train" for s in sorted(speakers)}


def utterance_split(utterances: list[tuple[str, str]], ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                    seed: int = 0) -> dict[str, str]:
    """``"<speaker>/<utterance>"`` -> train/val/test for (speaker, utterance) pairs, by ratios (speaker-dependent).

    The same rule as :func:`ratio_split` applied to the sorted utterance keys: val and test sizes are
    rounded, train takes the rest.  With grid-s1's 900 utterances and 0.8/0.1/0.1: 720/90/90.
    """
    keys = [f"{speaker}/{utt}" for speaker, utt in utterances]
    return ratio_split(keys, ratios, seed)


def is_utterance_split(split: dict[str, str]) -> bool:
    """Whether a split assigns utterances (keys ``<speaker>/<utterance>``) rather than speakers."""
    return any("/" in key for key in split)


def part_of(split: dict[str, str], speaker: str, utterance: str) -> str | None:
    """The part of one clip under a speaker or an utterance split (None: in no part)."""
    return split.get(f"{speaker}/{utterance}") if is_utterance_split(split) else split.get(speaker)


def write_split(path: str | os.PathLike, split: dict[str, str]) -> Path:
    """``speaker, split`` rows, or ``speaker, utterance, split`` for an utterance split; sorted by part."""
    path = Path(path)
    by_utterance = is_utterance_split(split)
    with atomic_open(path) as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["speaker", "utterance", "split"] if by_utterance else ["speaker", "split"])
        for key in sorted(split, key=lambda s: (SPLITS.index(split[s]), s)):
            w.writerow([*key.split("/", 1), split[key]] if by_utterance else [key, split[key]])
    return path


def read_split(path: str | os.PathLike) -> dict[str, str]:
    """What :func:`write_split` wrote: speaker -> part, or ``<speaker>/<utterance>`` -> part."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {(f"{r['speaker']}/{r['utterance']}" if "utterance" in r else r["speaker"]): r["split"] for r in rows}
