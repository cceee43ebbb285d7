"""The ``folder`` dataset's raw stage against folders of real GRID clips built at test time.

The eight clips of ../shared/data/grid-mini are re-encoded once to MP4 (H.264 + AAC), plus damaged
variants: one without audio, one at 30 fps, one cut in half; the folders are laid out per test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechanim.gridformat import sentence_from_name
from speechanim.media import MediaError, ffmpeg_exe
from speechanim.raw import folder
from speechanim.raw.folder import FolderError
from speechanim.raw.layout import MANIFEST, SKIPPED, read_manifest

REPO = Path(__file__).resolve().parents[1]
GRID_NAMES = ["bbaf2n", "brbk7n", "lbax4n", "lrwp9a", "lwbsza", "pwij3p", "sbia1a", "swwp2s"]


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(grid_mini, tmp_path_factory) -> dict[str, Path]:
    """name -> file: each grid-mini clip as MP4, and "silent" (no audio), "fps30", "cut_mp4" and "cut_mpg"
    (the first half of an MP4 and of a corpus MPEG-1 file)."""
    d = tmp_path_factory.mktemp("encoded")
    out: dict[str, Path] = {}
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    for name in GRID_NAMES:
        out[name] = d / f"{name}.mp4"
        _ffmpeg("-i", str(grid_mini / f"{name}.mpg"), *x264, "-c:a", "aac", str(out[name]))
    out["silent"] = d / "silent.mp4"
    _ffmpeg("-i", str(grid_mini / "lwbsza.mpg"), *x264, "-an", str(out["silent"]))
    out["fps30"] = d / "fps30.mp4"
    _ffmpeg("-i", str(grid_mini / "pwij3p.mpg"), *x264, "-r", "30", "-c:a", "aac", str(out["fps30"]))
    for key, src in (("cut_mp4", out["brbk7n"]), ("cut_mpg", grid_mini / "sbia1a.mpg")):
        data = src.read_bytes()
        out[key] = d / f"{key}{src.suffix}"
        out[key].write_bytes(data[: len(data) // 2])
    return out


def make_folder(root: Path, files: dict[str, Path | str]) -> Path:
    """``root`` holding ``files`` (relative name -> a file to copy, or text to write)."""
    for name, src in files.items():
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copyfile(src, dest)
        else:
            dest.write_text(src)
    return root


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def skipped_rows(speaker_dir: Path) -> dict[str, str]:
    lines = (speaker_dir / SKIPPED).read_text().splitlines()
    assert lines[0] == "item\treason"
    return dict(line.split("\t") for line in lines[1:])


def test_one_speaker_with_grid_names(clips, tmp_path):
    names = ["bbaf2n", "brbk7n", "lbax4n"]
    root = make_folder(tmp_path / "videos", {f"{n}.mp4": clips[n] for n in names[:2]})
    make_folder(root, {"lbax4n.MP4": clips["lbax4n"], ".hidden.mp4": clips["lrwp9a"], "notes.txt": "not a video",
                       "docs/readme.md": "a subfolder without videos"})
    assert folder.list_speakers(root, "s1") == ["s1"]
    assert folder.list_speakers(str(root), single_speaker="alice") == ["alice"]
    before = tree(tmp_path)
    out = tmp_path / "raw" / "mine"

    assert folder.import_speaker(root, "alice", out, single_speaker="alice") == out / "alice" / MANIFEST
    rows = read_manifest(out / "alice")
    assert [(u.utterance, u.video, u.audio, u.align, u.text) for u in rows] == [
        (n, f"{n}.mp4", "", "", sentence_from_name(n)) for n in names]
    assert rows[0].text == "bin blue at f two now"
    for n, src in (("bbaf2n", root / "bbaf2n.mp4"), ("lbax4n", root / "lbax4n.MP4")):
        copy = out / "alice" / f"{n}.mp4"
        assert not copy.is_symlink() and not os.path.samefile(copy, src)  # a copy, not a link
        assert copy.read_bytes() == src.read_bytes()
    assert (out / "alice" / SKIPPED).read_text() == "item\treason\n"
    expected = [MANIFEST, SKIPPED] + [f"{n}.mp4" for n in names]
    assert sorted(p.name for p in (out / "alice").iterdir()) == sorted(expected)
    # nothing written anywhere but under out (no temporary folder left there either); the source untouched
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("raw/")} == before
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.name.startswith(".")) == []

    with pytest.raises(FolderError, match=r"speaker s1 not found: .*videos holds one speaker's videos directly"):
        folder.import_speaker(root, "s1", out, single_speaker="alice")
    with pytest.raises(FolderError, match="'bad id' is not a usable speaker id"):
        folder.list_speakers(root, "bad id")


def test_one_speaker_per_subfolder(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {
        "s1/bbaf2n.mp4": clips["bbaf2n"], "s1/brbk7n.mp4": clips["brbk7n"],
        "spk-2/lbax4n.mp4": clips["lbax4n"],
        "empty/readme.txt": "no videos: not a speaker", ".cache/lrwp9a.mp4": clips["lrwp9a"]})
    assert folder.list_speakers(root) == ["s1", "spk-2"]
    out = tmp_path / "out"
    for speaker in ("s1", "spk-2"):
        folder.import_speaker(root, speaker, out)
    assert [(u.utterance, u.text) for u in read_manifest(out / "s1")] == [
        ("bbaf2n", "bin blue at f two now"), ("brbk7n", "bin red by k seven now")]
    assert [(u.utterance, u.text) for u in read_manifest(out / "spk-2")] == [("lbax4n", "lay blue at x four now")]
    assert sorted(p.name for p in out.iterdir()) == ["s1", "spk-2"]
    with pytest.raises(FolderError, match=r"speaker empty not found: .*the folder has s1, spk-2"):
        folder.import_speaker(root, "empty", out)


def test_videos_both_in_root_and_subfolders(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"bbaf2n.mp4": clips["bbaf2n"], "s2/brbk7n.mp4": clips["brbk7n"]})
    with pytest.raises(FolderError, match=f"{root}: holds videos both directly .*bbaf2n.mp4.* and in subfolders .*s2/"):
        folder.list_speakers(root)
    with pytest.raises(FolderError, match="holds videos both directly"):
        folder.import_speaker(root, "s1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_speaker_folder_must_be_an_id(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"s1/bbaf2n.mp4": clips["bbaf2n"], "bad name/brbk7n.mp4": clips["brbk7n"]})
    with pytest.raises(FolderError, match=r"speaker folder .*bad name:? 'bad name' is not a usable speaker id"):
        folder.list_speakers(root)


def test_transcripts_tsv(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {
        "s1/intro.mp4": clips["bbaf2n"], "s1/take_2.mp4": clips["brbk7n"], "s1/bbaf2n.mp4": clips["lbax4n"],
        "s2/intro.mp4": clips["lrwp9a"],
        "transcripts.tsv": "utterance\ttext\nintro\tHello  there,\tfriend\n",  # (3 columns: malformed at first)
    })
    with pytest.raises(FolderError, match=r"videos/transcripts.tsv:2: expected 2 tab-separated columns"):
        folder.import_speaker(root, "s1", tmp_path / "out")
    (root / "transcripts.tsv").write_text("\ufeffutterance\ttext\nintro\tHello  there, friend\n\n"
                                          "take_2\tfrom the root\nbbaf2n\tnot the grid sentence\n")
    (root / "s1" / "transcripts.tsv").write_text("utterance\ttext\ntake_2\tfrom the speaker's folder\n")
    out = tmp_path / "out"
    folder.import_speaker(root, "s1", out)
    folder.import_speaker(root, "s2", out)
    assert [(u.utterance, u.text) for u in read_manifest(out / "s1")] == [
        ("bbaf2n", "not the grid sentence"),  # transcripts.tsv before the GRID name
        ("intro", "Hello there, friend"),  # from the root's table, whitespace normalised
        ("take_2", "from the speaker's folder"),  # the speaker folder's line wins
    ]
    assert [(u.utterance, u.text) for u in read_manifest(out / "s2")] == [("intro", "Hello there, friend")]


@pytest.mark.parametrize("content, message", [
    ("intro\tHello\n", r"its first line must be the header 'utterance<TAB>text', got 'intro\\tHello'"),
    ("", "its first line must be the header .*got an empty file"),
    ("utterance\ttext\nintro\n", r":2: expected 2 tab-separated columns \(utterance, text\), got 1"),
    ("utterance\ttext\nintro\t \n", ":2: empty text"),
    ("utterance\ttext\nintro\ta\nintro\tb\n", ":3: utterance 'intro' is listed twice"),
])
def test_malformed_transcripts_name_the_file(clips, tmp_path, content, message):
    root = make_folder(tmp_path / "videos", {"intro.mp4": clips["bbaf2n"], "transcripts.tsv": content})
    with pytest.raises(FolderError, match=f"{root / 'transcripts.tsv'}.*{message}"):
        folder.import_speaker(root, "s1", tmp_path / "out")


def test_no_transcripts_at_all_gives_empty_text(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"take1.mp4": clips["bbaf2n"], "take2.mp4": clips["brbk7n"],
                                              "hello1.mp4": clips["lbax4n"]})  # 6 characters but no GRID name
    folder.import_speaker(root, "s1", tmp_path / "out")
    assert [(u.utterance, u.text) for u in read_manifest(tmp_path / "out" / "s1")] == [
        ("hello1", ""), ("take1", ""), ("take2", "")]


def test_has_transcripts_tells_whether_a_lipreader_can_be_trained(clips, tmp_path):
    untexted = make_folder(tmp_path / "a", {"take1.mp4": clips["bbaf2n"], "s2x.mp4": clips["brbk7n"]})
    assert folder.has_transcripts(untexted) is False
    assert folder.has_transcripts(make_folder(tmp_path / "b", {"bbaf2n.mp4": clips["bbaf2n"]})) is True  # GRID name
    per_speaker = make_folder(tmp_path / "c", {"s1/take1.mp4": clips["bbaf2n"], "s2/take9.mp4": clips["brbk7n"],
                                               "s2/transcripts.tsv": "utterance\ttext\ntake9\thello\n"})
    assert folder.has_transcripts(per_speaker) is True  # one speaker with text is enough
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match="holds no video files"):
        folder.has_transcripts(tmp_path / "empty")


def test_some_videos_without_text_is_an_error(clips, tmp_path):
    extra = {f"clip{i}.mp4": clips["lbax4n"] for i in range(7)}
    root = make_folder(tmp_path / "videos", {"bbaf2n.mp4": clips["bbaf2n"], **extra})
    out = tmp_path / "out"
    with pytest.raises(FolderError) as e:
        folder.import_speaker(root, "s1", out)
    message = str(e.value)
    assert message.startswith(f"{root}: 1 of its 8 videos have a transcript")
    assert "names that are neither GRID names nor in transcripts.tsv: clip0, clip1, clip2, clip3, clip4 (and 2 more)" \
        in message
    assert not out.exists()
    # listed in transcripts.tsv, all of them are fine
    (root / "transcripts.tsv").write_text("utterance\ttext\n" + "".join(f"clip{i}\tsentence {i}\n" for i in range(7)))
    folder.import_speaker(root, "s1", out)
    texts = [u.text for u in read_manifest(out / "s1")]
    assert texts == ["bin blue at f two now"] + [f"sentence {i}" for i in range(7)]


def test_a_transcripts_file_that_matches_no_video(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"take1.mp4": clips["bbaf2n"],
                                              "transcripts.tsv": "utterance\ttext\nother\tsome words\n"})
    with pytest.raises(FolderError, match=r"none of its videos is listed in .*transcripts.tsv \(e.g. take1\)"):
        folder.import_speaker(root, "s1", tmp_path / "out")


def test_bad_clips_are_skipped_and_the_rest_imported(clips, grid_mini, tmp_path):
    root = make_folder(tmp_path / "videos", {
        "bbaf2n.mp4": clips["bbaf2n"], "lbax4n.mpg": grid_mini / "lbax4n.mpg",  # the corpus's own MPEG-1 file
        "lwbsza.mp4": clips["silent"], "brbk7n.mp4": clips["cut_mp4"], "sbia1a.mpg": clips["cut_mpg"],
        "swwp2s.mkv": "not a video at all"})
    out = tmp_path / "out"
    folder.import_speaker(root, "s1", out)
    assert [(u.utterance, u.video) for u in read_manifest(out / "s1")] == [
        ("bbaf2n", "bbaf2n.mp4"), ("lbax4n", "lbax4n.mpg")]
    rows = skipped_rows(out / "s1")
    assert sorted(rows) == ["brbk7n", "lwbsza", "sbia1a", "swwp2s"]
    assert rows["lwbsza"] == f"{root / 'lwbsza.mp4'}: has no audio track"
    assert rows["brbk7n"].startswith(f"{root / 'brbk7n.mp4'}: not a video ffmpeg can read")  # moov atom lost
    assert rows["sbia1a"].startswith(f"{root / 'sbia1a.mpg'}: corrupt or truncated")  # half the frames decode
    assert rows["swwp2s"].startswith(f"{root / 'swwp2s.mkv'}: not a video ffmpeg can read")
    assert sorted(p.name for p in (out / "s1").iterdir()) == sorted([MANIFEST, SKIPPED, "bbaf2n.mp4", "lbax4n.mpg"])


def test_check_clip(clips, grid_mini):
    info = folder.check_clip(grid_mini / "bbaf2n.mpg")
    assert (info.n_frames, info.fps, info.width, info.height, info.has_audio, info.audio_rate) == (
        75, 25.0, 360, 288, True, 44100)
    assert folder.check_clip(clips["fps30"]).fps == 30.0
    assert not folder.check_clip(clips["silent"]).has_audio
    # a truncated MPEG-1 file still opens and half its frames decode: the decoder's errors give it away
    with pytest.raises(MediaError, match="cut_mpg.mpg: corrupt or truncated"):
        folder.check_clip(clips["cut_mpg"])


def test_too_short_clips(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"bbaf2n.mp4": clips["bbaf2n"], "brbk7n.mp4": clips["brbk7n"]})
    out = tmp_path / "out"
    folder.import_speaker(root, "s1", out, min_frames=75)
    assert len(read_manifest(out / "s1")) == 2
    with pytest.raises(FolderError, match=r"s1: no usable clip in .* \(2 skipped, e\.g\. .*bbaf2n.mp4: only 75 frames "
                                          r"\(at least 76 needed\)\)"):
        folder.import_speaker(root, "s1", out, min_frames=76)
    assert not (out / "s1" / MANIFEST).exists()  # the earlier import is no longer marked done
    assert [p.name for p in out.iterdir()] == ["s1"]  # no temporary folder left


def test_mixed_frame_rates(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"bbaf2n.mp4": clips["bbaf2n"], "brbk7n.mp4": clips["brbk7n"],
                                              "pwij3p.mp4": clips["fps30"], "lwbsza.mp4": clips["silent"]})
    out = tmp_path / "out"
    with pytest.raises(FolderError) as e:
        folder.import_speaker(root, "s1", out)
    message = str(e.value)
    assert "s1: clips in" in message and "have mixed frame rates" in message
    assert f"25 fps: 2 clips, e.g. {root / 'bbaf2n.mp4'}" in message
    assert f"30 fps: 1 clip, e.g. {root / 'pwij3p.mp4'}" in message
    assert not (out / "s1" / MANIFEST).exists()

    (root / "pwij3p.mp4").unlink()
    with pytest.raises(FolderError, match=r"not at the expected 30 fps \(25 fps: 2 clips"):
        folder.import_speaker(root, "s1", out, fps=30)
    folder.import_speaker(root, "s1", out, fps=25.0)
    assert [u.utterance for u in read_manifest(out / "s1")] == ["bbaf2n", "brbk7n"]
    assert list(skipped_rows(out / "s1")) == ["lwbsza"]


@pytest.mark.parametrize("case", ["empty", "only_other_files", "missing", "a_file"])
def test_no_videos_is_an_error(clips, tmp_path, case):
    root = tmp_path / "videos"
    if case == "empty":
        root.mkdir()
        message = rf"{root}: holds no video files \(\.mp4, \.mpg, \.mpeg, \.avi, \.mov, \.mkv, \.webm\)"
    elif case == "only_other_files":
        make_folder(root, {"notes.txt": "x", ".hidden.mp4": clips["bbaf2n"], "s1/deeper/bbaf2n.mp4": clips["bbaf2n"]})
        message = f"{root}: holds no video files"
    elif case == "missing":
        message = f"{root}: no such folder"
    else:
        root.write_text("a file")
        message = f"{root}: not a folder"
    with pytest.raises(FolderError, match=message):
        folder.list_speakers(root)
    with pytest.raises(FolderError, match=message):
        folder.import_speaker(root, "s1", tmp_path / "out")


def test_duplicate_stems(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"bbaf2n.mp4": clips["bbaf2n"], "bbaf2n.avi": clips["bbaf2n"],
                                              "lbax4n.mp4": clips["lbax4n"], "LBAX4N.mov": clips["lbax4n"],
                                              "brbk7n.mp4": clips["brbk7n"]})
    with pytest.raises(FolderError, match=rf"{root}: two videos share an utterance name .*: bbaf2n.avi and "
                                          r"bbaf2n.mp4; LBAX4N.mov and lbax4n.mp4; rename or remove"):
        folder.import_speaker(root, "s1", tmp_path / "out")


def test_output_inside_the_source_is_refused(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"s1/bbaf2n.mp4": clips["bbaf2n"]})
    for out in (root, root / "raw", tmp_path):
        with pytest.raises(FolderError, match="overlap"):
            folder.import_speaker(root, "s1", out)
    assert (root / "s1" / "bbaf2n.mp4").read_bytes() == clips["bbaf2n"].read_bytes()
    assert tree(root) == {"s1/bbaf2n.mp4": clips["bbaf2n"].read_bytes()}


def test_cli(clips, tmp_path):
    root = make_folder(tmp_path / "videos", {"bbaf2n.mp4": clips["bbaf2n"], "clip.mp4": clips["brbk7n"],
                                              "transcripts.tsv": "utterance\ttext\nclip\tmy words\n"})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run = [sys.executable, "-m", "speechanim.raw.folder"]

    listed = subprocess.run([*run, "speakers", "--root", str(root), "--single-speaker", "me"],
                            capture_output=True, text=True, env=env)
    assert (listed.returncode, listed.stdout) == (0, "me\n")
    out = tmp_path / "raw" / "mine"
    done = subprocess.run([*run, "speaker", "s1", "--root", str(root), "--out", str(out), "--fps", "25",
                           "--min-frames", "10"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "s1: 2 utterances at 25 fps" in done.stderr
    assert [(u.utterance, u.text) for u in read_manifest(out / "s1")] == [
        ("bbaf2n", "bin blue at f two now"), ("clip", "my words")]

    wrong_rate = subprocess.run([*run, "speaker", "s1", "--root", str(root), "--out", str(out), "--fps", "30"],
                                capture_output=True, text=True, env=env)
    assert wrong_rate.returncode == 1
    assert "speechanim.raw.folder: error: s1: clips in" in wrong_rate.stderr and "expected 30 fps" in wrong_rate.stderr
    assert not (out / "s1" / MANIFEST).exists()
    missing = subprocess.run([*run, "speakers", "--root", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, env=env)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == f"speechanim.raw.folder: error: {tmp_path / 'nowhere'}: no such folder"
