"""A training under a wall-clock limit (a cluster job's runtime): it starts an epoch only if the epoch can end
before the limit's margin, otherwise it stops with exit status 75; rerun, it resumes and ends with the weights
of an uninterrupted training. tests/test_slurm.py runs the same through SLURM and Snakemake's retries."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from speechanim.checkpoint import load_checkpoint
from speechanim.models import ModelConfig
from speechanim.train import EXIT_RESUME, TimeLimit, TrainConfig, TrainingError, main, train
from train_fixtures import TINY_MODEL, write_train_val

TRAINING = dict(batch_size=4, n_frames=8, max_epochs=3, steps_per_epoch=3, num_workers=0, val_clips=4)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_an_epoch_starts_only_if_it_can_end_before_the_margin():
    limit = TimeLimit(limit_s=3600, margin_s=600, start=100.0)
    assert limit.deadline == 3100.0
    assert limit.next_epoch_fits(2000.0, 1100.0)  # ends at the deadline
    assert not limit.next_epoch_fits(2000.0, 1100.5)
    assert not limit.next_epoch_fits(3100.5, 0.0)
    # before its first epoch a run always trains one, even past the deadline: every rerun makes progress
    assert limit.next_epoch_fits(5000.0, None)
    assert TimeLimit(limit_s=60, margin_s=120, start=0.0).deadline == -60.0  # one epoch a run
    for limit_s, margin_s, message in [(0, 0, "time limit must be > 0"), (math.inf, 0, "time limit must be > 0"),
                                       (60, -1, "stop margin must be >= 0"), (60, math.nan, "stop margin")]:
        with pytest.raises(TrainingError, match=message):
            TimeLimit(limit_s=limit_s, margin_s=margin_s, start=0.0)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return write_train_val(tmp_path_factory.mktemp("packed"), 6, 4, n_frames=16)


def history(out) -> list[dict]:
    with open(out / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_a_stopped_training_resumes_to_the_weights_of_an_uninterrupted_one(packed, tmp_path, capsys):
    whole = tmp_path / "whole"
    done = train(dataset="tiny", variant="full", train_path=packed / "train.h5", val_path=packed / "val.h5",
                 out_dir=whole, model_cfg=ModelConfig(**TINY_MODEL), train_cfg=TrainConfig(**TRAINING), progress=False)
    assert done["finished"] and done["epochs"] == 3

    # a 1-minute limit less a 60 s margin leaves no time after the first epoch: one epoch a run
    out = tmp_path / "stopped"
    args = ["--dataset", "tiny", "--variant", "full", "--train", str(packed / "train.h5"), "--val",
            str(packed / "val.h5"), "--out", str(out), "--model", json.dumps(TINY_MODEL), "--training",
            json.dumps({**TRAINING, "keep_epochs": True}), "--no-progress", "--time-limit", "1", "--stop-margin", "60"]
    codes, logs = [], []
    for _ in range(4):
        codes.append(main(args))
        logs.append(capsys.readouterr().err)
        if codes[-1] != EXIT_RESUME:
            break
        assert not (out / "generator.pt").exists()
        (out / "history.csv").unlink()  # what Snakemake removes of a failed job: its outputs
        (out / "losses.png").unlink()
        for kept in (out / "epochs").iterdir():
            kept.unlink()
    assert codes == [EXIT_RESUME, EXIT_RESUME, 0], logs
    assert "time limit 1 min: an epoch starts only if it can end 60 s before it" in logs[0]
    for k in (1, 2):
        assert f"time limit: stopped after epoch {k}:" in logs[k - 1] and f"exit status {EXIT_RESUME}" in logs[k - 1]
        assert f"resumed at epoch {k}" in logs[k]
    assert "time limit: stopped" not in logs[2]

    # the same weights (bit for bit), the same history, and every kept epoch
    for name in ("generator.pt", "work/last.pt"):
        a, b = load_checkpoint(whole / name), load_checkpoint(out / name)
        assert a["epoch"] == b["epoch"]
        for net in ("generator", "frame_discriminator", "sequence_discriminator"):
            assert a[net].keys() == b[net].keys()
            for key, tensor in a[net].items():
                assert torch.equal(tensor, b[net][key]), f"{name}: {net}.{key}"
    assert history(out) == history(whole) and len(history(out)) == 3
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch001.pt", "epoch002.pt", "epoch003.pt"]
    assert [load_checkpoint(out / "epochs" / f"epoch00{k}.pt")["epoch"] for k in (1, 2, 3)] == [1, 2, 3]
    assert (out / "epochs" / "epoch001.pt").stat().st_ino == (out / "work" / "epochs" / "epoch001.pt").stat().st_ino


def test_a_generous_limit_changes_nothing_and_bad_limits_are_refused(packed, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--dataset", "tiny", "--variant", "l1", "--train", str(packed / "train.h5"), "--val",
            str(packed / "val.h5"), "--out", str(out), "--model", json.dumps(TINY_MODEL), "--training",
            json.dumps({**TRAINING, "max_epochs": 2}), "--no-progress"]
    assert main([*args, "--time-limit", "600"]) == 0
    assert "time limit: stopped" not in capsys.readouterr().err and (out / "generator.pt").is_file()
    assert main([*args, "--time-limit", "0"]) == 1
    assert "error: the time limit must be > 0 minutes, got 0" in capsys.readouterr().err
