"""Same configuration and seed, same bytes: the synthetic corpus and trained weights, across processes.

Each check runs the work twice in two fresh Python processes (nothing shared but the inputs) and
compares every output bit for bit. The second process first does other work of the same kind
(other speech; another training run) so that state carried over within a process would show too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from speechanim.checkpoint import load_checkpoint
from train_fixtures import write_train_val

REPO = Path(__file__).resolve().parents[1]


def start_python(code: str, *args: str) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter (``sys.argv[1:]`` = ``args``) with one thread."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(*processes: subprocess.Popen) -> None:
    """Wait for ``processes``; fail with a process's stderr if it failed."""
    for proc in processes:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the synthetic corpus

SYNTH = """
    import sys
    from speechanim.synth import corpus, tts
    out, disturb = sys.argv[1], sys.argv[2] == "disturb"
    if disturb:  # other voices and sentences first, in this process
        tts.synthesize("lay green by z nine again", tts.Voice("en+m3", rate=200, pitch=80))
        corpus.synthesize_clip(0, "s5", 3)
    corpus.build_speaker("s3", out, 2, 0, progress=False)
"""


def test_synthesised_speaker_is_byte_identical_across_processes(tmp_path):
    """Every file (.mpg, .wav, .align, .npz, manifest.tsv, skipped.tsv) of a speaker built twice.

    eSpeak NG seeds its noise from the wall clock (``time(NULL)``, whole seconds) when it
    initialises, so the two processes run at least a second apart: noise that is not reseeded
    would give other samples.
    """
    a, b = tmp_path / "a", tmp_path / "b"
    finish(start_python(SYNTH, str(a), "plain"))
    time.sleep(1.0)
    finish(start_python(SYNTH, str(b), "disturb"))
    files_a, files_b = file_bytes(a), file_bytes(b)
    assert sorted(files_a) == sorted(files_b)
    assert sum(name.endswith(".mpg") for name in files_a) == 2 and "s3/manifest.tsv" in files_a
    different = [name for name in files_a if files_a[name] != files_b[name]]
    assert not different, f"files that differ between two builds with the same seed: {different}"


# ------------------------------------------------------------------ training

TINY_MODEL = dict(image_size=[32, 24], sample_rate=8000, width=0.125, id_dim=8, audio_feat_dim=16, context_dim=16,
                  noise_dim=4, seq_disc_image_dim=8, seq_disc_audio_dim=8, seq_disc_hidden=16,
                  seq_disc_classifier_hidden=8)

#: (variant, DataLoader workers) trained by each process, one after the other.
RUNS = (("l1", 0), ("full", 0), ("full", 1))

TRAIN = """
    import json, sys
    import torch
    from speechanim.models import ModelConfig
    from speechanim import train as trainer
    from speechanim.train import TrainConfig, train
    trainer.plot_history = lambda *args: None  # losses.png is not under test here, and costs seconds to draw
    root, tag, model, runs = sys.argv[1], sys.argv[2], ModelConfig(**json.loads(sys.argv[3])), json.loads(sys.argv[4])
    torch.set_num_threads(1)

    def run(variant, workers, out, seed=3, epochs=2):
        cfg = TrainConfig(batch_size=4, n_frames=8, max_epochs=epochs, steps_per_epoch=3, num_workers=workers,
                          val_clips=4, seed=seed)
        train(dataset="tiny", variant=variant, train_path=f"{root}/train.h5", val_path=f"{root}/val.h5",
              out_dir=out, model_cfg=model, train_cfg=cfg, progress=False)

    if tag == "disturb":  # another run first (other seed, other variant), in this process
        torch.randn(7)
        run("l1_advimg", 0, f"{root}/other", seed=11, epochs=1)
    for variant, workers in runs:
        run(variant, workers, f"{root}/{tag}-{variant}-{workers}")
"""


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_train_val(tmp_path_factory.mktemp("faces"), 8, 4, n_frames=16, image_size=(32, 24),
                           sample_rate=8000, mirror=True)


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Every tensor of the networks and optimisers bit for bit, the rest (history less timings) equal."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert sorted(ca) == sorted(cb)
    nets = [k for k in ca if k.endswith("generator") or k.endswith("discriminator")]
    assert "generator" in nets
    for net in nets:
        assert sorted(ca[net]) == sorted(cb[net])
        for name, value in ca[net].items():
            assert torch.equal(value, cb[net][name]), f"{a}: {net}.{name} differs"
    for net, state in ca["optimisers"].items():
        for index, slots in state["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, cb["optimisers"][net]["state"][index][slot]), f"{a}: optimiser {net} {slot}"
    untimed = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert untimed(ca["history"]) == untimed(cb["history"])


def test_training_is_bit_identical_across_processes(faces):
    """Two processes train the same tiny models with the same seed (l1; full; full with a DataLoader
    worker drawing the windows): identical weights, optimiser moments and history."""
    finish(*(start_python(TRAIN, str(faces), tag, json.dumps(TINY_MODEL), json.dumps(RUNS))
             for tag in ("plain", "disturb")))  # side by side: nothing but the inputs is shared
    for variant, workers in RUNS:
        assert_same_checkpoint(*(faces / f"{tag}-{variant}-{workers}" / "work" / "last.pt"
                                 for tag in ("plain", "disturb")))


def test_a_checkpoint_file_is_the_same_bytes_wherever_and_by_whichever_process_it_is_written(tmp_path):
    """The zip records inside a torch.save file are named after the file when it is given by name; the
    atomic write's temporary name holds the process id, so the same payload once gave other bytes."""
    from speechanim.checkpoint import save_checkpoint

    payload = {"generator": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    a = save_checkpoint(tmp_path / "generator.pt", payload)
    code = "import sys, torch; from speechanim.checkpoint import save_checkpoint; " \
           "save_checkpoint(sys.argv[1], {'generator': {'w': torch.arange(6.0).reshape(2, 3)}, 'epoch': 3})"
    finish(start_python(code, str(tmp_path / "best.pt")))
    assert a.read_bytes() == (tmp_path / "best.pt").read_bytes()
    assert load_checkpoint(a)["epoch"] == 3
