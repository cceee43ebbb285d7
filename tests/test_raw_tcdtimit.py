"""TCD-TIMIT's import against a copy built at test time in the corpus's own on-disk layout.

Real GRID clips of ../shared/data/grid-mini are re-encoded as the corpus ships its clips (MP4:
H.264 + AAC) and named as TCD-TIMIT names them, for a volunteer (01M) and a lipspeaker (Lipspkr1).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import ffmpeg
import imageio_ffmpeg
import pytest

from speechanim.raw import tcdtimit
from speechanim.raw.layout import MANIFEST, SKIPPED, read_manifest

REPO = Path(__file__).resolve().parents[1]
# sentence id -> (GRID clip spoken in it, its words)
VOLUNTEER_CLIPS = {"sa1": ("bbaf2n", "bin blue at f two now"), "sx58": ("lbax4n", "lay blue at x four now")}
LIPSPEAKER_CLIPS = {"sa1": ("sbia1a", "set blue in a one again"), "si1367": ("pwij3p", "place white in j three please")}


def _ffmpeg(stream) -> None:
    stream.global_args("-nostdin").run(cmd=imageio_ffmpeg.get_ffmpeg_exe(), quiet=True, overwrite_output=True)


@pytest.fixture(scope="module")
def encoded(grid_mini, tmp_path_factory) -> dict[str, Path]:
    """GRID clips re-encoded once as the corpus's MP4s; plus one without audio and one WAV."""
    d = tmp_path_factory.mktemp("encoded")
    out: dict[str, Path] = {}
    for name in ("bbaf2n", "lbax4n", "sbia1a", "pwij3p", "swwp2s"):
        out[name] = d / f"{name}.mp4"
        _ffmpeg(ffmpeg.input(str(grid_mini / f"{name}.mpg")).output(
            str(out[name]), vcodec="libx264", acodec="aac", pix_fmt="yuv420p", preset="ultrafast"))
    out["silent"] = d / "silent.mp4"
    _ffmpeg(ffmpeg.input(str(grid_mini / "lwbsza.mpg")).output(
        str(out["silent"]), vcodec="libx264", pix_fmt="yuv420p", preset="ultrafast", an=None))
    out["wav"] = d / "bbaf2n.wav"
    _ffmpeg(ffmpeg.input(str(grid_mini / "bbaf2n.mpg")).output(str(out["wav"]), ac=1, ar=16000))
    return out


def camera_dir(root: Path, group: str, speaker: str) -> Path:
    return root / group / speaker / "Clips" / "straightcam"


@pytest.fixture
def corpus(encoded, tmp_path) -> Path:
    """A TCD-TIMIT copy: volunteers/01M and lipspeakers/Lipspkr1, both views of 01M, the label files,
    a WAV beside one clip, a TIMIT-style transcript beside another and TIMIT's PROMPTS.TXT."""
    root = tmp_path / "TCD-TIMIT"
    vol, lip = camera_dir(root, "volunteers", "01M"), camera_dir(root, "lipspeakers", "Lipspkr1")
    for folder, clips in ((vol, VOLUNTEER_CLIPS), (lip, LIPSPEAKER_CLIPS)):
        folder.mkdir(parents=True)
        for sentence, (grid_clip, _) in clips.items():
            shutil.copyfile(encoded[grid_clip], folder / f"{sentence}.mp4")
    (root / "volunteers" / "01M" / "Clips" / "30degcam").mkdir()
    shutil.copyfile(encoded["swwp2s"], root / "volunteers" / "01M" / "Clips" / "30degcam" / "sa1.mp4")
    shutil.copyfile(encoded["wav"], vol / "sa1.wav")  # a copy that ships the clip's WAV
    (vol / "sa1.txt").write_text("0 46797 Bin blue at F two now.\n")  # TIMIT's .txt format
    (root / "PROMPTS.TXT").write_text(
        "; TIMIT sentence prompts\n;\n"
        + "".join(f"{words} ({sentence})\n" for clips in (VOLUNTEER_CLIPS, LIPSPEAKER_CLIPS)
                  for sentence, (_, words) in clips.items() if sentence != "sa1")
    )
    for mlf in ("volunteer_labelfiles.mlf", "lipspeaker_labelfiles.mlf"):
        (root / mlf).write_text('#!MLF!#\n"Q:/Videos/TCD-TIMIT/volunteers/01M/Clips/straightcam/sa1.rec"\n0 10300000 sil\n.\n')
    return root


def wav_info(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getframerate(), w.getnframes()


def test_import_writes_the_normalised_layout(corpus, tmp_path):
    out = tmp_path / "raw" / "tcdtimit"
    assert tcdtimit.import_speaker(corpus, "01M", out) == out / "01M" / MANIFEST
    assert tcdtimit.import_speaker(str(corpus), "Lipspkr1", out) == out / "Lipspkr1" / MANIFEST

    vol = read_manifest(out / "01M")
    assert [(u.utterance, u.video, u.audio, u.align) for u in vol] == [
        ("sa1", "sa1.mp4", "sa1.wav", ""), ("sx58", "sx58.mp4", "sx58.wav", "")]
    assert [u.text for u in vol] == ["Bin blue at F two now.", "lay blue at x four now"]  # transcript, PROMPTS.TXT
    src = camera_dir(corpus, "volunteers", "01M")
    for u in vol:  # the corpus's video byte for byte, hard-linked (same filesystem)
        assert (out / "01M" / u.video).read_bytes() == (src / f"{u.utterance}.mp4").read_bytes()
        assert os.path.samefile(out / "01M" / u.video, src / f"{u.utterance}.mp4")
    assert (out / "01M" / "sa1.wav").read_bytes() == (src / "sa1.wav").read_bytes()  # the shipped WAV, as is
    channels, rate, frames = wav_info(out / "01M" / "sx58.wav")  # taken from the MP4's audio track
    assert (channels, rate) == (1, 44100) and 2.5 < frames / rate < 3.5
    assert (out / "01M" / SKIPPED).read_text() == "item\treason\n"
    assert sorted(p.name for p in (out / "01M").iterdir()) == sorted(
        [MANIFEST, SKIPPED, "sa1.mp4", "sa1.wav", "sx58.mp4", "sx58.wav"])

    lip = read_manifest(out / "Lipspkr1")
    assert [(u.utterance, u.text) for u in lip] == [("sa1", ""), ("si1367", "place white in j three please")]
    assert wav_info(out / "Lipspkr1" / "sa1.wav")[0] == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_bad_clips_are_skipped_and_the_rest_imported(corpus, encoded, tmp_path):
    vol = camera_dir(corpus, "volunteers", "01M")
    data = encoded["lbax4n"].read_bytes()
    (vol / "sx12.mp4").write_bytes(data[: len(data) // 2])  # truncated download
    shutil.copyfile(encoded["silent"], vol / "si1000.mp4")  # no audio track, no WAV
    shutil.copyfile(encoded["pwij3p"], vol / "si2000.mp4")
    (vol / "si2000.wav").write_bytes(b"")  # an empty WAV beside it
    out = tmp_path / "out"
    tcdtimit.import_speaker(corpus, "01M", out)

    assert [u.utterance for u in read_manifest(out / "01M")] == ["sa1", "sx58"]
    rows = dict(line.split("\t") for line in (out / "01M" / SKIPPED).read_text().splitlines()[1:])
    assert sorted(rows) == ["si1000", "si2000", "sx12"]
    assert "no audio track" in rows["si1000"]
    assert "si2000.wav" in rows["si2000"]
    assert "sx12.mp4" in rows["sx12"] and ("unreadable" in rows["sx12"] or "truncated" in rows["sx12"])
    assert sorted(p.name for p in (out / "01M").iterdir()) == sorted(
        [MANIFEST, SKIPPED, "sa1.mp4", "sa1.wav", "sx58.mp4", "sx58.wav"])


def test_names_must_be_unique_per_speaker(corpus, encoded, tmp_path):
    lip = camera_dir(corpus, "lipspeakers", "Lipspkr1")
    (lip / "extra").mkdir()
    shutil.copyfile(encoded["swwp2s"], lip / "extra" / "SA1.mp4")
    tcdtimit.import_speaker(corpus, "Lipspkr1", tmp_path / "out")
    assert [u.utterance for u in read_manifest(tmp_path / "out" / "Lipspkr1")] == ["si1367"]
    skipped = (tmp_path / "out" / "Lipspkr1" / SKIPPED).read_text()
    assert "sa1\t2 videos share the name" in skipped and "SA1\t2 videos share the name" in skipped


def test_copies_when_it_cannot_hard_link(corpus, tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(tcdtimit.os, "link", no_link)
    out = tmp_path / "out"
    tcdtimit.import_speaker(corpus, "Lipspkr1", out)
    src = camera_dir(corpus, "lipspeakers", "Lipspkr1") / "sa1.mp4"
    assert (out / "Lipspkr1" / "sa1.mp4").read_bytes() == src.read_bytes()
    assert not os.path.samefile(out / "Lipspkr1" / "sa1.mp4", src)


def test_failure_leaves_nothing_marked_done(corpus, tmp_path):
    out = tmp_path / "out"
    tcdtimit.import_speaker(corpus, "Lipspkr1", out)
    lip = camera_dir(corpus, "lipspeakers", "Lipspkr1")
    for clip in lip.glob("*.mp4"):  # every clip damaged: the speaker cannot be imported
        clip.write_bytes(clip.read_bytes()[:2000])
    with pytest.raises(tcdtimit.TcdTimitError, match="Lipspkr1: no usable clip"):
        tcdtimit.import_speaker(corpus, "Lipspkr1", out)
    assert not (out / "Lipspkr1" / MANIFEST).exists()  # the earlier import is no longer "done"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("source", [None, "", "missing"])
def test_missing_source_says_what_to_do(source, tmp_path):
    if source == "missing":
        source = tmp_path / "nowhere"
    for call in (lambda: tcdtimit.list_speakers(source), lambda: tcdtimit.import_speaker(source, "01M", tmp_path)):
        with pytest.raises(tcdtimit.SourceError) as e:
            call()
        message = str(e.value)
        assert "datasets.tcdtimit.source_dir" in message
        assert "registration" in message and tcdtimit.REGISTRATION_URL in message


def test_wrong_source_points_at_the_right_folder(corpus):
    with pytest.raises(tcdtimit.SourceError, match=r"holds neither volunteers/ nor lipspeakers/; .*TCD-TIMIT does"):
        tcdtimit.list_speakers(corpus.parent)  # one level too high


def test_unknown_speaker_and_zipped_clips(corpus, tmp_path):
    with pytest.raises(tcdtimit.TcdTimitError, match="speaker 02M not found"):
        tcdtimit.import_speaker(corpus, "02M", tmp_path)
    clips = corpus / "volunteers" / "02M" / "Clips"
    clips.mkdir(parents=True)
    (clips / "straightcam.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(tcdtimit.TcdTimitError, match="straightcam.zip is not unzipped"):
        tcdtimit.import_speaker(corpus, "02M", tmp_path)


def test_list_speakers(corpus):
    assert tcdtimit.list_speakers(corpus) == ["01M", "Lipspkr1"]
    assert tcdtimit.list_speakers(corpus, camera="30degcam") == ["01M"]
    (corpus / "volunteers" / "notes").mkdir()  # a folder without clips is not a speaker
    assert tcdtimit.list_speakers(str(corpus)) == ["01M", "Lipspkr1"]


def test_recommended_split_constants():
    test, train = set(tcdtimit.RECOMMENDED_TEST_VOLUNTEERS), set(tcdtimit.RECOMMENDED_TRAIN_VOLUNTEERS)
    assert (len(tcdtimit.VOLUNTEERS), len(test), len(train)) == (59, 17, 39)  # 70-30 of the 56 kept volunteers
    assert not test & train and (test | train) <= set(tcdtimit.VOLUNTEERS)
    assert not (test | train) & set(tcdtimit.ACCENT_EXCLUDED_VOLUNTEERS)


def test_cli(corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run = [sys.executable, "-m", "speechanim.raw.tcdtimit"]
    listed = subprocess.run([*run, "list", "--source", str(corpus)], capture_output=True, text=True, env=env)
    assert (listed.returncode, listed.stdout) == (0, "01M\nLipspkr1\n")
    out = tmp_path / "raw"
    done = subprocess.run([*run, "speaker", "Lipspkr1", "--source", str(corpus), "--out", str(out)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert (out / "Lipspkr1" / MANIFEST).is_file()
    failed = subprocess.run([*run, "list", "--source", str(tmp_path / "nowhere")], capture_output=True, text=True, env=env)
    assert failed.returncode == 1
    assert failed.stderr.startswith("speechanim.raw.tcdtimit: error:") and "datasets.tcdtimit.source_dir" in failed.stderr
