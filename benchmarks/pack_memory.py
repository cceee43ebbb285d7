"""Peak memory of ``preprocess pack`` against the number of clips it packs.

    .venv/bin/python benchmarks/pack_memory.py [--clips 100 1000] [--size 128 96] [--frames 75]
        [--per-speaker 1000] [--no-mirror] [--workdir DIR]

For each ``--clips`` count (in a fresh folder each): writes that many synthetic aligned clips
(:func:`synthetic_clip`: a shaded face-like ellipse that drifts, a mouth that opens and closes, sensor
noise; ``--frames`` frames at ``--size``, 16 kHz audio, landmarks) as aligned speaker files of at most
``--per-speaker`` clips, in the layout ``preprocess align`` writes; a speaker split puts every speaker in
``train``; then runs ``python -m speechanim.preprocess pack --part train --mirror`` on them in a child
process and prints its peak resident memory (``ru_maxrss`` from ``wait4``, the child alone), its wall
time and the packed file's size. Flat when packing holds one clip at a time, whatever the corpus.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from speechanim.packing import AtomicH5, Clip, write_clip
from speechanim.splits import write_split

RATE, FPS = 16_000, 25.0


class NoiseBank:
    """Frames of Gaussian sensor noise (int16, sigma ``sigma`` grey levels) drawn once; clips take random
    frames of it, so writing gigabytes of noisy frames costs no random draws per pixel."""

    def __init__(self, h: int, w: int, sigma: float = 4.0, n: int = 256, seed: int = 0):
        self.frames = np.rint(np.random.default_rng(seed).standard_normal((n, h, w, 3)) * sigma).astype(np.int16)

    def take(self, rng: np.random.Generator, t: int) -> np.ndarray:
        return self.frames[rng.integers(0, len(self.frames), t)]


def synthetic_clip(speaker: str, utterance: str, rng: np.random.Generator, bank: NoiseBank, t: int = 75,
                   rate: int = RATE) -> Clip:
    """A synthetic aligned clip of ``t`` frames at the bank's size: a shaded ellipse (the face) of a random
    colour on a random background, drifting a pixel or two, a dark mouth whose height follows a syllable
    rhythm, and the bank's noise; audio of the same rhythm; landmarks around the face."""
    h, w = bank.frames.shape[1:3]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    skin, back = rng.uniform(90, 200, 3), rng.uniform(20, 235, 3)
    phase = rng.uniform(0, 2 * np.pi)
    opening = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(t) / FPS + phase)
    frames = np.empty((t, h, w, 3), np.int16)
    for k in range(t):
        cy, cx = h * 0.5 + np.sin(k / 9 + phase), w * 0.5 + np.cos(k / 11 + phase)
        r = ((y - cy) / (0.42 * h)) ** 2 + ((x - cx) / (0.38 * w)) ** 2
        face = (r < 1)[..., None]
        shade = (1.15 - 0.35 * r)[..., None]
        img = np.where(face, skin * shade, back)
        mouth = (np.abs(y - (cy + 0.22 * h)) < 1 + 0.05 * h * opening[k]) & (np.abs(x - cx) < 0.14 * w)
        img[mouth] = 40
        frames[k] = img
    frames = np.clip(frames + bank.take(rng, t), 0, 255).astype(np.uint8)
    spf = int(round(rate / FPS))
    s = np.arange(t * spf) / rate
    audio = (np.sin(2 * np.pi * 150 * s) * np.repeat(opening, spf) * 0.5
             + rng.standard_normal(t * spf) * 0.01).astype(np.float32)
    landmarks = (np.array([w / 2, h / 2], np.float32) + rng.standard_normal((t, 478, 2)).astype(np.float32) * 10)
    return Clip(speaker, utterance, frames, audio, landmarks, FPS, rate, "bin blue at f two now", False,
                f"/synthetic/{speaker}/{utterance}.mpg")


def write_aligned_corpus(folder: Path, n_clips: int, per_speaker: int, size: tuple[int, int], t: int,
                         seed: int = 0) -> list[Path]:
    """``n_clips`` synthetic clips as aligned speaker files ``folder/sNN.h5`` (``preprocess align``'s
    layout and root attributes) of at most ``per_speaker`` clips each, and ``folder/split.tsv`` putting
    every speaker in ``train``; returns the speaker files."""
    rng = np.random.default_rng(seed)
    bank = NoiseBank(*size, seed=seed)
    files, split = [], {}
    for i, start in enumerate(range(0, n_clips, per_speaker)):
        speaker = f"s{i + 1:02d}"
        path = folder / f"{speaker}.h5"
        with AtomicH5(path) as h5:
            h5.attrs.update(speaker=speaker, size=list(size), sample_rate=RATE, smooth_window=7, max_gap=5)
            for j in range(start, min(n_clips, start + per_speaker)):
                write_clip(h5, synthetic_clip(speaker, f"u{j:05d}", rng, bank, t))
            h5.attrs["n_skipped"] = 0
        files.append(path)
        split[speaker] = "train"
    write_split(folder / "split.tsv", split)
    return files


def pack_in_child(folder: Path, files: list[Path], mirror: bool) -> dict:
    """Run ``preprocess pack`` on ``files`` in a child process; its peak RSS (MB), wall time (s) and output size."""
    out = folder / "packed.h5"
    cmd = [sys.executable, "-m", "speechanim.preprocess", "pack", "--split", str(folder / "split.tsv"),
           "--part", "train", *(["--mirror"] if mirror else []), "--out", str(out), *map(str, files)]
    log = folder / "pack.log"
    t0 = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest of all children
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"pack failed ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "bytes": out.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, nargs="+", default=[100, 1000], help="corpus sizes (clips before mirroring)")
    ap.add_argument("--size", type=int, nargs=2, default=[128, 96], metavar=("H", "W"))
    ap.add_argument("--frames", type=int, default=75, help="frames per clip")
    ap.add_argument("--per-speaker", type=int, default=1000, help="clips per aligned speaker file (GRID: 1000)")
    ap.add_argument("--no-mirror", action="store_true", help="pack without --mirror")
    ap.add_argument("--workdir", type=Path, default=None, help="where the corpora go (default: a temporary folder)")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="pack_memory_"))
    print(f"{args.frames} frames at {args.size[0]}x{args.size[1]} per clip, <= {args.per_speaker} clips per speaker, "
          f"{'no ' if args.no_mirror else ''}mirroring; {root}")
    rows = []
    for n in args.clips:
        folder = root / f"clips{n}"
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        files = write_aligned_corpus(folder, n, args.per_speaker, tuple(args.size), args.frames)
        written = time.perf_counter() - t0
        r = pack_in_child(folder, files, not args.no_mirror)
        packed = n * (1 if args.no_mirror else 2)
        rows.append((n, r))
        print(f"  {n:6d} clips ({len(files)} speakers, {written:.1f} s to write): pack peak RSS {r['peak_rss_mb']:7.1f} MB, "
              f"{r['wall_s']:6.1f} s ({1000 * r['wall_s'] / packed:.1f} ms per packed clip), "
              f"{r['bytes'] / 1e9:.2f} GB packed ({packed} clips)", flush=True)
        if args.workdir is None:
            shutil.rmtree(folder)
    (n0, a), (n1, b) = rows[0], rows[-1]
    if n1 != n0:
        print(f"  peak RSS {b['peak_rss_mb'] - a['peak_rss_mb']:+.1f} MB from {n0} to {n1} clips "
              f"({(b['peak_rss_mb'] - a['peak_rss_mb']) * 1024 / (n1 - n0):+.1f} kB per clip; "
              f"one packed clip's frames are {args.frames * args.size[0] * args.size[1] * 3 / 1e6:.2f} MB)")
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
