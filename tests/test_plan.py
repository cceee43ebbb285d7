"""speechanim plan: its arithmetic on known unit costs, its job counts against Snakemake's, the resources the
rules request, and the tiny DAG's measured peak memory, scaled as the plan scales it, within those requests."""
from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from speechanim.plan import (
    GPU_SUSTAINED,
    GTX1080TI_SUSTAINED,
    MEM_FLOOR_MB,
    MEM_MARGIN,
    MODEL_KINDS,
    PAPER_CORPORA,
    PAPER_WEEK_S,
    Plan,
    UnitCosts,
    config_key,
    run_config,
    main,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def known_costs(config: dict) -> UnitCosts:
    """Unit costs with round values, keyed for ``config`` (and as the small DAG's)."""
    costs = UnitCosts(measured="2000-01-01", cpu="test CPU")
    key = config_key(config)
    costs.names = {key: "small DAG (known)"}
    for rule in ("folder_speaker", "align_speaker", "pack", "train", "lipreader", "syncnet", "generate",
                 "reference_landmarks", "evaluate_method"):
        costs.values.update({(f"{rule}.cpu_s_per_unit", ""): 0.01, (f"{rule}.mem_mb_base", ""): 300.0,
                             (f"{rule}.mem_mb_per_unit", ""): 0.5, (f"{rule}.bytes_per_unit", ""): 1000.0})
    h, w = config["preprocess"]["image_size"]
    costs.values.update({("dag.frame_pixels", ""): h * w / 4, ("dag.train_units", ""): 16.0,
                         ("dag.lipreader_units", ""): 75.0, ("dag.syncnet_units", ""): 4.0, ("dag.generate_units", ""): 75.0,
                         ("dag.lipreader_mouth_pixels", ""): 100.0, ("dag.syncnet_mouth_pixels", ""): 100.0})
    for kind in MODEL_KINDS:
        costs.values.update({(f"{kind}.flops_base", key): 1e9, (f"{kind}.flops_per_unit", key): 1e11,
                             (f"{kind}.cpu_s_per_flop", key): 1e-10, (f"{kind}.rss_mb_base", key): 1000.0,
                             (f"{kind}.rss_mb_per_unit", key): 2.0, (f"{kind}.params", key): 1e6})
    return costs


def rule_of(plan: Plan, rule: str):
    [row] = [r for r in plan.rules() if r.rule == rule]
    return row


def test_plan_arithmetic_on_known_unit_costs():
    config = run_config(REPO / "workflow" / "configs" / "paper.yaml")
    config["cluster"]["partition_limit_minutes"] = 600
    plan = Plan(config, known_costs(config))
    grid = PAPER_CORPORA["grid"]
    assert (grid.clips, round(grid.frames_per_clip, 2)) == (31639 // 2 + 6999 + 9976, 74.98)  # Table 1
    per_speaker = grid.clips / 33 * grid.frames_per_clip
    align = rule_of(plan, "align_speaker")
    assert align.jobs == 33 and align.cpu_s == pytest.approx(0.01 * per_speaker * 33)
    # memory per frame scales with the frame's pixels: 4x the small DAG's here
    assert align.mem_mb == pytest.approx(300 + 0.5 * 4 * per_speaker)
    assert align.disk_bytes == pytest.approx(1000 * 4 * per_speaker * 33)
    pack = rule_of(plan, "pack")
    assert (pack.jobs, pack.mem_mb) == (3, pytest.approx(300 + 2 * 31639 * grid.frames_per_clip))
    train = rule_of(plan, "train")
    step = 8 * (1e9 + 1e11 * 75)  # batch x (base + per frame x frames)
    steps_per_epoch = math.ceil(31639 / 8)
    epochs = round(PAPER_WEEK_S * GTX1080TI_SUSTAINED / (step * steps_per_epoch))  # the paper's week
    assert plan.epochs("grid") == epochs and train.jobs == 5  # l1, l1_advimg, full, static, full_sync; one seed
    assert train.gpu_s == pytest.approx(5 * epochs * steps_per_epoch * step / GPU_SUSTAINED["H100"])
    assert train.cpu_s == pytest.approx(5 * epochs * steps_per_epoch * step * 1e-10)
    assert train.gpu_mem_mb == pytest.approx(2.0 * 8 * 75 + 16 * 1e6 / 2**20)  # activations + weights, grads, Adam
    req = plan.request("train", "grid")
    assert req["mem_mb"] == math.ceil((train.mem_mb * MEM_MARGIN + MEM_FLOOR_MB) / 100) * 100
    assert req["runtime"] == 600  # longer than the partition's limit: capped (the training resumes)
    assert plan.request("pack", "grid")["runtime"] == min(600, math.ceil(pack.job_s / 60 * 1.5 + 10))
    # a training with steps_per_epoch set runs max_epochs of them
    config["training"].update(steps_per_epoch=100, max_epochs=3)
    assert Plan(config, known_costs(config)).epochs("grid") == 3


def test_plan_tcdtimit_at_paper_size_and_a_speaker_subset():
    config = run_config(REPO / "workflow" / "configs" / "paper.yaml")
    config["run_datasets"] = ["tcdtimit"]
    plan = Plan(config, known_costs(config))
    tcd = PAPER_CORPORA["tcdtimit"]
    assert round(tcd.frames_per_clip) == 100 and rule_of(plan, "align_speaker").jobs == 59
    assert rule_of(plan, "train").jobs == 5  # the first dataset: Table 2's ablation too
    config = run_config(REPO / "workflow" / "configs" / "paper.yaml")
    config["datasets"]["grid"]["speakers"] = ["s1", "s2", "s3"]
    plan = Plan(config, known_costs(config))
    assert plan.corpus("grid").parts["train"] == round(31639 * 3 / 33)


def dry_run(tmp_path: Path, config: dict) -> str:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "8"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.mark.parametrize("name", ["config.yaml", "workflow/configs/paper.yaml"])
def test_plan_jobs_and_requests_are_the_dags(name, tmp_path):
    """The plan counts the jobs Snakemake plans, and every planned rule's jobs request what the plan gives."""
    config = run_config(None if name == "config.yaml" else REPO / name)
    out = dry_run(tmp_path, config)
    stats = out.split("Job stats:", 1)[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    plan = Plan(config)
    for row in plan.table()[:-1]:
        assert counts[row["Rule"]] == int(row["Jobs"]), row["Rule"]
    for rule in ("align_speaker", "pack", "train", "generate", "evaluate_method"):
        req = plan.request(rule, config["run_datasets"][0])
        jobs = re.findall(rf"rule {rule}:\n(?:    .*\n)*?    resources: (.*)", out)
        assert jobs, rule
        for resources in jobs:
            got = dict(kv.split("=", 1) for kv in resources.split(", "))
            assert (int(got["mem_mb"]), int(got["runtime"]), int(got["disk_mb"])) == (
                req["mem_mb"], req["runtime"], req["disk_mb"]), (rule, got, req)


def test_plan_command_prints_totals_and_says_gpu_hours_are_estimated(capsys, tmp_path):
    assert main(["--config", str(REPO / "workflow" / "configs" / "paper.yaml"), "--csv", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATED, not measured" in out and "grid: 32794 clips" in out
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert rows[-1]["Rule"] == "total" and float(rows[-1]["GPU-hours (H100 est.)"].replace(",", "")) > 0


def test_plan_refuses_a_config_the_snakefile_would_refuse(capsys, tmp_path):
    """A misspelt key or a bad value in the overlay is named (file and key), as the Snakefile's validation names
    it, instead of a plan for the defaults the overlay meant to change."""
    bad = tmp_path / "typo.yaml"
    bad.write_text("training:\n  bacth_size: 64\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "training.bacth_size: unknown key" in err
    bad.write_text("training:\n  batch_size: -8\n")
    assert main(["--config", str(bad)]) == 2
    assert "training.batch_size" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


# --- the tiny DAG's measured memory against the requests


@pytest.fixture(scope="module")
def tiny_dag(tmp_path_factory) -> tuple[dict, dict]:
    """The tiny DAG (tests/test_dag.py's settings) on 5 real clips, up to the metrics: (its config,
    rule -> peak RSS MB over its jobs, from Snakemake's benchmark files)."""
    from unit_costs import benchmark_rows, run_small_dag, small_dag_config

    workdir = tmp_path_factory.mktemp("tiny dag")
    config = small_dag_config(workdir, 5, image_size=(64, 48), ratios=(0.4, 0.2, 0.4))
    run_small_dag(workdir, config)
    return config, {rule: r["max_rss_mb"] for rule, r in benchmark_rows(workdir).items()}


TARGETS = {"paper GRID": ("workflow/configs/paper.yaml", None), "paper TCD-TIMIT": ("workflow/configs/paper.yaml", "tcdtimit"),
           "embedded": (None, None), "grid_s1": ("workflow/configs/grid_s1.yaml", None)}


def peak(plan: Plan, rule: str) -> float:
    return max(r.mem_mb for r in plan.rules() if r.rule == rule)


@pytest.mark.parametrize("target", list(TARGETS))
def test_measured_peak_memory_scaled_by_the_plan_fits_the_request(tiny_dag, target):
    config, measured = tiny_dag
    tiny = Plan(config)
    assert config_key(config) in tiny.costs.names  # its networks were measured by benchmarks/unit_costs.py
    path, dataset = TARGETS[target]
    big_config = run_config(REPO / path if path else None)
    if dataset:
        big_config["run_datasets"] = [dataset]
    big = Plan(big_config)
    rules = {r.rule for r in big.rules()} & set(measured)
    assert {"align_speaker", "pack", "train", "lipreader", "syncnet", "generate", "evaluate_method"} <= rules | {"folder_speaker"}
    for rule in sorted(rules):
        assert measured[rule] <= tiny.request(rule)["mem_mb"], (rule, measured[rule], tiny.request(rule))
        scaled = measured[rule] * peak(big, rule) / peak(tiny, rule)
        assert scaled <= big.request(rule)["mem_mb"], (target, rule, measured[rule], peak(tiny, rule), peak(big, rule))
