"""The ``speechanim`` command (console script ``speechanim = "speechanim.cli:main"``).

::

    speechanim animate --image face.jpg --audio speech.wav --checkpoint generator.pt -o out.mp4 \\
        [--device cpu|cuda] [--seed 0] [--precision fp32|bf16|int8] [--trust-checkpoint]
    arecord -f S16_LE -r 16000 -c 1 | speechanim animate --stream --audio - --rate 16000 \\
        --image face.jpg --checkpoint generator.pt -o out.mp4 --frames-out - | ffplay -
    speechanim import-sda grid.dat -o grid.pt

``animate`` animates one photo with one recording (see :mod:`speechanim.animate`) and writes an
mp4 with the original audio; with ``--stream`` it reads the audio as it arrives (raw 16-bit PCM on
stdin, ``--audio -``, or a WAV file still being written) and writes each frame as soon as it can
be made to ``--frames-out`` (a YUV4MPEG2 stream; ``-`` is stdout), the mp4 at the end.
``import-sda`` converts one of the authors' released checkpoints (:mod:`speechanim.sda`). A bad
input (a photo with no face or with two, an unreadable image, a file with no audio, a missing
checkpoint, a checkpoint that carries code) ends with one line on stderr naming the file, exit code 1.

::

    speechanim study serve --study results/study --db study.sqlite [--host 127.0.0.1] [--port 8000]
    speechanim study export --db study.sqlite --out responses.csv

run the paper's user study and Turing test with people (see :mod:`speechanim.study`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from . import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechanim", description="Speech-driven facial animation with temporal "
                                     "GANs (Vougioukas, Petridis, Pantic, BMVC 2018).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("animate", help="animate a face photo with a speech recording",
                       description="Animate a face photo with a speech recording; write an mp4 (H.264 + AAC) "
                                   "at 25 fps with the original audio.")
    p.add_argument("--image", required=True, type=Path, help="photo showing exactly one face (any size)")
    p.add_argument("--audio", required=True, type=Path, help="speech: any audio or video file ffmpeg reads")
    p.add_argument("--checkpoint", required=True, type=Path, help="a trained checkpoint (generator.pt)")
    p.add_argument("-o", "--out", required=True, type=Path, help="the mp4 to write")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load a checkpoint that holds more than weights (full unpickling: it could run code; "
                        "only for a file whose source you trust)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="decoder arithmetic: fp32 (default), bf16 (faster on CPUs with AVX-512 BF16) or int8 "
                        "(bf16 and int8 weights where streaming reads them; CPU only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--verbose", action="store_true", help="let the face detector's native log lines through")
    live = p.add_argument_group("streaming (--stream)")
    live.add_argument("--stream", action="store_true",
                      help="read the audio as it arrives: --audio - is raw mono 16-bit little-endian PCM on stdin at "
                           "--rate; a .wav path is a 16-bit PCM WAV still being written (ends when it stops growing)")
    live.add_argument("--rate", type=int, default=None, help="sample rate of the PCM on stdin (Hz)")
    live.add_argument("--frames-out", default=None, metavar="PATH",
                      help="also write each frame as soon as it is made, as a YUV4MPEG2 stream (- = stdout), "
                           "e.g. | ffplay -  or  | mpv -")
    live.add_argument("--gain", type=float, default=1.0,
                      help="scale the live samples by this (a stream cannot be peak-normalised; default %(default)s)")
    live.add_argument("--idle", type=float, default=2.0,
                      help="a growing WAV ends after this many seconds without new data (default %(default)s)")
    q = sub.add_parser("import-sda", help="convert an authors' released checkpoint (grid.dat, timit.dat, crema.dat)",
                       description="Convert one of the authors' released checkpoints (DinoMan/speech-driven-"
                                   "animation: grid.dat, timit.dat, crema.dat) into this project's checkpoint format.")
    q.add_argument("model", type=Path, help="the authors' .dat file")
    q.add_argument("-o", "--out", required=True, type=Path, help="the checkpoint to write (.pt)")
    q.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle a file that holds more than tensors, plain values and numpy arrays (could run code)")
    _study_parser(sub)
    return parser


def _study_parser(sub) -> None:
    """``speechanim study serve|export``: the user study and Turing test of the paper's 4.5 (speechanim.study)."""
    study = sub.add_parser("study", help="run the paper's user study and Turing test (serve the page, export answers)",
                           description="The paper's user study (Table 3's User column) and Turing test (Fig. 9) "
                                       "with people: serve the page, export the answers.")
    ssub = study.add_subparsers(dest="study_command", required=True, metavar="SUBCOMMAND")
    s = ssub.add_parser("serve", help="serve the participants' page on a local port",
                        description="Serve the study page; each answer goes to the SQLite file as it is given.")
    s.add_argument("--study", required=True, type=Path, help="the study set (results/study, built by the DAG)")
    s.add_argument("--db", required=True, type=Path, help="SQLite file for the answers (created if missing)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default %(default)s; 0: any free port)")
    s.add_argument("--pairs", type=int, default=None, help="preference trials per participant (default: the set's)")
    s.add_argument("--fake", type=int, default=None, help="generated videos in the Turing test (default: the set's)")
    s.add_argument("--real", type=int, default=None, help="real videos in the Turing test (default: the set's)")
    s.add_argument("--quiet", action="store_true", help="no line per request on stderr")
    e = ssub.add_parser("export", help="write the answers as CSV",
                        description="Write every trial shown, with its answer (empty if none yet), as CSV.")
    e.add_argument("--db", required=True, type=Path, help="the study's SQLite file")
    e.add_argument("--out", required=True, type=Path, help="the CSV file to write")


def _study(args: argparse.Namespace) -> int:
    from .study import db, server

    if args.study_command == "export":
        out = db.export_csv(args.db, args.out)
        print(out)
        return 0
    srv = server.make_server(args.study, args.db, args.host, args.port, pairs=args.pairs, fake=args.fake,
                             real=args.real, quiet=args.quiet)
    server.serve(srv)
    return 0


@contextlib.contextmanager
def _quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Silence what native libraries write straight to file descriptor 2 (mediapipe's TFLite and
    absl lines, printed on every run), while Python's ``sys.stderr`` (progress bars, our errors)
    still reaches the terminal."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    try:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        if sys.stderr is not python_stderr:
            sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


def _animate(args: argparse.Namespace) -> int:
    from .animate import Animator, animate_file  # imported here: torch and mediapipe load slowly

    if not args.stream:
        for flag in ("rate", "frames_out"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} needs --stream")
        animator = Animator(args.checkpoint, args.device, trust_checkpoint=args.trust_checkpoint,
                            precision=args.precision)
        out = animate_file(args.image, args.audio, animator, args.out, seed=args.seed,
                           progress=False if args.no_progress else True)
        print(out)
        return 0
    return _animate_stream(args)


def _animate_stream(args: argparse.Namespace) -> int:
    import numpy as np

    from .animate import Animator
    from .media import SUFFIXES, MediaError, write_video
    from .stream import Y4MWriter, growing_wav_chunks, pcm_chunks

    if args.out.suffix.lower() not in SUFFIXES["h264"]:
        raise MediaError(f"{args.out}: the video is written as mp4; name it .mp4")
    if str(args.audio) == "-":
        if not args.rate or args.rate <= 0:
            raise ValueError("--audio - (PCM on stdin) needs its --rate in Hz")
        rate, chunks = args.rate, pcm_chunks(sys.stdin.buffer)
    else:
        if args.rate is not None:
            raise ValueError(f"{args.audio}: a WAV file gives its own rate; --rate is for PCM on stdin")
        rate, chunks = growing_wav_chunks(args.audio, idle_s=args.idle)
    animator = Animator(args.checkpoint, args.device, trust_checkpoint=args.trust_checkpoint, precision=args.precision)
    heard: list[np.ndarray] = []

    def recorded(source):  # keep what was heard for the mp4's sound track
        for chunk in source:
            heard.append(chunk)
            yield chunk
    sink = None
    if args.frames_out == "-":
        sink = Y4MWriter(sys.stdout.buffer, animator.image_size, animator.fps)
    elif args.frames_out:
        sink = Y4MWriter(open(args.frames_out, "wb"), animator.image_size, animator.fps)
    frames = []
    try:
        for frame in animator.stream(args.image, recorded(chunks), rate, seed=args.seed, gain=args.gain):
            frames.append(frame)
            if sink is not None:
                sink.write(frame)
    finally:
        if sink is not None and sink.out is not sys.stdout.buffer:
            sink.out.close()
    if not frames:
        raise ValueError(f"{args.audio}: the stream ended before one video frame of audio arrived")
    out = write_video(args.out, np.stack(frames), animator.fps, np.concatenate(heard), rate)
    print(out, file=sys.stderr if args.frames_out == "-" else sys.stdout)
    return 0


def _import_sda(args: argparse.Namespace) -> int:
    from .sda import convert_file

    print(convert_file(args.model, args.out, trust=args.trust_checkpoint))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "import-sda":
            return _import_sda(args)
        if args.command == "study":
            return _study(args)
        with _quiet_native_stderr(not args.verbose):
            return _animate(args)
    except (ValueError, OSError) as e:  # ImageError, MediaError, AlignmentError, CheckpointError are ValueErrors
        message = " ".join(str(e).split())
        print(f"speechanim {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
