"""``speechanim study serve``: the participants' page for the user study and the Turing test, and its JSON API.

    speechanim study serve --study results/study --db study.sqlite [--host 127.0.0.1] [--port 8000]
        [--pairs 30] [--fake 6] [--real 4]

Built on the standard library's ``http.server.ThreadingHTTPServer``: no dependency to pin or audit, one
thread per connection is plenty for a survey (the load check in ``benchmarks/bench_study.py`` runs 50
participants at once), and the few things a framework would add are small here: JSON bodies with a size
cap, one route table, HTTP Range requests for the videos (browsers seek and play mp4 with them).  It
speaks plain HTTP: to put it on the internet, run it behind a reverse proxy that adds TLS.

Routes (nothing else is served; in particular not the study's ``manifest.json``)::

    GET  /                         the page (static/page.html, static/app.js, static/style.css)
    GET  /media/<16 hex>.mp4       a video of the study set's media/ folder that the manifest lists (Range)
    POST /api/participants         {"consent": true} -> a new anonymous participant and their trials
    GET  /api/participants/<id>    the same participant's trials and which are answered (a reloaded tab)
    POST /api/answers              {"participant": id, "trial": i, "answer": "left"|"right"|"real"|"fake"}

A participant gets ``--pairs`` preference trials (proposed model vs static baseline), then a Turing test
of ``--fake`` generated and ``--real`` real videos in random order (defaults: the study set's, which the
DAG takes from ``user_study`` in config.yaml; the paper's 30, 6 and 4).  What a browser gets names only
the video files; which side is which method and which video is real stay in the database.
A bad request (an answer to a trial not shown, a second answer, a value out of range, a body that is too
large or not JSON, a path outside the served files) gets a 4xx and changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import secrets
import sqlite3
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .build import MANIFEST, MEDIA
from .db import ANSWERS, StudyDB

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("page.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}
MAX_BODY = 2048  # bytes: the largest API body is ~100
MEDIA_NAME = re.compile(r"[0-9a-f]{16}\.mp4")
PARTICIPANT = re.compile(r"[0-9a-f]{32}")
CHUNK = 64 * 1024


class StudyError(ValueError):
    """The study folder cannot be served; the message names the file and the problem."""


class Study:
    """A study set (``python -m speechanim.study.build``'s folder) and how many trials of each kind to give."""

    def __init__(self, folder: str | os.PathLike, pairs: int | None = None, fake: int | None = None,
                 real: int | None = None):
        self.folder = Path(folder)
        self.media = self.folder / MEDIA
        path = self.folder / MANIFEST
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
            settings = manifest["settings"]
            self.pairs = [p for p in manifest["pairs"] if p["left"]["file"] and p["right"]["file"]]
            self.turing = [t for t in manifest["turing"] if t["truth"] in ("real", "fake")]
        except OSError as e:
            raise StudyError(f"{path}: cannot read the study manifest ({e.strerror}); build the set with "
                             "`snakemake results/study/manifest.json`") from None
        except (ValueError, KeyError, TypeError) as e:
            raise StudyError(f"{path}: not a study manifest ({type(e).__name__}: {e})") from None
        self.id = hashlib.sha256(raw).hexdigest()[:16]
        self.n_pairs = settings["pairs"] if pairs is None else pairs
        self.n_fake = settings["turing_fake"] if fake is None else fake
        self.n_real = settings["turing_real"] if real is None else real
        if min(self.n_pairs, self.n_fake, self.n_real) < 0 or self.n_pairs + self.n_fake + self.n_real == 0:
            raise StudyError(f"{path}: a participant must get at least one trial and no negative count")
        self.files = {p[s]["file"] for p in self.pairs for s in ("left", "right")} | {t["file"] for t in self.turing}
        missing = sorted(f for f in self.files if not MEDIA_NAME.fullmatch(f) or not (self.media / f).is_file())
        if missing:
            raise StudyError(f"{self.media}: {len(missing)} video(s) the manifest lists are missing or misnamed, "
                             f"e.g. {missing[0]}")

    def shortfalls(self) -> list[str]:
        """Counts the set is too small to give each participant in full."""
        have = {"preference pairs": (self.n_pairs, len(self.pairs)),
                "generated Turing videos": (self.n_fake, sum(t["truth"] == "fake" for t in self.turing)),
                "real Turing videos": (self.n_real, sum(t["truth"] == "real" for t in self.turing))}
        return [f"{what}: {want} asked, the set has {n}" for what, (want, n) in have.items() if n < want]

    def assign(self, rng: random.Random) -> list[dict]:
        """One participant's trials: the preference pairs, then the Turing test (fake and real shuffled).
        Turing clips are drawn from clips the participant has not seen, when the set has enough."""
        pairs = rng.sample(self.pairs, min(self.n_pairs, len(self.pairs)))
        seen = {(p["dataset"], p["clip"]) for p in pairs}
        fakes = _pick(rng, [t for t in self.turing if t["truth"] == "fake"], self.n_fake, [seen])
        reals = _pick(rng, [t for t in self.turing if t["truth"] == "real"], self.n_real,
                      [seen, {(t["dataset"], t["clip"]) for t in fakes}])
        turing = fakes + reals
        rng.shuffle(turing)
        return ([{"kind": "preference", "dataset": p["dataset"], "clip": p["clip"], "left_file": p["left"]["file"],
                  "right_file": p["right"]["file"], "left_method": p["left"]["method"],
                  "right_method": p["right"]["method"]} for p in pairs]
                + [{"kind": "turing", "dataset": t["dataset"], "clip": t["clip"], "file": t["file"], "truth": t["truth"]}
                   for t in turing])


def _pick(rng: random.Random, pool: list[dict], n: int, avoid: list[set]) -> list[dict]:
    """``n`` entries of ``pool`` at random: clips in none of the ``avoid`` sets first, then those only in the
    first set, and so on (a real clip beside its own fake only when nothing else is left)."""
    def rank(t: dict) -> int:
        key = (t["dataset"], t["clip"])
        return max((i + 1 for i, s in enumerate(avoid) if key in s), default=0)

    pool = list(pool)
    rng.shuffle(pool)
    return sorted(pool, key=rank)[:n]


def public_trials(trials: list[dict]) -> list[dict]:
    """What the browser gets of each trial: its index, kind and video URLs, nothing about which is which."""
    return [{"trial": i, "kind": t["kind"],
             "videos": [f"/media/{t['left_file']}", f"/media/{t['right_file']}"] if t["kind"] == "preference"
             else [f"/media/{t['file']}"]} for i, t in enumerate(trials)]


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive of a single ``bytes=`` range; None for no header; BadRequest(416) if unsatisfiable."""
    if header is None:
        return None
    m = re.fullmatch(r"bytes=([0-9]{0,18})-([0-9]{0,18})", header.strip())  # 18 digits: past any file's size
    if not m or m.groups() == ("", ""):
        raise BadRequest(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, f"unsupported Range {header[:80]!r}")
    first, last = m.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise BadRequest(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                         f"Range {header[:80]!r} outside the file ({size} bytes)")
    return start, end


class Handler(BaseHTTPRequestHandler):
    """The routes of the module doc. ``self.server`` carries ``study`` and ``db``."""

    protocol_version = "HTTP/1.1"
    server_version = "speechanim-study"
    timeout = 30  # seconds a connection may sit idle or half-sent

    # --- plumbing

    def log_message(self, format: str, *args) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict | None = None, head_only: bool = False) -> None:
        headers = dict(headers or {})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", headers.pop("Content-Length", str(len(body))))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", "default-src 'self'; object-src 'none'; frame-ancestors 'none'")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), headers={"Cache-Control": "no-store"})

    def _error(self, e: BadRequest) -> None:
        headers = {"Cache-Control": "no-store"}
        if e.status == HTTPStatus.SERVICE_UNAVAILABLE:
            headers["Retry-After"] = "1"
        if self.close_connection:
            headers["Connection"] = "close"
        self._send(e.status, json.dumps({"error": str(e)}).encode(), headers=headers)

    def _body(self) -> dict:
        """The request's JSON object; BadRequest for a body that is missing, too large, not JSON or not an object."""
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            self.close_connection = True
            raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
        length = (self.headers.get("Content-Length") or "").strip()
        if not re.fullmatch(r"[0-9]+", length):  # ASCII digits only ("²".isdigit() is true, int("²") fails)
            self.close_connection = True
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if len(length) > len(str(MAX_BODY)) or int(length) > MAX_BODY:  # never int() of 5,000 digits
            self.close_connection = True  # the body is not read
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
        except RecursionError:  # [[[[...]]]] nested deeper than the parser recurses
            raise BadRequest(HTTPStatus.BAD_REQUEST, "body is nested too deep") from None
        if not isinstance(body, dict):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if method in ("GET", "HEAD"):
                if path in PAGES:
                    return self._page(path, method == "HEAD")
                if path.startswith("/media/"):
                    return self._media(path[len("/media/"):], method == "HEAD")
                if path.startswith("/api/participants/") and method == "GET":
                    return self._participant(path[len("/api/participants/"):])
            elif method == "POST":
                if path == "/api/participants":
                    return self._new_participant()
                if path == "/api/answers":
                    return self._answer()
                raise BadRequest(HTTPStatus.NOT_FOUND, "no such endpoint")
            else:
                raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed")
            raise BadRequest(HTTPStatus.NOT_FOUND, "not found")
        except BadRequest as e:
            self._error(e)
        except sqlite3.OperationalError as e:  # another program holds a lock past the busy timeout, a full disk
            self._error(BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, f"the answers database cannot be written now "
                                   f"({e}); nothing was saved, try again in a moment"))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # --- routes

    def _page(self, path: str, head: bool) -> None:
        name, kind = PAGES[path]
        self._send(200, (STATIC / name).read_bytes(), kind, headers={"Cache-Control": "no-cache"}, head_only=head)

    def _media(self, name: str, head: bool) -> None:
        name = unquote(name)
        if not MEDIA_NAME.fullmatch(name) or name not in self.server.study.files:
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such video")
        path = self.server.study.media / name
        size = path.stat().st_size
        rng = parse_range(self.headers.get("Range"), size)
        start, end = rng or (0, size - 1)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "public, max-age=3600",
                   "Content-Length": str(end - start + 1)}
        if rng:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(206 if rng else 200, b"", "video/mp4", headers=headers)
        if head:
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _session(self, participant: str, trials: list[dict], status: int = 200) -> None:
        self._json(status, {"participant": participant, "trials": public_trials(trials),
                            "answered": self.server.db.answered(participant)})

    def _check_participant(self, participant: str) -> None:
        """BadRequest unless ``participant`` began this study set: 404 for no such participant, 409 for one
        given trials from an earlier build of the set (410 Gone: its videos may be; the page starts afresh)."""
        study = self.server.db.study_of(participant) if PARTICIPANT.fullmatch(participant) else None
        if study is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such participant")
        if study != self.server.study.id:
            raise BadRequest(HTTPStatus.GONE, "this participant began another build of the study set (it was "
                             "rebuilt since); start again as a new participant")

    def _participant(self, participant: str) -> None:
        self._check_participant(participant)
        trials = self.server.db.trials(participant)
        if trials is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such participant")
        self._session(participant, trials)

    def _new_participant(self) -> None:
        body = self._body()
        if set(body) != {"consent"} or body["consent"] is not True:  # 1 == True in Python: only JSON true
            raise BadRequest(HTTPStatus.BAD_REQUEST, 'send {"consent": true} to take part')
        participant = secrets.token_hex(16)
        trials = self.server.study.assign(random.Random(participant))
        self.server.db.add_participant(participant, self.server.study.id, trials)
        self._session(participant, trials, 201)

    def _answer(self) -> None:
        body = self._body()
        if set(body) != {"participant", "trial", "answer"}:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "send exactly participant, trial and answer")
        participant, trial, answer = body["participant"], body["trial"], body["answer"]
        if not isinstance(participant, str) or not PARTICIPANT.fullmatch(participant):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "participant: not a participant id")
        if not isinstance(trial, int) or isinstance(trial, bool) or not 0 <= trial < 10_000:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "trial: not a trial number")
        valid = {a for answers in ANSWERS.values() for a in answers}
        if not isinstance(answer, str) or answer not in valid:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"answer: one of {', '.join(sorted(valid))}")
        self._check_participant(participant)
        status, answered, total = self.server.db.answer(participant, trial, answer)
        if status == "unknown":
            raise BadRequest(HTTPStatus.NOT_FOUND, "no such trial shown to this participant")
        if status == "invalid":
            raise BadRequest(HTTPStatus.BAD_REQUEST, "answer: not an answer this trial takes")
        if status == "duplicate":
            raise BadRequest(HTTPStatus.CONFLICT, "this trial is already answered")
        self._json(201, {"answered": answered, "total": total})


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], study: Study, db: StudyDB, quiet: bool = False):
        self.study, self.db, self.quiet = study, db, quiet
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a closed tab is not an error
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.db.close()


def make_server(study_dir: str | os.PathLike, db_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
                *, pairs: int | None = None, fake: int | None = None, real: int | None = None,
                quiet: bool = False) -> StudyServer:
    """A server for the study set in ``study_dir`` writing to ``db_path`` (created if missing); not yet serving."""
    study = Study(study_dir, pairs=pairs, fake=fake, real=real)
    return StudyServer((host, port), study, StudyDB(db_path), quiet=quiet)


def serve(server: StudyServer) -> None:
    """Serve until Ctrl-C (or SIGTERM); then close the database."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    host, port = server.server_address[:2]
    study = server.study
    for line in study.shortfalls():
        print(f"warning: {study.folder}: {line}; each participant gets what there is", file=sys.stderr)
    print(f"Serving the study {study.folder} ({study.n_pairs} pairs, Turing test {study.n_fake} fake + "
          f"{study.n_real} real) at http://{host}:{port}/ ; answers go to {server.db.path} (Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
