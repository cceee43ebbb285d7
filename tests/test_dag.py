"""The whole DAG, end to end, on the embedded corpus at the smallest sizes, as the evidence run makes it
(workflow/configs/evidence.yaml: several seeds, mean +- std tables, claims.md); then a config change
reruns only what depends on it."""
import csv
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"]["synthgrid"].update(n_speakers=3, utterances=2)
    config["training"].update(batch_size=2, n_frames=14, steps_per_epoch=2, max_epochs=1, val_clips=2)  # 14: D_sync's least
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


def evidence_config() -> dict:
    """tiny_config() with workflow/configs/evidence.yaml's seeds cut to two, its data and results in folders
    whose names hold a space and a quote (every rule must quote its paths)."""
    evidence = yaml.safe_load((REPO / "workflow" / "configs" / "evidence.yaml").read_text())
    assert len(evidence["seeds"]) == 3 and evidence["seeds"][0] == 0
    return dict(tiny_config(), seeds=evidence["seeds"][:2], data_dir="my data", results_dir="Bob's results")


def first_clip(path: Path):
    import h5py

    from speechanim.packing import clip_keys

    with h5py.File(path, "r") as h5:
        return h5[clip_keys(h5)[0]]["frames"][()]


def test_whole_dag_on_the_embedded_corpus_with_two_seeds_then_only_what_changed_reruns(tmp_path):
    tmp_path = tmp_path / "a work dir"
    tmp_path.mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(evidence_config()))
    res = snakemake(tmp_path, "all", "Bob's results/claims.md")
    assert res.returncode == 0, res.stderr[-6000:]
    assert (tmp_path / "my data" / "packed" / "synthgrid" / "test.h5").is_file()
    results = tmp_path / "Bob's results"
    for name in ("table1.csv", "table2.csv", "table3.csv", "table2.md", "table3.md", "synthgrid/samples.png",
                 "synthgrid/skipped.tsv", "synthgrid/split.tsv", "figures/synthgrid/fig4_l1_vs_full.png",
                 "figures/synthgrid/fig_sync.png", "synthgrid/syncnet.pt",
                 "synthgrid/models/full/losses.png", "synthgrid/models/full/history.csv", "claims.md",
                 "synthgrid/seed1/models/full/generator.pt", "synthgrid/seed1/metrics/static.json"):
        assert (results / name).is_file(), name
    # seed 0 at the default paths, seed 1 beside it; the real videos and the controls are scored once
    assert not (results / "synthgrid" / "seed1" / "metrics" / "ground_truth.json").exists()
    for variant in ("l1", "l1_advimg", "full", "static"):
        a, b = (first_clip(results / "synthgrid" / run / "generated" / f"{variant}.h5") for run in ("", "seed1"))
        assert a.shape == b.shape and (a != b).any(), variant  # another seed, another generator
    table1 = (results / "table1.csv").read_text().splitlines()
    assert table1[1].startswith("synthgrid,4,")  # 1 training speaker x 2 clips, mirrored
    table2 = list(csv.DictReader((results / "table2.csv").open()))
    assert [r["Method"] for r in table2] == ["Ground Truth Videos", "Still image", "Real video, shifted audio",
                                             "L1 loss", "L1 + Adv_img", "L1 + Adv_img + Adv_seq",
                                             "Beyond the paper:", "Proposed + D_sync (IJCV)"]
    assert {v for k, v in table2[6].items() if k != "Method"} == {""}  # the line: no values
    assert (table2[0]["PSNR"], table2[0]["SSIM"]) == ("N/A", "N/A")  # no PSNR/SSIM for the ground truth
    assert table2[2]["PSNR"] == "N/A" and table2[2]["WER"] == "N/A"  # shifted audio: only the sync metrics
    assert 5 < float(table2[1]["PSNR"]) < 60  # the still image: one value, finite PSNR over frames 2..T
    for row, variant in zip(table2[3:], ("l1", "l1_advimg", "full")):  # the models: "mean +- std" over the two seeds
        psnr = [json.loads((results / "synthgrid" / run / "metrics" / f"{variant}.json").read_text())["psnr"]
                for run in ("", "seed1")]
        mean, std = (float(x) for x in row["PSNR"].split(" +- "))
        assert 5 < mean < 60 and psnr[0] != psnr[1], (row["PSNR"], psnr)  # two generators, two PSNRs
        assert abs(mean - statistics.mean(psnr)) < 0.0051 and abs(std - statistics.stdev(psnr)) < 0.0051, (row["PSNR"], psnr)
        assert re.fullmatch(r"\d+\.\d% \+- \d+\.\d%", row["WER"]), row["WER"]
    assert float(table2[1]["LMD"]) > 0 and table2[1]["Mouth r"] == "0.00"  # the still: a real face, frozen mouth
    for row, name in zip(table2, ("ground_truth", "still", "shifted_audio", "l1", "l1_advimg", "full")):
        runs = ("",) if name in ("ground_truth", "still", "shifted_audio") else ("", "seed1")  # controls: scored once
        sync = [json.loads((results / "synthgrid" / run / "metrics" / f"{name}.json").read_text()) for run in runs]
        assert all(s["lse_d"] > 0 and s["lse_c"] > 0 and s["sync_videos"] > 0 for s in sync), (name, sync)  # every row
        for column, key in (("LSE-D", "lse_d"), ("LSE-C", "lse_c")):  # is scored by the SyncNet, as the table says
            cell = float(row[column].split(" +- ")[0])
            assert abs(cell - statistics.mean(s[key] for s in sync)) < 0.00051, (name, column, row[column])
    table3 = list(csv.DictReader((results / "table3.csv").open()))
    assert [(r["Dataset"], r["Method"]) for r in table3] == [
        ("synthgrid", m) for m in ("Proposed Model", "Baseline", "Ground Truth Videos", "Still image",
                                   "Real video, shifted audio", "Beyond the paper:", "Proposed + D_sync (IJCV)")]
    assert " +- " in table3[0]["PSNR"] and " +- " not in table3[2]["WER"]  # proposed model over seeds, real once
    assert list((results / "synthgrid" / "videos" / "full").rglob("*.mp4"))
    claims = [line for line in (results / "claims.md").read_text().splitlines() if line.startswith("- ")]
    assert len(claims) == 9 + 7 + 2 + 5, claims  # Table 2 and blinks; Table 3 and Fig. 8; the controls; D_sync
    for line in claims:
        assert re.match(r"- \*\*(holds|not shown|contradicted)\*\* — ", line), line
    assert any("Table 2: L1 has the best PSNR" in line for line in claims)
    assert "mean over 2 training seed(s)" in (results / "claims.md").read_text()

    # The HTML report: the tables, every figure, the samples and the training curves, rendered by a browser.
    report = results / "report.html"
    res = snakemake(tmp_path, "--report", str(report))
    assert res.returncode == 0 and report.is_file(), res.stderr[-3000:]
    dom = rendered(report)
    for name in ("table1.csv", "table2.csv", "table3.csv", "claims.md", "fig4_l1_vs_full.png", "fig_sync.png",
                 "fig7_blinks.png", "samples.png", "losses.png", "Tables", "Figures", "Training"):
        assert name in dom, name
    assert "is not GRID" in dom  # the workflow description

    # Nothing to do on a rerun; one training value changed reruns training and what follows only.
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout[-3000:]
    config = evidence_config()
    config["training"]["lambda_l1"] = 100
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout + res.stderr)
    assert counts.get("train") == 10, counts  # 5 variants (the paper's 4 and D_sync) x 2 seeds
    for unchanged in ("synthgrid_speaker", "align_speaker", "pack", "lipreader", "syncnet", "table1"):
        assert unchanged not in counts, counts
    assert rerun_after(tmp_path, lambda c: c["evaluation"].update(frame_step=5)).keys() == {
        "evaluate_method", "table2", "table3", "claims", "figures", "all"}  # scoring only: no generation
    # (figures reads the full model's per-clip scores: Fig. 7's clip is picked by its blink counts)
    counts = rerun_after(tmp_path, lambda c: c["preprocess"].update(mirror_train=False))
    assert counts["pack"] == 1 and "align_speaker" not in counts and counts["train"] == 10, counts  # the training pack
    assert rerun_after(tmp_path, lambda c: c["training"].update(num_workers=3)) == {}  # not a result
    reordered = evidence_config()
    for section in ("training", "preprocess", "evaluation", "model"):
        reordered[section] = dict(reversed(list(reordered[section].items())))
    assert rerun_after(tmp_path, lambda c: c.update(reordered)) == {}

    # Same config and seeds, same bytes: everything rebuilt from scratch gives the same tables and claims.
    # (the tables, the claims and every per-clip metric file; training histories hold wall-clock seconds)
    before = {p: p.read_bytes() for p in [*results.glob("table*.csv"), *results.rglob("metrics/*.csv"),
                                          results / "claims.md"]}
    res = snakemake(tmp_path, "--forceall", "all", "Bob's results/claims.md")
    assert res.returncode == 0, res.stderr[-3000:]
    changed = [str(p.relative_to(results)) for p, data in before.items() if p.read_bytes() != data]
    assert changed == [] and len(before) == 17, changed  # 3 tables, 13 per-clip metric files, the claims


def rendered(html: Path) -> str:
    """The DOM of a page after its scripts ran, from headless Chromium (Debian's chromium; .ci/run installs it)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed (apt-get install chromium)"
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                          "--dump-dom", html.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def rerun_after(workdir: Path, change) -> dict[str, int]:
    """The jobs a dry run plans after ``change`` is applied to the config the DAG was built with."""
    config = evidence_config()
    change(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    res = snakemake(workdir, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    return job_counts(res.stdout + res.stderr)


def test_whole_dag_on_a_folder_of_real_videos_of_one_speaker(tmp_path):
    """The real-speaker path (workflow/configs/grid_s1.yaml) at the smallest sizes: five of grid-s1's clips in
    a folder dataset, split by utterance, through every table, figure, the claims and the study set."""
    src = REPO.parent / "shared" / "data" / "grid-s1"
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("bbaf2n", "bbaf3s", "bbaf5a", "bbal6n", "bbal7s"):
        (videos / f"{name}.mp4").write_bytes((src / f"{name}.mp4").read_bytes())
    grid_s1 = yaml.safe_load((REPO / "workflow" / "configs" / "grid_s1.yaml").read_text())
    config = tiny_config()
    config.update(run_datasets=["grids1"], seeds=[0], data_dir="data", results_dir="results")
    config["datasets"]["grids1"] = dict(grid_s1["datasets"]["grids1"], root=str(videos))
    config["splits"].update(grid_s1["splits"], utterance_ratios=[0.4, 0.2, 0.4])
    config["training"]["precision"] = grid_s1["training"]["precision"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = snakemake(tmp_path, "all")
    assert res.returncode == 0, res.stderr[-6000:]
    results = tmp_path / "results"
    split = (results / "grids1" / "split.tsv").read_text().splitlines()
    assert split[0] == "speaker\tutterance\tsplit" and len(split) == 6
    table1 = list(csv.DictReader((results / "table1.csv").open()))
    assert [(r["Dataset"], r["Samples (Tr)"], r["Samples (V)"], r["Samples (T)"]) for r in table1] == [
        ("grids1", "4", "1", "2")]  # 2 training utterances, mirrored
    assert table1[0]["Split"].startswith("speaker-dependent")
    table2 = {r["Method"]: r for r in csv.DictReader((results / "table2.csv").open())}
    assert re.fullmatch(r"\d+\.\d%", table2["Ground Truth Videos"]["WER"])  # GRID names: the lipreader reads them
    assert float(table2["Still image"]["PSNR"]) > 5
    for name in ("claims.md", "figures/grids1/fig5_same_face.png", "figures/grids1/fig7_blinks.png",
                 "study/manifest.json", "grids1/skipped.tsv"):
        assert (results / name).is_file(), name
    manifest = (tmp_path / "data" / "raw" / "grids1" / "s1" / "manifest.tsv").read_text()
    assert "bbaf2n\tbbaf2n.mp4\t\t\tbin blue at f two now" in manifest
