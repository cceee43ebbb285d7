"""The user study and Turing test (paper 4.5, Table 3's User column, Fig. 9): the study set the DAG builds,
the server (every bad request rejected with the database unchanged), a whole participant session in
headless Chromium, and the answers back into Table 3 and Fig. 9."""
from __future__ import annotations

import csv
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import pytest

from speechanim import tables
from speechanim.media import _ffmpeg_info, probe
from speechanim.study import analysis, build
from speechanim.study.db import StudyDB, export_rows, read_responses
from speechanim.study.server import make_server
from study_fixtures import dump, manifest, start_cli_server, stop, tiny_inputs, tiny_study

REPO = Path(__file__).resolve().parents[1]
HEX_MP4 = re.compile(r"[0-9a-f]{16}\.mp4")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return tiny_study(tmp_path_factory.mktemp("tiny"), n_clips=6)


@pytest.fixture
def server(study, tmp_path):
    srv = make_server(study, tmp_path / "study.sqlite", port=0, pairs=3, fake=2, real=2, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(srv, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request, the path sent exactly as given (no normalisation); JSON bodies for dicts."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, dict(res.getheaders()), data


def new_participant(srv) -> dict:
    status, _, data = call(srv, "POST", "/api/participants", {"consent": True})
    assert status == 201, data
    return json.loads(data)


# --- the study set


def test_build_writes_browser_mp4s_and_a_manifest_that_alone_says_which_is_which(study, tmp_path):
    m = manifest(study)
    assert m["settings"] == {"pairs": 30, "turing_fake": 6, "turing_real": 4, "max_clips": 60, "seed": 0}
    assert len(m["pairs"]) == 6 and len(m["turing"]) == 12
    assert {(p["left"]["method"], p["right"]["method"]) for p in m["pairs"]} == {("full", "static"), ("static", "full")}
    assert sorted(t["truth"] for t in m["turing"]) == ["fake"] * 6 + ["real"] * 6
    files = [p[s]["file"] for p in m["pairs"] for s in ("left", "right")] + [t["file"] for t in m["turing"]]
    assert len(set(files)) == len(files) == 24
    assert sorted(files) == sorted(p.name for p in (study / "media").iterdir())  # the served folder: videos only
    for name in files:
        assert HEX_MP4.fullmatch(name), name
    info = _ffmpeg_info(study / "media" / files[0])
    assert "Video: h264" in info and "Audio: aac" in info
    assert probe(study / "media" / files[0]).n_frames == 20
    # the real clip is the packed one, the fake the proposed model's: same length, same audio
    with h5py.File(study.parent / "packed" / "tiny" / "test.h5") as h5:
        assert h5["s1/utt0/frames"].shape[0] == probe(study / "media" / m["turing"][1]["file"]).n_frames

    # same inputs and seed: the same manifest, byte for byte; another seed: other names
    again = build.build_study([("tiny", study.parent / "packed" / "tiny" / "test.h5", study.parent / "generated" / "tiny")],
                              tmp_path / "again", max_clips=4, seed=0)
    other = build.build_study([("tiny", study.parent / "packed" / "tiny" / "test.h5", study.parent / "generated" / "tiny")],
                              tmp_path / "other", max_clips=4, seed=1)
    first = build.build_study([("tiny", study.parent / "packed" / "tiny" / "test.h5", study.parent / "generated" / "tiny")],
                              tmp_path / "first", max_clips=4, seed=0)
    assert again.read_bytes() == first.read_bytes()
    assert len(json.loads(again.read_text())["pairs"]) == 4
    assert not set(p.name for p in (tmp_path / "other" / "media").iterdir()) & set(
        p.name for p in (tmp_path / "again" / "media").iterdir())


def test_build_names_the_file_when_a_method_lacks_a_test_clip(tmp_path, capsys):
    dataset, test, generated = tiny_inputs(tmp_path, n_clips=2, n_frames=4)
    with h5py.File(generated / "static.h5", "a") as h5:
        del h5["s2/utt1"]
    rc = build.main(["--dataset", dataset, "--test", str(test), "--generated", str(generated), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 1 and str(generated / "static.h5") in err and "s2/utt1" in err
    assert not (tmp_path / "s" / "manifest.json").exists()


# --- the server


def test_the_page_and_the_trials_reveal_nothing_about_which_video_is_which(server, study):
    m = manifest(study)
    status, headers, html = call(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = html + call(server, "GET", "/app.js")[2]
    for secret in [b"full", b"static", b"manifest", b"truth"] + [t["file"].encode() for t in m["turing"]]:
        assert secret not in page, secret
    session = new_participant(server)
    assert re.fullmatch(r"[0-9a-f]{32}", session["participant"])
    trials = session["trials"]
    assert [t["kind"] for t in trials] == ["preference"] * 3 + ["turing"] * 4
    for t in trials:
        assert set(t) == {"trial", "kind", "videos"}
        assert all(re.fullmatch(r"/media/[0-9a-f]{16}\.mp4", v) for v in t["videos"])
    # the Turing test: 2 fake and 2 real (the database knows which), all different clips
    rows = server.db.trials(session["participant"])
    assert sorted(r["truth"] for r in rows if r["kind"] == "turing") == ["fake", "fake", "real", "real"]
    assert len({r["clip"] for r in rows if r["kind"] == "turing"}) == 4


def test_a_session_over_http_is_stored_answer_by_answer_and_exported(server, tmp_path):
    from speechanim.cli import main as cli

    session = new_participant(server)
    pid, trials = session["participant"], session["trials"]
    given = {}
    for t in trials:
        answer = ("left", "right")[t["trial"] % 2] if t["kind"] == "preference" else ("real", "fake")[t["trial"] % 2]
        status, _, data = call(server, "POST", "/api/answers", {"participant": pid, "trial": t["trial"], "answer": answer})
        assert status == 201 and json.loads(data) == {"answered": t["trial"] + 1, "total": len(trials)}
        given[t["trial"]] = answer
        # stored at once, before the session ends (a closed tab loses nothing)
        conn = sqlite3.connect(server.db.path)
        assert conn.execute("SELECT answer FROM responses WHERE participant=? AND trial=?",
                            (pid, t["trial"])).fetchone() == (answer,)
        conn.close()
    assert sqlite3.connect(server.db.path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    status, _, data = call(server, "GET", f"/api/participants/{pid}")  # a reloaded tab resumes
    assert status == 200 and json.loads(data)["answered"] == list(range(len(trials)))

    out = tmp_path / "responses.csv"
    assert cli(["study", "export", "--db", str(server.db.path), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(int(r["trial"]), r["answer"]) for r in rows] == sorted(given.items())
    for r in rows:
        if r["kind"] == "preference":
            assert r["chosen_method"] == r[f"{r['answer']}_method"] and {r["left_method"], r["right_method"]} == {"full", "static"}
        else:
            assert r["correct"] == str(int(r["answer"] == r["truth"]))


def _raw(srv, data: bytes) -> int:
    """Send raw bytes (a request http.client would not send) and return the status code."""
    with socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10) as s:
        s.sendall(data)
        reply = s.recv(4096).decode("latin-1")
    return int(reply.split()[1])


TRAVERSALS = ["/manifest.json", "/media/../manifest.json", "/media/%2e%2e/manifest.json", "/media/..%2fmanifest.json",
              "/../manifest.json", "/media/%2e%2e%2f%2e%2e%2fstudy.sqlite", "/media/0000000000000000.mp4",
              "/static/app.js", "/page.html", "/app.js/../../server.py", "/media//etc/passwd", "/media/"]


@pytest.mark.parametrize("case", [
    "trial not shown", "unknown participant", "duplicate answer", "answer out of range", "answer of the other kind",
    "trial as text", "trial as boolean", "negative trial", "fractional trial", "extra field", "missing field",
    "malformed participant", "oversized body", "malformed JSON", "JSON that is not an object", "not JSON",
    "no Content-Length", "consent not given", "method not allowed", *[f"path {p}" for p in TRAVERSALS]])
def test_bad_input_gets_a_4xx_and_leaves_the_database_unchanged(server, case):
    session = new_participant(server)
    pid, trials = session["participant"], session["trials"]
    ok = {"participant": pid, "trial": 0, "answer": "left"}
    if case == "duplicate answer":
        assert call(server, "POST", "/api/answers", ok)[0] == 201
    before = dump(server.db.path)
    bodies = {
        "trial not shown": (dict(ok, trial=len(trials)), 404),
        "unknown participant": (dict(ok, participant="0" * 32), 404),
        "duplicate answer": (dict(ok, answer="right"), 409),
        "answer out of range": (dict(ok, answer="maybe"), 400),
        "answer of the other kind": (dict(ok, answer="real"), 400),  # trial 0 is a preference pair
        "trial as text": (dict(ok, trial="0"), 400),
        "trial as boolean": (dict(ok, trial=False), 400),
        "negative trial": (dict(ok, trial=-1), 400),
        "fractional trial": (dict(ok, trial=0.5), 400),
        "extra field": (dict(ok, correct=True), 400),
        "missing field": ({"participant": pid, "trial": 0}, 400),
        "malformed participant": (dict(ok, participant="../" + pid), 400),
    }
    if case in bodies:
        body, expected = bodies[case]
        status, _, data = call(server, "POST", "/api/answers", body)
        assert status == expected, data
    elif case == "oversized body":
        status = call(server, "POST", "/api/answers", dict(ok, pad="x" * 5000))[0]
        assert status == 413
    elif case == "malformed JSON":
        assert call(server, "POST", "/api/answers", b'{"participant": "', {"Content-Type": "application/json"})[0] == 400
    elif case == "JSON that is not an object":
        assert call(server, "POST", "/api/answers", [pid, 0, "left"])[0] == 400
    elif case == "not JSON":
        assert call(server, "POST", "/api/answers", b"participant=x&trial=0&answer=left",
                    {"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    elif case == "no Content-Length":
        assert _raw(server, b"POST /api/answers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n") == 411
    elif case == "consent not given":
        assert call(server, "POST", "/api/participants", {"consent": False})[0] == 400
        assert call(server, "POST", "/api/participants", {"consent": True, "name": "Ann"})[0] == 400
    elif case == "method not allowed":
        assert call(server, "PUT", "/api/answers", ok)[0] == 405
        assert call(server, "DELETE", f"/api/participants/{pid}")[0] == 405
    else:
        path = case.split(" ", 1)[1]
        status, _, data = call(server, "GET", path)
        assert status == 404 and b"pairs" not in data and b"truth" not in data, (path, data[:200])
    assert dump(server.db.path) == before
    # the server still answers properly afterwards
    assert call(server, "GET", f"/api/participants/{pid}")[0] == 200


def test_videos_are_served_with_range_requests(server, study):
    name = manifest(study)["pairs"][0]["left"]["file"]
    data = (study / "media" / name).read_bytes()
    status, headers, body = call(server, "GET", f"/media/{name}")
    assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "video/mp4"
    status, headers, body = call(server, "GET", f"/media/{name}", headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    status, _, body = call(server, "GET", f"/media/{name}", headers={"Range": "bytes=-50"})
    assert status == 206 and body == data[-50:]
    status, _, body = call(server, "GET", f"/media/{name}", headers={"Range": f"bytes={len(data) - 10}-"})
    assert status == 206 and body == data[-10:]
    assert call(server, "GET", f"/media/{name}", headers={"Range": f"bytes={len(data)}-"})[0] == 416
    assert call(server, "GET", f"/media/{name}", headers={"Range": "chars=0-1"})[0] == 416
    status, headers, body = call(server, "HEAD", f"/media/{name}")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(data)


# --- back into Table 3 and Fig. 9


def write_metrics(folder: Path) -> Path:
    """The summaries Table 3 reads (evaluate.py JSON), with a few made-up metric values."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(tables.TABLE3_METHODS):
        (folder / f"{name}.json").write_text(json.dumps({"psnr": 25.0 + i, "wer": 0.5}))
    return folder


def answered_db(path: Path, study: Path, picks: list[list[str]], turing: list[list[bool]]) -> Path:
    """A study database where participant k picked ``picks[k]`` (methods) in the preference trials and was
    right (True), wrong (False) or silent (None) in the Turing test as ``turing[k]`` says, through the same
    StudyDB the server writes."""
    m = manifest(study)
    db = StudyDB(path)
    for k, (pick, right) in enumerate(zip(picks, turing)):
        pid = f"{k:032x}"
        trials = [{"kind": "preference", "dataset": p["dataset"], "clip": p["clip"], "left_file": p["left"]["file"],
                   "right_file": p["right"]["file"], "left_method": p["left"]["method"],
                   "right_method": p["right"]["method"]} for p in m["pairs"][:len(pick)]]
        trials += [{"kind": "turing", "dataset": t["dataset"], "clip": t["clip"], "file": t["file"], "truth": t["truth"]}
                   for t in m["turing"][:len(right)]]
        db.add_participant(pid, "test", trials)
        for i, method in enumerate(pick):
            assert db.answer(pid, i, "left" if trials[i]["left_method"] == method else "right")[0] == "ok"
        for j, correct in enumerate(right):
            t = trials[len(pick) + j]
            if correct is None:
                continue
            wrong = {"real": "fake", "fake": "real"}[t["truth"]]
            assert db.answer(pid, len(pick) + j, t["truth"] if correct else wrong)[0] == "ok"
    db.close()
    return path


def test_user_column_and_fig9_come_from_the_responses_sqlite_or_csv(study, tmp_path):
    picks = [["full"] * 5 + ["static"], ["full"] * 4 + ["static"] * 2, ["full"] * 6, ["static"] * 3 + ["full"] * 3]
    turing = [[True] * 4 + [False] * 2, [True] * 3 + [False] * 3, [True] * 6, [True, False, None]]  # None: not answered
    db = answered_db(tmp_path / "study.sqlite", study, picks, turing)
    rows = read_responses(db)
    pref = analysis.preference(rows, "tiny")
    assert pref.participants == 4 and pref.trials == 24
    assert pref.share == pytest.approx(100 * 18 / 24)
    assert pref.low < pref.share < pref.high <= 100
    cells = analysis.user_cells(rows, "tiny")
    assert re.fullmatch(r"75\.0% \[\d+\.\d, \d+\.\d\] \(n=4\)", cells["full"]), cells
    assert cells["static"].startswith("25.0% [") and cells["static"].endswith("(n=4)")
    assert analysis.user_cells(rows, "grid") == {}  # no answers for another dataset: empty cells

    # the CSV export gives the same cells; the Table 3 CLI fills the User column from either
    from speechanim.study.db import export_csv
    exported = export_csv(db, tmp_path / "responses.csv")
    assert analysis.user_cells(read_responses(exported), "tiny") == cells
    metrics = write_metrics(tmp_path / "metrics")
    for responses in (db, exported):
        out = tmp_path / f"table3_{responses.suffix[1:]}.csv"
        assert tables.main(["table3", "--dataset", "tiny", str(metrics), "--responses", str(responses),
                            "--out", str(out)]) == 0
        user = {r["Method"]: r["User"] for r in csv.DictReader(out.open())}
        assert user == {"Proposed Model": cells["full"], "Baseline": cells["static"], "Ground Truth Videos": "",
                        "Still image": "", "Real video, shifted audio": "", "Beyond the paper:": "",
                        "Proposed + D_sync (IJCV)": ""}
    assert tables.main(["table3", "--dataset", "tiny", str(metrics), "--out", str(tmp_path / "plain.csv")]) == 0
    assert {r["User"] for r in csv.DictReader((tmp_path / "plain.csv").open())} == {""}

    # Fig. 9: the participants who finished the Turing test, their scores and the mean
    scores = analysis.turing_scores(rows)
    assert sorted(scores.values()) == [(3, 6), (4, 6), (6, 6)]  # the fourth has not finished
    png = tmp_path / "fig9_turing.png"
    assert analysis.main(["fig9", "--responses", str(exported), "--out", str(png)]) == 0
    import matplotlib.image
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 200 and image.std() > 0.05


def test_the_interval_resamples_participants_not_trials(study, tmp_path):
    """Two participants who disagree completely: 50%, and an interval as wide as their disagreement (a Wilson
    interval over their 12 trials would be [25, 75])."""
    rows = read_responses(answered_db(tmp_path / "s.sqlite", study, [["full"] * 6, ["static"] * 6], [[], []]))
    pref = analysis.preference(rows, "tiny")
    assert pref.share == 50 and (pref.low, pref.high) == (0, 100)
    one = read_responses(answered_db(tmp_path / "one.sqlite", study, [["full"] * 3 + ["static"]], [[]]))
    assert analysis.user_cells(one, "tiny")["full"] == "75.0% (n=1)"  # no interval from one participant


def test_a_responses_file_that_is_neither_is_named(tmp_path, capsys):
    bad = tmp_path / "answers.csv"
    bad.write_text("name,score\nann,3\n")
    assert analysis.main(["fig9", "--responses", str(bad), "--out", str(tmp_path / "f.png")]) == 1
    assert str(bad) in capsys.readouterr().err
    assert tables.main(["table3", "--dataset", "tiny", str(tmp_path), "--responses", str(tmp_path / "none.sqlite"),
                        "--out", str(tmp_path / "t.csv")]) == 1
    assert "none.sqlite" in capsys.readouterr().err


# --- a participant in a real browser


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIDEOS = "[...document.querySelectorAll('#videos video')]"


def test_a_whole_session_in_headless_chromium_then_table3_and_fig9(study, tmp_path):
    """The CLI server on 127.0.0.1, Debian's Chromium through Playwright on a phone-sized screen: consent, every
    trial with its videos playing with sound, the answers in SQLite, the export, Table 3's User column and Fig. 9."""
    assert CHROMIUM, "chromium is not installed (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    db = tmp_path / "study.sqlite"
    proc, url = start_cli_server(study, db, "--pairs", "3", "--fake", "2", "--real", "1")
    clicked = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                          is_mobile=True, has_touch=True, bypass_csp=True)  # for wait_for_function
            page = context.new_page()
            page.goto(url + "/")
            assert page.is_disabled("#start")
            page.check("#agree")
            page.click("#start")
            for i in range(6):
                page.wait_for_function(f"document.getElementById('count').textContent === '{i + 1} of 6'")
                page.wait_for_function(f"{VIDEOS}.length > 0 && {VIDEOS}.every(v => v.readyState >= 2)")
                n_videos = page.evaluate(f"{VIDEOS}.length")
                assert n_videos == (2 if i < 3 else 1)
                for v in range(n_videos):  # each plays, with its sound track
                    page.evaluate(f"{VIDEOS}[{v}].play()")
                    page.wait_for_function(f"{VIDEOS}[{v}].currentTime > 0.2", timeout=10_000)
                    assert page.evaluate(f"{VIDEOS}[{v}].muted") is False
                    page.evaluate(f"{VIDEOS}[{v}].pause()")
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # fits a phone
                if i == 0:
                    page.screenshot(path=str(tmp_path / "study-page.png"))
                    if os.environ.get("SPEECHANIM_SCREENSHOT"):  # keep a copy of the phone screenshot there
                        page.screenshot(path=os.environ["SPEECHANIM_SCREENSHOT"])
                answer = ["left", "right", "left", "real", "fake", "real"][i]
                page.click(f"#buttons button[data-answer={answer}]")
                clicked.append(answer)
            page.wait_for_selector("#done", state="visible")

            # a second participant closes the tab after two answers; reopening resumes at the third
            page = context.new_page()
            page.goto(url + "/")
            page.evaluate("localStorage.clear()")
            page.reload()
            page.check("#agree")
            page.click("#start")
            for i in range(2):
                page.wait_for_function(f"document.getElementById('count').textContent === '{i + 1} of 6'")
                page.click("#buttons button[data-answer=right]")
            page.wait_for_function("document.getElementById('count').textContent === '3 of 6'")
            page.close()
            page = context.new_page()
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('count').textContent === '3 of 6'")
            browser.close()
    finally:
        assert stop(proc) == 0

    rows = export_rows(db)
    first, second = sorted({r["participant"] for r in rows}, key=lambda p: [r["started"] for r in rows if r["participant"] == p][0])
    assert [r["answer"] for r in rows if r["participant"] == first] == clicked
    assert [r["answer"] for r in rows if r["participant"] == second] == ["right", "right", "", "", "", ""]
    res = subprocess.run([sys.executable, "-m", "speechanim.cli", "study", "export", "--db", str(db), "--out",
                          str(tmp_path / "responses.csv")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    exported = list(csv.DictReader((tmp_path / "responses.csv").open()))
    assert [(r["participant"], r["trial"], r["answer"]) for r in exported] == [
        (r["participant"], str(r["trial"]), r["answer"]) for r in rows]

    picks = [r["chosen_method"] for r in rows if r["kind"] == "preference" and r["answer"]]
    share = 100 * picks.count("full") / len(picks)
    metrics = write_metrics(tmp_path / "metrics")
    assert tables.main(["table3", "--dataset", "tiny", str(metrics), "--responses", str(tmp_path / "responses.csv"),
                        "--out", str(tmp_path / "table3.csv")]) == 0
    user = {r["Method"]: r["User"] for r in csv.DictReader((tmp_path / "table3.csv").open())}
    assert user["Proposed Model"].startswith(f"{share:.1f}% [") and user["Proposed Model"].endswith("(n=2)")
    assert analysis.main(["fig9", "--responses", str(db), "--out", str(tmp_path / "fig9.png")]) == 0
    correct = sum(r["answer"] == r["truth"] for r in rows if r["participant"] == first and r["kind"] == "turing")
    assert analysis.turing_scores(rows) == {first: (correct, 3)}  # the second has not finished the Turing test


def test_serve_names_a_folder_that_is_not_a_study_set(tmp_path, capsys):
    from speechanim.cli import main as cli

    assert cli(["study", "serve", "--study", str(tmp_path), "--db", str(tmp_path / "s.sqlite"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "manifest.json") in err and "snakemake results/study/manifest.json" in err
    (tmp_path / "manifest.json").write_text('{"settings": {}}')
    assert cli(["study", "serve", "--study", str(tmp_path), "--db", str(tmp_path / "s.sqlite"), "--port", "0"]) == 1
    assert "not a study manifest" in capsys.readouterr().err
    assert cli(["study", "export", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "r.csv")]) == 1
    assert "none.sqlite: no such file" in capsys.readouterr().err
