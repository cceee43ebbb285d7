"""Generator speed at the paper's size (128 x 96 frames, 0.16 s windows), batch 1, eval mode.

    .venv/bin/python benchmarks/bench_generator.py [--frames 75] [--repeats 3] [--static] [--threads N]

Prints milliseconds per frame for streaming (one ``Generator.step`` per frame, the still encoded
once) and for a whole clip in one pass. The paper reports 7 ms/frame and 0.5 s per 75-frame clip on
a GTX 1080 Ti, and "1s and 15s" on a CPU (section 4). Runs on CUDA when there is one.
"""
from __future__ import annotations

import argparse
import time

import torch

from speechanim.models import Generator, ModelConfig, count_parameters, device


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench(frames: int, repeats: int, static: bool) -> dict[str, float]:
    dev = device()
    cfg = ModelConfig(static=static)
    gen = Generator(cfg).to(dev).eval()
    h, w = cfg.image_size
    still = torch.rand(1, 3, h, w, device=dev) * 2 - 1
    audio = torch.randn(1, frames, cfg.window, device=dev) * 0.3
    noise = gen.sample_noise(1, frames, dev, torch.Generator(dev).manual_seed(0))

    def stream() -> tuple[float, float]:
        _sync(dev)
        t0 = time.perf_counter()
        identity = gen.encode_identity(still)
        state = gen.init_state(1, dev)
        _sync(dev)
        t1 = time.perf_counter()
        for k in range(frames):
            _, state = gen.step(identity, audio[:, k], state, noise[:, k])
        _sync(dev)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    def whole() -> float:
        _sync(dev)
        t0 = time.perf_counter()
        gen(still, audio, noise)
        _sync(dev)
        return time.perf_counter() - t0

    with torch.no_grad():
        stream(), whole()  # warm-up
        streams = [stream() for _ in range(repeats)]
        wholes = [whole() for _ in range(repeats)]
    encode_s = min(s[0] for s in streams)
    step_s = min(s[1] for s in streams)
    whole_s = min(wholes)
    return {
        "params": count_parameters(gen),
        "identity_ms": encode_s * 1e3,
        "step_ms_per_frame": step_s / frames * 1e3,
        "stream_clip_s": encode_s + step_s,
        "whole_clip_s": whole_s,
        "whole_ms_per_frame": whole_s / frames * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--static", action="store_true", help="the static baseline (section 4.4)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = device()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    r = bench(args.frames, args.repeats, args.static)
    print(f"generator{' (static)' if args.static else ''}: {r['params']:,} parameters, 128x96 frames, "
          f"batch 1, eval, no_grad, {where}, best of {args.repeats}")
    print(f"  streaming:  identity encoding {r['identity_ms']:.1f} ms once, then {r['step_ms_per_frame']:.1f} ms/frame "
          f"({r['stream_clip_s']:.2f} s for {args.frames} frames)")
    print(f"  whole clip: {r['whole_clip_s']:.2f} s for {args.frames} frames = {r['whole_ms_per_frame']:.1f} ms/frame")


if __name__ == "__main__":
    main()
