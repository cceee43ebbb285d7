"""The unit costs `speechanim plan` multiplies out: measured on this machine, written to docs/unit-costs.csv.

    nice -n 15 .venv/bin/python benchmarks/unit_costs.py [--clips 10 40] [--out docs/unit-costs.csv]

1. data rules: the real DAG (Snakefile, in a temporary folder) on ``--clips`` real GRID clips of speaker 1
   (../shared/data/grid-s1, a folder dataset) at 128 x 96, tiny training settings; each job's Snakemake
   ``benchmark:`` file (cpu_time, max_rss) and output sizes give, per rule, CPU seconds per unit (frame aligned,
   frame packed, frame scored, clip checked), memory as intercept + slope per unit (a line through the two corpus
   sizes) and output bytes per unit;
2. networks: for each config (the embedded default, workflow/configs/*.yaml's grid_s1 and paper, and the tiny
   test config), one training step of every generator variant, of the lipreader and of the SyncNet, and one
   generation, each in a fresh process at two sizes (frames per clip, or samples): FLOPs per step
   (torch.utils.flop_counter, a line in the size), CPU seconds per FLOP and peak RSS (a line in the size), on
   one thread.

Every row records the date and the CPU it was measured on; ``speechanim plan`` reads them.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

sys.path.insert(0, str(REPO / "tests"))
from speechanim.config import model_json  # noqa: E402
from speechanim.plan import MODEL_KINDS, config_key, run_config  # noqa: E402
from test_dag import tiny_config  # noqa: E402  (the tiny end-to-end DAG's settings)

GRID_S1 = REPO.parent / "shared" / "data" / "grid-s1"
SIZES = {"train": (14, 28), "generate": (14, 28), "lipreader": (14, 28), "syncnet": (4, 8)}


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo (platform.processor() otherwise)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- 1. the data rules, from a small real DAG


def small_dag_config(workdir: Path, n_clips: int, image_size=(128, 96), ratios=(0.6, 0.2, 0.2)) -> dict:
    """tiny_config() on a folder of ``n_clips`` of grid-s1's real videos (copied into ``workdir``)."""
    videos = workdir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for clip in sorted(GRID_S1.glob("*.mp4"))[:n_clips]:
        shutil.copy(clip, videos / clip.name)
    config = tiny_config()
    config.update(run_datasets=["grids1"], seeds=[0], data_dir="data", results_dir="results", logs_dir="logs")
    config["datasets"]["grids1"] = {"kind": "folder", "root": str(videos), "speaker": "s1"}
    config["splits"].update(by="utterance", utterance_ratios=list(ratios))
    config["preprocess"]["image_size"] = list(image_size)
    config["evaluation"].update(frame_step=1, max_clips=None)  # every frame scored, as the paper
    return config


#: The targets of the small DAG: every rule with a benchmark file (training, generation, scoring and what they need).
SMALL_DAG_TARGETS = ("results/grids1/metrics/full.json", "results/grids1/metrics/ground_truth.json")


def run_small_dag(workdir: Path, config: dict, timeout: int = 1500) -> None:
    """Snakemake on ``config`` in ``workdir`` up to SMALL_DAG_TARGETS; raises with the log tail on a failure."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
                          *SMALL_DAG_TARGETS], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode:
        raise RuntimeError(f"the small DAG failed in {workdir}:\n{res.stderr[-4000:]}")


#: The rules' benchmark file names (logs/benchmarks/<run>/<stem>.tsv): stem prefix -> rule.
BENCHMARK_STEMS = {"align": "align_speaker", "pack": "pack", "raw": "folder_speaker", "train": "train",
                   "lipreader": "lipreader", "syncnet": "syncnet", "generate": "generate",
                   "real_landmarks": "reference_landmarks", "evaluate": "evaluate_method"}


def rule_of_benchmark(stem: str) -> str:
    """The rule whose benchmark file is named ``stem`` (align_s1 -> align_speaker, evaluate_full -> evaluate_method)."""
    return next(rule for prefix, rule in BENCHMARK_STEMS.items() if stem == prefix or stem.startswith(prefix + "_"))


def benchmark_rows(workdir: Path) -> dict[str, dict]:
    """rule -> {cpu_s, max_rss_mb, s} summed (cpu, s) or maxed (rss) over its jobs' benchmark files."""
    out: dict[str, dict] = {}
    for path in sorted((workdir / "logs" / "benchmarks").rglob("*.tsv")):
        with open(path) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        rule = rule_of_benchmark(path.stem)
        r = out.setdefault(rule, {"cpu_s": 0.0, "s": 0.0, "max_rss_mb": 0.0, "jobs": 0})
        r["cpu_s"] += float(row["cpu_time"])
        r["s"] += float(row["s"])
        r["max_rss_mb"] = max(r["max_rss_mb"], float(row["max_rss"]))
        r["jobs"] += 1
    return out


def h5_frames(path: Path) -> tuple[int, int]:
    """(clips, frames) of a packed or aligned HDF5 file."""
    import h5py

    from speechanim.packing import clip_keys, frame_count

    with h5py.File(path, "r") as h5:
        keys = clip_keys(h5)
        return len(keys), sum(frame_count(h5, k) for k in keys)


def dag_units(workdir: Path) -> dict[str, dict]:
    """rule -> {units, out_bytes}: what each rule of the small DAG worked on (DAG_UNITS says which unit)."""
    data, results = workdir / "data", workdir / "results" / "grids1"
    parts = {p: h5_frames(data / "packed" / "grids1" / f"{p}.h5") for p in ("train", "val", "test")}
    aligned = h5_frames(data / "aligned" / "grids1" / "s1.h5")
    raw_clips = len(list((workdir / "videos").glob("*.mp4")))
    size = lambda *paths: sum(p.stat().st_size for q in paths for p in ([q] if q.is_file() else q.rglob("*")) if p.is_file())  # noqa: E731
    generated = results / "generated" / "full.h5"
    return {
        "folder_speaker": {"units": raw_clips, "out_bytes": size(data / "raw" / "grids1")},
        "align_speaker": {"units": aligned[1], "out_bytes": size(data / "aligned" / "grids1")},
        "pack": {"units": sum(f for _, f in parts.values()), "out_bytes": size(data / "packed" / "grids1")},
        # the training rules hold their training and validation clips' frames (the lipreader: all of them as crops)
        "train": {"units": parts["train"][1] + parts["val"][1], "out_bytes": size(results / "models" / "full")},
        "lipreader": {"units": parts["train"][1] + parts["val"][1], "out_bytes": size(results / "lipreader.pt")},
        "syncnet": {"units": parts["train"][1] + parts["val"][1], "out_bytes": size(results / "syncnet.pt")},
        "generate": {"units": parts["test"][1], "out_bytes": size(generated), "clips": parts["test"][0]},
        "reference_landmarks": {"units": parts["test"][1], "out_bytes": size(results / "real_landmarks.h5")},
        # two evaluations (full, ground_truth) of the test frames
        "evaluate_method": {"units": 2 * parts["test"][1], "out_bytes": size(results / "metrics")},
    }


def measure_dag(clips: tuple[int, int], workroot: Path) -> tuple[list[dict], dict]:
    """Rows of per-unit costs of the data rules from two small DAG runs, and the DAG's config (for its key)."""
    runs = []
    for n in clips:
        workdir = workroot / f"dag{n}"
        config = small_dag_config(workdir, n)
        t0 = time.perf_counter()
        run_small_dag(workdir, config)
        print(f"small DAG on {n} clips: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        bench, units = benchmark_rows(workdir), dag_units(workdir)
        runs.append({r: {**bench[r], **units[r]} for r in bench if r in units})
    rows = []
    small, large = runs
    for rule in sorted(large):
        a, b = small[rule], large[rule]
        du = b["units"] - a["units"]
        slope = max(0.0, (b["max_rss_mb"] - a["max_rss_mb"]) / du) if du > 0 else 0.0
        rows += [
            (f"{rule}.cpu_s_per_unit", "", b["cpu_s"] / b["units"]),
            (f"{rule}.mem_mb_base", "", max(a["max_rss_mb"], b["max_rss_mb"]) - slope * b["units"]),
            (f"{rule}.mem_mb_per_unit", "", slope),
            (f"{rule}.bytes_per_unit", "", b["out_bytes"] / b["units"]),
        ]
    rows += dag_sizes(config, large["generate"]["units"] / max(1, large["generate"]["clips"]))
    return rows, config


def dag_sizes(config: dict, frames_per_clip: float) -> list[tuple]:
    """Rows of the small DAG's own sizes, which the plan scales from: frame and mouth pixels, the networks' batches."""
    from speechanim.lipreader import _parse_config as lip
    from speechanim.syncnet import _parse_config as sync

    (h, w), t = config["preprocess"]["image_size"], config["training"]
    lr, sy = lip(json.dumps(config["lipreader"])), sync(json.dumps(config["syncnet"]))
    return [("dag.frame_pixels", "", h * w), ("dag.train_units", "", t["batch_size"] * t["n_frames"]),
            ("dag.lipreader_units", "", lr.batch_size * frames_per_clip), ("dag.syncnet_units", "", sy.batch_size),
            ("dag.generate_units", "", frames_per_clip),
            ("dag.lipreader_mouth_pixels", "", lr.mouth_size[0] * lr.mouth_size[1]),
            ("dag.syncnet_mouth_pixels", "", sy.mouth_size[0] * sy.mouth_size[1])]


# --- 2. the networks, each measured in a fresh process


def measure_model(kind: str, config: dict, size: int) -> dict:
    """One step of ``kind`` (train:<variant>, generate, lipreader, syncnet) at ``size`` frames (syncnet: samples)
    in a new process: {flops, cpu_s, rss_mb, params}."""
    res = subprocess.run([sys.executable, __file__, "--measure", kind, "--size", str(size),
                          "--config-json", json.dumps(config)], capture_output=True, text=True, timeout=3600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    if res.returncode:
        raise RuntimeError(f"{kind} at {size}: {res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _step(kind: str, config: dict, size: int):
    """(a function running one step of ``kind`` at ``size``, the parameters it trains or runs)."""
    import torch

    torch.manual_seed(0)
    if kind.startswith("train:") or kind == "generate":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from bench_train import step_runner

        from speechanim.models import ModelConfig
        from speechanim.train import TrainConfig, build_networks, config_from_json

        model = config_from_json(ModelConfig, model_json(config), "--model")
        training = {k: v for k, v in config["training"].items() if k != "num_workers"}
        train = config_from_json(TrainConfig, json.dumps({**training, "batch_size": 1, "n_frames": size}), "--training")
        if kind == "generate":
            gen = build_networks("full", model)["generator"].eval()
            h, w = model.image_size
            still, audio = torch.rand(1, 3, h, w) * 2 - 1, torch.randn(1, size, model.window) * 0.3

            def run():
                with torch.no_grad():
                    gen(still, audio)

            return run, sum(p.numel() for p in gen.parameters())
        run, params = step_runner(kind.split(":", 1)[1], model, train)
        return run, sum(params.values())
    if kind == "lipreader":
        from speechanim.lipreader import LipNet, _ctc_loss, _parse_config

        cfg = _parse_config(json.dumps(config["lipreader"]))
        model = LipNet(cfg).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        crops = [torch.randint(0, 255, (size, *cfg.mouth_size), dtype=torch.uint8)]

        def run():
            loss, _ = _ctc_loss(model, crops, ["bin blue at f two now"], torch.device("cpu"))
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run, sum(p.numel() for p in model.parameters())
    if kind == "syncnet":
        from speechanim.syncnet import SyncNet, _parse_config, contrastive_loss

        cfg = _parse_config(json.dumps(config["syncnet"]))
        model = SyncNet(cfg).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        video = torch.randn(size, cfg.window, *cfg.mouth_size)
        mel = torch.randn(size, cfg.n_mels, cfg.mel_steps)
        genuine = torch.arange(size) % 2

        def run():
            loss = contrastive_loss(model.embed_video(video), model.embed_audio(mel), genuine, cfg.margin)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return run, sum(p.numel() for p in model.parameters())
    raise ValueError(kind)


def _measure_here(kind: str, config: dict, size: int) -> dict:
    """The --measure subprocess: a warm-up step counted by FlopCounterMode, then one timed step; its peak RSS."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    run, params = _step(kind, config, size)
    with FlopCounterMode(display=False) as counter:
        run()
    c0 = time.process_time()
    run()
    cpu = time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"flops": counter.get_total_flops(), "cpu_s": cpu, "rss_mb": rss_mb, "params": params}


def measure_models(name: str, config: dict) -> list[tuple]:
    """Rows of one config's network costs: FLOPs and RSS as intercept + slope in the size, CPU s per FLOP."""
    key, rows = config_key(config), []
    for kind in MODEL_KINDS:
        n1, n2 = SIZES[kind.split(":")[0]]
        a, b = measure_model(kind, config, n1), measure_model(kind, config, n2)
        flops_slope = (b["flops"] - a["flops"]) / (n2 - n1)
        rss_slope = max(0.0, (b["rss_mb"] - a["rss_mb"]) / (n2 - n1))
        rows += [(f"{kind}.flops_base", key, b["flops"] - flops_slope * n2), (f"{kind}.flops_per_unit", key, flops_slope),
                 (f"{kind}.cpu_s_per_flop", key, b["cpu_s"] / b["flops"]),
                 (f"{kind}.rss_mb_base", key, b["rss_mb"] - rss_slope * n2), (f"{kind}.rss_mb_per_unit", key, rss_slope),
                 (f"{kind}.params", key, b["params"])]
        print(f"{name} {kind}: {b['flops'] / 1e9:.2f} GFLOP at {n2}, {b['cpu_s']:.2f} CPU s, {b['rss_mb']:.0f} MB",
              file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, nargs=2, default=[10, 40], help="the two small DAG corpus sizes")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "unit-costs.csv")
    ap.add_argument("--configs", nargs="*", default=["config.yaml", "workflow/configs/grid_s1.yaml",
                                                     "workflow/configs/paper.yaml"],
                    help="configs whose networks are measured (the tiny test config and the small DAG's always are)")
    ap.add_argument("--skip-dag", action="store_true", help="measure the networks only (rows of the data rules: none)")
    ap.add_argument("--skip-models", action="store_true", help="measure the data rules only (rows of the networks: none)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--config-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(_measure_here(args.measure, json.loads(args.config_json), args.size)))
        return 0
    measured, cpu = datetime.date.today().isoformat(), cpu_name()
    rows = []
    with tempfile.TemporaryDirectory(prefix="unit-costs-") as tmp:
        if args.skip_dag:
            dag_config = small_dag_config(Path(tmp) / "cfg", 1)  # (its networks' key: the corpus is not in it)
        else:
            dag_rows, dag_config = measure_dag(tuple(args.clips), Path(tmp))
            rows += dag_rows
    configs = {"tiny DAG (tests)": tiny_config(), "small DAG (this benchmark)": dag_config}
    configs.update({c: run_config(REPO / c if c != "config.yaml" else None) for c in args.configs})
    seen = set()
    for name, config in ({} if args.skip_models else configs).items():
        if config_key(config) not in seen:
            seen.add(config_key(config))
            rows += [(q, k, v) + (name,) for q, k, v in measure_models(name, config)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["quantity", "key", "value", "config", "measured", "cpu"])
        for row in rows:
            q, k, v = row[:3]
            w.writerow([q, k, f"{v:.6g}", row[3] if len(row) > 3 else "", measured, cpu])
    print(f"{len(rows)} unit costs -> {args.out} ({measured}, {cpu})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
