import pytest

from speechanim.splits import (is_utterance_split, part_of, ratio_split, read_split, recommended_split, utterance_split,
                               write_split)

GRID = [f"s{i}" for i in range(1, 35) if i != 21]


def test_grid_split_is_speaker_independent_and_deterministic(tmp_path):
    split = ratio_split(GRID, (0.5, 0.2, 0.3), seed=0)
    counts = {k: sum(v == k for v in split.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 7, "test": 10}
    assert set(split) == set(GRID)
    assert ratio_split(list(reversed(GRID)), seed=0) == split  # order of the input does not matter
    assert ratio_split(GRID, seed=1) != split
    write_split(tmp_path / "split.tsv", split)
    assert read_split(tmp_path / "split.tsv") == split


def test_small_corpus_and_errors():
    split = ratio_split([f"s{i}" for i in range(12)], seed=3)
    assert sorted(split.values()).count("train") == 6 and list(split.values()).count("test") == 4
    with pytest.raises(ValueError, match="too few"):
        ratio_split(["a", "b"])
    with pytest.raises(ValueError, match="sum to 1"):
        ratio_split(GRID, (0.5, 0.2, 0.2))


def test_recommended_split_moves_test_speakers_to_val():
    split = recommended_split(["01M", "02M", "03F", "04F"], test_speakers=["03F", "04F"], val_speakers=["04F"])
    assert split == {"01M": "train", "02M": "train", "03F": "test", "04F": "val"}
    with pytest.raises(ValueError, match="01M"):
        recommended_split(["01M", "03F"], test_speakers=["03F"], val_speakers=["01M"])


def test_utterance_split_for_one_speaker(tmp_path):
    utts = [("s1", f"u{i:03d}") for i in range(900)]
    split = utterance_split(utts, (0.8, 0.1, 0.1), seed=0)
    counts = {k: sum(v == k for v in split.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 720, "val": 90, "test": 90}  # grid-s1's 900 utterances
    assert set(split) == {f"s1/{u}" for _, u in utts} and is_utterance_split(split)
    assert utterance_split(list(reversed(utts)), (0.8, 0.1, 0.1), seed=0) == split
    assert utterance_split(utts, (0.8, 0.1, 0.1), seed=1) != split
    write_split(tmp_path / "split.tsv", split)
    assert (tmp_path / "split.tsv").read_text().splitlines()[0] == "speaker\tutterance\tsplit"
    assert read_split(tmp_path / "split.tsv") == split
    test_key = next(k for k, v in split.items() if v == "test")
    assert part_of(split, "s1", test_key.split("/")[1]) == "test" and part_of(split, "s2", "u000") is None
    # a speaker split is read by speaker, whatever the utterance
    assert part_of({"s1": "val"}, "s1", "anything") == "val" and not is_utterance_split({"s1": "val"})
