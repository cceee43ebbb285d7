"""Word and character error rates (WER, CER) of transcripts against references, as the lipreader is
scored (paper 4.2: "the word error rate (WER) achieved by a pre-trained lip-reading model")."""
from __future__ import annotations

from typing import Sequence

__all__ = ["normalise_text", "edit_distance", "wer", "cer"]


def normalise_text(text: str) -> str:
    """Lower case, apostrophes dropped (``don't`` -> ``dont``), every other character outside
    ``a-z`` turned into a space, runs of spaces merged, ends stripped."""
    out = []
    for c in text.lower().replace("'", "").replace("\u2019", ""):
        out.append(c if "a" <= c <= "z" else " ")
    return " ".join("".join(out).split())


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, deletions and insertions that turn
    ``reference`` into ``hypothesis`` (sequences of words, characters, anything comparable)."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1,  # deletion of r
                             current[j - 1] + 1,  # insertion of h
                             previous[j - 1] + (r != h))  # substitution (or match)
        previous = current
    return previous[-1]


def _error_rate(references: Sequence[str], hypotheses: Sequence[str], unit) -> float:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must be sequences of sentences, not one string")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = total = 0
    for ref, hyp in zip(references, hypotheses):
        r, h = unit(normalise_text(ref)), unit(normalise_text(hyp))
        errors += edit_distance(r, h)
        total += len(r)
    if total == 0:
        raise ValueError("the references hold no words: the error rate is undefined")
    return errors / total


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word error rate over a corpus: word edit distances summed over the sentence pairs, divided
    by the number of reference words (texts are normalised first, :func:`normalise_text`)."""
    return _error_rate(references, hypotheses, str.split)


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Character error rate over a corpus (spaces count as characters)."""
    return _error_rate(references, hypotheses, list)
