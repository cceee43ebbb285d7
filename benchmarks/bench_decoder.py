"""The lipreader's grammar decoder: milliseconds per clip, one clip at a time and in batches.

    .venv/bin/python benchmarks/bench_decoder.py [--clips 140] [--frames 75] [--repeats 3]

Decodes ``--clips`` clips of random per-frame class scores (``--frames`` frames, scaled so that
the paths vary) with ``speechanim.lipreader.ctc_grammar_decode`` one clip at a time and with
``ctc_grammar_decode_many`` at several chunk sizes; prints CPU milliseconds per clip (best of
``--repeats``) and checks that every way gives the same sentences. The lipreader decodes its 100
validation clips after every training epoch and every evaluation decodes the 140 test clips.
"""
from __future__ import annotations

import argparse
import time

import torch

from speechanim.lipreader import VOCABULARY, ctc_grammar_decode, ctc_grammar_decode_many


def best_ms(fn, n_clips: int, repeats: int) -> tuple[float, list[str]]:
    times, out = [], []
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append((time.process_time() - start) / n_clips * 1000)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=140)
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    scores = [torch.randn(args.frames, len(VOCABULARY) + 1, generator=gen) * (1 + i % 8) for i in range(args.clips)]
    ms, reference = best_ms(lambda: [ctc_grammar_decode(y) for y in scores], args.clips, args.repeats)
    print(f"one clip at a time   {ms:6.2f} ms/clip  ({args.clips} clips x {args.frames} frames, CPU time, 1 thread)")
    for chunk in (8, 32, 128):
        ms, out = best_ms(lambda: ctc_grammar_decode_many(scores, chunk=chunk), args.clips, args.repeats)
        same = "same sentences" if out == reference else "DIFFERENT SENTENCES"
        print(f"batches of {chunk:3d}       {ms:6.2f} ms/clip  ({same})")


if __name__ == "__main__":
    main()
