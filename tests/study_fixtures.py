"""A tiny study set for the study tests and the README check: packed-format HDF5 files of a few short synthetic
clips (real, proposed model, static baseline), turned into mp4s by the build rule's module."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from speechanim.study.build import build_study

FPS, RATE = 25.0, 16000


def _clip_frames(kind: str, clip: int, n_frames: int, size=(48, 64)) -> np.ndarray:
    """(T, 3, H, W) uint8: a face-coloured oval whose dark mouth opens and closes; each kind moves differently."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n_frames, 3, h, w), np.uint8)
    for t in range(n_frames):
        phase = {"real": 0.0, "full": 0.3, "static": 1.7 * (t % 3)}[kind]
        mouth = 2 + 3 * abs(np.sin(0.5 * t + phase + clip))
        face = ((yy - h / 2) / (h * 0.42)) ** 2 + ((xx - w / 2) / (w * 0.32)) ** 2 < 1
        lips = (np.abs(xx - w / 2) < w * 0.12) & (np.abs(yy - h * 0.68) < mouth)
        img = np.stack([np.full((h, w), 40 + 20 * clip), np.full((h, w), 80), np.full((h, w), 120)]).astype(np.uint8)
        img[:, face] = np.array([224, 180, 150], np.uint8)[:, None]
        img[:, lips] = np.array([90, 20, 30], np.uint8)[:, None]
        frames[t] = img
    return frames


def write_packed(path: Path, kind: str, n_clips: int, n_frames: int) -> Path:
    """A packed-format file (clip groups speaker/utterance with frames, audio, fps, sample_rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        for c in range(n_clips):
            g = h5.create_group(f"s{1 + c % 2}/utt{c}")
            g.create_dataset("frames", data=_clip_frames(kind, c, n_frames))
            t = np.arange(int(n_frames / FPS * RATE)) / RATE
            g.create_dataset("audio", data=(0.3 * np.sin(2 * np.pi * (220 + 40 * c) * t)).astype(np.float32))
            g.attrs.update(fps=FPS, sample_rate=RATE, speaker=f"s{1 + c % 2}", utterance=f"utt{c}")
    return path


def tiny_inputs(root: Path, dataset: str = "tiny", n_clips: int = 6, n_frames: int = 20) -> tuple[str, Path, Path]:
    """(dataset, test.h5, generated folder) as the DAG would have them."""
    test = write_packed(root / "packed" / dataset / "test.h5", "real", n_clips, n_frames)
    generated = root / "generated" / dataset
    for method in ("full", "static"):
        write_packed(generated / f"{method}.h5", method, n_clips, n_frames)
    return dataset, test, generated


def tiny_study(root: Path, n_clips: int = 6, **settings) -> Path:
    """A built study folder (root/study) from :func:`tiny_inputs`; ``settings`` go to ``build_study``."""
    build_study([tiny_inputs(root, n_clips=n_clips)], root / "study", **settings)
    return root / "study"


def start_cli_server(study: Path, db: Path, *extra: str, env=None) -> tuple[subprocess.Popen, str]:
    """``speechanim study serve`` on 127.0.0.1 at a free port, as a process; returns it and its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "speechanim.cli", "study", "serve", "--study", str(study),
                             "--db", str(db), "--port", "0", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"the server did not start: {line}{proc.stderr.read()}")
    url = line.split("http://", 1)[1].split()[0].rstrip("/")
    return proc, f"http://{url}"


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def manifest(study: Path) -> dict:
    return json.loads((study / "manifest.json").read_text())


def dump(db: Path) -> list[str]:
    """A SQLite file's whole content as SQL statements: compared before and after, it shows nothing changed."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
