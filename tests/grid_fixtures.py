"""Test helpers for the raw download stage: a local HTTP server with misbehaviours on demand, and
GRID archives in the official Zenodo layout built from the real clips of ``../shared/data/grid-mini``.

Nothing here touches the network beyond 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import imageio_ffmpeg

RECORD_ID = "3625687"
FILES_PREFIX = f"/records/{RECORD_ID}/files/"
RECORD_PATH = f"/api/records/{RECORD_ID}"

# The eight grid-mini clips, split between two pretend speakers.
SPEAKER_CLIPS = {
    "s1": ["bbaf2n", "brbk7n", "lbax4n", "lrwp9a"],
    "s2": ["lwbsza", "pwij3p", "sbia1a", "swwp2s"],
}
NO_AUDIO = "pwij3p"  # s2: the video has no WAV in audio_25k.zip
NO_ALIGN = "sbia1a"  # s2: the video has no .align in alignments.zip


# --------------------------------------------------------------------------------------------------
# A local HTTP server


@dataclass
class Behaviour:
    """How the server misbehaves for one path (counters run down as requests arrive)."""

    fail_statuses: list[int] = field(default_factory=list)  # answer these statuses first, one per request
    drop_times: int = 0  # responses that announce the full Content-Length, then close early
    drop_after: int | None = None  # bytes sent before closing (default: half the body)
    stall_times: int = 0  # responses that stop sending half-way for stall_s seconds
    stall_s: float = 0.0
    ignore_range: bool = False  # answer 200 with the whole body whatever the Range header says


class _Handler(BaseHTTPRequestHandler):
    server: FixtureServer._Server
    timeout = 10  # no connection can hang the suite

    def log_message(self, format: str, *args) -> None:  # silence the default access log
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        with srv.lock:
            behaviour = srv.behaviours.setdefault(path, Behaviour())
            body = srv.files.get(path)
            status = behaviour.fail_statuses.pop(0) if behaviour.fail_statuses else None
            drop = stall = False
            if status is None and body is not None:
                if behaviour.drop_times > 0:
                    behaviour.drop_times -= 1
                    drop = True
                elif behaviour.stall_times > 0:
                    behaviour.stall_times -= 1
                    stall = True
        if status is not None:
            srv.record(path, range_header, status)
            self.send_error(status)
            return
        if body is None:
            srv.record(path, range_header, 404)
            self.send_error(404)
            return
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if m and not behaviour.ignore_range:
            start = int(m.group(1))
            if start >= len(body):
                srv.record(path, range_header, 416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        srv.record(path, range_header, status)
        payload = body[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if path == RECORD_PATH else "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        half = behaviour.drop_after if behaviour.drop_after is not None else len(payload) // 2
        try:
            if drop:
                self.wfile.write(payload[:half])
                self.wfile.flush()
                self.close_connection = True
                return
            if stall:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                time.sleep(behaviour.stall_s)
                self.close_connection = True
                return
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FixtureServer:
    """``http.server`` on 127.0.0.1 (ephemeral port) in a thread; stops itself after ``max_lifetime_s``."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def __init__(self) -> None:
            super().__init__(("127.0.0.1", 0), _Handler)
            self.lock = threading.Lock()
            self.files: dict[str, bytes] = {}
            self.behaviours: dict[str, Behaviour] = {}
            self.requests: list[tuple[str, str | None, int]] = []

        def record(self, path: str, range_header: str | None, status: int) -> None:
            with self.lock:
                self.requests.append((path, range_header, status))

    def __init__(self, max_lifetime_s: float = 120.0) -> None:
        self._server = self._Server()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(max_lifetime_s, self._server.shutdown)
        self._watchdog.daemon = True
        self._originals: dict[str, bytes] = {}

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.url + FILES_PREFIX.rstrip("/")

    @property
    def record_url(self) -> str:
        return self.url + RECORD_PATH

    def serve(self, path: str, body: bytes) -> None:
        with self._server.lock:
            self._server.files[path] = body
            self._originals.setdefault(path, body)

    def serve_file(self, name: str, body: bytes) -> None:
        self.serve(FILES_PREFIX + name, body)

    def replace_file(self, name: str, body: bytes) -> None:
        """Serve other bytes under ``name`` until :meth:`reset`."""
        with self._server.lock:
            self._server.files[FILES_PREFIX + name] = body

    def behave(self, name_or_path: str, **kwargs) -> Behaviour:
        path = name_or_path if name_or_path.startswith("/") else FILES_PREFIX + name_or_path
        with self._server.lock:
            self._server.behaviours[path] = Behaviour(**kwargs)
            return self._server.behaviours[path]

    def requests(self, name_or_path: str | None = None) -> list[tuple[str, str | None, int]]:
        with self._server.lock:
            reqs = list(self._server.requests)
        if name_or_path is None:
            return reqs
        path = name_or_path if name_or_path.startswith("/") else FILES_PREFIX + name_or_path
        return [r for r in reqs if r[0] == path]

    def reset(self) -> None:
        """Forget the request log and misbehaviours; serve the original bytes again."""
        with self._server.lock:
            self._server.requests.clear()
            self._server.behaviours.clear()
            self._server.files = {p: b for p, b in self._server.files.items() if p not in self._originals}
            self._server.files.update(self._originals)


# --------------------------------------------------------------------------------------------------
# GRID archives in the official layout


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def zenodo_record(files: dict[str, bytes]) -> bytes:
    """A Zenodo record JSON (the shape of https://zenodo.org/api/records/<id>) listing ``files``."""
    entries = [
        {"id": f"f{i}", "key": name, "size": len(data), "checksum": f"md5:{md5_bytes(data)}",
         "links": {"self": f"https://zenodo.org/api/records/{RECORD_ID}/files/{name}/content"}}
        for i, (name, data) in enumerate(sorted(files.items()))
    ]
    return json.dumps({"id": int(RECORD_ID), "files": entries}).encode()


def plausible_align(stem: str) -> str:
    """A GRID ``.align`` for ``stem``: ``start end word`` in 1/25000 s, six words between two ``sil``."""
    from speechanim.gridformat import words_from_name

    rng = random.Random(stem)
    t = rng.randrange(8, 16) * 1000 + rng.choice((0, 250, 500, 750))
    lines = [f"0 {t} sil"]
    for word in words_from_name(stem):
        end = t + rng.randrange(3, 9) * 1000 + rng.choice((0, 250, 500, 750))
        lines.append(f"{t} {end} {word}")
        t = end
    lines.append(f"{t} 74500 sil")
    return "\n".join(lines) + "\n"


def wav_from_mpg(mpg: Path, wav: Path) -> None:
    """The clip's own audio track as the corpus's audio_25k files are: 25 kHz, mono, 16-bit PCM."""
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(mpg),
         "-map", "0:a:0", "-ac", "1", "-ar", "25000", "-c:a", "pcm_s16le", str(wav)],
        check=True, capture_output=True, timeout=60,
    )


def _zip(path: Path, members: dict[str, bytes], junk: bool = False) -> bytes:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if junk:  # what a zip made on macOS carries besides the files
            zf.writestr("__MACOSX/s1/._bbaf2n.mpg", b"\x00\x05\x16\x07 resource fork")
    return path.read_bytes()


@dataclass
class GridArchives:
    """Archives built for the tests: ``files`` is archive name -> bytes (as served)."""

    root: Path
    files: dict[str, bytes]
    videos: dict[str, bytes]  # utterance -> the .mpg bytes (as in the corpus)
    wavs: dict[str, bytes]  # utterance -> the .wav bytes in audio_25k.zip
    aligns: dict[str, str]  # utterance -> the .align text in alignments.zip
    swapped_alignments: bytes  # alignments.zip with the folders of s1 and s2 exchanged

    @property
    def record(self) -> bytes:
        return zenodo_record(self.files)


def build_grid_archives(grid_mini: Path, root: Path) -> GridArchives:
    """``s1.zip``, ``s2.zip``, ``audio_25k.zip`` and ``alignments.zip`` laid out as on Zenodo."""
    root.mkdir(parents=True, exist_ok=True)
    wav_dir = root / "wav"
    wav_dir.mkdir(exist_ok=True)
    videos, wavs, aligns = {}, {}, {}
    for stems in SPEAKER_CLIPS.values():
        for stem in stems:
            videos[stem] = (grid_mini / f"{stem}.mpg").read_bytes()
            wav_from_mpg(grid_mini / f"{stem}.mpg", wav_dir / f"{stem}.wav")
            wavs[stem] = (wav_dir / f"{stem}.wav").read_bytes()
            real = grid_mini / f"{stem}.align"
            aligns[stem] = real.read_text() if real.exists() else plausible_align(stem)
    files = {}
    for speaker, stems in SPEAKER_CLIPS.items():
        members = {f"{speaker}/{s}.mpg": videos[s] for s in stems}
        files[f"{speaker}.zip"] = _zip(root / f"{speaker}.zip", members, junk=speaker == "s1")
    audio = {f"audio_25k/{sp}/{s}.wav": wavs[s] for sp, stems in SPEAKER_CLIPS.items() for s in stems if s != NO_AUDIO}
    audio["audio_25k/s21/bbaf2n.wav"] = wavs["bbaf2n"]  # a speaker with audio but no video, as s21 on Zenodo
    files["audio_25k.zip"] = _zip(root / "audio_25k.zip", audio)

    def alignment_members(folder_of: dict[str, str]) -> dict[str, bytes]:
        return {
            f"alignments/{folder_of[sp]}/{s}.align": aligns[s].encode()
            for sp, stems in SPEAKER_CLIPS.items() for s in stems if s != NO_ALIGN
        }

    files["alignments.zip"] = _zip(root / "alignments.zip", alignment_members({"s1": "s1", "s2": "s2"}))
    swapped = _zip(root / "alignments-swapped.zip", alignment_members({"s1": "s2", "s2": "s1"}))
    shutil.rmtree(wav_dir)
    return GridArchives(root, files, videos, wavs, aligns, swapped)


def flip_bytes(data: bytes, at: float = 0.5, count: int = 64) -> bytes:
    """``data`` with ``count`` bytes inverted from the relative position ``at`` (a damaged transfer)."""
    i = int(len(data) * at)
    return data[:i] + bytes(b ^ 0xFF for b in data[i:i + count]) + data[i + count:]
