"""What a config costs, rule by rule, and the resources its jobs request: the unit costs measured here
(docs/unit-costs.csv, written by benchmarks/unit_costs.py) times the units each job works on.

::

    speechanim plan --config workflow/configs/paper.yaml [--datasets tcdtimit] [--csv plan.csv]

Units: frames aligned, frames packed, training steps at the configured sizes (FLOPs counted by
``torch.utils.flop_counter``), frames generated and scored. CPU seconds are this machine's. No GPU is
measured: GPU hours are FLOPs over an assumed sustained throughput (:data:`GPU_SUSTAINED`), and the output
says so. The rules' ``resources:`` come from :meth:`Plan.request` (memory x :data:`MEM_MARGIN`, runtime capped
at ``cluster.partition_limit_minutes``).
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import ConfigError, model_json, validate_config

REPO = Path(__file__).resolve().parents[2]
UNIT_COSTS = REPO / "docs" / "unit-costs.csv"

#: The networks benchmarks/unit_costs.py measures per config (train:<variant> is one training step).
MODEL_KINDS = ("train:full", "train:l1", "train:l1_advimg", "train:static", "train:full_sync", "generate",
               "lipreader", "syncnet")

#: Requests are the plan's peak memory times this, plus MEM_FLOOR_MB (the plan extrapolates lines fitted on
#: small runs; the margin covers their scatter).
MEM_MARGIN = 1.5
MEM_FLOOR_MB = 500
#: Runtime requests: the plan's time times this plus 10 minutes, capped at cluster.partition_limit_minutes.
TIME_MARGIN = 1.5

#: Assumed sustained FLOP/s of a training or generation step on a GPU, not measured (no GPU was lent):
#: 15% of the dense TF32 tensor peak (H100 SXM 494.7 TFLOPS, A100 156 TFLOPS, NVIDIA's data sheets). Small
#: convolutions, GRUs and batch 8 keep these nets far from peak.
GENERATE_BATCH = 8  # speechanim.generate's --batch-size default: clips held in memory at once
GPU_SUSTAINED = {"H100": 0.15 * 494.7e12, "A100": 0.15 * 156e12}
#: The paper trains "approximately a week" on a GTX 1080 Ti (section 3.3), peak 11.34 TFLOPS FP32; assumed
#: 40% sustained. A patience-stopped training (no steps_per_epoch) is planned for the epochs that week holds.
PAPER_WEEK_S = 7 * 24 * 3600
GTX1080TI_SUSTAINED = 0.40 * 11.34e12


@dataclass(frozen=True)
class Corpus:
    """A dataset's size: speakers, clips aligned (before mirroring), frames per clip, clips packed per part."""

    speakers: int
    clips: int
    frames_per_clip: float
    parts: dict
    source: str


def _paper_corpus(speakers: int, train: int, val: int, test: int, hours: float, source: str) -> Corpus:
    samples = train + val + test
    return Corpus(speakers, train // 2 + val + test, hours * 3600 * 25 / samples,
                  {"train": train, "val": val, "test": test}, source)


#: Paper section 4.1 and Table 1 (samples: training with its mirror images; hours at 25 fps give frames per clip).
PAPER_CORPORA = {
    "grid": _paper_corpus(33, 31639, 6999, 9976, 26.36 + 5.83 + 8.31,
                          "paper 4.1: 33 speakers x 1000 phrases; Table 1: 31,639 / 6,999 / 9,976 samples, "
                          "26.36 / 5.83 / 8.31 h"),
    "tcdtimit": _paper_corpus(59, 8218, 686, 977, 9.13 + 0.76 + 1.09,
                              "paper 4.1: 59 speakers x ~100 sentences; Table 1: 8,218 / 686 / 977 samples, "
                              "9.13 / 0.76 / 1.09 h"),
}


# --- configs


def _merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` key by key, as Snakemake merges --configfile over config.yaml."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def run_config(path: str | Path | None = None) -> dict:
    """A run's config: config.yaml with ``path`` merged over it, as ``snakemake --configfile path`` merges them
    (None: the embedded default), and validated as the Snakefile validates it (a misspelt key is an error)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if path:
        config = _merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return validate_config(config, source=f"config.yaml + {path}" if path else "config.yaml")


def config_key(config: dict) -> str:
    """A short hash of what the networks' costs depend on: model and frame sizes, batch, frames, precision,
    the lipreader's and the SyncNet's settings."""
    t = config["training"]
    what = [model_json(config), t.get("batch_size"), t.get("n_frames"), t.get("precision", "fp32"),
            config["lipreader"], config["syncnet"]]
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


# --- unit costs


@dataclass
class UnitCosts:
    """docs/unit-costs.csv: quantity -> value, for the data rules ('' key) and per config key (networks)."""

    path: Path = UNIT_COSTS
    values: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)  # config key -> the config's name in the benchmark
    measured: str = ""
    cpu: str = ""

    @classmethod
    def read(cls, path: str | Path = UNIT_COSTS) -> "UnitCosts":
        out = cls(path=Path(path))
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out.values[(row["quantity"], row["key"])] = float(row["value"])
                if row["key"]:
                    out.names[row["key"]] = row["config"]
                out.measured, out.cpu = row["measured"], row["cpu"]
        return out

    def data(self, quantity: str) -> float:
        return self.values[(quantity, "")]

    def model(self, quantity: str, key: str) -> float:
        return self.values[(quantity, key)]

    def key_for(self, config: dict) -> str:
        """The config's key, or (with a warning) the measured config whose generator is nearest in parameters."""
        key = config_key(config)
        if key in self.names:
            return key
        params = _generator_params(config)
        near = min(self.names, key=lambda k: abs(math.log(self.model("train:full.params", k) / params)))
        warnings.warn(f"no unit costs measured at this config's network sizes: using {self.names[near]!r}'s "
                      f"(measure yours: benchmarks/unit_costs.py --configs YOUR.yaml)", stacklevel=2)
        return near


def _generator_params(config: dict) -> int:
    """Parameters of the config's networks for the full variant (built on the meta device: no memory)."""
    import torch

    from .models import ModelConfig
    from .train import build_networks, config_from_json

    with torch.device("meta"):
        nets = build_networks("full", config_from_json(ModelConfig, model_json(config), "--model"))
    return sum(p.numel() for n in nets.values() for p in n.parameters())


# --- corpora and jobs


def _folder_corpus(config: dict, dataset: str) -> Corpus:
    from .raw.folder import _utterance_videos, check_clip, speaker_folders

    cfg = config["datasets"][dataset]
    folders = speaker_folders(cfg["root"], single_speaker=cfg.get("speaker", "s1"))
    videos = [v for f in folders.values() for v in _utterance_videos(f).values()]
    fpc = check_clip(videos[0]).n_frames * config["preprocess"]["fps"] / check_clip(videos[0]).fps if videos else 0
    return _split_corpus(config, len(folders), len(videos), fpc, f"{cfg['root']}: {len(videos)} videos")


def _split_corpus(config: dict, speakers: int, clips: int, fpc: float, source: str) -> Corpus:
    splits = config["splits"]
    by_utterance = splits.get("by", "auto") == "utterance" or (splits.get("by", "auto") == "auto" and speakers == 1)
    ratios = splits.get("utterance_ratios", [0.8, 0.1, 0.1]) if by_utterance else splits["ratios"]
    n = {p: round(clips * r) for p, r in zip(("train", "val", "test"), ratios)}
    n["train"] *= 2 if config["preprocess"]["mirror_train"] else 1
    return Corpus(speakers, clips, fpc, n, source)


def corpus(config: dict, dataset: str) -> Corpus:
    """The size of one of the config's datasets: the paper's (GRID, TCD-TIMIT; a speaker subset scales it),
    the embedded corpus's from its settings, a folder's from its videos."""
    cfg = config["datasets"].get(dataset) or {}
    if dataset in PAPER_CORPORA:
        c = PAPER_CORPORA[dataset]
        chosen = cfg.get("speakers", "all")
        if chosen == "all":
            return c
        f = len(chosen) / c.speakers
        return Corpus(len(chosen), round(c.clips * f), c.frames_per_clip,
                      {p: round(n * f) for p, n in c.parts.items()}, c.source + f", {len(chosen)} speakers")
    if dataset == "synthgrid":
        from .synth.corpus import SECONDS

        return _split_corpus(config, cfg["n_speakers"], cfg["n_speakers"] * cfg["utterances"],
                             SECONDS * config["preprocess"]["fps"], "embedded corpus settings")
    if cfg.get("kind") == "folder":
        return _folder_corpus(config, dataset)
    raise ValueError(f"unknown dataset {dataset!r}")


def trained_variants(config: dict, dataset: str) -> list[tuple[str, int]]:
    """(variant, seed) of every training job of a dataset, as the DAG's tables ask for them."""
    from .tables import SEED_INDEPENDENT, TABLE2_METHODS, TABLE3_METHODS

    methods = list(TABLE3_METHODS) + (list(TABLE2_METHODS) if dataset == config["run_datasets"][0] else [])
    variants = [m for m in dict.fromkeys(methods) if m not in SEED_INDEPENDENT]
    seeds, ablation = config["seeds"], config.get("ablation_seeds") or config["seeds"]
    return [(v, s) for s in seeds for v in variants if v not in ("l1", "l1_advimg") or s in ablation]


# --- the plan


@dataclass
class RulePlan:
    """One rule's jobs for one dataset: count, hours, the largest job's memory (host, GPU) and time, disk."""

    rule: str
    dataset: str
    jobs: int = 0
    cpu_s: float = 0.0
    gpu_s: float = 0.0  # H100 estimate (GPU_SUSTAINED); 0 for CPU rules
    mem_mb: float = 0.0
    gpu_mem_mb: float = 0.0
    job_s: float = 0.0  # the longest job, where it runs (GPU for the GPU rules when cluster.gpu)
    disk_bytes: float = 0.0
    on_gpu: bool = False

    def add(self, cpu_s: float, mem_mb: float, disk: float, gpu_s: float = 0.0, gpu_mem_mb: float = 0.0) -> None:
        self.jobs += 1
        self.cpu_s += cpu_s
        self.gpu_s += gpu_s
        self.mem_mb = max(self.mem_mb, mem_mb)
        self.gpu_mem_mb = max(self.gpu_mem_mb, gpu_mem_mb)
        self.job_s = max(self.job_s, gpu_s if self.on_gpu else cpu_s)
        self.disk_bytes += disk


GPU_RULES = ("train", "lipreader", "syncnet", "generate")


class Plan:
    """The plan of one config: :meth:`rules` (per rule and dataset) and :meth:`request` (a job's resources)."""

    def __init__(self, config: dict, costs: UnitCosts | None = None):
        self.config = config
        self.costs = costs or UnitCosts.read()
        self.key = self.costs.key_for(config)
        self.dag_key = next(k for k, n in self.costs.names.items() if n.startswith("small DAG"))
        self.on_gpu = bool((config.get("cluster") or {}).get("gpu", False))
        self._corpora: dict[str, Corpus] = {}
        self._rules: list[RulePlan] | None = None

    def corpus(self, dataset: str) -> Corpus:
        if dataset not in self._corpora:
            self._corpora[dataset] = corpus(self.config, dataset)
        return self._corpora[dataset]

    # unit costs
    def _pixels(self) -> float:
        h, w = self.config["preprocess"]["image_size"]
        return h * w / self.costs.data("dag.frame_pixels")

    def _data_rule(self, rule: str, units: float, pixel_scaled_mem: bool = True) -> tuple[float, float, float]:
        """(CPU s, peak MB, output bytes) of a data rule's job over ``units`` frames (or clips)."""
        c, px = self.costs.data, self._pixels()
        per_unit_mem = c(f"{rule}.mem_mb_per_unit") * (px if pixel_scaled_mem else 1)
        return (c(f"{rule}.cpu_s_per_unit") * units, c(f"{rule}.mem_mb_base") + per_unit_mem * units,
                c(f"{rule}.bytes_per_unit") * units * (px if pixel_scaled_mem else 1))

    def _flops(self, kind: str, units: float, key: str | None = None) -> float:
        m = self.costs.model
        key = key or self.key
        return m(f"{kind}.flops_base", key) + m(f"{kind}.flops_per_unit", key) * units

    def _rss(self, kind: str, units: float, key: str) -> float:
        m = self.costs.model
        return m(f"{kind}.rss_mb_base", key) + m(f"{kind}.rss_mb_per_unit", key) * units

    def step_flops(self, variant: str = "full") -> float:
        """FLOPs of one training step of ``variant`` at the config's batch and frames (the unit costs' line)."""
        t = self.config["training"]
        return t["batch_size"] * self._flops(f"train:{variant}", t["n_frames"])

    def epochs(self, dataset: str) -> int:
        """Training epochs planned: max_epochs, or for a patience-stopped training (no steps_per_epoch) at most
        the epochs the paper's week on a GTX 1080 Ti holds at this size."""
        t = self.config["training"]
        if t.get("steps_per_epoch"):
            return t["max_epochs"]
        week = PAPER_WEEK_S * GTX1080TI_SUSTAINED / (self.step_flops() * self.steps_per_epoch(dataset))
        return max(1, min(t["max_epochs"], round(week)))

    def steps_per_epoch(self, dataset: str) -> int:
        t = self.config["training"]
        return t.get("steps_per_epoch") or math.ceil(self.corpus(dataset).parts["train"] / t["batch_size"])

    def _model_job(self, kind: str, flops: float, data_rule: str, data_units: float, rss_units: float,
                   dag_rss_units: float, scale: float = 1.0) -> tuple[float, float, float, float, float]:
        """(CPU s, host MB, output bytes, GPU s, GPU MB) of a network job: the small DAG's data part (its memory
        line over ``data_units`` frames), plus the difference between this config's network process and the small
        DAG's (peak RSS lines at ``rss_units`` and ``dag_rss_units``)."""
        cpu_s = flops * self.costs.model(f"{kind}.cpu_s_per_flop", self.key)
        _, data_mb, _ = self._data_rule(data_rule, data_units * scale, pixel_scaled_mem=False)
        base = self.costs.model(f"{kind}.rss_mb_base", self.key)
        net_mb = (base if self.on_gpu else self._rss(kind, rss_units, self.key)) - self._rss(kind, dag_rss_units, self.dag_key)
        gpu_mb = self._rss(kind, rss_units, self.key) - base + 16 * self.costs.model(f"{kind}.params", self.key) / 2**20
        disk = self.costs.model(f"{kind}.params", self.key) * 4 * (3 if kind.startswith("train") else 1)
        return cpu_s, data_mb + max(0.0, net_mb), disk, flops / GPU_SUSTAINED["H100"], gpu_mb if self.on_gpu else 0.0

    def rules(self) -> list[RulePlan]:
        """Every rule with resources, per dataset, in DAG order."""
        if self._rules is not None:
            return self._rules
        cfg, out = self.config, []
        dag = self.costs.data  # the small DAG's sizes, as the benchmark recorded them
        for d in cfg["run_datasets"]:
            c = self.corpus(d)
            fpc = c.frames_per_clip
            px = self._pixels()
            per_speaker = c.clips / c.speakers
            raw = {"grid": "grid_speaker", "synthgrid": "synthgrid_speaker", "tcdtimit": "tcdtimit_speaker"}.get(d, "folder_speaker")
            r = RulePlan(raw, d)
            for _ in range(c.speakers):
                cpu, mem, _ = self._data_rule("folder_speaker", per_speaker, pixel_scaled_mem=False)
                r.add(cpu, mem, self.costs.data("folder_speaker.bytes_per_unit") * per_speaker)
            out.append(r)
            r = RulePlan("align_speaker", d)
            for _ in range(c.speakers):
                r.add(*self._data_rule("align_speaker", per_speaker * fpc))
            out.append(r)
            r = RulePlan("pack", d)
            for part in ("train", "val", "test"):
                r.add(*self._data_rule("pack", c.parts[part] * fpc))
            out.append(r)
            t = cfg["training"]
            train_frames = (c.parts["train"] + c.parts["val"]) * fpc * px  # at the small DAG's frame size
            r = RulePlan("train", d, on_gpu=self.on_gpu)
            steps = self.epochs(d) * self.steps_per_epoch(d)
            for variant, _seed in trained_variants(cfg, d):
                kind = f"train:{variant}"
                flops = steps * t["batch_size"] * self._flops(kind, t["n_frames"])
                r.add(*self._model_job(kind, flops, "train", train_frames, t["batch_size"] * t["n_frames"],
                                       dag("dag.train_units")))
            out.append(r)
            has_text = True
            if cfg["datasets"].get(d, {}).get("kind") == "folder":
                from .raw.folder import has_transcripts

                has_text = has_transcripts(cfg["datasets"][d]["root"], single_speaker=cfg["datasets"][d].get("speaker", "s1"))
            mouth = self._mouth_pixels("lipreader")
            lip = self._lip_cfg()
            if has_text:
                r = RulePlan("lipreader", d, on_gpu=self.on_gpu)
                flops = lip.epochs * c.parts["train"] * self._flops("lipreader", fpc)
                r.add(*self._model_job("lipreader", flops, "lipreader", train_frames / px,
                                       self._lip_cfg().batch_size * fpc, dag("dag.lipreader_units"), scale=mouth))
                out.append(r)
            sy = self._syncnet_cfg()
            r = RulePlan("syncnet", d, on_gpu=self.on_gpu)
            samples = sy.epochs * sy.steps_per_epoch * sy.batch_size
            r.add(*self._model_job("syncnet", samples * self._flops("syncnet", 1), "syncnet", train_frames / px,
                                   sy.batch_size, dag("dag.syncnet_units"), scale=self._mouth_pixels("syncnet")))
            out.append(r)
            # generation holds one batch of clips at a time (speechanim.generate --batch-size, 8) and writes each
            # clip as it is made: its data memory is a batch's, not the test set's (the small DAGs' test sets were
            # under a batch, so their memory line is a batch filling up)
            batch_frames = min(c.parts["test"], GENERATE_BATCH) * fpc
            runs = trained_variants(cfg, d)
            r = RulePlan("generate", d, on_gpu=self.on_gpu)
            for _ in runs:
                r.add(*self._model_job("generate", c.parts["test"] * self._flops("generate", fpc), "generate",
                                       batch_frames * px, fpc, dag("dag.generate_units")))
            out.append(r)
            ev = cfg["evaluation"]
            scored_clips = min(c.parts["test"], ev.get("max_clips") or c.parts["test"])
            scored = scored_clips * fpc / ev["frame_step"]
            r = RulePlan("reference_landmarks", d)
            r.add(*self._data_rule("reference_landmarks", scored_clips * fpc))
            out.append(r)
            r = RulePlan("evaluate_method", d)
            for _ in range(len(runs) + 3):  # every trained run, and the real videos and two controls once
                r.add(*self._data_rule("evaluate_method", scored))
            out.append(r)
        self._rules = out
        return out

    def _mouth_pixels(self, which: str) -> float:
        """The config's mouth crops' pixels over the small DAG's (the lipreader's and SyncNet's data in memory)."""
        h, w = (self._lip_cfg() if which == "lipreader" else self._syncnet_cfg()).mouth_size
        return h * w / self.costs.data(f"dag.{which}_mouth_pixels")

    def _lip_cfg(self):
        from .lipreader import _parse_config

        return _parse_config(json.dumps(self.config["lipreader"]))

    def _syncnet_cfg(self):
        from .syncnet import _parse_config

        return _parse_config(json.dumps(self.config["syncnet"]))

    def request(self, rule: str, dataset: str | None = None) -> dict:
        """The resources of a rule's jobs (the largest of its jobs on ``dataset``; None: every dataset):
        mem_mb, runtime (minutes) and disk_mb."""
        rows = [r for r in self.rules() if r.rule == rule and (dataset is None or r.dataset == dataset)]
        if not rows:
            raise KeyError(f"the plan has no rule {rule!r} for {dataset or 'any dataset'}")
        limit = (self.config.get("cluster") or {}).get("partition_limit_minutes", 2880)
        mem = max(r.mem_mb for r in rows)
        minutes = max(r.job_s for r in rows) / 60
        disk = max(r.disk_bytes / r.jobs for r in rows)
        return {"mem_mb": int(math.ceil((mem * MEM_MARGIN + MEM_FLOOR_MB) / 100) * 100),
                "runtime": int(min(limit, math.ceil(minutes * TIME_MARGIN + 10))),
                "disk_mb": int(math.ceil((disk / 2**20 * 1.2 + 100) / 100) * 100)}

    def table(self) -> list[dict]:
        """One row per rule (datasets summed), then the totals."""
        rows: dict[str, dict] = {}
        for r in self.rules():
            row = rows.setdefault(r.rule, {"Rule": r.rule, "jobs": 0, "cpu_h": 0.0, "gpu_h": 0.0, "mem": 0.0,
                                           "gpu_mem": 0.0, "disk": 0.0, "job_h": 0.0, "on_gpu": r.on_gpu})
            row["jobs"] += r.jobs
            row["cpu_h"] += r.cpu_s / 3600
            row["gpu_h"] += r.gpu_s / 3600 if r.on_gpu or r.rule in GPU_RULES else 0.0
            row["mem"] = max(row["mem"], r.mem_mb)
            row["gpu_mem"] = max(row["gpu_mem"], r.gpu_mem_mb)
            row["disk"] += r.disk_bytes
            row["job_h"] = max(row["job_h"], r.job_s / 3600)
        out = []
        for row in rows.values():
            req = self.request(row["Rule"])
            out.append({"Rule": row["Rule"], "Jobs": str(row["jobs"]),
                        "CPU-hours": _fmt(row["cpu_h"]) if not (row["on_gpu"] and row["Rule"] in GPU_RULES) else "",
                        "GPU-hours (H100 est.)": _fmt(row["gpu_h"]) if row["Rule"] in GPU_RULES else "",
                        "Longest job (h)": _fmt(row["job_h"]),
                        "Peak memory (GB)": _fmt(row["mem"] / 1024),
                        "GPU memory (GB)": _fmt(row["gpu_mem"] / 1024) if row["gpu_mem"] else "",
                        "Disk (GB)": _fmt(row["disk"] / 2**30),
                        "Request": f"{req['mem_mb']} MB, {req['runtime']} min"})
        cpu = sum(r.cpu_s for r in self.rules() if not (r.on_gpu and r.rule in GPU_RULES)) / 3600
        gpu = sum(r.gpu_s for r in self.rules() if r.rule in GPU_RULES) / 3600
        out.append({"Rule": "total", "Jobs": str(sum(r.jobs for r in self.rules())), "CPU-hours": _fmt(cpu),
                    "GPU-hours (H100 est.)": _fmt(gpu), "Longest job (h)": _fmt(max(r.job_s for r in self.rules()) / 3600),
                    "Peak memory (GB)": _fmt(max(r.mem_mb for r in self.rules()) / 1024),
                    "GPU memory (GB)": _fmt(max(r.gpu_mem_mb for r in self.rules()) / 1024) if self.on_gpu else "",
                    "Disk (GB)": _fmt(sum(r.disk_bytes for r in self.rules()) / 2**30), "Request": ""})
        return out

    def notes(self) -> list[str]:
        """What the table assumes, for the lines under it."""
        t = self.config["training"]
        lines = [f"unit costs: {self.costs.path} (measured {self.costs.measured} on {self.costs.cpu}; "
                 f"networks as {self.costs.names[self.key]!r})"]
        for d in self.config["run_datasets"]:
            c = self.corpus(d)
            lines.append(f"{d}: {c.clips} clips of {c.frames_per_clip:.1f} frames, {c.speakers} speakers, packed "
                         f"{c.parts['train']}/{c.parts['val']}/{c.parts['test']} ({c.source}); training "
                         f"{self.epochs(d)} epochs x {self.steps_per_epoch(d)} steps of {t['batch_size']} x {t['n_frames']} frames")
        h100, a100 = (GPU_SUSTAINED[g] / 1e12 for g in ("H100", "A100"))
        lines.append(f"GPU hours are ESTIMATED, not measured (no GPU here): FLOPs counted by torch.utils.flop_counter over "
                     f"an assumed sustained {h100:.0f} TFLOPS on an H100 ({a100:.0f} on an A100: x{h100 / a100:.1f} the hours)")
        if not t.get("steps_per_epoch"):
            lines.append(f"epochs: at most the paper's week on a GTX 1080 Ti (assumed {GTX1080TI_SUSTAINED / 1e12:.1f} "
                         f"TFLOPS sustained); max_epochs {t['max_epochs']} is a cap, patience stops earlier")
        lines.append(f"lipreader: all {self._lip_cfg().epochs} epochs (a cap: patience stops earlier); "
                     f"requests: memory x{MEM_MARGIN} + {MEM_FLOOR_MB} MB, runtime x{TIME_MARGIN} + 10 min capped at "
                     f"{(self.config.get('cluster') or {}).get('partition_limit_minutes', 2880)} min; "
                     f"GPU rules on {'a GPU' if self.on_gpu else 'the CPU'} (cluster.gpu)")
        limit = (self.config.get("cluster") or {}).get("partition_limit_minutes", 2880)
        for r in self.rules():
            if r.rule != "train" and r.job_s / 60 > limit:
                lines.append(f"WARNING: a {r.rule} job on {r.dataset} takes {r.job_s / 3600:,.0f} h, longer than the "
                             f"partition's {limit} min, and only training resumes in a new job")
        return lines


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def render(rows: list[dict]) -> str:
    """The table as aligned text columns."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join((r[c].ljust if c == "Rule" else r[c].rjust)(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="speechanim plan", description="Each rule's jobs, CPU and GPU hours, memory and "
                                 "disk for a config, from the unit costs measured in docs/unit-costs.csv.")
    ap.add_argument("--config", type=Path, default=None, help="a config merged over config.yaml (default: the embedded one)")
    ap.add_argument("--datasets", nargs="+", default=None, help="plan these datasets instead of run_datasets")
    ap.add_argument("--costs", type=Path, default=UNIT_COSTS, help="the unit costs (default %(default)s)")
    ap.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    args = ap.parse_args(argv)
    try:
        config = run_config(args.config)
    except (ConfigError, OSError, yaml.YAMLError) as e:
        print(f"speechanim plan: {e}", file=sys.stderr)
        return 2
    if args.datasets:
        config["run_datasets"] = args.datasets
    plan = Plan(config, UnitCosts.read(args.costs))
    rows = plan.table()
    print(render(rows))
    for line in plan.notes():
        print(f"  {line}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
