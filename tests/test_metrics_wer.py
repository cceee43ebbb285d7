"""Word and character error rates (speechanim.metrics.wer) on texts whose answer is counted by hand
(tests/test_lipreader.py has the first known pairs; these are the edges mutation testing found unchecked)."""
from __future__ import annotations

import pytest

from speechanim.metrics.wer import cer, edit_distance, normalise_text, wer


def test_normalise_text_keeps_a_to_z_and_drops_both_apostrophes():
    assert normalise_text("Don\u2019t ZAP it, zebra's") == "dont zap it zebras"
    assert normalise_text("a-z|A..Z`{@[") == "a z a z"  # the characters just outside a-z (` and {, @ and [) are spaces
    assert normalise_text("  \t ") == "" and normalise_text("x") == "x"


def test_edit_distance_counts_each_kind_of_edit_once():
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("abc", "xbc") == 1  # one substitution
    assert edit_distance("abc", "ac") == 1  # one deletion
    assert edit_distance("ac", "abc") == 1  # one insertion
    assert edit_distance("abcd", "") == 4 and edit_distance("", "abcd") == 4
    assert edit_distance("ab", "ba") == 2
    assert edit_distance("sunday", "saturday") == 3


def test_error_rates_sum_errors_over_all_reference_words():
    # 1 error in 2 words and 0 in 3: 1 / 5, not the mean of the per-sentence rates (0.25)
    assert wer(["a b", "c d e"], ["a x", "c d e"]) == pytest.approx(1 / 5)
    assert wer(["Don\u2019t stop"], ["dont stop"]) == 0.0  # normalised before comparing
    assert cer(["ab", "cde"], ["a", "cde"]) == pytest.approx(1 / 5)
    with pytest.raises(TypeError, match=r"^references and hypotheses must be sequences of sentences, not one string$"):
        wer(["a b"], "a b")
    with pytest.raises(TypeError, match="not one string"):
        cer("ab", ["ab"])
    with pytest.raises(ValueError, match=r"^2 references but 1 hypotheses$"):
        cer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"^the references hold no words: the error rate is undefined$"):
        wer(["", "!!"], ["a", "b"])
