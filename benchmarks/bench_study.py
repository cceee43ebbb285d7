"""Load check of the study server: N participants answering at once against `speechanim study serve`.

    .venv/bin/python benchmarks/bench_study.py [--participants 50] [--study results/study]

Starts the real server (the CLI, in its own process, on 127.0.0.1 at a free port; loopback only) on
``--study`` or, without it, on a tiny study set of synthetic clips (tests/study_fixtures.py), with the
paper's counts (30 pairs, 6 fake + 4 real; fewer if the set is smaller).  Then ``--participants``
threads, all at once, each: consents, and for every trial fetches the start of its videos with a Range
request and posts an answer, then posts one answer a second time (a double click, which must get 409).
Bounded: one thread per participant, one request in flight each.  Afterwards it reads the SQLite file
and checks that every answer sent is there exactly once with the value sent (no lost or duplicated
answer), and prints the request count, the p50, p95 and max response times (answers and all requests)
and the throughput.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny study set

from study_fixtures import start_cli_server, stop, tiny_study  # noqa: E402


def participant(port: int, seed: int, answers_ms: list, other_ms: list, sent: dict, problems: list) -> None:
    """One simulated participant; response times (ms) appended to the shared lists."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(method, path, body=None, headers=None, times=other_ms):
        t0 = time.perf_counter()
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **(headers or {})} if body is not None else (headers or {}))
        res = conn.getresponse()
        data = res.read()
        times.append(1000 * (time.perf_counter() - t0))
        return res.status, data

    try:
        status, data = request("POST", "/api/participants", {"consent": True})
        if status != 201:
            problems.append(f"participant {seed}: consent answered {status}")
            return
        session = json.loads(data)
        pid = session["participant"]
        for t in session["trials"]:
            for video in t["videos"]:
                status, _ = request("GET", video, headers={"Range": "bytes=0-65535"})
                if status not in (200, 206):
                    problems.append(f"{video}: {status}")
            answer = rng.choice(["left", "right"] if t["kind"] == "preference" else ["real", "fake"])
            status, _ = request("POST", "/api/answers", {"participant": pid, "trial": t["trial"], "answer": answer},
                                times=answers_ms)
            if status != 201:
                problems.append(f"{pid} trial {t['trial']}: answer got {status}")
            sent[(pid, t["trial"])] = answer
        status, _ = request("POST", "/api/answers", {"participant": pid, "trial": 0, "answer": "left"})
        if status != 409:
            problems.append(f"{pid}: a second answer to trial 0 got {status}, not 409")
    except (OSError, http.client.HTTPException) as e:
        problems.append(f"participant {seed}: {e!r}")
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=50)
    ap.add_argument("--study", type=Path, default=None, help="a built study set (default: a tiny synthetic one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        study = args.study or tiny_study(Path(td), n_clips=40, max_clips=None)
        db = Path(td) / "load.sqlite"
        proc, url = start_cli_server(study, db)
        port = int(url.rsplit(":", 1)[1])
        answers_ms, other_ms, sent, problems = [], [], {}, []
        threads = [threading.Thread(target=participant, args=(port, k, answers_ms, other_ms, sent, problems))
                   for k in range(args.participants)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rc = stop(proc)
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT participant, trial, answer FROM responses").fetchall()
        participants = conn.execute("SELECT COUNT(*) FROM participants").fetchone()[0]
        conn.close()
    stored_map = {(p, t): a for p, t, a in stored}
    lost = [k for k in sent if k not in stored_map]
    wrong = [k for k in sent if k in stored_map and stored_map[k] != sent[k]]
    extra = len(stored) - len(sent)
    every = answers_ms + other_ms

    def pct(xs, q):
        return statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 1 else xs[0]

    print(f"{args.participants} participants at once, {participants} in the database, server exit {rc}")
    print(f"answers: {len(sent)} sent, {len(stored)} stored; lost {len(lost)}, wrong value {len(wrong)}, "
          f"duplicated {max(extra, 0)}")
    print(f"answer POSTs: p50 {pct(answers_ms, 50):.1f} ms, p95 {pct(answers_ms, 95):.1f} ms, max {max(answers_ms):.1f} ms")
    print(f"all {len(every)} requests (consent, video ranges, answers, duplicates): p50 {pct(every, 50):.1f} ms, "
          f"p95 {pct(every, 95):.1f} ms, max {max(every):.1f} ms; {len(every) / wall:.0f} requests/s over {wall:.1f} s")
    for p in problems[:10]:
        print("problem:", p)
    ok = not (lost or wrong or extra or problems) and participants == args.participants
    print("OK: no lost or duplicated answer" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
