"""The whole DAG, end to end, on the embedded corpus at the smallest sizes; then a config change reruns
only what depends on it."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"]["synthgrid"].update(n_speakers=3, utterances=2)
    config["training"].update(batch_size=2, n_frames=8, steps_per_epoch=2, max_epochs=1, val_clips=2)
    config["lipreader"] = {"epochs": 1, "batch_size": 4, "channels": [4, 8, 8], "gru_hidden": 16}
    config["syncnet"] = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "video_channels": [4, 4, 4],
                         "audio_channels": [4, 4, 4], "hidden": 8, "embedding": 8}
    config["evaluation"].update(videos=1, frame_step=25, max_clips=2)
    return config


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # rules run `python -m speechanim...`: put this interpreter's environment first on PATH
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args],
                          cwd=workdir, capture_output=True, text=True, timeout=1500, env=env)


def job_counts(output: str) -> dict[str, int]:
    block = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m.group(1) != "total"}


def test_whole_dag_on_the_embedded_corpus_then_only_what_changed_reruns(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    res = snakemake(tmp_path)
    assert res.returncode == 0, res.stderr[-6000:]
    results = tmp_path / "results"
    for name in ("table1.csv", "table2.csv", "table3.csv", "table2.md", "table3.md", "synthgrid/samples.png",
                 "synthgrid/skipped.tsv", "synthgrid/split.tsv", "figures/synthgrid/fig4_l1_vs_full.png",
                 "figures/synthgrid/fig_sync.png", "synthgrid/syncnet.pt",
                 "synthgrid/models/full/losses.png", "synthgrid/models/full/history.csv"):
        assert (results / name).is_file(), name
    table1 = (results / "table1.csv").read_text().splitlines()
    assert table1[1].startswith("synthgrid,4,")  # 1 training speaker x 2 clips, mirrored
    table2 = list(csv.DictReader((results / "table2.csv").open()))
    assert [r["Method"] for r in table2] == ["Ground Truth Videos", "Still image", "Real video, shifted audio",
                                             "L1 loss", "L1 + Adv_img", "L1 + Adv_img + Adv_seq"]
    assert (table2[0]["PSNR"], table2[0]["SSIM"]) == ("N/A", "N/A")  # no PSNR/SSIM for the ground truth
    assert table2[2]["PSNR"] == "N/A" and table2[2]["WER"] == "N/A"  # shifted audio: only the sync metrics
    for row in table2[1:2] + table2[3:]:  # the still image and the models: finite PSNR over frames 2..T
        assert 5 < float(row["PSNR"]) < 60
    assert float(table2[1]["LMD"]) > 0 and table2[1]["Mouth r"] == "0.00"  # the still: a real face, frozen mouth
    for row in table2:  # every row is scored by the SyncNet
        assert float(row["LSE-C"]) >= 0 and float(row["LSE-D"]) > 0
    table3 = list(csv.DictReader((results / "table3.csv").open()))
    assert [(r["Dataset"], r["Method"]) for r in table3] == [
        ("synthgrid", m) for m in ("Proposed Model", "Baseline", "Ground Truth Videos", "Still image",
                                   "Real video, shifted audio")]
    assert list((results / "synthgrid" / "videos" / "full").rglob("*.mp4"))

    # Nothing to do on a rerun; one training value changed reruns training and what follows only.
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]
    config = tiny_config()
    config["training"]["lambda_l1"] = 100
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout + res.stderr)
    assert counts.get("train") == 4, counts
    for unchanged in ("synthgrid_speaker", "align_speaker", "pack", "lipreader", "syncnet", "table1"):
        assert unchanged not in counts, counts
