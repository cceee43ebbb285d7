"""The preprocessing stage end to end on real GRID clips: raw layout -> aligned speakers -> packed splits.

Two pretend speakers share grid-mini's eight clips.  s1 also holds two clips made here whose audio
has a click at the centre of frame ``CLICK_FRAME``; s2 holds clips that must be skipped (a truncated
copy of an .mpg, a text file named .mpg, a noise video without a face, a silent track, a 5-frame
clip) and one whose video has no audio track, so its .wav is used.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from speechanim.align import EYE_POINTS, load_template
from speechanim.media import read_audio, read_video, write_video, write_wav
from speechanim.packing import TrainingWindows, WholeClips, clip_keys, read_clip, worker_init
from speechanim.preprocess import main, make_split, tcdtimit_validation
from speechanim.raw.layout import Utterance, write_manifest, write_skipped
from speechanim.raw.tcdtimit import LIPSPEAKERS, RECOMMENDED_TEST_VOLUNTEERS, VOLUNTEERS
from speechanim.splits import read_split, write_split

SPEAKERS = {"s1": ["bbaf2n", "brbk7n", "lbax4n", "lrwp9a"], "s2": ["lwbsza", "pwij3p", "sbia1a", "swwp2s"]}
RATE, FPS, SPF = 16000, 25.0, 640
CLICK_FRAME = 12
MOUTH_CORNERS = [61, 291]
BROKEN = {"trunc0": "trunc0.mpg", "notvid": "notvid.mpg", "noise0": "noise0.mp4", "silent": "silent.mp4",
          "short0": "short0.mp4"}


def _click_audio(n_frames: int, seed: int) -> np.ndarray:
    audio = np.random.default_rng(seed).normal(0, 0.01, n_frames * SPF).astype(np.float32)
    audio[int((CLICK_FRAME + 0.5) * SPF)] = 0.9
    return audio


@pytest.fixture(scope="module")
def stage(tmp_path_factory, grid_mini):
    """Raw layout for s1 and s2, then align both, split s1/s2 into train/val, pack both parts."""
    root = tmp_path_factory.mktemp("pre")
    texts = dict(line.split("\t") for line in (grid_mini / "transcripts.tsv").read_text().splitlines()[1:])
    utts = {}
    for speaker, clips in SPEAKERS.items():
        d = root / "raw" / "grid" / speaker
        d.mkdir(parents=True)
        utts[speaker] = []
        for c in clips:
            shutil.copy(grid_mini / f"{c}.mpg", d)
            if c == "swwp2s":  # words from its .align
                shutil.copy(grid_mini / "swwp2s.align", d)
                utts[speaker].append(Utterance(c, f"{c}.mpg", "", "swwp2s.align", ""))
            else:
                utts[speaker].append(Utterance(c, f"{c}.mpg", "", "", texts[c]))
    s1, s2 = root / "raw" / "grid" / "s1", root / "raw" / "grid" / "s2"
    face, _ = read_video(grid_mini / "lbax4n.mpg")
    face = face[:30]
    for name, codec, seed in (("click1", "h264", 1), ("click2", "mpeg1", 2)):
        ext = "mp4" if codec == "h264" else "mpg"
        write_video(s1 / f"{name}.{ext}", face, FPS, _click_audio(30, seed), RATE, codec=codec)
        utts["s1"].append(Utterance(name, f"{name}.{ext}", "", "", "click"))
    # s2's clips that must be skipped, and one taking its audio from the .wav
    data = (grid_mini / "bbaf2n.mpg").read_bytes()
    (s2 / "trunc0.mpg").write_bytes(data[: len(data) // 2])
    (s2 / "notvid.mpg").write_text("this is not a video\n")
    rng = np.random.default_rng(0)
    write_video(s2 / "noise0.mp4", rng.integers(0, 256, (30, 288, 360, 3), dtype=np.uint8), FPS,
                rng.normal(0, 0.1, 30 * SPF).astype(np.float32), RATE)
    write_video(s2 / "silent.mp4", face, FPS, np.zeros(30 * SPF, np.float32), RATE)
    write_video(s2 / "short0.mp4", face[:5], FPS, rng.normal(0, 0.1, 5 * SPF).astype(np.float32), RATE)
    write_video(s2 / "noaud0.mp4", face, FPS)
    write_wav(s2 / "noaud0.wav", read_audio(grid_mini / "lbax4n.mpg", RATE)[: 30 * SPF], RATE)
    utts["s2"] += [Utterance(u, f, "", "", "") for u, f in BROKEN.items()]
    utts["s2"].append(Utterance("noaud0", "noaud0.mp4", "noaud0.wav", "", "lay blue at x four now"))
    for speaker, d in (("s1", s1), ("s2", s2)):
        write_manifest(d, utts[speaker])
    write_skipped(s2, {"lxxx9z": "no audio in audio_25k.zip"})

    aligned = {}
    for speaker in SPEAKERS:
        aligned[speaker] = root / "aligned" / "grid" / f"{speaker}.h5"
        assert main(["align", "--raw", str(root / "raw" / "grid" / speaker), "--out", str(aligned[speaker]),
                     "--skipped", str(root / "skipped" / f"{speaker}.tsv"), "--size", "128", "96",
                     "--sample-rate", str(RATE), "--smooth-window", "7", "--max-gap", "5"]) == 0
    split = write_split(root / "split.tsv", {"s1": "train", "s2": "val"})
    packed = {}
    for part, extra in (("train", ["--mirror"]), ("val", [])):
        packed[part] = root / "packed" / f"{part}.h5"
        assert main(["pack", "--split", str(split), "--part", part, *extra, "--out", str(packed[part]),
                     str(aligned["s1"]), str(aligned["s2"])]) == 0
    return root, aligned, packed


def _skips(path):
    lines = path.read_text().splitlines()
    return lines[0], dict(line.split("\t") for line in lines[1:])


def test_every_grid_clip_is_aligned_onto_the_template(stage):
    _, aligned, _ = stage
    template = load_template((128, 96)).points
    eye_err, mouth_err, words = [], [], {}
    for speaker, clips in SPEAKERS.items():
        with h5py.File(aligned[speaker]) as h5:
            assert h5.attrs["speaker"] == speaker and list(h5.attrs["size"]) == [128, 96]
            for utt in clips:
                clip = read_clip(h5, f"{speaker}/{utt}")
                assert clip.frames.shape == (75, 128, 96, 3) and len(clip.audio) == 75 * SPF
                assert clip.fps == FPS and clip.sample_rate == RATE and clip.source.endswith(f"{utt}.mpg")
                assert np.abs(clip.audio).max() == pytest.approx(1.0) and abs(clip.audio.mean()) < 0.01
                eye_err.append(np.linalg.norm(clip.landmarks[:, EYE_POINTS] - template[list(EYE_POINTS)], axis=-1))
                mouth_err.append(np.linalg.norm(clip.landmarks[:, MOUTH_CORNERS] - template[MOUTH_CORNERS], axis=-1))
                words[utt] = clip.words
    eye, mouth = np.concatenate(eye_err), np.concatenate(mouth_err)
    print(f"\neye corners vs template: max {eye.max():.2f} mean {eye.mean():.2f} px; "
          f"mouth corners: max {mouth.max():.2f} mean {mouth.mean():.2f} px")
    assert len(words) == 8
    assert eye.max() < 5.0 and eye.mean() < 1.5
    assert mouth.max() < 7.0 and mouth.mean() < 3.0
    assert words["bbaf2n"] == "bin blue at f two now" and words["swwp2s"] == "set white with p two soon"


def test_broken_clips_are_skipped_with_a_reason_naming_the_file(stage):
    root, aligned, packed = stage
    header, s2 = _skips(root / "skipped" / "s2.tsv")
    assert header == "item\treason"
    assert sorted(s2) == sorted([*BROKEN, "lxxx9z"])
    for utt, name in BROKEN.items():
        assert name in s2[utt]
    assert "truncated" in s2["trunc0"] and "not a video" in s2["notvid"]
    assert "no face" in s2["noise0"] and "silent" in s2["silent"] and "5 frames" in s2["short0"]
    assert s2["lxxx9z"] == "raw stage: no audio in audio_25k.zip"
    assert _skips(root / "skipped" / "s1.tsv") == ("item\treason", {})
    with h5py.File(aligned["s2"]) as h5:
        assert clip_keys(h5) == [f"s2/{u}" for u in ["lwbsza", "noaud0", "pwij3p", "sbia1a", "swwp2s"]]
        assert h5.attrs["n_skipped"] == len(BROKEN)
        noaud = read_clip(h5, "s2/noaud0")  # audio from noaud0.wav: the real speech of lbax4n
        assert noaud.frames.shape[0] == 30 and np.abs(noaud.audio).max() == pytest.approx(1.0)
    with h5py.File(packed["val"]) as h5:
        assert clip_keys(h5) == [f"s2/{u}" for u in ["lwbsza", "noaud0", "pwij3p", "sbia1a", "swwp2s"]]

    out = root / "skipped.tsv"
    assert main(["skiplist", "--out", str(out), str(root / "skipped" / "s1.tsv"), str(root / "skipped" / "s2.tsv")]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "speaker\titem\treason" and len(lines) == 1 + len(BROKEN) + 1
    assert all(line.startswith("s2\t") for line in lines[1:])


def test_mirroring_only_in_train_and_mirror_is_the_flipped_original(stage):
    _, aligned, packed = stage
    template = load_template((128, 96))
    with h5py.File(packed["val"]) as h5:
        assert not any(k.endswith("_mirror") for k in clip_keys(h5)) and not h5.attrs["mirrored"]
    with h5py.File(packed["train"]) as h5, h5py.File(aligned["s1"]) as src:
        keys = clip_keys(h5)
        originals = clip_keys(src)
        assert keys == sorted(originals + [k + "_mirror" for k in originals]) and len(keys) == 12
        for key in originals:
            # copied group by group: same data, same chunking and compression
            for name in ("frames", "audio", "landmarks"):
                a, b = h5[key][name], src[key][name]
                assert (a.chunks, a.compression) == (b.chunks, b.compression)
                np.testing.assert_array_equal(a[()], b[()])
            m, o = h5[key + "_mirror"], h5[key]
            assert bool(m.attrs["mirrored"]) and not bool(o.attrs["mirrored"])
            assert m["frames"].chunks == o["frames"].chunks and m["frames"].compression == o["frames"].compression
            np.testing.assert_array_equal(m["frames"][()], o["frames"][()][..., ::-1])
            np.testing.assert_array_equal(m["audio"][()], o["audio"][()])
            lm_o, lm_m = o["landmarks"][()], m["landmarks"][()]
            np.testing.assert_allclose(lm_m[..., 0], 95.0 - lm_o[:, template.mirror, 0], atol=1e-4)
            np.testing.assert_allclose(lm_m[..., 1], lm_o[:, template.mirror, 1])
            # the canonical face is symmetric: mirrored eyes sit on the template too
            eyes = list(EYE_POINTS)
            assert np.linalg.norm(lm_m[:, eyes] - template.points[eyes], axis=-1).max() < 5.0


def test_audio_window_k_stays_on_frame_k_through_align_and_pack(stage):
    _, _, packed = stage
    ds = WholeClips(packed["train"])
    centre = 1280  # 0.16 s window at 16 kHz, centred on its frame
    lags = {}
    for i, key in enumerate(ds.reader.keys):
        if "click" not in key:
            continue
        audio = ds[i]["audio"].numpy()
        assert audio.shape == (30, 2560)
        lags[key] = int(np.argmax(np.abs(audio[CLICK_FRAME]))) - centre
        for f in (CLICK_FRAME - 1, CLICK_FRAME + 1):  # the neighbours' windows hold it one frame off centre
            assert int(np.argmax(np.abs(audio[f]))) - centre - lags[key] == (CLICK_FRAME - f) * SPF
    print(f"\nclick offset from the centre of window {CLICK_FRAME} (samples at 16 kHz): {lags}")
    assert len(lags) == 4  # two clips and their mirrors
    assert abs(lags["s1/click1"]) <= 2 and abs(lags["s1/click1_mirror"]) <= 2  # H.264 + AAC in mp4: exact
    # MPEG-1 + MP2: the MP2 decoder delay (481 samples at 44.1 kHz, 11 ms) shifts it, under half a frame
    assert 0 <= lags["s1/click2"] < SPF // 2

    windows = TrainingWindows(packed["train"], n_frames=16, seed=0)
    for i in range(len(windows)):
        item = windows[i]
        if item["key"] == "s1/click1" and item["start"] <= CLICK_FRAME < item["start"] + 16:
            assert abs(int(np.argmax(np.abs(item["audio"][CLICK_FRAME - item["start"]].numpy()))) - centre) <= 2


def test_datasets_read_the_packed_file_with_two_workers(stage):
    _, _, packed = stage
    windows = TrainingWindows(packed["train"], n_frames=16)
    assert len(windows) == 12
    loader = DataLoader(windows, batch_size=4, shuffle=True, num_workers=2, worker_init_fn=worker_init)
    seen = []
    for batch in loader:
        assert batch["frames"].shape[1:] == (16, 3, 128, 96) and batch["audio"].shape[1:] == (16, 2560)
        assert batch["still"].shape[1:] == (3, 128, 96)
        assert batch["frames"].min() >= -1 and batch["frames"].max() <= 1
        seen += batch["key"]
    assert sorted(seen) == windows.reader.keys
    whole = DataLoader(WholeClips(packed["val"]), batch_size=1, num_workers=2)
    lengths = {b["key"][0]: b["frames"].shape[1] for b in whole}
    assert lengths == {"s2/lwbsza": 75, "s2/noaud0": 30, "s2/pwij3p": 75, "s2/sbia1a": 75, "s2/swwp2s": 75}
    assert all(torch.isfinite(b["audio"]).all() for b in whole)


def test_pack_refuses_mirroring_outside_train_and_missing_speakers(stage, tmp_path, capsys):
    root, aligned, _ = stage
    split = write_split(tmp_path / "split.tsv", {"s1": "train", "s2": "val", "s9": "val"})
    assert main(["pack", "--split", str(split), "--part", "val", "--out", str(tmp_path / "v.h5"),
                 str(aligned["s1"]), str(aligned["s2"])]) == 1
    assert "s9" in capsys.readouterr().err and not (tmp_path / "v.h5").exists()
    assert main(["pack", "--split", str(root / "split.tsv"), "--part", "val", "--mirror", "--out",
                 str(tmp_path / "v.h5"), str(aligned["s2"])]) == 1
    assert "training set only" in capsys.readouterr().err
    # inputs outside the part are ignored: packing train from s1 alone works
    assert main(["pack", "--split", str(root / "split.tsv"), "--part", "train", "--out", str(tmp_path / "t.h5"),
                 str(aligned["s1"])]) == 0
    with h5py.File(tmp_path / "t.h5") as h5:
        assert len(clip_keys(h5)) == 6


def test_align_cli_fails_on_an_unreadable_manifest(tmp_path):
    raw = tmp_path / "raw" / "s7"
    raw.mkdir(parents=True)
    res = subprocess.run([sys.executable, "-m", "speechanim.preprocess", "align", "--raw", str(raw), "--out",
                          str(tmp_path / "s7.h5"), "--skipped", str(tmp_path / "s7.tsv")], capture_output=True, text=True)
    assert res.returncode != 0 and str(raw / "manifest.tsv") in res.stderr
    assert not (tmp_path / "s7.h5").exists()


def test_empty_speaker_still_gives_a_file(tmp_path):
    raw = tmp_path / "s8"
    raw.mkdir()
    (raw / "junk.mpg").write_text("junk")
    write_manifest(raw, [Utterance("junk", "junk.mpg", "", "", "")])
    assert main(["align", "--raw", str(raw), "--out", str(tmp_path / "s8.h5"), "--skipped", str(tmp_path / "s8.tsv")]) == 0
    with h5py.File(tmp_path / "s8.h5") as h5:
        assert clip_keys(h5) == [] and h5.attrs["speaker"] == "s8"
    assert "junk.mpg" in _skips(tmp_path / "s8.tsv")[1]["junk"]


def test_grid_split_is_the_papers_50_20_30(tmp_path):
    speakers = [f"s{i}" for i in range(1, 35) if i != 21]
    out = tmp_path / "split.tsv"
    assert main(["split", "--dataset", "grid", "--speakers", *speakers, "--out", str(out)]) == 0
    split = read_split(out)
    counts = {p: sum(v == p for v in split.values()) for p in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 7, "test": 10} and set(split) == set(speakers)
    assert main(["split", "--dataset", "grid", "--speakers", *reversed(speakers), "--out", str(tmp_path / "b.tsv")]) == 0
    assert out.read_text() == (tmp_path / "b.tsv").read_text()
    assert main(["split", "--dataset", "grid", "--speakers", *speakers, "--seed", "1", "--out", str(tmp_path / "c.tsv")]) == 0
    assert out.read_text() != (tmp_path / "c.tsv").read_text()


def test_tcdtimit_split_matches_table_1(tmp_path):
    val = tcdtimit_validation()
    assert len(val) == 7 and set(val) < set(RECOMMENDED_TEST_VOLUNTEERS)
    assert sum(v.endswith("F") for v in val) == 3
    out = tmp_path / "split.tsv"
    assert main(["split", "--dataset", "tcdtimit", "--speakers", *VOLUNTEERS, *LIPSPEAKERS, "--out", str(out)]) == 0
    split = read_split(out)
    test = [s for s, p in split.items() if p == "test"]
    assert sorted(s for s, p in split.items() if p == "val") == sorted(val)
    assert len(test) == 10 and sum(s.endswith("F") for s in test) == 5
    assert sum(p == "train" for p in split.values()) == 42  # 39 recommended + 3 left out for accent
    assert not set(LIPSPEAKERS) & set(split)
    explicit = make_split("tcdtimit", list(VOLUNTEERS), recommended_test=["13F", "15F", "21M"], val=["15F"])
    assert explicit["15F"] == "val" and explicit["13F"] == "test" and explicit["01M"] == "train"
    with pytest.raises(ValueError, match="validation speakers must come from the test speakers"):
        make_split("tcdtimit", list(VOLUNTEERS), recommended_test=["13F"], val=["01M"])


def test_utterance_split_packs_each_part_from_one_speakers_file(stage, tmp_path, capsys):
    """A one-speaker corpus: the split CLI splits the manifest's utterances, pack copies only the part's."""
    root, aligned, _ = stage
    out = tmp_path / "split.tsv"
    assert main(["split", "--dataset", "grids1", "--by-utterance", str(root / "raw" / "grid" / "s1"),
                 "--ratios", "0.5", "0.25", "0.25", "--seed", "0", "--out", str(out)]) == 0
    assert "utterances (speaker-dependent)" in capsys.readouterr().err
    split = read_split(out)
    assert len(split) == 6 and {k.split("/")[0] for k in split} == {"s1"}  # the manifest's 6 rows
    packed = {}
    for part in ("train", "val", "test"):
        packed[part] = tmp_path / f"{part}.h5"
        extra = ["--mirror"] if part == "train" else []
        assert main(["pack", "--split", str(out), "--part", part, *extra, "--out", str(packed[part]),
                     str(aligned["s1"]), str(aligned["s2"])]) == 0
    keys = {}
    for part, path in packed.items():
        with h5py.File(path) as h5:
            keys[part] = clip_keys(h5)
            assert h5.attrs["split_by"] == "utterance" and list(h5.attrs["speakers"]) == ["s1"]
    plain = {part: {k for k in ks if not k.endswith("_mirror")} for part, ks in keys.items()}
    assert plain == {part: {k for k, p in split.items() if p == part} for part in packed}
    assert len(keys["train"]) == 2 * len(plain["train"])  # mirrored
    assert not plain["train"] & plain["test"] and not plain["val"] & plain["test"]
