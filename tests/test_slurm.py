"""The cluster profile on a real SLURM: a one-node slurmctld + slurmd on 127.0.0.1 (tests/slurm/start.sh)
runs the tiny DAG through snakemake-executor-plugin-slurm with a profile derived from
workflow/profiles/slurm; every job goes through sbatch, the tables equal a local run's, and a training
job cancelled with scancel mid-training is resubmitted and resumes from its checkpoint. A training whose
runtime leaves time for one epoch a job stops before it, is resubmitted until it ends, and ends with the
weights of the local run's uninterrupted training."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from speechanim.checkpoint import load_checkpoint
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


def test_profile(workdir: Path, **train_resources) -> Path:
    """workflow/profiles/slurm with local partitions: the same resource mapping, no GPU requests (the node
    has none), threads and memory that fit this machine, job states from squeue (no accounting database);
    ``train_resources`` set the train rule's."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    for rule in GPU_RULES:
        profile["set-resources"].setdefault(rule, {}).update(gpu=0, cpus_per_task=1, mem_mb=2000)
        profile.setdefault("set-threads", {})[rule] = 1
    profile["set-resources"]["train"].update(num_workers=0, **train_resources)  # the profile's 8 loader workers: a GPU node's
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


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Path:
    """A folder for the tiny DAG of slurm_config() run locally (:func:`run_locally`), which the cluster's runs
    must equal; the module's tests share what it has made."""
    local = tmp_path_factory.mktemp("local")
    (local / "config.yaml").write_text(yaml.safe_dump(slurm_config()))
    return local


def run_locally(local: Path, *targets: str) -> None:
    """``snakemake --cores 2 TARGETS`` in ``local`` (what an earlier test made is not made again)."""
    res = local_snakemake(local, *targets)
    assert res.returncode == 0, res.stderr[-3000:]


def cluster_env(slurm: dict) -> dict:
    return dict(slurm, PATH=f"{Path(sys.executable).parent}:{slurm['PATH']}", OMP_NUM_THREADS="1")


def test_the_dag_through_slurm_equals_a_local_run_and_a_cancelled_training_resumes(slurm, local, tmp_path):
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "config.yaml").write_text(yaml.safe_dump(slurm_config()))

    run_locally(local, "all")
    env = cluster_env(slurm)
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


def test_a_training_longer_than_its_time_limit_is_resubmitted_until_it_ends_as_an_uninterrupted_one(slurm, local,
                                                                                                   tmp_path):
    """The train rule's runtime (3 minutes) less train_stop_margin_s (179 s) leaves a job 1 s: each trains one
    epoch, stops, exits with status 75 and is resubmitted (the profile's preemptible-retries); the third of
    slurm_config()'s 3 epochs ends the training. Locally (no SLURM job) the same config has no time limit."""
    variant = "full"
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "config.yaml").write_text(yaml.safe_dump(dict(slurm_config(), train_stop_margin_s=179)))
    target = f"results/synthgrid/models/{variant}/generator.pt"
    run_locally(local, target)
    shutil.copytree(local / "data", cluster / "data")  # the packed clips, with their times: only the training runs
    env = cluster_env(slurm)
    profile = test_profile(cluster, runtime=3)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile", str(profile),
                          target], cwd=cluster, env=env, capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert job_counts(out) == {"train": 1}, out[-3000:]

    # three sbatch jobs of the one training: two stopped (exit status 75; Snakemake shows their logs, then removes
    # them before the next job), the last resumed at epoch 2 and finished
    jobs = sorted((cluster / "slurm_logs").rglob("*.log"))
    assert len(jobs) == 3 and all("rule_train" in str(job) for job in jobs), jobs
    stops = sorted(set(re.findall(r"time limit: stopped after epoch (\d+):.*\(exit status 75\)", out)))
    assert stops == ["1", "2"] and "resumed at epoch 1 from" in out, out[-5000:]
    assert "time limit 3 min: an epoch starts only if it can end 179 s before it" in out
    log = (cluster / "logs" / "train" / "synthgrid" / f"{variant}.log").read_text()
    assert "resumed at epoch 2 from" in log and "time limit: stopped" not in log, log[-2000:]
    print(f"{len(jobs)} jobs, 2 resumptions, {time.time() - t0:.0f} s")
    assert "time limit" not in (local / "logs" / "train" / "synthgrid" / f"{variant}.log").read_text()

    # the final generator and every network's last weights: those of the local, uninterrupted run, bit for bit
    models = Path("results") / "synthgrid" / "models" / variant
    for name in ("generator.pt", "work/last.pt"):
        a, b = (load_checkpoint(d / models / name) for d in (local, cluster))
        assert a["epoch"] == b["epoch"] and a["best"] == b["best"], name
        for net in ("generator", "frame_discriminator", "sequence_discriminator"):
            assert a[net].keys() == b[net].keys()
            assert all(torch.equal(t, b[net][k]) for k, t in a[net].items()), f"{name}: {net}"
    drop = [",".join(row.split(",")[:-1]) for row in (local / models / "history.csv").read_text().splitlines()]
    assert drop == [",".join(row.split(",")[:-1]) for row in (cluster / models / "history.csv").read_text().splitlines()]
