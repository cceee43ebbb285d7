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

::

    speechanim plan --config workflow/configs/paper.yaml [--datasets tcdtimit] [--csv plan.csv]

prints each rule's jobs, CPU and GPU hours, memory and disk for a config (see :mod:`speechanim.plan`).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Iterator

from . import __version__
from .options import port_number, positive_gain, positive_seconds, sample_rate_hz

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
    live.add_argument("--rate", type=sample_rate_hz, default=None,
                      help="sample rate of the PCM on stdin (Hz, 4000 to 384000)")
    live.add_argument("--frames-out", default=None, metavar="PATH",
                      help="also write each frame as soon as it is made, as a YUV4MPEG2 stream (- = stdout), "
                           "e.g. | ffplay -  or  | mpv -")
    live.add_argument("--gain", type=positive_gain, default=1.0,
                      help="scale the live samples by this (a stream cannot be peak-normalised; default %(default)s)")
    live.add_argument("--idle", type=positive_seconds, default=2.0,
                      help="a growing WAV ends after this many seconds without new data (default %(default)s)")
    q = sub.add_parser("import-sda", help="convert an authors' released checkpoint (grid.dat, timit.dat, crema.dat)",
                       description="Convert one of the authors' released checkpoints (DinoMan/speech-driven-"
                                   "animation: grid.dat, timit.dat, crema.dat) into this project's checkpoint format.")
    q.add_argument("model", type=Path, help="the authors' .dat file")
    q.add_argument("-o", "--out", required=True, type=Path, help="the checkpoint to write (.pt)")
    q.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle a file that holds more than tensors, plain values and numpy arrays (could run code)")
    _study_parser(sub)
    sub.add_parser("plan", help="each rule's jobs, CPU/GPU hours, memory and disk for a config (speechanim plan -h)")
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
    s.add_argument("--port", type=port_number, default=8000, help="port (default %(default)s; 0: any free port)")
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
    """``animate --stream``: frames out as the audio comes in. Memory does not grow with the stream:
    each frame goes to the mp4's encoder and the sound to its file as they come (stream.Mp4Writer)."""
    from .animate import Animator
    from .media import SUFFIXES, MediaError
    from .stream import Mp4Writer, growing_wav_chunks, pcm_chunks

    if args.out.suffix.lower() not in SUFFIXES["h264"]:
        raise MediaError(f"{args.out}: the video is written as mp4; name it .mp4")
    if str(args.audio) == "-":
        if not args.rate:
            raise ValueError("--audio - (PCM on stdin) needs its --rate in Hz")
        if sys.stdin is None:
            raise ValueError("--audio -: standard input is closed")
        rate, chunks = args.rate, pcm_chunks(sys.stdin.buffer)
    else:
        if args.rate is not None:
            raise ValueError(f"{args.audio}: a WAV file gives its own rate; --rate is for PCM on stdin")
        rate, chunks = growing_wav_chunks(args.audio, idle_s=args.idle)
    animator = Animator(args.checkpoint, args.device, trust_checkpoint=args.trust_checkpoint, precision=args.precision)
    with Mp4Writer(args.out, animator.image_size, animator.fps, audio_rate=rate) as mp4:
        def recorded(source):  # the mp4's sound track, written as it is heard
            for chunk in source:
                mp4.write_audio(chunk)
                yield chunk
        frames = animator.stream(args.image, recorded(chunks), rate, seed=args.seed, gain=args.gain)
        closed = _stream_frames(frames, mp4, _frame_sink(args.frames_out, animator))
        if mp4.frames == 0:
            raise ValueError(f"{args.audio}: the stream ended before one video frame of audio arrived")
        out = mp4.close()
    if closed:  # the frames' reader went away: the stream stopped, what was made is in the mp4
        raise BrokenPipeError(errno.EPIPE, f"--frames-out {args.frames_out}: its reader closed the pipe after "
                                           f"{mp4.frames} frames; stopped there and wrote them to {out}")
    print(out, file=sys.stderr if args.frames_out == "-" else sys.stdout)
    return 0


def _frame_sink(frames_out: str | None, animator):
    """The YUV4MPEG2 writer of ``--frames-out`` (``-``: stdout), or None."""
    from .stream import Y4MWriter

    if frames_out == "-":
        if sys.stdout is None:
            raise ValueError("--frames-out -: standard output is closed")
        return Y4MWriter(sys.stdout.buffer, animator.image_size, animator.fps)
    if frames_out:
        return Y4MWriter(open(frames_out, "wb"), animator.image_size, animator.fps)
    return None


def _stream_frames(frames, mp4, sink) -> bool:
    """Each frame to the mp4 and to ``sink``; True if the sink's reader closed its pipe (then it stops)."""
    try:
        for frame in frames:
            mp4.write(frame)
            if sink is not None:
                sink.write(frame)
    except BrokenPipeError:
        if sink is None:
            raise
        frames.close()
        return True
    finally:
        if sink is not None and sink.out is not getattr(sys.stdout, "buffer", None):
            sink.out.close()
    return False


def _stdout_closed(command: str, err: BrokenPipeError) -> int:
    """The reader of stdout went away: one line on stderr saying so (no traceback), stdout pointed at
    /dev/null so that the exit's flush stays quiet, exit status 1."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (AttributeError, OSError, ValueError):
        pass
    own = err.strerror and err.strerror != os.strerror(errno.EPIPE)
    message = err.strerror if own else "standard output was closed before everything was written (broken pipe)"
    print(f"speechanim {command}: error: {message}", file=sys.stderr)
    return 1


def _import_sda(args: argparse.Namespace) -> int:
    from .sda import convert_file

    print(convert_file(args.model, args.out, trust=args.trust_checkpoint))
    return 0


def _paths(args: argparse.Namespace) -> tuple[dict, dict]:
    """What the command reads and what it writes, for :func:`~speechanim.fileio.check_outputs_apart`."""
    if args.command == "import-sda":
        return {"the .dat file": args.model}, {"-o": args.out}
    if args.command == "animate":
        return ({"--image": args.image, "--audio": args.audio, "--checkpoint": args.checkpoint},
                {"-o": args.out, "--frames-out": args.frames_out})
    if args.study_command == "export":  # the WAL holds answers not yet in the main file
        return {"--db": [args.db, f"{args.db}-wal", f"{args.db}-shm"]}, {"--out": args.out}
    return ({"--study": [args.study / "manifest.json", args.study / "media"]},
            {"--db": [args.db, f"{args.db}-wal", f"{args.db}-shm"]})


def main(argv: list[str] | None = None) -> int:
    from .fileio import PathClashError, check_outputs_apart

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:  # its own options (speechanim.plan.main)
        from .plan import main as plan

        return plan(argv[1:])
    args = _parser().parse_args(argv)
    try:
        check_outputs_apart(*_paths(args))  # before anything is read or written
        if args.command == "import-sda":
            code = _import_sda(args)
        elif args.command == "study":
            code = _study(args)
        else:
            with _quiet_native_stderr(not args.verbose):
                code = _animate(args)
        if sys.stdout is not None:
            sys.stdout.flush()  # a closed pipe shows here, not as a traceback when Python exits
        return code
    except BrokenPipeError as e:
        return _stdout_closed(args.command, e)
    except (ValueError, OSError) as e:  # ImageError, MediaError, AlignmentError, CheckpointError are ValueErrors
        message = " ".join(str(e).split())
        print(f"speechanim {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(e, PathClashError) else 1  # 2: a bad command line, as argparse's


if __name__ == "__main__":
    sys.exit(main())
