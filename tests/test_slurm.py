"""The cluster profile on a real SLURM: a one-node slurmctld + slurmd on 127.0.0.1 (tests/slurm/start.sh)
runs the tiny DAG through snakemake-executor-plugin-slurm with a profile derived from
workflow/profiles/slurm; every job goes through sbatch, the tables equal a local run's, and a training
job cancelled with scancel mid-training is resubmitted and resumes from its checkpoint."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_dag import job_counts, snakemake as local_snakemake, tiny_config

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "tests" / "slurm"
GPU_RULES = ("train", "lipreader", "syncnet", "generate")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel") if not shutil.which(t)]
    if missing:
        pytest.fail(f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge "
                    "(.ci/run does)")
    state = tmp_path_factory.mktemp("slurm")
    res = subprocess.run([str(SLURM / "start.sh"), str(state)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    # state/bin/srun: srun with SLURM_CONF set again inside jobs (the jobstep plugin strips it)
    yield dict(os.environ, SLURM_CONF=str(state / "slurm.conf"), PATH=f"{state / 'bin'}:{os.environ.get('PATH', '')}")
    subprocess.run([str(SLURM / "stop.sh"), str(state)], timeout=60)


def test_profile(workdir: Path) -> Path:
    """workflow/profiles/slurm with local partitions: the same resource mapping, no GPU requests (the node
    has none), threads and memory that fit this machine, job states from squeue (no accounting database)."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    for rule in GPU_RULES:
        profile["set-resources"].setdefault(rule, {}).update(gpu=0, cpus_per_task=1, mem_mb=2000)
        profile.setdefault("set-threads", {})[rule] = 1
    for rule in ("align_speaker", "pack", "evaluate_method", "synthgrid_speaker"):
        profile["set-resources"].setdefault(rule, {}).update(mem_mb=2000)
    profile["default-resources"].update(mem_mb=1000, cpus_per_task=1)
    profile.update({"jobs": 2, "latency-wait": 5, "retries": 1, "slurm-status-command": "squeue",
                    "slurm-init-seconds-before-status-checks": 1, "slurm-no-account": True,
                    "slurm-keep-successful-logs": True, "slurm-logdir": str(workdir / "slurm_logs")})
    path = workdir / "profile" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profile))
    return path.parent


test_profile.__test__ = False  # a helper, not a test


def slurm_config() -> dict:
    config = tiny_config()
    # long enough epochs that a training job can be cancelled between two of them
    config["training"].update(steps_per_epoch=12, max_epochs=3)
    return config


def test_the_dag_through_slurm_equals_a_local_run_and_a_cancelled_training_resumes(slurm, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for d in (local, cluster):
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(slurm_config()))
    res = local_snakemake(local, "all")
    assert res.returncode == 0, res.stderr[-3000:]

    env = dict(slurm, PATH=f"{Path(sys.executable).parent}:{slurm['PATH']}", OMP_NUM_THREADS="1")
    profile = test_profile(cluster)
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile", str(profile),
                            "all"], cwd=cluster, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # cancel the first training job once it has written its first epoch's checkpoint
    cancelled = None
    deadline = time.time() + 900
    while cancelled is None and run.poll() is None and time.time() < deadline:
        for last in (cluster / "results").glob("synthgrid/models/*/work/last.pt"):
            variant = last.parent.parent.name
            jobs = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %j %k"], env=env, capture_output=True,
                                  text=True).stdout.split("\n")
            ids = [line.split()[0] for line in jobs if len(line.split()) == 3
                   and line.split()[2].startswith("rule_train") and line.split()[2].endswith(f"_{variant}")]
            if ids and not (last.parent.parent / "generator.pt").exists():
                subprocess.run(["scancel", ids[0]], env=env, check=True)
                cancelled = (variant, ids[0])
                break
        time.sleep(0.2)
    out, _ = run.communicate(timeout=1800)
    assert run.returncode == 0, out[-5000:]
    assert cancelled is not None, "no training job was caught between two epochs"

    # every job went through sbatch: one SLURM log per submitted job, and SLURM knows each job id
    logs = list((cluster / "slurm_logs").rglob("*.log"))
    counts = job_counts(out)
    planned = sum(n for rule, n in counts.items() if rule != "all")
    assert len(logs) >= planned + 1, (len(logs), counts)  # the cancelled training was submitted twice
    known = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], env=env, capture_output=True, text=True).stdout
    assert len(known.split()) >= planned + 1 and cancelled[1] in known.split(), known

    # the cancelled job was resubmitted and resumed from its checkpoint
    variant = cancelled[0]
    log = (cluster / "logs" / "train" / "synthgrid" / f"{variant}.log").read_text()
    assert "resumed at epoch" in log, log[-2000:]

    # the same tables as the local run
    for table in ("table1.csv", "table2.csv", "table3.csv"):
        assert (cluster / "results" / table).read_bytes() == (local / "results" / table).read_bytes(), table
