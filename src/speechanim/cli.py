"""The ``speechanim`` command (console script ``speechanim = "speechanim.cli:main"``).

::

    speechanim animate --image face.jpg --audio speech.wav --checkpoint generator.pt -o out.mp4 \\
        [--device cpu|cuda] [--seed 0] [--trust-checkpoint]

animates one photo with one recording (see :mod:`speechanim.animate`) and writes an mp4 with
the original audio.  A bad input (a photo with no face or with two, an unreadable image, a file
with no audio, a missing checkpoint, a checkpoint that carries code) ends with one line on stderr
naming the file, exit code 1.
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--verbose", action="store_true", help="let the face detector's native log lines through")
    return parser


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
    from .animate import animate_file  # imported here: torch and mediapipe load slowly

    out = animate_file(args.image, args.audio, args.checkpoint, args.out, device=args.device, seed=args.seed,
                       progress=False if args.no_progress else True, trust_checkpoint=args.trust_checkpoint)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with _quiet_native_stderr(not args.verbose):
            return _animate(args)
    except (ValueError, OSError) as e:  # ImageError, MediaError, AlignmentError, CheckpointError are ValueErrors
        message = " ".join(str(e).split())
        print(f"speechanim {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
