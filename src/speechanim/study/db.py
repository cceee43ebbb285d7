"""The SQLite file a study's answers go to (the standard library's ``sqlite3``, WAL mode), and its CSV export.

Three tables: ``participants`` (an anonymous random id, when they started, the study set's id; nothing
about the person, not even the browser),
``trials`` (what each participant was shown, in order, with which side is which method and whether a
Turing-test video is real: the server never sends these columns to a browser) and ``responses`` (one row
per answered trial; the primary key ``(participant, trial)`` makes a second answer to a trial
impossible, whatever the server does).  Every answer is committed when it is given, so a closed tab loses
nothing already answered; WAL lets ``speechanim study export`` read while the server writes.

    speechanim study export --db study.sqlite --out responses.csv

writes every trial shown, answered or not (``answer`` empty), with the columns :data:`EXPORT_COLUMNS`.
:func:`read_responses` reads either file back for :mod:`.analysis`.
"""
from __future__ import annotations

import csv
import io
import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from ..fileio import check_outputs_apart, write_text_atomic

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    id TEXT PRIMARY KEY, started TEXT NOT NULL, study TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    participant TEXT NOT NULL REFERENCES participants(id), trial INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('preference', 'turing')), dataset TEXT NOT NULL, clip TEXT NOT NULL,
    left_file TEXT NOT NULL DEFAULT '', right_file TEXT NOT NULL DEFAULT '',
    left_method TEXT NOT NULL DEFAULT '', right_method TEXT NOT NULL DEFAULT '',
    file TEXT NOT NULL DEFAULT '', truth TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (participant, trial));
CREATE TABLE IF NOT EXISTS responses (
    participant TEXT NOT NULL, trial INTEGER NOT NULL, answer TEXT NOT NULL, answered TEXT NOT NULL,
    PRIMARY KEY (participant, trial), FOREIGN KEY (participant, trial) REFERENCES trials(participant, trial));
"""
#: The answers each kind of trial takes.
ANSWERS = {"preference": ("left", "right"), "turing": ("real", "fake")}
TRIAL_COLUMNS = ["kind", "dataset", "clip", "left_file", "right_file", "left_method", "right_method", "file", "truth"]
EXPORT_COLUMNS = (["participant", "started", "trial"] + TRIAL_COLUMNS
                  + ["answer", "chosen_method", "correct", "answered"])
SQLITE_MAGIC = b"SQLite format 3\x00"


#: Seconds a statement waits for another program's lock on the file before it fails (the server answers 503).
BUSY_TIMEOUT_S = 1.0


class ResponsesError(ValueError):
    """A responses file cannot be read; the message names the file and the problem."""


class StudyDBError(ValueError):
    """The file named for the answers is not (and cannot become) a study database; nothing was written to it."""


def _expected_columns() -> dict[str, list[str]]:
    """Each table of :data:`SCHEMA` and its columns, as SQLite reports them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        return _columns(conn)
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every table, view, index and trigger of a database but SQLite's own, and a table's columns."""
    names = conn.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    return {name: [r[1] for r in conn.execute(f"PRAGMA table_info({_quoted(name)})")] if kind == "table" else [kind]
            for name, kind in names}


def _quoted(name: str) -> str:
    """An SQL identifier in double quotes (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def _check_is_study_db(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse, before anything is written, a file that holds anything but the study's tables (an unrelated
    database named by mistake would otherwise gain three tables and be switched to WAL mode)."""
    found, expected = _columns(conn), _expected_columns()
    foreign = sorted(name for name, columns in found.items() if expected.get(name) != columns)
    if foreign:
        raise StudyDBError(f"{path}: a SQLite database that is not a study's (it holds {', '.join(foreign[:5])}"
                           f"{', ...' if len(foreign) > 5 else ''}); nothing was written to it: name a new file for "
                           "the answers, or the one an earlier `speechanim study serve` wrote")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class StudyDB:
    """One connection, used by the server's threads one at a time (a lock: every statement is tiny)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = threading.Lock()
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                    raise StudyDBError(f"{self.path}: not a SQLite file; nothing was written to it: name a new file "
                                       "for the answers")
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                        timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as e:
            raise StudyDBError(f"{self.path}: cannot open it as the answers' SQLite file ({e})") from None
        try:
            _check_is_study_db(self.conn, self.path)  # only reads: the file is unchanged if it is refused
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)
        except sqlite3.Error as e:
            self.conn.close()
            raise StudyDBError(f"{self.path}: cannot use it for the answers ({e})") from None
        except StudyDBError:
            self.conn.close()
            raise

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def add_participant(self, participant: str, study: str, trials: list[dict]) -> None:
        """A new participant and the trials they will see, in one transaction."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("INSERT INTO participants VALUES (?, ?, ?)", (participant, now(), study))
                self.conn.executemany(
                    f"INSERT INTO trials (participant, trial, {', '.join(TRIAL_COLUMNS)}) "
                    f"VALUES (?, ?{', ?' * len(TRIAL_COLUMNS)})",
                    [(participant, i, *(t.get(c, "") for c in TRIAL_COLUMNS)) for i, t in enumerate(trials)])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def trials(self, participant: str) -> list[dict] | None:
        """A participant's trials in order (None: no such participant)."""
        with self.lock:
            if self.conn.execute("SELECT 1 FROM participants WHERE id = ?", (participant,)).fetchone() is None:
                return None
            rows = self.conn.execute(f"SELECT {', '.join(TRIAL_COLUMNS)} FROM trials WHERE participant = ? "
                                     "ORDER BY trial", (participant,)).fetchall()
        return [dict(zip(TRIAL_COLUMNS, r)) for r in rows]

    def study_of(self, participant: str) -> str | None:
        """The id of the study set a participant was given trials from (None: no such participant)."""
        with self.lock:
            row = self.conn.execute("SELECT study FROM participants WHERE id = ?", (participant,)).fetchone()
        return None if row is None else row[0]

    def answered(self, participant: str) -> list[int]:
        with self.lock:
            rows = self.conn.execute("SELECT trial FROM responses WHERE participant = ? ORDER BY trial",
                                     (participant,)).fetchall()
        return [r[0] for r in rows]

    def answer(self, participant: str, trial: int, answer: str) -> tuple[str, int, int]:
        """Record one answer. Returns (status, answered, total); status "ok", "unknown" (no such participant
        or trial shown to them), "invalid" (not an answer this trial takes) or "duplicate" (already answered).
        Only "ok" changes the file."""
        with self.lock:
            row = self.conn.execute("SELECT kind FROM trials WHERE participant = ? AND trial = ?",
                                    (participant, trial)).fetchone()
            if row is None:
                return "unknown", 0, 0
            status = "ok"
            if answer not in ANSWERS[row[0]]:
                status = "invalid"
            else:
                try:
                    self.conn.execute("INSERT INTO responses VALUES (?, ?, ?, ?)", (participant, trial, answer, now()))
                except sqlite3.IntegrityError:
                    status = "duplicate"
            answered, total = self.conn.execute(
                "SELECT (SELECT COUNT(*) FROM responses WHERE participant = ?),"
                " (SELECT COUNT(*) FROM trials WHERE participant = ?)", (participant, participant)).fetchone()
        return status, answered, total

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {t: self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("participants", "trials", "responses")}


def _derived(row: dict) -> dict:
    """``chosen_method`` and ``correct`` from a trial's answer."""
    answer = row.get("answer") or ""
    row["chosen_method"] = row[f"{answer}_method"] if row["kind"] == "preference" and answer else ""
    row["correct"] = str(int(answer == row["truth"])) if row["kind"] == "turing" and answer else ""
    return row


def export_rows(db_path: str | os.PathLike) -> list[dict]:
    """Every trial shown, with its answer if given, from a study's SQLite file (opened read-only)."""
    path = Path(db_path)
    if not path.is_file():
        raise ResponsesError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                f"SELECT p.id, p.started, t.trial, {', '.join('t.' + c for c in TRIAL_COLUMNS)},"
                " COALESCE(r.answer, ''), COALESCE(r.answered, '') FROM trials t"
                " JOIN participants p ON p.id = t.participant"
                " LEFT JOIN responses r ON r.participant = t.participant AND r.trial = t.trial"
                " ORDER BY p.started, p.id, t.trial").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise ResponsesError(f"{path}: not a study database ({e})") from None
    names = ["participant", "started", "trial", *TRIAL_COLUMNS, "answer", "answered"]
    return [_derived(dict(zip(names, r))) for r in rows]


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({c: r.get(c, "") for c in EXPORT_COLUMNS} for r in rows)
    return buf.getvalue()


def export_csv(db_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """``speechanim study export``: the responses as CSV (written atomically; never onto the database or its WAL)."""
    check_outputs_apart({"the database": [db_path, f"{db_path}-wal", f"{db_path}-shm"]}, {"the CSV": out})
    return write_text_atomic(out, to_csv(export_rows(db_path)))


def read_responses(path: str | os.PathLike) -> list[dict]:
    """The trials and answers of a study's SQLite file or of its CSV export (as :func:`export_rows` gives)."""
    path = Path(path)
    if not path.is_file():
        raise ResponsesError(f"{path}: no such file (user_study.responses: a study's SQLite file or its CSV export)")
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return export_rows(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("participant", "trial", *TRIAL_COLUMNS, "answer") if c not in (reader.fieldnames or [])]
            if missing:
                raise ResponsesError(f"{path}: not a study export (neither SQLite nor a CSV with the columns of "
                                     f"`speechanim study export`): missing {', '.join(missing)}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ResponsesError(f"{path}: not a study export CSV ({e})") from None
    for i, row in enumerate(rows, start=2):
        if row["kind"] not in ANSWERS or (row["answer"] and row["answer"] not in ANSWERS[row["kind"]]):
            raise ResponsesError(f"{path}: line {i}: kind {row['kind']!r} with answer {row['answer']!r} is not a "
                                 "trial of the study")
        _derived(row)
    return rows
