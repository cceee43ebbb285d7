"""The training loader at the paper's size, from a packed file of >= 5 GB, against the training step rate.

    .venv/bin/python benchmarks/loader.py [--gb 5.2] [--layouts frame clip lzf-frame lzf-clip gzip1-clip]
        [--workers 1 2] [--batches 24] [--cpu-step-s S] [--step-flops F] [--sustained-tflops 74.2]
        [--dir /tmp]

For each HDF5 layout of the clips' frames (``--layouts``, :data:`LAYOUTS`: frames per chunk and
compression) writes a packed training file of ``--gb`` GB of synthetic 75-frame clips at 128x96
(:func:`pack_memory.synthetic_clip`: drifting shaded faces with sensor noise, which lzf shrinks by 4%
as it does GRID's real crops; 16 clips written with :func:`speechanim.packing.write_clip`, then copied
under new keys as ``preprocess pack`` copies clips) and times the trainer's own loader over it
(``TrainingWindows`` of 75 frames, batch 8, random clips, ``worker_init``, as
``speechanim.train.make_loaders`` builds it on a CPU) with 0 workers: ``--batches`` batches after a
first one, with uint8 frames (``TrainingWindows(uint8=True)``, the trainer's since 2026-12-06, made
[-1, 1] on the device) and with float32 frames (converted in the loader, as the trainer took them before), each once on clips evicted from the page cache (``posix_fadvise
DONTNEED``: read from the disk) and once more on the same clips, now cached. Each measurement prints
wall batches/s and CPU milliseconds per batch of the whole loader (workers included) and of the
loading process alone: CPU time holds on a shared machine, where wall time follows the other jobs.
The layout of least CPU per cold float32 batch is kept and timed again with each ``--workers``
count; every file is deleted at the end. Free disk is checked first.

Targets: 3x the paper-size training step rate (batch 8 x 75 frames at 128x96 of ``l1``, the fastest
variant) on this CPU (``--cpu-step-s``: seconds per step, from ``bench_train.py --paper``) and on an
H100, estimated: the step's FLOPs (by default ``speechanim plan``'s, from the FLOPs that
``benchmarks/unit_costs.py`` counted for ``workflow/configs/paper.yaml``; or ``--step-flops``) over
``--sustained-tflops``, an assumed sustained throughput, not a measurement (by default the plan's,
``speechanim.plan.GPU_SUSTAINED``: 15% of the H100's dense TF32 peak). For each it prints whether
a measured row met it and how many workers would at the measured CPU cost per batch, a core each.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pack_memory import NoiseBank, synthetic_clip  # benchmarks/ is on the path when run as a script

from speechanim.packing import AtomicH5, TrainingWindows, worker_init, write_clip
from speechanim.plan import GPU_SUSTAINED, REPO, Plan, UnitCosts, run_config

#: Frame layouts tried: name -> (frames per chunk, or None for the whole clip; compression; its option).
LAYOUTS = {
    "frame": (1, None, None),           # one frame a chunk, uncompressed
    "clip": (None, None, None),         # one chunk per clip (75 frames), uncompressed
    "lzf-frame": (1, "lzf", None),
    "lzf-clip": (None, "lzf", None),
    "gzip1-clip": (None, "gzip", 1),
}

SIZE, FRAMES, BATCH, RATE = (128, 96), 75, 8, 16_000


def paper_step_flops(variant: str) -> float:
    """FLOPs of one paper-size training step of ``variant`` (batch 8 x 75 frames at 128x96, forward and both
    backward passes), as ``speechanim plan`` has them from docs/unit-costs.csv."""
    plan = Plan(run_config(REPO / "workflow" / "configs" / "paper.yaml"), UnitCosts.read())
    return plan.step_flops(variant)


def write_file(path: Path, gb: float, layout: str, n_distinct: int = 16) -> dict:
    """A packed training file of ``gb`` GB of frames in ``layout``: ``n_distinct`` synthetic clips written
    (and compressed) once into memory, then copied round-robin under distinct keys (100 clips a speaker) until
    the frames reach ``gb``, as ``preprocess pack`` copies clips (``Group.copy``: the stored chunks as they are)."""
    import h5py

    chunk, compression, opts = LAYOUTS[layout]
    rng = np.random.default_rng(0)
    bank = NoiseBank(*SIZE)
    t0 = time.perf_counter()
    with h5py.File(f"pool-{layout}", "w", driver="core", backing_store=False) as pool:
        for i in range(n_distinct):
            write_clip(pool, synthetic_clip("s", f"u{i}", rng, bank, FRAMES, RATE), chunk_frames=chunk,
                       compression=compression, compression_opts=opts)
        n = int(np.ceil(gb * 1e9 / pool["s/u0/frames"].nbytes))
        with AtomicH5(path) as h5:
            h5.attrs.update(part="train", mirrored=False, speakers=[f"s{i // 100:03d}" for i in range(0, n, 100)],
                            split_by="speaker")
            for i in range(n):
                speaker, utterance = f"s{i // 100:03d}", f"u{i:05d}"
                pool.copy(pool[f"s/u{i % n_distinct}"], h5.require_group(speaker), name=utterance)
                h5[speaker][utterance].attrs.update(speaker=speaker, utterance=utterance)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"clips": n, "bytes": path.stat().st_size, "write_s": time.perf_counter() - t0}


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (its own pages only; no privileges needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cpu_s(who: int) -> float:
    """User and system CPU seconds of this process (``RUSAGE_SELF``, all its threads) or of its ended children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def loader_rate(path: Path, workers: int, batches: int, uint8: bool = False, seed: int = 0) -> dict:
    """The trainer's DataLoader over ``batches + 1`` batches of random clips of ``path`` (``seed`` picks them):
    wall batches/s of the last ``batches``, and CPU seconds per batch of the loading process (``main``) and of
    the whole loader (the workers too: they end with the pass, so their CPU time is all counted, start-up and
    the first batch included). ``uint8``: frames as stored (``TrainingWindows(uint8=True)``)."""
    from torch.utils.data import DataLoader, SubsetRandomSampler

    ds = TrainingWindows(path, FRAMES, window_s=0.16, uint8=uint8)
    picked = np.random.default_rng(seed).choice(len(ds), (batches + 1) * BATCH, replace=False).tolist()
    torch.manual_seed(seed)
    main0, kids0 = cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN)
    loader = DataLoader(ds, BATCH, sampler=SubsetRandomSampler(picked), drop_last=True, num_workers=workers,
                        worker_init_fn=worker_init)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in it:
        pass
    wall = time.perf_counter() - t0
    del it, loader
    main = cpu_s(resource.RUSAGE_SELF) - main0
    return {"bps": batches / wall, "cpu": (main + cpu_s(resource.RUSAGE_CHILDREN) - kids0) / (batches + 1),
            "main_cpu": main / (batches + 1)}


def measure(path: Path, layout: str, info: dict, workers: int, batches: int, seed: int) -> dict:
    """:func:`loader_rate` for float32 frames and uint8 (the trainer's), each on clips evicted from the page
    cache (cold) and then on the same clips again (warm)."""
    row = {"layout": layout, "workers": workers, "bytes": info["bytes"], "write_s": info["write_s"]}
    for kind, uint8 in (("float", False), ("uint8", True)):
        evict(path)
        row[f"{kind}_cold"] = loader_rate(path, workers, batches, uint8, seed)
        row[f"{kind}_warm"] = loader_rate(path, workers, batches, uint8, seed)
    row["load"] = os.getloadavg()[0]
    cells = [f"{row[k]['bps']:6.2f} {1000 * row[k]['cpu']:5.0f} {1000 * row[k]['main_cpu']:5.0f}"
             for k in ("float_cold", "float_warm", "uint8_cold", "uint8_warm")]
    print(f"{layout:11s} {info['bytes'] / 1e9:5.2f} {info['write_s']:5.0f} {workers:2d}  " + "  ".join(cells)
          + f"  {row['load']:4.1f}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=5.2, help="GB of frames in each packed file")
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                    help="num_workers values timed on the fastest layout (every layout is timed with 0)")
    ap.add_argument("--batches", type=int, default=24, help="batches timed per measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--cpu-step-s", type=float, default=None,
                    help="seconds per paper-size training step (batch 8) of the fastest variant on this CPU")
    ap.add_argument("--step-flops", type=float, default=None,
                    help="the paper-size l1 step's FLOPs (default: the plan's, from docs/unit-costs.csv)")
    ap.add_argument("--sustained-tflops", type=float, default=GPU_SUSTAINED["H100"] / 1e12,
                    help="assumed sustained H100 throughput for the step, TFLOP/s (an estimate; default the plan's)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the packed files go")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    targets = {}
    if args.cpu_step_s:
        targets["CPU (measured)"] = 3 / args.cpu_step_s
    if args.step_flops is None:
        flops = {v: paper_step_flops(v) for v in ("l1", "full")}
        print("paper-size step FLOPs (batch 8 x 75 frames, 128x96; the plan's): "
              + ", ".join(f"{v} {f / 1e12:.2f} TFLOP" for v, f in flops.items()))
        args.step_flops = flops["l1"]
    if args.step_flops:
        gpu_step = args.step_flops / (args.sustained_tflops * 1e12)
        print(f"H100 estimate: {args.step_flops / 1e12:.2f} TFLOP / {args.sustained_tflops:g} TFLOP/s sustained "
              f"(assumed) = {gpu_step * 1000:.0f} ms a step, {1 / gpu_step:.1f} steps/s")
        targets["H100 (estimate)"] = 3 / gpu_step
    for name, t in targets.items():
        print(f"target {name}: 3x the step rate = {t:.3g} batches/s")

    need = args.gb * (2 if len(args.layouts) > 1 else 1) + 2  # the fastest file so far is kept beside the next
    free = shutil.disk_usage(args.dir).free / 1e9
    if free < need:
        raise SystemExit(f"{args.dir}: {free:.1f} GB free, the files need {need:.1f} GB with 2 GB to spare")
    print(f"{args.gb} GB files of {FRAMES}-frame clips at {SIZE[0]}x{SIZE[1]} in {args.dir} ({free:.0f} GB free); "
          f"batch {BATCH}; {args.batches} batches a measurement; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    print("per measurement: wall batches/s, CPU ms per batch of the whole loader, of the loading process alone")
    print(f"{'layout':11s} {'GB':>5s} {'wr s':>5s} {'w':>2s}  " + "  ".join(f"{k:>18s}" for k in
          ("float32 cold", "float32 warm", "uint8 cold", "uint8 warm")) + "  load")
    results, best = [], None
    args.dir = Path(tempfile.mkdtemp(prefix="loader_bench_", dir=args.dir))  # this run's own files only
    try:
        for layout in args.layouts:  # every layout with 0 workers: one process's cost, which workers divide
            path = args.dir / f"{layout}.h5"
            info = write_file(path, args.gb, layout)
            row = measure(path, layout, info, 0, args.batches, seed=0)
            results.append(row)
            if best is None or row["float_cold"]["cpu"] < best[0]["float_cold"]["cpu"]:
                if best is not None:
                    best[1].unlink()
                best = (row, path, info)
            else:
                path.unlink()
        row, path, info = best
        for i, w in enumerate(args.workers):  # other clips than the first rows' (another seed): cold again
            results.append(measure(path, row["layout"], info, w, args.batches, seed=i + 1))
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(f"cheapest layout (CPU per float32 batch, cold, 0 workers): {best[0]['layout']}; CPU per batch relative "
          "to 'frame' (cold float32, warm float32, cold uint8, warm uint8): " + "; ".join(
              f"{r['layout']} " + " ".join(f"{r[k]['cpu'] / results[0][k]['cpu']:.2f}"
                                           for k in ("float_cold", "float_warm", "uint8_cold", "uint8_warm"))
              for r in results if r["workers"] == 0))
    zero = next(r for r in results if r["layout"] == best[0]["layout"] and r["workers"] == 0)
    for name, t in targets.items():
        for kind in ("float", "uint8"):
            ok = [r for r in results if r[f"{kind}_cold"]["bps"] >= t]
            pick = min(ok, key=lambda r: r["workers"]) if ok else None
            per_core = 1 / zero[f"{kind}_cold"]["cpu"]
            print(f"{name}, {kind} frames: " + (f"met here (wall, cold) by {pick['layout']} with {pick['workers']} workers"
                                               if pick else "not met here (wall, cold)")
                  + f"; one core loads {per_core:.1f} batches per CPU-second (cold, {best[0]['layout']}), so the "
                  f"target needs {t / per_core:.2f} cores of loading (num_workers {int(np.ceil(t / per_core))} or more)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
