"""Generator speed at the paper's size (128 x 96 frames), batch 1, eval mode, as animation runs it.

    .venv/bin/python benchmarks/bench_generator.py [--frames 75] [--repeats 3] [--threads N] [--static]
        [--skips authors|all] [--window 0.16] [--rate 16000]

For the plain generator (``models.Generator``) and its inference form (``inference.FastGenerator``:
batch norm folded, the still's share of every U-Net conv computed once per clip, matrix products for
the few-pixel layers) in fp32, bf16 and int8 (bf16 with int8 weights in those matrix products), prints milliseconds per frame for

* streaming: one ``step`` per frame, the still encoded once;
* a whole clip in one pass;
* live latency: audio arriving in 40 ms chunks (one frame's worth) through ``stream.AudioFramer``
  and ``step``: the time from a chunk's arrival to the frame it completes (median and 95th
  percentile). A frame also waits for its window's look-ahead (80 ms of audio after its centre
  with 0.16 s windows) before its chunk can arrive; that is the input's, not the computer's.

and how far the lower-precision frames are from fp32 ones (grey levels of uint8 frames). The paper reports
7 ms/frame and 0.5 s per 75-frame clip on a GTX 1080 Ti, and "1s and 15s" on a CPU (section 4).
Runs on CUDA when there is one.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from speechanim.inference import FastGenerator
from speechanim.models import Generator, ModelConfig, count_parameters, device
from speechanim.stream import AudioFramer


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _randomise_batch_norm(gen: Generator) -> None:
    """Trained-like statistics (untrained ones are 0 / 1, which makes bf16 look better than it is)."""
    g = torch.Generator().manual_seed(0)
    for m in gen.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def bench(gen, cfg: ModelConfig, frames: int, repeats: int, dev: torch.device) -> dict[str, float]:
    h, w = cfg.image_size
    g = torch.Generator().manual_seed(1)
    still = (torch.rand(1, 3, h, w, generator=g) * 2 - 1).to(dev)
    audio = (torch.randn(1, frames, cfg.window, generator=g) * 0.3).to(dev)
    noise = gen.sample_noise(1, frames, torch.device("cpu"), g).to(dev) if isinstance(gen, Generator) else \
        gen.generator.sample_noise(1, frames, torch.device("cpu"), g).to(dev)

    def stream() -> tuple[float, torch.Tensor]:
        identity = gen.encode_identity(still)
        state = gen.init_state(1, dev)
        out = []
        _sync(dev)
        t0 = time.perf_counter()
        for k in range(frames):
            frame, state = gen.step(identity, audio[:, k], state, noise[:, k])
            out.append(frame)
        _sync(dev)
        return time.perf_counter() - t0, torch.stack(out, 1)

    def whole() -> tuple[float, torch.Tensor]:
        _sync(dev)
        t0 = time.perf_counter()
        out, _ = gen.run(gen.encode_identity(still), audio, noise)
        _sync(dev)
        return time.perf_counter() - t0, out

    def live() -> list[float]:
        rate, stride = cfg.sample_rate, int(cfg.sample_rate / 25)
        framer = AudioFramer(rate, rate, stride, cfg.window)
        signal = audio[0, :, (cfg.window - stride) // 2:][:, :stride].reshape(-1).cpu().numpy()
        identity, state, k, waits = gen.encode_identity(still), gen.init_state(1, dev), 0, []
        for chunk in np.split(signal, frames):
            t0 = time.perf_counter()
            for window in framer.push(chunk):
                _, state = gen.step(identity, torch.from_numpy(window)[None].to(dev), state, noise[:, k])
                _sync(dev)
                k += 1
                waits.append(time.perf_counter() - t0)
        return waits

    with torch.no_grad():
        stream(), whole()  # warm-up
        stream_s, streamed = min((stream() for _ in range(repeats)), key=lambda r: r[0])
        whole_s, out = min((whole() for _ in range(repeats)), key=lambda r: r[0])
        waits = [x for _ in range(repeats) for x in live()]
    return {"step_ms": stream_s / frames * 1e3, "whole_ms": whole_s / frames * 1e3,
            "latency_ms": float(np.median(waits) * 1e3), "latency_p95_ms": float(np.percentile(waits, 95) * 1e3),
            "frames": out, "streamed": streamed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=75)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--static", action="store_true", help="the static baseline (section 4.4)")
    ap.add_argument("--skips", choices=("authors", "all"), default="authors", help="U-Net levels (default: the authors')")
    ap.add_argument("--window", type=float, default=0.16, help="audio window in seconds (the released models: 0.2)")
    ap.add_argument("--rate", type=int, default=16000, help="audio sample rate (the released GRID model: 40-50 kHz)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = device()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    cfg = ModelConfig(static=args.static, unet_skips=args.skips, audio_window_s=args.window, sample_rate=args.rate)
    torch.manual_seed(0)
    plain = Generator(cfg).to(dev)
    _randomise_batch_norm(plain)
    plain.eval()
    print(f"generator{' (static)' if args.static else ''}: {count_parameters(plain):,} parameters, 128x96 frames, "
          f"{args.skips} U-Net levels, {args.window} s windows at {args.rate} Hz, batch 1, eval, no_grad, {where}, "
          f"best of {args.repeats}")
    print(f"  {'':16s} {'streaming':>12s} {'whole clip':>12s} {'chunk->frame':>14s} {'p95':>8s}")
    results = {}
    variants = [("plain fp32", plain), ("fast fp32", FastGenerator(plain)), ("fast bf16", FastGenerator(plain, "bf16"))]
    if dev.type == "cpu":
        variants.append(("fast int8", FastGenerator(plain, "int8")))
    for name, gen in variants:
        r = results[name] = bench(gen, cfg, args.frames, args.repeats, dev)
        print(f"  {name:16s} {r['step_ms']:9.1f} ms {r['whole_ms']:9.1f} ms {r['latency_ms']:11.1f} ms "
              f"{r['latency_p95_ms']:5.1f} ms   (per frame)")
    for name in list(results)[1:]:
        diffs = [(results[name][k] - results["plain fp32"][k]).abs() * 127.5 for k in ("streamed", "frames")]
        print(f"  {name} vs plain fp32, grey levels: streaming mean {diffs[0].mean():.3f} max {diffs[0].max():.2f}; "
              f"whole clip mean {diffs[1].mean():.3f} max {diffs[1].max():.2f}")
    print(f"  whole {args.frames}-frame clip, fast bf16: {results['fast bf16']['whole_ms'] * args.frames / 1e3:.2f} s")


if __name__ == "__main__":
    main()
