"""Hostile and careless inputs (one case per finding of the hostile-inputs issue): a checkpoint that
carries code, config errors that used to fail late, nested --config values, manifests that lie, raw
tracebacks, and silent surprises. Paths with spaces are run by tests/test_dag.py's whole DAG."""
from __future__ import annotations

import copy
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import skimage.io
import torch
import yaml

from speechanim.animate import Animator, animate_file
from speechanim.checkpoint import CheckpointError, load_checkpoint, load_generator, save_checkpoint
from speechanim.cli import main as cli
from speechanim.config import ConfigError, validate_config
from speechanim.media import MediaError, read_audio, read_video, write_video, write_wav
from speechanim.packing import clip_keys
from speechanim.preprocess import AlignJob, align_speaker, read_skip_list
from speechanim.align import AlignConfig
from speechanim.raw.layout import MANIFEST
from tiny_generator import tiny_generator_checkpoint

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 48)
RATE = 8000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_generator_checkpoint(tmp_path_factory.mktemp("ckpt") / "generator.pt", SIZE, RATE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, grid_mini):
    d = tmp_path_factory.mktemp("inputs")
    frames, _ = read_video(grid_mini / "bbaf2n.mpg")
    skimage.io.imsave(d / "face.png", frames[0], check_contrast=False)
    write_wav(d / "speech.wav", read_audio(grid_mini / "bbaf2n.mpg", 16000)[:16000], 16000)
    return {"image": d / "face.png", "wav": d / "speech.wav", "dir": d}


# ------------------------------------------------------------------ 1. a checkpoint must not run code


class _Payload:
    """Unpickling this calls open(marker, "w"): code that runs on load, as a hostile file's would."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil(ckpt, tmp_path):
    marker = tmp_path / "marker"
    payload = load_checkpoint(ckpt)
    payload["note"] = _Payload(marker)
    path = tmp_path / "shared model.pt"
    torch.save(payload, path)
    return path, marker


def test_a_checkpoint_carrying_code_is_refused_by_the_api_and_never_runs(evil):
    path, marker = evil
    for load in (load_checkpoint, load_generator, Animator):
        with pytest.raises(CheckpointError, match=r"shared model\.pt: refused: .*could run code.*--trust-checkpoint"):
            load(path)
    assert not marker.exists()
    load_checkpoint(path, trust=True)  # the payload is real: full unpickling, asked for explicitly, runs it
    assert marker.exists()


def test_a_checkpoint_carrying_code_is_refused_by_the_cli_and_never_runs(evil, inputs, tmp_path):
    path, marker = evil
    out = tmp_path / "out.mp4"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "speechanim.cli", "animate", "--image", str(inputs["image"]),
                          "--audio", str(inputs["wav"]), "--checkpoint", str(path), "-o", str(out), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1 and not out.exists() and not marker.exists()
    assert res.stderr.strip().splitlines()[-1].startswith(f"speechanim animate: error: {path}: refused:")
    assert "Traceback" not in res.stderr


def test_own_checkpoints_load_without_trust_and_trust_is_explicit(ckpt, tmp_path):
    """What training writes (RNG states with numpy arrays included) loads safely; only --trust-checkpoint unpickles more."""
    payload = load_checkpoint(ckpt)
    payload["rng"] = [{"numpy": np.random.get_state(), "torch": torch.get_rng_state(), "python": (3, (1, 2), None)}]
    save_checkpoint(tmp_path / "last.pt", payload)
    assert load_checkpoint(tmp_path / "last.pt")["rng"][0]["numpy"][0] == "MT19937"
    payload["extra"] = Path("x")  # a class outside the allow-list, harmless but not a weight
    torch.save(payload, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "foreign.pt")
    assert load_checkpoint(tmp_path / "foreign.pt", trust=True)["extra"] == Path("x")


# ------------------------------------------------------------------ 2. config errors caught before any job


@pytest.fixture(scope="module")
def base_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize("section, change, key", [
    ("training", {"lr_genrator": 1e-3}, "training.lr_genrator: unknown key"),
    ("model", {"widht": 0.5}, "model.widht: unknown key"),
    ("lipreader", {"epoch": 3}, "lipreader.epoch: unknown key"),
    ("syncnet", {"epoch": 3}, "syncnet.epoch: unknown key"),
    ("preprocess", {"image_size": [60, 48]}, "preprocess.image_size / model: image size (60, 48)"),
    ("preprocess", {"sample_rate": 16001}, "preprocess.sample_rate: 16001 Hz is not a whole number of samples"),
    ("splits", {"ratios": [0.5, 0.3, 0.3]}, "splits.ratios: [0.5, 0.3, 0.3] sum to 1.1, not 1"),
    ("training", {"batch_size": 0}, "training.batch_size: 0 is less than the minimum of 1"),
    ("lipreader", {"epochs": 0}, "lipreader: "),
])
def test_config_errors_name_the_key(base_config, section, change, key):
    config = copy.deepcopy(base_config)
    config[section] = dict(config[section], **change)
    with pytest.raises(ConfigError) as e:
        validate_config(config)
    assert key in str(e.value)


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", "-n",
                           *args], cwd=workdir, capture_output=True, text=True, timeout=300, env=env)


def test_the_dag_stops_before_any_job_and_nested_config_values_are_accepted(base_config, tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(base_config))
    bad = run_snakemake(tmp_path, "--config", "training={lr_genrator: 0.001}")
    assert bad.returncode != 0 and "training.lr_genrator: unknown key" in bad.stderr + bad.stdout
    assert "Job stats" not in bad.stdout
    good = run_snakemake(tmp_path, "-p", "--config", "preprocess={image_size: [128, 96], mirror_train: false}")
    assert good.returncode == 0, good.stderr[-2000:]
    assert "--size 128 96" in good.stdout and "--sample-rate 16000" in good.stdout  # merged into the file's section


# ------------------------------------------------------------------ 4. paths with spaces (run for real: test_dag.py)


def test_every_rule_quotes_its_paths(base_config, tmp_path):
    """Dry run with data, results and logs in folders named with a space and a quote: every path in every
    printed command is quoted (tests/test_dag.py runs the whole tiny DAG in such folders)."""
    config = dict(copy.deepcopy(base_config), data_dir="my data", results_dir="Bob's results", logs_dir="the logs")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(tmp_path, "-p")
    assert res.returncode == 0, res.stderr[-2000:]
    commands = [line for line in res.stdout.splitlines() if "python -m speechanim" in line]
    assert len(commands) > 40
    seen = {"my data": 0, "Bob's results": 0, "the logs": 0}
    for command in commands:
        words = shlex.split(command)  # unquoted, the shell would split a path at its space or choke on the quote
        for folder in seen:
            if folder.split()[-1] + "/" in command:
                assert any(folder in word for word in words), (folder, command)
                seen[folder] += 1
    assert seen["my data"] > 20 and seen["Bob's results"] > 20 and seen["the logs"] > 40, seen


# ------------------------------------------------------------------ 5. manifests that lie


def test_a_repeated_row_or_a_path_outside_the_speaker_is_skipped_and_the_rest_aligned(grid_mini, tmp_path):
    speaker = tmp_path / "raw" / "s9"
    speaker.mkdir(parents=True)
    shutil.copy(grid_mini / "bbaf2n.mpg", speaker / "bbaf2n.mpg")
    shutil.copy(grid_mini / "lbax4n.mpg", tmp_path / "raw" / "outside.mpg")
    header = "utterance\tvideo\taudio\talign\ttext\n"
    rows = ["bbaf2n\tbbaf2n.mpg\t\t\tbin blue at f two now",
            "bbaf2n\tbbaf2n.mpg\t\t\tbin blue at f two now",
            "lbax4n\t../outside.mpg\t\t\tlay blue at x four now"]
    (speaker / MANIFEST).write_text(header + "\n".join(rows) + "\n")
    out, skipped = tmp_path / "s9.h5", tmp_path / "s9.tsv"
    result = align_speaker(speaker, out, skipped, AlignJob(align=AlignConfig(size=SIZE)), progress=False)
    with h5py.File(out) as h5:
        assert clip_keys(h5) == ["s9/bbaf2n"]
    reasons = {r["item"]: r["reason"] for r in read_skip_list(skipped)}
    assert "listed more than once" in reasons["bbaf2n"] and str(speaker / MANIFEST) in reasons["bbaf2n"]
    assert "'../outside.mpg' of lbax4n lies outside the speaker's folder" in reasons["lbax4n"]
    assert result.clips == 1


# ------------------------------------------------------------------ 6. no raw tracebacks


@pytest.fixture
def mismatched(ckpt, tmp_path):
    payload = load_checkpoint(ckpt)
    payload["model_config"] = dict(payload["model_config"], width=0.25)  # the weights are of width 0.125
    return save_checkpoint(tmp_path / "mismatched.pt", payload)


def test_weights_that_do_not_fit_their_model_settings(mismatched, inputs, tmp_path, capfd):
    with pytest.raises(CheckpointError, match=r"mismatched\.pt: its generator weights do not fit"):
        Animator(mismatched)
    rc = cli(["animate", "--image", str(inputs["image"]), "--audio", str(inputs["wav"]), "--checkpoint",
              str(mismatched), "-o", str(tmp_path / "o.mp4")])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "mismatched.pt: its generator weights do not fit" in err[0]


def test_an_unknown_device_is_a_value_error(ckpt):
    with pytest.raises(ValueError, match="device 'tpu': not a torch device"):
        Animator(ckpt, device="tpu")


# ------------------------------------------------------------------ 7. silent surprises


def test_an_output_name_the_container_does_not_match_is_refused(ckpt, inputs, tmp_path):
    with pytest.raises(MediaError, match=r"out\.avi: the video is written as mp4"):
        animate_file(inputs["image"], inputs["wav"], ckpt, tmp_path / "out.avi")
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(MediaError, match=r"clip\.avi: writes a mp4 file; name it \.mp4 or \.m4v"):
        write_video(tmp_path / "clip.avi", frames, 25)
    assert not list(tmp_path.glob("*.avi")) and not list(tmp_path.glob(".*tmp*"))


def test_an_output_that_is_a_directory_is_refused_and_leaves_nothing(ckpt, inputs, tmp_path):
    target = tmp_path / "videos.mp4"
    target.mkdir()
    with pytest.raises(MediaError, match=r"videos\.mp4: is a directory"):
        animate_file(inputs["image"], inputs["wav"], ckpt, target)
    with pytest.raises(MediaError, match="is a directory"):
        write_video(target, np.zeros((2, 16, 16, 3), np.uint8), 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos.mp4"] and not list(target.iterdir())


def test_stereo_comes_back_mono_as_documented(ckpt, inputs, tmp_path):
    from speechanim.media import ffmpeg_exe

    stereo = tmp_path / "stereo.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(inputs["wav"]), "-ac", "2", str(stereo)], check=True)
    out = animate_file(inputs["image"], stereo, ckpt, tmp_path / "out.mp4", progress=False)
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "Audio:" in info and " mono" in info
    assert "mixed down to mono" in animate_file.__doc__


def test_a_fractional_sample_rate_is_refused(ckpt):
    animator = Animator(ckpt)
    with pytest.raises(ValueError, match="sample_rate must be a positive whole number of Hz, got 16000.5"):
        animator.prepare_audio(np.zeros(16000, np.float32), 16000.5)


def test_an_unverifiable_grid_download_fails_unless_waived(tmp_path):
    from speechanim.raw.grid import GridError, load_record
    from speechanim.raw.http import RetryPolicy

    policy = RetryPolicy(attempts=1, backoff_s=0.0, timeout_s=1.0)
    with pytest.raises(GridError, match="no record metadata URL: .*cannot be verified.*--no-verify"):
        load_record(None, tmp_path, policy)
    assert load_record(None, tmp_path, policy, verify=False) == {}
