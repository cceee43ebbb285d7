"""Hostile inputs, round 2 (issue 28): nothing lost by an output path, and a study server that refuses
what it must. Each test proves the bad case is refused AND that every file is byte for byte as before.

1. An output path that is, holds or lies inside an input (or another output) is refused by one shared check,
   :func:`speechanim.fileio.check_outputs_apart`, where every command enters: exit code 2, both paths named,
   nothing read or written. The study set's build deletes only the videos its previous manifest listed.
2. The study server: consent is JSON ``true`` only; a ``--db`` that is an unrelated database is refused
   unchanged; a participant of an earlier build of the study set is not resumed onto its videos; malformed
   bodies, lengths and ranges get a 4xx and no traceback; a locked database answers 503 within ~1 s.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from speechanim.animate import animate_file
from speechanim.cli import main as cli
from speechanim.fileio import PathClashError, check_outputs_apart, files_in
from speechanim.study import build
from speechanim.study.db import StudyDB, StudyDBError, export_csv
from speechanim.study.server import make_server
from study_fixtures import dump, manifest, tiny_inputs


def snapshot(root: Path) -> dict[str, object]:
    """Every file's bytes, every folder and every link under ``root``: what "nothing lost, nothing added" compares."""
    state: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_dir():
            state[key] = "dir"
        else:
            state[key] = path.read_bytes()
    return state


def put(path: Path, data: bytes | None = None) -> Path:
    """A file with distinct bytes (its name), its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else f"precious {path.name}\n".encode() * 50)
    return path


# ------------------------------------------------------------------ 1. no output path destroys an input


@pytest.fixture
def files(tmp_path) -> Path:
    """A tree of inputs of every kind the commands read (their contents do not matter: the check comes first)."""
    d = tmp_path / "work"
    for name in ("face.png", "speech.wav", "generator.pt", "grid.dat", "packed/train.h5", "packed/val.h5",
                 "packed/test.h5", "metrics/full.json", "metrics/full.csv", "generated/full.h5",
                 "generated/static.h5", "raw/s1/manifest.tsv", "raw/s1/a.mpg", "videos/s1/a.mp4",
                 "responses.csv", "split.tsv", "aligned/s1.h5", "skipped_s1.tsv", "grid/s1/s1.zip",
                 "tcd/volunteers/01M/Clips/straightcam/sa1.mp4", "set/media/full.h5", "set/media/static.h5"):
        put(d / name)
    StudyDB(d / "study.sqlite").close()
    return d


SPEECHANIM_CASES = {
    # the examples: (argv, the output and the input the error must name)
    "stream frames onto its own audio": (["animate", "--stream", "--audio", "{d}/speech.wav", "--frames-out",
                                          "{d}/speech.wav", "--image", "{d}/face.png", "--checkpoint",
                                          "{d}/generator.pt", "-o", "{d}/out.mp4"], "speech.wav", "speech.wav"),
    "frames onto the photo": (["animate", "--stream", "--audio", "-", "--rate", "16000", "--frames-out",
                               "{d}/face.png", "--image", "{d}/face.png", "--checkpoint", "{d}/generator.pt",
                               "-o", "{d}/out.mp4"], "face.png", "face.png"),
    "video onto the photo": (["animate", "--image", "{d}/face.png", "--audio", "{d}/speech.wav", "--checkpoint",
                              "{d}/generator.pt", "-o", "{d}/face.png"], "face.png", "face.png"),
    "video onto the photo by another name": (["animate", "--image", "{d}/face.png", "--audio", "{d}/speech.wav",
                                              "--checkpoint", "{d}/generator.pt", "-o", "{d}/raw/../face.png"],
                                             "raw/../face.png", "face.png"),
    "video onto a symlink to the audio": (["animate", "--image", "{d}/face.png", "--audio", "{d}/speech.wav",
                                           "--checkpoint", "{d}/generator.pt", "-o", "{d}/link.mp4"],
                                          "link.mp4", "speech.wav"),
    "video onto a hard link of the checkpoint": (["animate", "--image", "{d}/face.png", "--audio", "{d}/speech.wav",
                                                  "--checkpoint", "{d}/generator.pt", "-o", "{d}/hard.mp4"],
                                                 "hard.mp4", "generator.pt"),
    "video and frames one file": (["animate", "--stream", "--audio", "{d}/speech.wav", "--frames-out", "{d}/o.mp4",
                                   "--image", "{d}/face.png", "--checkpoint", "{d}/generator.pt", "-o", "{d}/o.mp4"],
                                  "o.mp4", "o.mp4"),
    "import-sda onto its .dat": (["import-sda", "{d}/grid.dat", "-o", "{d}/grid.dat"], "grid.dat", "grid.dat"),
    "export onto the database": (["study", "export", "--db", "{d}/study.sqlite", "--out", "{d}/study.sqlite"],
                                 "study.sqlite", "study.sqlite"),
    "export onto the database's WAL": (["study", "export", "--db", "{d}/study.sqlite", "--out",
                                        "{d}/study.sqlite-wal"], "study.sqlite-wal", "study.sqlite-wal"),
    "serve into the study's media": (["study", "serve", "--study", "{d}/set", "--db", "{d}/set/media/a.sqlite",
                                      "--port", "0"], "a.sqlite", "set/media"),
}


@pytest.mark.parametrize("case", list(SPEECHANIM_CASES))
def test_the_speechanim_command_refuses_an_output_onto_an_input(files, case, capsys):
    argv, out, src = SPEECHANIM_CASES[case]
    (files / "link.mp4").symlink_to(files / "speech.wav")
    os.link(files / "generator.pt", files / "hard.mp4")
    before = snapshot(files)
    assert cli([a.format(d=files) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"speechanim {argv[0]}: error: ") and "nothing was written" in err, err
    assert out in err and src in err, err
    assert snapshot(files) == before


MODULE_CASES = {
    # module, argv, (the output and the input the error must name)
    "generate onto the test file": ("generate", ["--checkpoint", "{d}/generator.pt", "--h5", "{d}/packed/test.h5",
                                                 "--out", "{d}/packed/test.h5"], "test.h5"),
    "generate's videos into the packed folder": ("generate", ["--checkpoint", "{d}/generator.pt", "--h5",
                                                              "{d}/packed/test.h5", "--out", "{d}/g.h5", "--videos",
                                                              "{d}/packed"], "packed"),
    "evaluate onto the real clips": ("evaluate", ["--real", "{d}/packed/test.h5", "--out", "{d}/packed/test.h5"],
                                     "test.h5"),
    "evaluate's summary and per-clip CSV one file": ("evaluate", ["--real", "{d}/packed/test.h5", "--out",
                                                                  "{d}/m.csv"], "m.csv"),
    "reference landmarks onto the real clips": ("evaluate", ["--real", "{d}/packed/test.h5", "--write-reference",
                                                             "{d}/packed/test.h5"], "test.h5"),
    "train into the packed folder": ("train", ["--dataset", "x", "--variant", "full", "--train",
                                               "{d}/packed/train.h5", "--val", "{d}/packed/val.h5", "--out",
                                               "{d}/packed"], "train.h5"),
    "align's skip list onto the raw manifest": ("preprocess", ["align", "--raw", "{d}/raw/s1", "--out",
                                                               "{d}/aligned/new.h5", "--skipped",
                                                               "{d}/raw/s1/manifest.tsv"], "manifest.tsv"),
    "pack onto an aligned file": ("preprocess", ["pack", "--split", "{d}/split.tsv", "--part", "train", "--out",
                                                 "{d}/aligned/s1.h5", "{d}/aligned/s1.h5"], "s1.h5"),
    "split into a raw speaker folder": ("preprocess", ["split", "--dataset", "x", "--by-utterance", "{d}/raw/s1",
                                                       "--out", "{d}/raw/s1/split.tsv"], "split.tsv"),
    "skiplist onto a skip list": ("preprocess", ["skiplist", "--out", "{d}/skipped_s1.tsv", "{d}/skipped_s1.tsv"],
                                  "skipped_s1.tsv"),
    "lipreader onto its validation clips": ("lipreader", ["train", "--train", "{d}/packed/train.h5", "--val",
                                                          "{d}/packed/val.h5", "--out", "{d}/packed/val.h5"],
                                            "val.h5"),
    "lipreader's checkpoint and history one file": ("lipreader", ["train", "--train", "{d}/packed/train.h5", "--val",
                                                                  "{d}/packed/val.h5", "--out", "{d}/lip.csv"],
                                                    "lip.csv"),
    "lipreader eval onto the checkpoint": ("lipreader", ["eval", "--checkpoint", "{d}/generator.pt", "--h5",
                                                         "{d}/packed/test.h5", "--out", "{d}/generator.pt"],
                                           "generator.pt"),
    "syncnet eval onto the clips": ("syncnet", ["eval", "--checkpoint", "{d}/generator.pt", "--h5",
                                                "{d}/packed/test.h5", "--out", "{d}/packed/test.h5"], "test.h5"),
    "table3 onto a metrics summary": ("tables", ["table3", "--dataset", "x", "{d}/metrics", "--out",
                                                 "{d}/metrics/full.json"], "full.json"),
    "table1 onto a packed file": ("tables", ["table1", "--dataset", "x", "{d}/packed", "--out",
                                             "{d}/packed/test.h5"], "test.h5"),
    "claims onto the per-clip scores": ("claims", ["--dataset", "x", "{d}/metrics", "--out",
                                                   "{d}/metrics/full.csv"], "full.csv"),
    "figures into the generated folder": ("figures", ["--h5", "{d}/packed/test.h5", "--generated", "{d}/generated",
                                                      "--checkpoint", "{d}/generator.pt", "--out", "{d}/generated"],
                                          "full.h5"),
    "sda onto its .dat": ("sda", ["{d}/grid.dat", "-o", "{d}/grid.dat"], "grid.dat"),
    "fig9 onto the responses": ("study.analysis", ["fig9", "--responses", "{d}/responses.csv", "--out",
                                                   "{d}/responses.csv"], "responses.csv"),
    "study set over its inputs": ("study.build", ["--dataset", "x", "--test", "{d}/packed/test.h5", "--generated",
                                                  "{d}/set/media", "--out", "{d}/set"], "full.h5"),
    "folder import into its source": ("raw.folder", ["speaker", "s1", "--root", "{d}/videos", "--out",
                                                     "{d}/videos"], "videos"),
    "grid speaker folder over the downloads": ("raw.grid", ["speaker", "s1", "--downloads", "{d}/grid/s1",
                                                            "--base-url", "http://127.0.0.1:9/", "--out", "{d}/grid"],
                                               "s1.zip"),
    "tcdtimit import into the corpus": ("raw.tcdtimit", ["speaker", "01M", "--source", "{d}/tcd", "--out",
                                                         "{d}/tcd/volunteers"], "tcd"),
    "corpus samples onto a raw manifest": ("synth.corpus", ["samples", "{d}/raw", "--out",
                                                            "{d}/raw/s1/manifest.tsv"], "manifest.tsv"),
}


@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_every_command_refuses_an_output_onto_an_input(files, case, capsys):
    module, argv, named = MODULE_CASES[case]
    main = importlib.import_module(f"speechanim.{module}").main
    before = snapshot(files)
    with pytest.raises(SystemExit) as exit_:
        main([a.format(d=files) for a in argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and named in err and str(files) in err and "nothing was written" in err, err
    assert snapshot(files) == before


@pytest.mark.parametrize("out, src, refused", [
    ("a.wav", "a.wav", True),
    ("./sub/../a.wav", "a.wav", True),
    ("link.wav", "a.wav", True),  # a symlink to the input
    ("hard.wav", "a.wav", True),  # a hard link: the same inode
    (".", "a.wav", True),  # an output folder holding the input
    ("sub/new.wav", "sub", True),  # an output inside an input folder
    ("b.wav", "a.wav", False),  # beside it: fine
    ("-", "a.wav", False),  # stdout
    ("b.wav", "-", False),  # stdin
])
def test_the_shared_check(tmp_path, monkeypatch, out, src, refused):
    monkeypatch.chdir(tmp_path)
    put(tmp_path / "a.wav")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.wav").symlink_to(tmp_path / "a.wav")
    os.link(tmp_path / "a.wav", tmp_path / "hard.wav")
    if refused:
        with pytest.raises(PathClashError, match=f"--out {re.escape(str(Path(out)))}.*--in {re.escape(src)}"):
            check_outputs_apart({"--in": src}, {"--out": out})
    else:
        check_outputs_apart({"--in": src}, {"--out": out})
    # two outputs that are one file, or one inside the other
    with pytest.raises(PathClashError, match="one output would overwrite the other"):
        check_outputs_apart({}, {"-o": "x.mp4", "--frames-out": "./x.mp4"})
    # a folder of which some files are read: an output may go beside them, not over one
    put(tmp_path / "metrics" / "full.json")
    check_outputs_apart({"summaries": files_in(["metrics"], "*.json")}, {"--out": "metrics/table3.csv"})
    with pytest.raises(PathClashError):
        check_outputs_apart({"summaries": files_in(["metrics"], "*.json")}, {"--out": "metrics/full.json"})


def test_the_library_calls_refuse_too(files):
    before = snapshot(files)
    with pytest.raises(PathClashError, match="face.png"):
        animate_file(files / "face.png", files / "speech.wav", files / "generator.pt", files / "face.png")
    with pytest.raises(PathClashError, match="study.sqlite"):
        export_csv(files / "study.sqlite", files / "study.sqlite")
    assert snapshot(files) == before


# the study set's build: never deletes what it did not write


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[str, Path, Path]:
    return tiny_inputs(tmp_path_factory.mktemp("inputs"), n_clips=2, n_frames=4)


def test_the_study_build_refuses_a_folder_of_other_files_and_deletes_nothing(tiny, tmp_path, capsys):
    dataset, test, generated = tiny
    out = tmp_path / "mine"
    put(out / "media" / "holiday.mp4")
    put(out / "media" / "0123456789abcdef.mp4")  # named like a study video, but no manifest lists it
    put(out / "notes.txt")
    before = snapshot(tmp_path)
    argv = ["--dataset", dataset, "--test", str(test), "--generated", str(generated), "--out", str(out)]
    with pytest.raises(SystemExit) as exit_:
        build.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert str(out / "media") in err and "holiday.mp4" in err and "nothing was written or deleted" in err
    assert snapshot(tmp_path) == before
    # a manifest.json that is not a study set's is refused as well (a rebuild would overwrite it)
    (out / "media" / "holiday.mp4").unlink()
    put(out / "manifest.json", b'{"name": "my web app"}')
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit):
        build.main(argv)
    assert str(out / "manifest.json") in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_rebuild_deletes_only_the_videos_its_previous_manifest_listed(tiny, tmp_path):
    dataset, test, generated = tiny
    out = tmp_path / "study"
    put(out / "study.sqlite")  # the answers beside the set: untouched
    first = build.manifest_files(json.loads(build.build_study([tiny], out, seed=0).read_text()))
    left_by_a_killed_build = put(out / "media" / "0123456789abcdef.mp4")
    second = build.manifest_files(json.loads(build.build_study([tiny], out, seed=1).read_text()))
    names = {p.name for p in (out / "media").iterdir()}
    assert first and second and not first & second
    assert names == second | {left_by_a_killed_build.name}  # the first set's videos gone, the unlisted one kept
    assert (out / "study.sqlite").read_bytes() == b"precious study.sqlite\n" * 50


# ------------------------------------------------------------------ 2. the study server


@pytest.fixture(scope="module")
def study(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "study"
    build.build_study([tiny], out)
    return out


def serving(study: Path, db: Path):
    srv = make_server(study, db, port=0, pairs=1, fake=1, real=1, quiet=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture
def server(study, tmp_path):
    srv = serving(study, tmp_path / "answers.sqlite")
    yield srv
    srv.shutdown()
    srv.server_close()


def raw(srv, data: bytes) -> tuple[int, bytes]:
    """Send raw bytes; the status and the whole reply (the server must answer, not drop the connection)."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return int(reply.split()[1]), reply


def post(srv, path: str, body: bytes, headers: str = "") -> tuple[int, bytes]:
    return raw(srv, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n".encode() + body)


def get(srv, path: str, headers: str = "") -> tuple[int, bytes]:
    return raw(srv, f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())


def answer(srv, participant: str, trial: int, value: str = "left") -> int:
    body = {"participant": participant, "trial": trial, "answer": value}
    return post(srv, "/api/answers", json.dumps(body).encode())[0]


def new_participant(srv) -> str:
    status, reply = post(srv, "/api/participants", b'{"consent": true}')
    assert status == 201, reply
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])["participant"]


@pytest.mark.parametrize("consent", [b"1", b"1.0", b'"true"', b'"yes"', b"[true]", b"null"])
def test_consent_is_json_true_only(server, consent):
    before = dump(server.db.path)
    status, reply = post(server, "/api/participants", b'{"consent": ' + consent + b"}")
    assert status == 400 and b"consent" in reply
    assert dump(server.db.path) == before


def _unrelated(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes VALUES (1, 'mine');")
    conn.close()
    return path


def _other_participants(path: Path) -> Path:  # the study's table names, someone else's columns
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE participants (id INTEGER, name TEXT, email TEXT);")
    conn.close()
    return path


@pytest.mark.parametrize("make", [_unrelated, _other_participants, lambda p: put(p, b"not a database\n" * 10)],
                         ids=["unrelated tables", "study table names with other columns", "not SQLite"])
def test_a_db_that_is_not_the_studys_is_refused_unchanged(study, tmp_path, capsys, make):
    db = make(tmp_path / "mine.sqlite")
    before = snapshot(tmp_path)
    with pytest.raises(StudyDBError, match="mine.sqlite.*nothing was written"):
        StudyDB(db)
    assert cli(["study", "serve", "--study", str(study), "--db", str(db), "--port", "0"]) == 1
    assert "mine.sqlite" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # no table added, still in its journal mode, no -wal or -shm beside it


def test_a_participant_of_an_earlier_build_is_not_resumed_onto_its_videos(tiny, tmp_path):
    out, db = tmp_path / "study", tmp_path / "answers.sqlite"
    build.build_study([tiny], out, seed=0)
    srv = serving(out, db)
    try:
        old = new_participant(srv)
        assert answer(srv, old, 0) == 201
    finally:
        srv.shutdown()
        srv.server_close()
    build.build_study([tiny], out, seed=1)  # rebuilt: the old participant's videos are gone
    srv = serving(out, db)
    try:
        before = dump(db)
        status, reply = get(srv, f"/api/participants/{old}")
        assert status == 410 and b"start again" in reply
        assert answer(srv, old, 1) == 410
        assert dump(db) == before
        new = new_participant(srv)  # the page starts afresh: a new participant on the new set
        status, reply = get(srv, f"/api/participants/{new}")
        videos = {v.split("/")[-1] for t in json.loads(reply.split(b"\r\n\r\n", 1)[1])["trials"] for v in t["videos"]}
        assert status == 200 and videos <= build.manifest_files(manifest(out))
    finally:
        srv.shutdown()
        srv.server_close()


def with_length(srv, length: str) -> tuple[int, bytes]:
    """An answer POST whose Content-Length header is ``length`` (sent as latin-1, as HTTP headers are)."""
    head = f"POST /api/answers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    return raw(srv, (head + "\r\n{}").encode("latin-1"))


def ranged(srv, header: str) -> tuple[int, bytes]:
    """A video GET with this Range header."""
    return get(srv, f"/media/{srv.study_file}", f"Range: {header}\r\n")


MALFORMED = {
    "JSON nested 1,000 deep": lambda srv: post(srv, "/api/answers", b"[" * 1000 + b"]" * 1000),
    "JSON objects nested deep": lambda srv: post(srv, "/api/participants", b'{"a":' * 340 + b"1" + b"}" * 340),
    "a 5,000-digit Content-Length": lambda srv: with_length(srv, "9" * 5000),
    "a Content-Length of other digits": lambda srv: with_length(srv, "\u00b2"),  # "²".isdigit() is true
    "a 5,000-digit Range": lambda srv: ranged(srv, "bytes=" + "9" * 5000 + "-"),
    "a 5,000-digit Range end": lambda srv: ranged(srv, "bytes=0-" + "9" * 5000),
    "a Range of two ranges": lambda srv: ranged(srv, "bytes=0-1,4-5"),
    "a Range that is not bytes": lambda srv: ranged(srv, "bytes=a-b"),
    "a Range backwards": lambda srv: ranged(srv, "bytes=9-3"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_request_gets_a_4xx_and_no_traceback(server, study, case, capfd):
    server.study_file = build.manifest_files(manifest(study)).pop()
    new_participant(server)
    before = dump(server.db.path)
    capfd.readouterr()
    status, reply = MALFORMED[case](server)
    assert 400 <= status < 500, reply[:300]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
    assert dump(server.db.path) == before
    assert "Traceback" not in capfd.readouterr().err
    assert get(server, "/")[0] == 200  # still serving


def test_a_locked_database_answers_503_within_about_a_second(server):
    pid = new_participant(server)
    before = dump(server.db.path)
    other = sqlite3.connect(server.db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        for path, body in [("/api/answers", {"participant": pid, "trial": 0, "answer": "left"}),
                           ("/api/participants", {"consent": True})]:
            start = time.monotonic()
            status, reply = post(server, path, json.dumps(body).encode())
            took = time.monotonic() - start
            assert status == 503 and b"Retry-After: 1" in reply and b"nothing was saved" in reply, reply
            assert took < 3, took  # the busy timeout is 1 s (not 30); 3 s of slack for a loaded machine
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert dump(server.db.path) == before
    assert answer(server, pid, 0) == 201
