"""The whole ``align_speaker`` job on grid-mini's real clips, end to end, in frames per CPU-second.

    .venv/bin/python benchmarks/bench_align_speaker.py [--clips ../shared/data/grid-mini] [--repeats 3] [--keep DIR]

Builds a speaker folder of the raw GRID layout from the clips (:mod:`speechanim.raw.layout`: each
``<utt>.mpg``, its ``<utt>.wav`` written from the video's own audio at 25 kHz as the raw stage's
``--audio-source video`` does, the ``.align`` where grid-mini has one, ``manifest.tsv`` with the
sentence), then runs the job as the ``align_speaker`` rule does and writes the HDF5 file and the skip
list.  The process is pinned to one core (``os.sched_setaffinity``, inherited by ffmpeg's processes;
OpenCV's pool set to one thread), and time is counted as **CPU seconds of this process and its
children** (``resource.getrusage``: ffmpeg decodes in child processes), so the figures are frames
per second per core whatever else runs on the machine.  Wall seconds are printed beside them.

* ``job (in process)``: :func:`speechanim.preprocess.align_speaker` called from Python, mediapipe
  and the other libraries already loaded: the steady-state cost of a speaker's clips.  Best of
  ``--repeats``.
* ``job (CLI)``: ``python -m speechanim.preprocess align ...`` in a fresh interpreter, exactly the
  rule's command: adds interpreter start and imports, which a real 1000-clip speaker amortises and
  8 clips do not.  Best of ``--repeats``.
* the breakdown (one more in-process run, each stage's function wrapped in a CPU timer): decode
  (``read_video_and_audio``: the video and its audio track in one ffmpeg, or ``read_video`` where
  the package has no such function), audio (the track's own decode where it is read apart,
  normalisation, trim), landmarks
  (mediapipe FaceMesh, ``detect_landmarks``), fit+warp (``align_video`` less the landmarks: gaps,
  smoothing, transforms, warp, landmark mapping), write (``write_clip``: HDF5 datasets) and other
  (the rest: manifest, words, file open/close, skip list).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import h5py

from speechanim import align as align_mod
from speechanim import preprocess
from speechanim.media import read_audio, read_video, write_wav
from speechanim.raw.layout import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]
GRID_WAV_RATE = 25_000  # speechanim.raw.grid.AUDIO_RATE
#: The rule's settings at the paper's GRID crop (config.yaml's fps 25; crop 128 x 96, as bench_align.py).
JOB = preprocess.AlignJob(fps=25.0)


def cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children so far."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def make_speaker(clips: Path, dest: Path) -> Path:
    """A speaker folder of the raw GRID layout from the grid-mini clips."""
    dest.mkdir(parents=True)
    texts = dict(line.split("\t") for line in (clips / "transcripts.tsv").read_text().splitlines()[1:])
    utts = []
    for video in sorted(clips.glob("*.mpg")):
        stem = video.stem
        shutil.copy(video, dest / video.name)
        write_wav(dest / f"{stem}.wav", read_audio(video, GRID_WAV_RATE), GRID_WAV_RATE)
        align = ""
        if (clips / f"{stem}.align").is_file():
            shutil.copy(clips / f"{stem}.align", dest)
            align = f"{stem}.align"
        utts.append(Utterance(stem, video.name, f"{stem}.wav", align, texts[stem]))
    write_manifest(dest, utts)
    return dest


def job_args(raw: Path, out: Path) -> list[str]:
    cfg = JOB
    return ["align", "--raw", str(raw), "--out", str(out / "aligned.h5"), "--skipped", str(out / "skipped.tsv"),
            "--size", *map(str, cfg.align.size), "--sample-rate", str(cfg.sample_rate),
            "--smooth-window", str(cfg.align.smooth_window), "--max-gap", str(cfg.align.max_gap), "--fps", str(cfg.fps)]


class Stages:
    """CPU seconds spent inside wrapped functions (nested wrappers are subtracted from their callers)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.stack: list[float] = []

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            self.stack.append(0.0)
            t0 = cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = cpu() - t0
                inner = self.stack.pop()
                self.seconds[name] = self.seconds.get(name, 0.0) + spent - inner
                if self.stack:
                    self.stack[-1] += spent
        return timed


@contextmanager
def instrumented(stages: Stages):
    # decode: the video, and with it the audio track where one ffmpeg reads both (read_video_and_audio;
    # before it, preprocess called read_video and _audio apart)
    decode = "read_video_and_audio" if hasattr(preprocess, "read_video_and_audio") else "read_video"
    patches = [(preprocess, decode, "decode"), (preprocess, "_audio", "audio"),
               (preprocess, "normalise", "audio"), (preprocess, "fit_length", "audio"),
               (preprocess, "align_video", "fit+warp"), (align_mod, "detect_landmarks", "landmarks"),
               (preprocess, "write_clip", "write")]
    saved = [(m, a, getattr(m, a)) for m, a, _ in patches]
    for m, a, name in patches:
        setattr(m, a, stages.wrap(name, getattr(m, a)))
    try:
        yield
    finally:
        for m, a, fn in saved:
            setattr(m, a, fn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=REPO.parent / "shared" / "data" / "grid-mini")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the last in-process run's HDF5 file and skip list here")
    parser.add_argument("--no-cli", action="store_true", help="skip the fresh-interpreter runs")
    args = parser.parse_args(argv)

    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    load = os.getloadavg()

    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        raw = make_speaker(args.clips, td / "raw" / "grid" / "s1")
        out = td / "out"
        out.mkdir()
        argv_job = job_args(raw, out)
        align_mod.detect_landmarks(read_video(raw / "bbaf2n.mpg")[0][:2])  # load mediapipe once

        def in_process() -> tuple[float, float, int]:
            w0, c0 = time.perf_counter(), cpu()
            r = preprocess.align_speaker(raw, out / "aligned.h5", out / "skipped.tsv", JOB, progress=False)
            return cpu() - c0, time.perf_counter() - w0, r.frames

        runs = [in_process() for _ in range(args.repeats)]
        n_frames = runs[0][2]
        best = min(runs)
        cli = []
        if not args.no_cli:
            src = Path(preprocess.__file__).resolve().parents[1]  # the package this process imported
            env = dict(os.environ, PYTHONPATH=str(src) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            for _ in range(args.repeats):
                w0, c0 = time.perf_counter(), cpu()
                subprocess.run([sys.executable, "-m", "speechanim.preprocess", *argv_job], env=env, check=True,
                               stderr=subprocess.DEVNULL)
                cli.append((cpu() - c0, time.perf_counter() - w0))
        stages = Stages()
        with instrumented(stages):
            c0 = cpu()
            preprocess.align_speaker(raw, out / "aligned.h5", out / "skipped.tsv", JOB, progress=False)
            total = cpu() - c0
        with h5py.File(out / "aligned.h5") as h5:
            n_clips = sum(len(h5[s]) for s in h5)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("aligned.h5", "skipped.tsv"):
                shutil.copy(out / name, args.keep / name)

    print(f"align_speaker on {n_clips} grid-mini clips, {n_frames} frames (360x288 -> 128x96), pinned to core {core}; "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'run':<22}{'CPU s':>8}{'wall s':>8}{'frames/CPU-s':>14}{'frames/wall-s':>15}")
    for i, (c, w, _) in enumerate(runs):
        print(f"{'job (in process) #' + str(i + 1):<22}{c:>8.2f}{w:>8.2f}{n_frames / c:>14.1f}{n_frames / w:>15.1f}")
    for i, (c, w) in enumerate(cli):
        print(f"{'job (CLI) #' + str(i + 1):<22}{c:>8.2f}{w:>8.2f}{n_frames / c:>14.1f}{n_frames / w:>15.1f}")
    print(f"best in process: {n_frames / best[0]:.1f} frames per CPU-second"
          + (f"; best CLI: {n_frames / min(cli)[0]:.1f}" if cli else ""))
    print(f"\nbreakdown (one instrumented run, {total:.2f} CPU s):")
    print(f"{'stage':<12}{'CPU ms/frame':>14}{'share':>8}")
    shown = dict(stages.seconds)
    shown["other"] = total - sum(shown.values())
    for name in ("decode", "audio", "landmarks", "fit+warp", "write", "other"):
        s = shown.get(name, 0.0)
        print(f"{name:<12}{s / n_frames * 1e3:>14.3f}{s / total:>8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
