"""Memory of a long stream: ``speechanim animate --stream`` fed 10 minutes of audio, and the offline pass.

    .venv/bin/python benchmarks/stream_memory.py [--minutes 10] [--rate 16000] [--size 64 48] [--image face.png]
        [--no-offline]

Runs the command in a child process with a tiny generator checkpoint (``tests/tiny_generator.py``:
width 0.125, untrained; memory does not depend on the weights' values), feeds it synthesised audio
(tones under a syllable-rate envelope, and noise) as raw 16-bit PCM on stdin as fast as it takes it,
reads its frames from ``--frames-out -``, and prints the child's peak resident memory (``VmHWM``)
once 1 minute of audio's frames has come out and once all of them have: flat when the stream's
memory is bounded by a constant. Then, unless ``--no-offline``, the same for the whole-recording
pass (``animate`` of a 1-minute and a ``--minutes`` WAV file): the peak of each run (within a run the
resident memory swings by ~30 MB between 250-frame chunks, as the allocator reuses their buffers, so
two runs' peaks differ by that much whatever their length; before issue 28 it grew 28 MB a minute). The photo is a
synthesised face (``speechanim.synth.face``) unless ``--image`` names one. Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_generator import tiny_generator_checkpoint  # noqa: E402

FPS = 25


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def speechlike(n: int, rate: int, start: int) -> np.ndarray:
    """``n`` samples from sample ``start`` of an endless speech-like signal, int16: two tones under a
    4 Hz syllable envelope, pauses every few seconds, and a little noise."""
    t = (start + np.arange(n)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
    tones = 0.5 * np.sin(2 * np.pi * 180 * t) + 0.3 * np.sin(2 * np.pi * 720 * t)
    noise = np.random.default_rng(start).standard_normal(n) * 0.01
    return np.clip((envelope * tones + noise) * 16000, -32768, 32767).astype("<i2")


def synthetic_face(path: Path) -> Path:
    import skimage.io

    from speechanim.synth.face import random_identity, render

    skimage.io.imsave(path, render(random_identity(np.random.default_rng(3))), check_contrast=False)
    return path


def stream(args, ckpt: Path, image: Path, work: Path) -> None:
    """The live stream: peak memory after 1 minute of frames and after all of them."""
    h, w = args.size
    total = int(args.minutes * 60 * FPS)
    cmd = [sys.executable, "-m", "speechanim.cli", "animate", "--stream", "--audio", "-", "--rate", str(args.rate),
           "--image", str(image), "--checkpoint", str(ckpt), "-o", str(work / "live.mp4"), "--frames-out", "-"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(work / "stream.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)

    def feed():
        n, step = int(args.minutes * 60 * args.rate), args.rate  # one second at a time
        try:
            for start in range(0, n, step):
                proc.stdin.write(speechlike(min(step, n - start), args.rate, start).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
    feeder = threading.Thread(target=feed, daemon=True)
    t0 = time.monotonic()
    feeder.start()
    proc.stdout.readline()  # the YUV4MPEG2 header
    frame_bytes = len(b"FRAME\n") + 3 * h * w
    marks = {int(60 * FPS): "1 min", total: f"{args.minutes:g} min"}
    frames, peaks = 0, {}
    while True:
        data = proc.stdout.read(frame_bytes)
        if len(data) < frame_bytes:
            break
        frames += 1
        if frames in marks:
            peaks[marks[frames]] = peak_rss_mb(proc.pid)
            print(f"live stream, {marks[frames]:>6} of audio ({frames:6d} frames, {time.monotonic() - t0:6.1f} s): "
                  f"peak RSS {peaks[marks[frames]]:7.1f} MB", flush=True)
    code = proc.wait()
    feeder.join()
    if code != 0 or frames != total:
        sys.exit(f"the stream failed ({frames} of {total} frames, exit {code}): {(work / 'stream.log').read_text()}")
    size = (work / "live.mp4").stat().st_size / 1e6
    first, last = peaks.values()
    print(f"live stream: peak RSS grew {last - first:+.1f} MB from 1 to {args.minutes:g} minutes "
          f"(the mp4: {size:.1f} MB on disk)")


def offline(args, ckpt: Path, image: Path, work: Path) -> None:
    """The whole-recording pass (``animate`` of a WAV file): the peak memory of a 1-minute and a long run."""
    from scipy.io import wavfile

    for minutes in (1, args.minutes):
        n = int(minutes * 60 * args.rate)
        wav = work / f"speech{minutes:g}.wav"
        wavfile.write(wav, args.rate, speechlike(n, args.rate, 0))
        cmd = [sys.executable, "-m", "speechanim.cli", "animate", "--image", str(image), "--audio", str(wav),
               "--checkpoint", str(ckpt), "-o", str(work / f"offline{minutes:g}.mp4"), "--no-progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        peak, t0 = 0.0, time.monotonic()
        while proc.poll() is None:
            try:
                peak = max(peak, peak_rss_mb(proc.pid))
            except (FileNotFoundError, ProcessLookupError, RuntimeError):
                break
            time.sleep(0.2)
        err = proc.stderr.read().decode()
        if proc.wait() != 0:
            sys.exit(f"the offline pass failed: {err}")
        wav.unlink()
        print(f"offline pass, {minutes:>4g} min of audio ({time.monotonic() - t0:6.1f} s): peak RSS {peak:7.1f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the audio (default %(default)s)")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of the audio and the model (Hz)")
    p.add_argument("--size", type=int, nargs=2, default=(64, 48), metavar=("H", "W"), help="frame size")
    p.add_argument("--image", type=Path, default=None, help="the photo (default: a synthesised face)")
    p.add_argument("--no-offline", action="store_true", help="only the live stream")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="stream-memory-") as td:
        work = Path(td)
        ckpt = tiny_generator_checkpoint(work / "generator.pt", tuple(args.size), args.rate)
        image = args.image or synthetic_face(work / "face.png")
        stream(args, ckpt, image, work)
        if not args.no_offline:
            offline(args, ckpt, image, work)


if __name__ == "__main__":
    main()
