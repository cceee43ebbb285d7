import csv

import pytest

from speechanim.gridformat import (
    GridFormatError,
    Word,
    format_align,
    name_from_words,
    parse_align,
    read_align,
    sentence_from_name,
    words_from_name,
)


def test_sentences_match_grid_mini_transcripts(grid_mini):
    with open(grid_mini / "transcripts.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 8
    for row in rows:
        assert sentence_from_name(row["clip"]) == row["words"]
        assert sentence_from_name(f"/some/dir/{row['clip']}.mpg") == row["words"]
        assert name_from_words(row["words"]) == row["clip"]


def test_zero_is_z_and_bad_names_are_named():
    assert words_from_name("lwbsza")[4] == "zero"
    assert name_from_words("lay white by s zero again") == "lwbsza"
    with pytest.raises(GridFormatError, match="bbaf2"):
        words_from_name("bbaf2")
    with pytest.raises(GridFormatError, match="slot 4"):
        words_from_name("bbawzn")  # w is not a GRID letter
    with pytest.raises(GridFormatError, match="slot 1"):
        words_from_name("xbaf2n")


def test_read_align_on_real_file(grid_mini):
    path = grid_mini / "swwp2s.align"
    words = read_align(path)
    assert [w.word for w in words] == sentence_from_name("swwp2s").split()
    assert words[0] == Word("set", 12250 / 25000, 19250 / 25000)
    # 1000 units per 25 fps frame: "set" spans frames 12.25..19.25
    assert words[0].frames(25) == (12, 19)
    full = read_align(path, keep_silence=True)
    assert full[0].is_silence and full[-1].is_silence and len(full) == 8
    assert full[-1].end == pytest.approx(74500 / 25000)
    assert format_align(full) == path.read_text()


def test_parse_align_errors_name_the_source_and_line():
    with pytest.raises(GridFormatError, match=r"x.align:2"):
        parse_align("0 100 sil\n100 bin\n", "x.align")
    with pytest.raises(GridFormatError, match=r"x.align:1: segment ends before"):
        parse_align("200 100 bin\n", "x.align")
    with pytest.raises(GridFormatError, match="overlaps"):
        parse_align("0 200 sil\n100 300 bin\n", "x.align")
    with pytest.raises(GridFormatError, match="no segments"):
        parse_align("\n", "x.align")
