"""GRID's raw stage end to end against a local server that serves archives in Zenodo's layout,
built from the eight real grid-mini clips (pretending they belong to speakers s1 and s2)."""
from __future__ import annotations

import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import pytest

from grid_fixtures import NO_ALIGN, NO_AUDIO, SPEAKER_CLIPS, FixtureServer, GridArchives, build_grid_archives, flip_bytes
from speechanim.raw import grid
from speechanim.raw.http import ChecksumError, RetryPolicy, part_path
from speechanim.raw.layout import MANIFEST, SKIPPED, read_manifest

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archives(grid_mini, tmp_path_factory) -> GridArchives:
    return build_grid_archives(grid_mini, tmp_path_factory.mktemp("grid-archives"))


@pytest.fixture(scope="module")
def _server(archives):
    with FixtureServer() as server:
        for name, data in archives.files.items():
            server.serve_file(name, data)
        server.serve("/api/records/3625687", archives.record)
        yield server


@pytest.fixture
def server(_server) -> FixtureServer:
    _server.reset()
    return _server


@pytest.fixture
def shared(server, tmp_path) -> Path:
    """A downloads folder holding the verified shared archives."""
    downloads = tmp_path / "downloads"
    grid.download_shared(server.base_url, downloads, record_url=server.record_url, policy=FAST, progress=False)
    server.reset()
    return downloads


def speaker(server, downloads, out, name="s1", **kwargs):
    kwargs.setdefault("record_url", server.record_url)
    return grid.prepare_speaker(name, base_url=server.base_url, downloads=downloads, out=out, policy=FAST,
                                progress=False, **kwargs)


def test_download_and_extract_into_the_normalised_layout(server, archives, tmp_path):
    downloads, out = tmp_path / "downloads", tmp_path / "raw" / "grid"
    paths = grid.download_shared(server.base_url, downloads, record_url=server.record_url, policy=FAST, progress=False)
    assert {n: p.read_bytes() == archives.files[n] for n, p in paths.items()} == {"audio_25k.zip": True, "alignments.zip": True}
    for name in ("s1", "s2"):
        manifest = speaker(server, downloads, out, name)
        assert manifest == out / name / MANIFEST
    s1 = read_manifest(out / "s1")
    assert [u.utterance for u in s1] == SPEAKER_CLIPS["s1"]
    assert s1[0].text == "bin blue at f two now"
    assert (s1[0].video, s1[0].audio, s1[0].align) == ("bbaf2n.mpg", "bbaf2n.wav", "bbaf2n.align")
    for u in s1:  # the corpus's files, byte for byte
        assert (out / "s1" / u.video).read_bytes() == archives.videos[u.utterance]
        assert (out / "s1" / u.audio).read_bytes() == archives.wavs[u.utterance]
        assert (out / "s1" / u.align).read_text() == archives.aligns[u.utterance]
    assert (out / "s1" / SKIPPED).read_text() == "item\treason\n"
    assert sorted(p.name for p in (out / "s1").iterdir()) == sorted(
        [MANIFEST, SKIPPED] + [f"{s}.{e}" for s in SPEAKER_CLIPS["s1"] for e in ("mpg", "wav", "align")]
    )
    # s2: one clip lacks audio, one lacks its alignment; the rest go on
    s2 = read_manifest(out / "s2")
    assert [u.utterance for u in s2] == ["lwbsza", "swwp2s"]
    assert s2[1].text == "set white with p two soon"
    assert (out / "s2" / "swwp2s.align").read_text() == archives.aligns["swwp2s"]
    skipped = (out / "s2" / SKIPPED).read_text().splitlines()[1:]
    assert skipped == [f"{NO_AUDIO}\tno audio in audio_25k.zip", f"{NO_ALIGN}\tno alignment in alignments.zip"]
    assert not (out / "s2" / f"{NO_AUDIO}.mpg").exists()
    # no temporary folders left behind, downloads complete
    assert sorted(p.name for p in out.iterdir()) == ["s1", "s2"]
    assert not list(downloads.glob("*.part"))
    assert (downloads / "s1.zip").read_bytes() == archives.files["s1.zip"]


def test_rerun_does_not_download_again(server, shared, tmp_path):
    out = tmp_path / "raw"
    speaker(server, shared, out)
    assert len(server.requests("s1.zip")) == 1
    grid.download_shared(server.base_url, shared, record_url=server.record_url, policy=FAST, progress=False)
    speaker(server, shared, out)
    assert len(server.requests("s1.zip")) == 1
    assert server.requests("audio_25k.zip") == [] and server.requests("alignments.zip") == []
    assert len(read_manifest(out / "s1")) == 4


def test_connection_drop_mid_archive_is_resumed(server, archives, shared, tmp_path):
    server.behave("s1.zip", drop_times=1)
    speaker(server, shared, tmp_path / "raw")
    ranges = [r[1:] for r in server.requests("s1.zip")]
    assert ranges == [(None, 200), (f"bytes={len(archives.files['s1.zip']) // 2}-", 206)]
    assert (shared / "s1.zip").read_bytes() == archives.files["s1.zip"]
    assert len(read_manifest(tmp_path / "raw" / "s1")) == 4


def test_server_ignoring_range_restarts_the_archive(server, archives, shared, tmp_path):
    server.behave("s1.zip", drop_times=1, ignore_range=True)
    speaker(server, shared, tmp_path / "raw")
    assert [r[2] for r in server.requests("s1.zip")] == [200, 200]
    assert (shared / "s1.zip").read_bytes() == archives.files["s1.zip"]


def test_corrupt_archive_with_published_md5(server, archives, shared, tmp_path, capsys):
    """The record's md5 catches the damage: error naming URL and file, no .part, no manifest."""
    server.replace_file("s1.zip", flip_bytes(archives.files["s1.zip"]))
    out = tmp_path / "raw"
    with pytest.raises(ChecksumError) as e:
        speaker(server, shared, out)
    assert "s1.zip" in str(e.value) and "md5 mismatch" in str(e.value)
    assert not (out / "s1" / MANIFEST).exists()
    assert not (shared / "s1.zip").exists() and not part_path(shared / "s1.zip").exists()
    # the CLI says it in one line and exits non-zero
    code = grid.main(["speaker", "s1", "--base-url", server.base_url, "--record-url", server.record_url,
                      "--downloads", str(shared), "--out", str(out), "--retries", "1", "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines[-1].startswith("speechanim.raw.grid: error: ") and "s1.zip" in lines[-1]
    assert not (out / "s1" / MANIFEST).exists()
    # fixed on the server: the next run succeeds
    server.reset()
    speaker(server, shared, out)
    assert len(read_manifest(out / "s1")) == 4


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_corrupt_archive_without_published_md5(server, archives, shared, tmp_path, damage):
    """With no checksum to compare, the zip's own CRCs (or its missing directory) catch the damage."""
    data = archives.files["s1.zip"]
    server.replace_file("s1.zip", flip_bytes(data, at=0.3) if damage == "flipped" else data[: len(data) // 2])
    out = tmp_path / "raw"
    with pytest.raises(grid.ArchiveError) as e:
        speaker(server, shared, out, record_url=None, verify=False)
    assert e.value.archive == shared / "s1.zip"
    assert str(e.value).startswith(f"{shared / 's1.zip'}: ")
    assert ("CRC" in str(e.value) or "corrupt" in str(e.value)) if damage == "flipped" else "not a valid zip" in str(e.value)
    assert not (out / "s1" / MANIFEST).exists()
    assert [p.name for p in out.iterdir()] == []  # the temporary folder is gone too
    assert not (shared / "s1.zip").exists()  # deleted, so the next run fetches it again
    server.reset()
    speaker(server, shared, out, record_url=None, verify=False)
    assert len(read_manifest(out / "s1")) == 4


def test_failed_rerun_unmarks_a_finished_speaker(server, archives, shared, tmp_path):
    out = tmp_path / "raw"
    speaker(server, shared, out)
    (shared / "s1.zip").unlink()
    server.replace_file("s1.zip", flip_bytes(archives.files["s1.zip"], at=0.3))
    with pytest.raises(grid.ArchiveError):
        speaker(server, shared, out, record_url=None, verify=False)
    assert not (out / "s1" / MANIFEST).exists()


def test_corrupt_shared_archive(server, archives, tmp_path):
    downloads = tmp_path / "downloads"
    server.replace_file("alignments.zip", flip_bytes(archives.files["alignments.zip"], at=0.2, count=16))
    with pytest.raises(ChecksumError, match="alignments.zip: md5 mismatch"):
        grid.download_shared(server.base_url, downloads, record_url=server.record_url, policy=FAST, progress=False)
    with pytest.raises(grid.ArchiveError, match=r"alignments\.zip: corrupt archive.*deleted it"):
        grid.download_shared(server.base_url, downloads, policy=FAST, progress=False, verify=False)
    assert not (downloads / "alignments.zip").exists()
    assert (downloads / "audio_25k.zip").exists()


def test_mislabelled_alignment_folders_are_matched_by_name(server, archives, shared, tmp_path):
    """Zenodo's alignments.zip files some speakers' alignments under another speaker's folder."""
    (shared / "alignments.zip").write_bytes(archives.swapped_alignments)
    out = tmp_path / "raw"
    speaker(server, shared, out, "s1")
    speaker(server, shared, out, "s2")
    for name in ("s1", "s2"):
        for u in read_manifest(out / name):
            assert (out / name / u.align).read_text() == archives.aligns[u.utterance]
    assert len(read_manifest(out / "s1")) == 4 and len(read_manifest(out / "s2")) == 2


def test_audio_from_the_videos(server, shared, tmp_path):
    out = tmp_path / "raw"
    speaker(server, shared, out, "s2", audio_source="video")
    utts = read_manifest(out / "s2")
    assert [u.utterance for u in utts] == ["lwbsza", "pwij3p", "swwp2s"]  # the video has audio even where audio_25k has none
    with wave.open(str(out / "s2" / "pwij3p.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (25000, 1, 2)
        assert w.getnframes() / 25000 == pytest.approx(2.98, abs=0.03)


def test_unavailable_record_stops_unless_verification_is_waived(server, shared, tmp_path, caplog):
    server.behave("/api/records/3625687", fail_statuses=[404])
    missing = server.record_url.replace("3625687", "0")
    with pytest.raises(grid.GridError, match="cannot be verified.*--no-verify"):
        speaker(server, shared, tmp_path / "raw", record_url=missing)
    assert not (tmp_path / "raw" / "s1" / MANIFEST).exists()
    speaker(server, shared, tmp_path / "raw", record_url=missing, verify=False)
    assert "will not be verified" in caplog.text
    assert len(read_manifest(tmp_path / "raw" / "s1")) == 4


def test_record_cache_is_used_when_the_api_is_down(server, archives, shared, tmp_path, caplog):
    """The shared step cached the record; with the API down, its md5s still catch a damaged archive."""
    server.behave("/api/records/3625687", fail_statuses=[503] * 5)
    server.replace_file("s1.zip", flip_bytes(archives.files["s1.zip"]))
    with pytest.raises(ChecksumError, match="s1.zip: md5 mismatch"):
        speaker(server, shared, tmp_path / "raw")
    assert "using the copy cached" in caplog.text


def test_errors_before_any_download(server, shared, tmp_path):
    with pytest.raises(grid.GridError, match="s21 has no video"):
        speaker(server, shared, tmp_path / "raw", "s21")
    with pytest.raises(grid.GridError, match="not a speaker id"):
        speaker(server, shared, tmp_path / "raw", "../s1")
    with pytest.raises(grid.GridError, match=r"alignments\.zip: missing; download the shared archives first"):
        speaker(server, tmp_path / "empty", tmp_path / "raw")
    assert server.requests() == []


def test_cli_exit_status_and_one_line_error(server, tmp_path):
    env_path = str(REPO / "src")
    run = subprocess.run(
        [sys.executable, "-m", "speechanim.raw.grid", "speaker", "s1", "--base-url", server.base_url,
         "--downloads", str(tmp_path / "none"), "--out", str(tmp_path / "raw")],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        f"speechanim.raw.grid: error: {tmp_path / 'none' / 'alignments.zip'}: missing; "
        "download the shared archives first (python -m speechanim.raw.grid shared)"
    )
    args = ["shared", "--base-url", server.base_url, "--downloads", str(tmp_path / "dl"),
            "--only", "alignments.zip", "--retries", "2", "--backoff", "0.01", "--no-progress"]
    assert grid.main(args) == 1  # no record metadata to verify against: refused
    assert not (tmp_path / "dl").exists() or not list((tmp_path / "dl").iterdir())
    ok = grid.main(args + ["--no-verify"])
    assert ok == 0 and sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["alignments.zip"]


def test_parse_record_and_urls():
    new = {"files": [{"key": "s1.zip", "size": 10, "checksum": "md5:ABCDEF0123456789abcdef0123456789"}]}
    old = {"files": [{"filename": "s1.zip", "filesize": 10, "checksum": "abcdef0123456789abcdef0123456789"}]}
    entries = {"files": {"entries": {"s1.zip": {"key": "s1.zip", "size": 10, "checksum": "sha256:00"}}}}
    assert grid.parse_record(new)["s1.zip"] == grid.FileInfo("s1.zip", 10, "abcdef0123456789abcdef0123456789")
    assert grid.parse_record(old) == grid.parse_record(new)
    assert grid.parse_record(entries)["s1.zip"] == grid.FileInfo("s1.zip", 10, None)
    with pytest.raises(ValueError):
        grid.parse_record({"hits": []})
    assert grid.archive_url(grid.DEFAULT_BASE_URL, "s1.zip") == "https://zenodo.org/records/3625687/files/s1.zip?download=1"
    assert grid.archive_url("http://mirror.example/grid/", "s1.zip") == "http://mirror.example/grid/s1.zip"
    assert len(grid.SPEAKERS) == 33 and "s21" not in grid.SPEAKERS


def test_choose_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for folder, stems in {"s1": ["a", "b", "c"], "s2": ["x", "y", "z"], "__MACOSX": ["x"]}.items():
            for s in stems:
                zf.writestr(f"alignments/{folder}/{s}.align", "0 1 sil\n")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        folders = grid.index_members(zf, ".align")
    assert sorted(folders) == ["s1", "s2"]
    assert grid.choose_folder(folders, "s1", {"a", "b", "c", "d"}) == "s1"
    assert grid.choose_folder(folders, "s1", {"x", "y", "q"}) == "s2"
    assert grid.choose_folder(folders, "s3", {"x", "q", "r", "t"}) is None
