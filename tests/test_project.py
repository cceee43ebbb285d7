"""Project-level checks: pins agree everywhere, the config schema bites, the DAG and profiles parse."""
import copy
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from speechanim.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def _pins(requirements):
    pins = {}
    for req in requirements:
        m = PIN.match(req.strip())
        assert m, f"not an exact pin: {req!r}"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_pyproject_dependencies_are_pinned_and_conda_envs_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins.update(_pins(extra))
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0"
    assert pins["mediapipe"] == "0.10.21" and pins["numpy"] == "1.26.4"
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for name, version in _pins(pip).items():
            assert pins.get(name) == version, f"{env.name}: {name}=={version} but pyproject pins {pins.get(name)}"
        assert "python=3.11" in deps


def test_installed_versions_match_pins():
    from importlib.metadata import version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, pinned in _pins(project["dependencies"]).items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}"


def test_default_config_is_valid_and_schema_names_bad_keys():
    config = load_config(REPO / "config.yaml")
    bad = copy.deepcopy(config)
    bad["datasets"]["grid"]["sepakers"] = ["s1"]
    bad["download"]["retries"] = 0
    bad["run_datasets"] = ["grid", "voxceleb"]
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    msg = str(err.value)
    assert "datasets.grid.sepakers: unknown key" in msg
    assert "download.retries: 0 is less than the minimum of 1" in msg
    assert "run_datasets.1: 'voxceleb' is not configured under datasets" in msg


def _snakemake(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_dag_refuses_a_bad_config(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["download"]["retrys"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    res = _snakemake("-n", "--configfile", str(path))
    assert res.returncode != 0
    assert "download.retrys: unknown key" in res.stdout + res.stderr


def test_grid_dag_has_one_job_per_speaker(tmp_path):
    res = _snakemake("-n", "--config", "run_datasets=[grid]", f"data_dir={tmp_path}/data", f"results_dir={tmp_path}/results", "--quiet", "rules")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert re.search(r"grid_speaker\s+33\b", out), out
    assert re.search(r"grid_shared_archive\s+1\b", out), out  # alignments.zip; audio comes from the videos


def test_grid_archive_audio_source_fetches_audio_25k(tmp_path):
    res = _snakemake("-n", "--config", "run_datasets=[grid]", f"data_dir={tmp_path}/data", f"results_dir={tmp_path}/results",
                     "datasets={'grid': {'base_url': 'https://example.org/f', 'speakers': ['s1', 's2', 's3'], 'audio_source': 'archive'}}",
                     "--quiet", "rules")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert re.search(r"grid_speaker\s+3\b", out), out
    assert re.search(r"grid_shared_archive\s+2\b", out), out


def test_default_dag_synthesises_the_embedded_corpus(tmp_path):
    res = _snakemake("-n", "--config", f"data_dir={tmp_path}/data", f"results_dir={tmp_path}/results", "--quiet", "rules")
    assert res.returncode == 0, res.stderr
    n = yaml.safe_load((REPO / "config.yaml").read_text())["datasets"]["synthgrid"]["n_speakers"]
    assert re.search(rf"synthgrid_speaker\s+{n}\b", res.stdout + res.stderr)
    assert re.search(rf"align_speaker\s+{n}\b", res.stdout + res.stderr)


def test_pretrained_adds_the_authors_model_to_table3(tmp_path):
    """config `pretrained: {dataset: file.dat}`: converted, generated and scored like a method, a row of Table 3."""
    dat = tmp_path / "my models" / "grid.dat"
    dat.parent.mkdir()
    dat.write_bytes(b"stand-in: a dry run only checks the file exists")
    res = _snakemake("-n", "-p", "--config", f"data_dir={tmp_path}/data", f"results_dir={tmp_path}/results",
                     f"pretrained={{synthgrid: '{dat}'}}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"python -m speechanim.sda '.*my models/grid.dat' -o .*/results/synthgrid/models/pretrained/generator.pt", out)
    assert "--out " + str(tmp_path / "results/synthgrid/generated/pretrained.h5") in out
    assert str(tmp_path / "results/synthgrid/metrics/pretrained.json") in out
    assert re.search(r"speechanim.tables table3 .* --pretrained synthgrid", out)
    bad = _snakemake("-n", "--config", f"data_dir={tmp_path}/data", "pretrained={lrw: x.dat}")
    assert bad.returncode != 0 and "config: pretrained.lrw: unknown key" in bad.stdout + bad.stderr


def test_slurm_profile_parses(tmp_path):
    res = _snakemake("--profile", "workflow/profiles/slurm", "-n", "--config", "run_datasets=[grid]",
                     f"data_dir={tmp_path}/data", f"results_dir={tmp_path}/results")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "grid_speaker" in res.stdout


def test_paper_config_restores_the_papers_values():
    """workflow/configs/paper.yaml, merged over config.yaml, gives the paper's model and schedule."""
    from dataclasses import asdict

    from speechanim.models import ModelConfig
    from speechanim.train import TrainConfig

    config = load_config(REPO / "config.yaml")
    paper = yaml.safe_load((REPO / "workflow" / "configs" / "paper.yaml").read_text())
    for section in ("preprocess", "model", "training", "lipreader", "evaluation"):
        config[section] = {**config[section], **paper[section]}
    validate_config(config)
    assert config["preprocess"]["image_size"] == [128, 96]
    model = ModelConfig(**config["model"], image_size=config["preprocess"]["image_size"])
    assert asdict(model) == asdict(ModelConfig())  # the defaults are the paper's GRID model
    training = TrainConfig(**config["training"])
    assert (training.lambda_l1, training.lr_generator, training.lr_frame_disc, training.lr_seq_disc) == (400, 2e-4, 1e-3, 5e-5)
    assert (training.lr_decay_start, training.lr_decay, training.patience) == (20, 0.1, 10)
    assert training.n_frames == 75 and training.steps_per_epoch is None
    # the embedded default departs from the paper only in sizes, epochs and the generator's rate
    embedded = TrainConfig(**load_config(REPO / "config.yaml")["training"])
    assert (embedded.lambda_l1, embedded.lr_frame_disc, embedded.lr_seq_disc, embedded.patience) == (400, 1e-3, 5e-5, 10)
    assert config["evaluation"]["frame_step"] == 1 and config["evaluation"]["max_clips"] is None
    from speechanim.lipreader import LipReaderConfig

    lipnet = LipReaderConfig.from_overrides(config["lipreader"])
    assert (lipnet.channels, lipnet.gru_hidden, lipnet.lr, lipnet.lr_schedule) == ((32, 64, 96), 256, 1e-4, "constant")


def test_curves_config_carries_the_evidence_runs_training_on(tmp_path):
    """workflow/configs/curves.yaml, layered over evidence.yaml (docs/research-notes.md, "Learning curves"), trains l1, full and
    static with seed 0 under its own results folder with the evidence run's settings but more epochs, no early
    stop and the decay held back past the evidence run's last epoch: so its first epochs are the evidence run's."""
    import json

    configs = REPO / "workflow" / "configs"
    curves = yaml.safe_load((configs / "curves.yaml").read_text())
    evidence = yaml.safe_load((configs / "evidence.yaml").read_text())
    assert set(curves["training"]) == {"max_epochs", "patience", "lr_decay_start"} and curves["seeds"] == [0]
    assert curves["training"]["lr_decay_start"] >= evidence["training"]["max_epochs"]
    assert curves["training"]["patience"] >= curves["training"]["max_epochs"] > evidence["training"]["max_epochs"]
    targets = [f"{tmp_path}/results/synthgrid/models/{v}/generator.pt" for v in ("l1", "full", "static")]
    res = _snakemake("-n", "-p", "--configfile", "workflow/configs/evidence.yaml", "workflow/configs/curves.yaml",
                     "--config", f"data_dir={tmp_path}/data", f"results_dir={tmp_path}/results", "--", *targets)
    assert res.returncode == 0, res.stdout + res.stderr
    commands = [line for line in res.stdout.splitlines() if "speechanim.train " in line]
    assert len(commands) == 3, res.stdout
    default = {k: v for k, v in load_config(REPO / "config.yaml")["training"].items() if k != "num_workers"}
    for command in commands:
        training = json.loads(re.search(r"--training '([^']*)'", command).group(1))
        assert training == {**default, **evidence["training"], **curves["training"], "seed": 0}
        assert training["keep_epochs"] is True and training["lr_seq_disc"] == 5e-5  # the paper's, from config.yaml


def test_evidence_config_trains_scores_and_claims_with_three_seeds(tmp_path):
    """The evidence command (docs/evidence-runs.md): 5 variants (the paper's 4 and D_sync) x 3 seeds trained, generated and scored; the real videos
    and the controls once; a training seed in `training` is refused (the seeds come from `seeds`)."""
    res = _snakemake("-n", "--configfile", "workflow/configs/evidence.yaml", "--config", f"data_dir={tmp_path}/data",
                     f"results_dir={tmp_path}/results", "--quiet", "rules", "--", f"{tmp_path}/results/claims.md")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    for rule, n in (("train", 15), ("generate", 15), ("evaluate_method", 15 + 3), ("claims", 1), ("lipreader", 1)):
        assert re.search(rf"^{rule}\s+{n}$", out, re.M), (rule, out)
    config = load_config(REPO / "config.yaml")
    assert config["seeds"] == [0]
    config["training"]["seed"] = 3
    with pytest.raises(ConfigError, match="training"):
        validate_config(config)


def test_grid_s1_config_runs_the_whole_method_on_one_real_speaker(tmp_path):
    """workflow/configs/grid_s1.yaml: a folder dataset (GRID's speaker 1 in ../shared), split by utterance,
    at the paper's 128 x 96, every variant with 3 seeds, the lipreader and the SyncNet, tables and claims."""
    cfg = yaml.safe_load((REPO / "workflow" / "configs" / "grid_s1.yaml").read_text())
    assert cfg["datasets"]["grids1"] == {"kind": "folder", "root": "../shared/data/grid-s1", "speaker": "s1"}
    assert cfg["preprocess"]["image_size"] == [128, 96] and cfg["seeds"] == [0, 1, 2]
    res = _snakemake("-n", "-p", "--configfile", "workflow/configs/grid_s1.yaml", "--config", f"data_dir={tmp_path}/data",
                     f"results_dir={tmp_path}/results")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for rule, n in (("folder_speaker", 1), ("align_speaker", 1), ("split", 1), ("pack", 3), ("train", 3 * 5),
                    ("generate", 3 * 5), ("evaluate_method", 3 * 5 + 3), ("lipreader", 1), ("syncnet", 1), ("table1", 1),
                    ("table2", 1), ("table3", 1), ("claims", 1), ("figures", 1), ("study", 1)):
        assert re.search(rf"^{rule}\s+{n}$", out, re.M), (rule, out[-4000:])
    assert re.search(r"speechanim.raw.folder speaker s1 --root \S*grid-s1 --single-speaker s1", out)
    assert re.search(r"speechanim.preprocess split --dataset grids1 --by-utterance \S+/raw/grids1/s1 --ratios 0.8 0.1 0.1", out)
    assert "--size 128 96" in out and '"precision": "bf16"' in out
    # every variant with every seed (ablation_seeds: null), so Table 2 and the claims read no folders apart
    assert re.search(r"speechanim.tables table2 --metrics \S+ +--out", out) and "--ablation-metrics" not in out
    assert "results/grids1/seed1/models/full/generator.pt" in out and "grids1/seed2/models/l1/generator.pt" in out
    assert "grids1/seed2/models/full_sync/generator.pt" in out


def test_a_folder_without_transcripts_runs_everything_but_the_lipreader(tmp_path):
    """A folder of videos whose names are no GRID names and that has no transcripts.tsv: no lipreader is
    trained and the evaluations run without one (WER N/A); with several speakers the paper's split holds."""
    src = REPO.parent / "shared" / "data" / "grid-s1"
    videos = tmp_path / "my videos"
    for speaker, names in (("anna", ["bbaf2n", "bbaf3s"]), ("ben", ["bbaf5a", "bbal6n"]), ("cleo", ["bbal7s", "bbal8p"])):
        (videos / speaker).mkdir(parents=True)
        for i, name in enumerate(names):
            (videos / speaker / f"take{i}.mp4").write_bytes((src / f"{name}.mp4").read_bytes())
    cfg = tmp_path / "folder.yaml"
    cfg.write_text(yaml.safe_dump({"run_datasets": ["mine"], "datasets": {"mine": {"kind": "folder", "root": str(videos)}},
                                   "splits": {"ratios": [0.34, 0.33, 0.33], "seed": 0}}))
    res = _snakemake("-n", "-p", "--configfile", str(cfg), "--config", f"data_dir={tmp_path}/data",
                     f"results_dir={tmp_path}/results")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"^folder_speaker\s+3$", out, re.M) and re.search(r"^evaluate_method\s+8$", out, re.M), out[-3000:]
    assert not re.search(r"^lipreader\s", out, re.M) and "--lipreader" not in out
    assert re.search(r"speechanim.preprocess split --dataset mine --speakers anna ben cleo", out)  # by speaker (paper)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"run_datasets": ["mine"], "datasets": {"mine": {"kind": "folder", "root": str(tmp_path / "none")}}}))
    res = _snakemake("-n", "--configfile", str(bad), "--config", f"data_dir={tmp_path}/data")
    assert res.returncode != 0 and f"{tmp_path / 'none'}" in res.stdout + res.stderr
