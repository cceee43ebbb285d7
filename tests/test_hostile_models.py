"""Hostile inputs, round 2 (issue 28), the model side: a silently wrong generator.pt after a kill or a
full disk, black videos from NaN, memory claimed by a small file, packed files that read other files,
and tracebacks from out-of-range checkpoint settings or a full disk.

One test per class, parametrized over its examples; each proves the bad case is refused (an error that
names the file and the problem) and that nothing is lost (the files compared before and after)."""
from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.io import wavfile

import speechanim.train as train_module
from speechanim.checkpoint import CheckpointError, load_checkpoint, load_generator, save_checkpoint
from speechanim.cli import main as cli
from speechanim.generate import NonFiniteFramesError, generate_file, main as generate_main, to_uint8
from speechanim.media import MediaError, read_audio
from speechanim.models import Generator, ModelConfig
from speechanim.packing import PackedFileError, TrainingWindows, WholeClips, clip_keys, read_clip
from speechanim.splits import write_split
from speechanim.train import TrainConfig, train
from test_hostile_inputs import RATE, SIZE, ckpt, inputs  # noqa: F401  (fixtures)
from test_sda import SETTINGS as SDA_SETTINGS, mean_face
from train_fixtures import TINY_MODEL, TINY_RATE, TINY_SIZE, write_talking_faces, write_train_val

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The tiny networks and training of tests/test_train.py.
TRAIN_SIZE, TRAIN_RATE = TINY_SIZE, TINY_RATE
TINY_TRAINING = dict(batch_size=4, n_frames=8, max_epochs=2, steps_per_epoch=1, num_workers=0, val_clips=2)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): what "nothing lost" is checked against."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[Path]:
    """Temporary files (``.<name>.tmp<pid>...``) anywhere under ``folder``."""
    return [p for p in folder.rglob(".*.tmp*")]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return write_train_val(tmp_path_factory.mktemp("packed"), 6, 2, n_frames=16, image_size=TRAIN_SIZE,
                           sample_rate=TRAIN_RATE)


@pytest.fixture(scope="module")
def test_h5(tmp_path_factory):
    """Packed test clips at the tiny checkpoint's size and rate (tests/test_hostile_inputs.py's ckpt)."""
    path = tmp_path_factory.mktemp("test_h5") / "test.h5"
    write_talking_faces(path, 2, n_frames=12, image_size=SIZE, sample_rate=RATE, seed=3)
    return path


def run_train(packed: Path, out: Path, scores: list[float], monkeypatch, **training) -> dict:
    """Train the tiny model with each epoch's validation PSNR taken from ``scores`` (so which epoch is the best
    is known); training settings as TINY_TRAINING with ``training`` over them."""
    real_validate = train_module.validate
    it = iter(scores)
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: {**real_validate(*a, **k), "val_psnr": next(it)})
    try:
        return train(dataset="tiny", variant="l1", train_path=packed / "train.h5", val_path=packed / "val.h5",
                     out_dir=out, model_cfg=ModelConfig(**TINY_MODEL),
                     train_cfg=TrainConfig(**{**TINY_TRAINING, **training}), progress=False)
    finally:
        monkeypatch.setattr(train_module, "validate", real_validate)


def assert_generator_is_the_logged_epoch(out: Path, err: str, epoch: int) -> None:
    """generator.pt and best.pt hold ``epoch``, the epoch the log line names; no staged or temporary file is left."""
    assert re.search(rf"wrote {re.escape(str(out / 'generator.pt'))} \(epoch {epoch},", err), err
    assert load_checkpoint(out / "generator.pt")["epoch"] == epoch
    assert load_checkpoint(out / "work" / "best.pt")["epoch"] == epoch
    assert load_checkpoint(out / "work" / "last.pt")["best"]["epoch"] == epoch
    assert not (out / "work" / "best.next.pt").exists() and not temporaries(out)


# ============================================================== 1. a silently wrong model


class Killed(BaseException):
    """A stand-in for kill -9: raised at one point, it ends the run there (no ``except Exception`` sees it)."""


def kill_when_saving(monkeypatch, name: str) -> None:
    """Kill the run as it starts writing the checkpoint called ``name`` (before anything is written)."""
    real = train_module.save_checkpoint

    def save(path, payload):
        if Path(path).name == name:
            raise Killed(name)
        return real(path, payload)
    monkeypatch.setattr(train_module, "save_checkpoint", save)


def kill_before_renaming_the_staged_best(monkeypatch, name: str = "best.next.pt") -> None:
    real = os.replace

    def replace(src, dst):
        if Path(src).name == name:
            raise Killed(name)
        return real(src, dst)
    monkeypatch.setattr(train_module.os, "replace", replace)


@pytest.mark.parametrize("kill", [
    pytest.param(lambda mp: kill_when_saving(mp, "best.next.pt"), id="before-the-new-best-is-written"),
    pytest.param(lambda mp: kill_when_saving(mp, "last.pt"), id="after-the-new-best-before-last.pt"),
    pytest.param(kill_before_renaming_the_staged_best, id="after-last.pt-before-best.pt"),
])
def test_a_training_killed_between_its_checkpoint_writes_reruns_to_the_logged_epoch(packed, tmp_path, monkeypatch,
                                                                                      capsys, kill):
    """Epoch 2 is the best; the run is killed while writing epoch 2's checkpoints. The rerun's generator.pt is
    epoch 2, the epoch its log line names (it used to say epoch 2's number and hold epoch 1's weights)."""
    out = tmp_path / "run"
    run_train(packed, out, [20.0], monkeypatch, max_epochs=1)
    with monkeypatch.context() as mp:
        kill(mp)
        with pytest.raises(Killed):
            run_train(packed, out, [22.0], monkeypatch)
    capsys.readouterr()
    result = run_train(packed, out, [22.0], monkeypatch)  # the rerun: epoch 2 again, or only the rename, is left
    assert result["best_epoch"] == 2 and result["epochs"] == 2
    assert_generator_is_the_logged_epoch(out, capsys.readouterr().err, 2)


@pytest.mark.parametrize("damage", ["removed", "truncated", "another epoch"])
@pytest.mark.parametrize("scores, best", [([20.0, 22.0], 2), ([22.0, 20.0], 1)], ids=["best-is-last", "best-earlier"])
def test_a_best_pt_lost_or_damaged_by_hand_is_rebuilt_or_retrained_without_hand_edits(packed, tmp_path, monkeypatch,
                                                                                        capsys, damage, scores, best):
    """A best.pt that disagrees with last.pt is rebuilt from last.pt when the best epoch is last.pt's own, and
    trained again otherwise (its weights are nowhere else): never copied to generator.pt as another epoch."""
    out = tmp_path / "run"
    run_train(packed, out, scores, monkeypatch)
    best_pt = out / "work" / "best.pt"
    if damage == "removed":
        best_pt.unlink()
    elif damage == "truncated":
        best_pt.write_bytes(best_pt.read_bytes()[:1000])
    else:
        save_checkpoint(best_pt, {**load_checkpoint(best_pt), "epoch": 3 - best})
    capsys.readouterr()
    result = run_train(packed, out, scores, monkeypatch)
    err = capsys.readouterr().err
    assert result["best_epoch"] == best
    assert ("rebuilt from" in err) if best == 2 else ("starting over" in err), err
    assert_generator_is_the_logged_epoch(out, err, best)


def full_disk_at(monkeypatch, stem: str) -> None:
    """torch.save fails with ENOSPC after writing a few bytes, when it writes the temporary file of ``stem``."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) or f"/.{stem}.tmp" not in f.name:
            return real(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("stem", ["best.next", "last", "epoch002"])
def test_a_full_disk_while_checkpointing_keeps_the_checkpoints_and_a_rerun_recovers(packed, tmp_path, monkeypatch,
                                                                                  capsys, stem):
    """The write fails, training stops with an error naming the file; the checkpoints are as they were, no
    temporary file is left, and the next run (disk freed) finishes with no hand edit."""
    out = tmp_path / "run"
    run_train(packed, out, [20.0], monkeypatch, max_epochs=1, keep_epochs=True)
    before = snapshot(out / "work")
    with monkeypatch.context() as mp:
        full_disk_at(mp, stem)
        with pytest.raises(CheckpointError, match=rf"{stem}\.pt: cannot write the checkpoint .*No space left on "
                                                  r"device.*the previous file, if any, is kept"):
            run_train(packed, out, [22.0], monkeypatch, keep_epochs=True)
    assert snapshot(out / "work") == before and not temporaries(out)
    capsys.readouterr()
    run_train(packed, out, [22.0], monkeypatch, keep_epochs=True)
    assert_generator_is_the_logged_epoch(out, capsys.readouterr().err, 2)


def test_a_file_size_limit_stops_the_training_cli_with_an_error_and_a_rerun_recovers(packed, tmp_path):
    """A real failed write (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) in a separate process: exit 1 with
    the file named, no traceback, no temporary file; then the same command, with room, finishes."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "speechanim.train", "--dataset", "tiny", "--variant", "l1", "--train",
           str(packed / "train.h5"), "--val", str(packed / "val.h5"), "--out", str(out), "--model",
           json.dumps(TINY_MODEL), "--training", json.dumps({**TINY_TRAINING, "max_epochs": 1}), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # history.csv fits, a checkpoint does not
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert res.returncode == 1, res.stderr
    assert "speechanim.train: error:" in res.stderr and "best.next.pt: cannot write the checkpoint" in res.stderr
    assert "Traceback" not in res.stderr and not temporaries(out) and not (out / "work" / "last.pt").exists()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert_generator_is_the_logged_epoch(out, res.stderr, 1)


def test_temporary_files_a_killed_training_left_are_removed_at_the_next_start(packed, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    run_train(packed, out, [20.0], monkeypatch, max_epochs=1)
    stale = [out / "work" / ".last.tmp4242.pt", out / "work" / ".best.next.tmp4242.pt", out / ".generator.tmp4242.pt",
             out / ".history.tmp4242.csv", out / "epochs" / ".epoch002.tmp4242.pt"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    (out / "notes.txt").write_text("mine")  # not a temporary file: kept
    capsys.readouterr()
    run_train(packed, out, [22.0], monkeypatch)
    err = capsys.readouterr().err
    assert not any(p.exists() for p in stale) and all(f"removed {p}" in err for p in stale)
    assert (out / "notes.txt").read_text() == "mine"
    assert_generator_is_the_logged_epoch(out, err, 2)


# ============================================================== 2. black videos with exit code 0


def float_wav(path: Path, bad: float) -> Path:
    samples = (0.5 * np.sin(np.arange(RATE) / 7)).astype(np.float32)
    samples[100:110] = bad
    wavfile.write(path, RATE, samples)
    return path


def checkpoint_with(ckpt: Path, path: Path, *, config: dict | None = None, weight: tuple | None = None, **keys) -> Path:
    """``ckpt`` with model_config entries, one generator weight (name, value) or top-level keys replaced."""
    payload = load_checkpoint(ckpt)
    payload["model_config"] = {**payload["model_config"], **(config or {})}
    if weight is not None:
        name, value = weight
        payload["generator"][name] = payload["generator"][name].clone()
        payload["generator"][name].view(-1)[0] = value
    payload.update(keys)
    torch.save(payload, path)
    return path


BLACK_VIDEOS = {
    "nan-in-a-float-wav": (dict(audio="nan.wav"), r"nan\.wav: .*NaN or infinite samples"),
    "inf-in-a-float-wav": (dict(audio="inf.wav"), r"inf\.wav: .*NaN or infinite samples"),
    "noise-std-nan": (dict(checkpoint="noise.pt"), r"noise\.pt: its model_config: noise_std must be a finite number, "
                                                   "got nan"),
    "a-nan-weight": (dict(checkpoint="weight.pt"), r"weight\.pt: generator weight frame_decoder\.to_rgb\.weight "
                                                   "holds NaN"),
}


@pytest.mark.parametrize("case", list(BLACK_VIDEOS))
def test_nan_in_audio_gain_or_checkpoint_is_refused_instead_of_a_black_video(ckpt, inputs, tmp_path, capfd, case):
    """``speechanim animate`` exits 1 naming the file (or the flag) and the NaN, and writes no video."""
    given, message = BLACK_VIDEOS[case]
    float_wav(tmp_path / "nan.wav", np.nan)
    float_wav(tmp_path / "inf.wav", np.inf)
    checkpoint_with(ckpt, tmp_path / "noise.pt", config={"noise_std": float("nan")})
    checkpoint_with(ckpt, tmp_path / "weight.pt", weight=("frame_decoder.to_rgb.weight", float("nan")))
    audio = tmp_path / given["audio"] if "audio" in given else inputs["wav"]
    checkpoint = tmp_path / given["checkpoint"] if "checkpoint" in given else ckpt
    before = snapshot(tmp_path)
    out = tmp_path / "out" / "video.mp4"
    rc = cli(["animate", "--image", str(inputs["image"]), "--audio", str(audio), "--checkpoint", str(checkpoint),
              "-o", str(out), "--no-progress", *given.get("extra", [])])
    err = capfd.readouterr().err
    assert rc == 1 and re.search(message, err), err
    assert "Traceback" not in err and not out.exists() and snapshot(tmp_path) == before


@pytest.mark.parametrize("gain", ["nan", "inf", "0", "-2", "loud"])
def test_a_bad_gain_is_refused_before_any_file_is_opened(ckpt, inputs, tmp_path, capsys, gain):
    """``--gain nan`` made a black video; refused by the option itself, before --frames-out or -o is created."""
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit:
        cli(["animate", "--stream", "--image", str(inputs["image"]), "--audio", str(inputs["wav"]), "--checkpoint",
             str(ckpt), "-o", str(tmp_path / "out.mp4"), "--frames-out", str(tmp_path / "frames.y4m"), "--gain", gain])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"--gain: {gain!r} is not a finite number above 0" in err, err
    assert snapshot(tmp_path) == before


def test_every_audio_reader_refuses_nan_samples(tmp_path):
    for bad in (np.nan, np.inf, -np.inf):
        wav = float_wav(tmp_path / "bad.wav", bad)
        for rate in (RATE, 16000):  # as stored, and resampled (which spreads the NaN)
            with pytest.raises(MediaError, match=r"bad\.wav: the audio holds \d+ NaN or infinite samples"):
                read_audio(wav, rate)


def test_a_packed_clip_with_nan_audio_is_refused_naming_the_file_and_clip(ckpt, tmp_path, capsys):
    packed = tmp_path / "nan test.h5"
    write_talking_faces(packed, 2, n_frames=12, image_size=SIZE, sample_rate=RATE, seed=3, nan_audio_clips=(1,))
    before = snapshot(tmp_path)
    out = tmp_path / "generated" / "full.h5"
    assert generate_main(["--checkpoint", str(ckpt), "--h5", str(packed), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{packed}: clip s1/u0 has NaN or infinite audio samples" in err, err
    assert not out.exists() and snapshot(tmp_path) == before
    with pytest.raises(PackedFileError, match=r"clip s1/u0 has NaN"):
        TrainingWindows(packed, 4, seed=0)[1]


def test_frames_the_generator_makes_non_finite_are_never_written(ckpt, test_h5, tmp_path, monkeypatch):
    """The last line of defence: whatever made them, NaN frames are refused before any file is written."""
    with pytest.raises(NonFiniteFramesError, match=r"clip 7: the generator made 2 NaN or infinite values of 3"):
        to_uint8(torch.tensor([0.5, float("nan"), float("inf")]), "clip 7")
    real_forward = Generator.forward
    monkeypatch.setattr(Generator, "forward", lambda self, *a, **k: real_forward(self, *a, **k) * float("nan"))
    out = tmp_path / "full.h5"
    with pytest.raises(NonFiniteFramesError, match=rf"{re.escape(str(ckpt))} on {re.escape(str(test_h5))}, clip s0/u0"):
        generate_file(ckpt, test_h5, out, videos=tmp_path / "videos", progress=False)
    assert not out.exists() and not temporaries(tmp_path) and not list((tmp_path / "videos").rglob("*.mp4"))


# ============================================================== 3. memory from a small file, before any check


def compressed_checkpoint(ckpt: Path, path: Path, junk_mb: int = 40) -> Path:
    """``ckpt`` plus an unused tensor of ``junk_mb`` MB of zeros, its zip records recompressed (deflate): a small
    file that torch.load inflates in memory."""
    payload = load_checkpoint(ckpt)
    payload["unused"] = torch.zeros(junk_mb * 250_000)
    plain = path.with_suffix(".plain")
    torch.save(payload, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    plain.unlink()
    return path


def declared_frames(test_h5: Path, path: Path, n: int = 10**8) -> Path:
    """``test_h5`` with clip s0/u0 declaring ``n`` frames (chunked, none written: a small file)."""
    path.write_bytes(test_h5.read_bytes())
    with h5py.File(path, "a") as h5:
        g = h5["s0/u0"]
        shape = g["frames"].shape
        del g["frames"]
        g.create_dataset("frames", shape=(n, *shape[1:]), dtype=np.uint8, chunks=(1, *shape[1:]))
    return path


def authors_file_declaring(path: Path, **settings) -> Path:
    """An authors'-format .dat (tests/test_sda.py's settings) that says ``settings`` and holds no tensors: the
    settings are read, and must be refused, before any tensor is."""
    torch.save({**SDA_SETTINGS, "mean_face": mean_face(SDA_SETTINGS["img_size"]), "encoder": {}, "encoder_id": {},
                "generator": {}, **settings}, path)
    return path


MEMORY = {
    "checkpoint-width-400": ("pt", lambda ckpt, d: checkpoint_with(ckpt, d / "wide.pt", config={"width": 400.0}),
                             r"wide\.pt: its model_config: a generator of [\d,]+ M parameters .* is above the "
                             r"limit of 500 M"),
    "checkpoint-context-40000": ("pt", lambda ckpt, d: checkpoint_with(ckpt, d / "ctx.pt",
                                                                       config={"context_dim": 40000}),
                                 r"ctx\.pt: its model_config: a generator of [\d,]+ M parameters"),
    "checkpoint-image-2048": ("pt", lambda ckpt, d: checkpoint_with(ckpt, d / "big.pt",
                                                                    config={"image_size": [2048, 1536]}),
                              r"big\.pt: its model_config: image_size \[2048, 1536\] exceeds 1024"),
    "checkpoint-deflated": ("pt", lambda ckpt, d: compressed_checkpoint(ckpt, d / "small.pt"),
                            r"small\.pt: refused: its records declare \d+ MB in a [\d.]+ MB file"),
    "import-sda-rnn-gen-dim-40000": ("dat", lambda ckpt, d: authors_file_declaring(d / "grid.dat", rnn_gen_dim=40000),
                                     r"grid\.dat: its settings \(as this project's model_config\): a generator of "
                                     r"[\d,]+ M parameters"),
    "import-sda-deflated": ("dat", lambda ckpt, d: compressed_checkpoint(authors_file_declaring(d / "plain.dat"),
                                                                           d / "crema.dat"),
                            r"crema\.dat: refused: its records declare"),
    "hdf5-declaring-1e8-frames": ("h5", None, r"clip s0/u0, dataset frames: declares 921,600,000,000 bytes .* but the "
                                              "file stores 0 for it: refused before reading"),
}


@pytest.mark.parametrize("case", list(MEMORY))
def test_sizes_read_from_a_small_file_are_bounded_before_any_allocation(ckpt, test_h5, tmp_path, capsys, case):
    """Each file is refused by the command that reads it, naming it and the size, while the process's peak
    memory grows by less than 300 MB (the allocations these files asked for were 19 GB to 30 TB)."""
    kind, make, message = MEMORY[case]
    path = declared_frames(test_h5, tmp_path / "test.h5") if kind == "h5" else make(ckpt, tmp_path)
    assert path.stat().st_size < 6_000_000
    before, peak = snapshot(tmp_path), peak_rss_mb()
    out = tmp_path / "out" / ("x.pt" if kind == "dat" else "x.h5")
    if kind == "dat":
        rc = cli(["import-sda", str(path), "-o", str(out)])
    else:
        checkpoint, h5 = (ckpt, path) if kind == "h5" else (path, test_h5)
        rc = generate_main(["--checkpoint", str(checkpoint), "--h5", str(h5), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and re.search(message, err), err
    assert peak_rss_mb() - peak < 300
    assert not out.exists() and snapshot(tmp_path) == before


# ============================================================== 4. a packed file that reads other files


def pointing_elsewhere(test_h5: Path, path: Path, kind: str, secret: Path, aligned: bool = False) -> Path:
    """``test_h5`` with clip s0/u0's audio (or the clip) taken from elsewhere, in the way ``kind`` names;
    ``aligned``: as an aligned speaker file (speaker s0 alone, named in the file's attributes)."""
    path.write_bytes(test_h5.read_bytes())
    with h5py.File(path, "a") as h5:
        if aligned:
            h5.attrs["speaker"] = "s0"
        g = h5["s0/u0"]
        n = len(g["audio"])
        if kind == "external-storage":
            del g["audio"]
            g.create_dataset("audio", shape=(n,), dtype=np.float32, external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
        elif kind == "virtual-dataset":
            del g["audio"]
            layout = h5py.VirtualLayout(shape=(n,), dtype=np.float32)
            layout[:] = h5py.VirtualSource(str(test_h5), "s1/u0/audio", shape=(n,))
            g.create_virtual_dataset("audio", layout)
        elif kind == "external-link-to-a-dataset":
            del g["audio"]
            g["audio"] = h5py.ExternalLink(str(test_h5), "s1/u0/audio")
        elif kind == "external-link-to-a-clip":
            del h5["s0/u0"]
            h5["s0/u0"] = h5py.ExternalLink(str(test_h5), "s1/u0")
        elif kind == "soft-link":
            del h5["s0/u0"]
            h5["s0/u0"] = h5py.SoftLink("/s1/u0")
        if aligned:
            del h5["s1"]
    return path


ELSEWHERE = {
    "external-storage": r"clip s0/u0, dataset audio: its data are stored in another file \(.*secret\.bin\): refused",
    "virtual-dataset": r"clip s0/u0, dataset audio: a virtual dataset \(its data are read from other files\): refused",
    "external-link-to-a-dataset": r"/s0/u0/audio is an external link to .*test\.h5:s1/u0/audio, not data stored in "
                                  "this file: refused",
    "external-link-to-a-clip": r"/s0/u0 is an external link to .*test\.h5:s1/u0, not data stored in this file",
    "soft-link": r"/s0/u0 is a soft link, not data stored in this file: refused",
}


@pytest.mark.parametrize("kind", list(ELSEWHERE))
def test_a_packed_file_that_points_at_other_files_is_refused_by_generate(ckpt, test_h5, tmp_path, capsys, kind):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(10_000, 0.25, np.float32).tobytes())  # stands for /etc/hostname, a private file
    crafted = pointing_elsewhere(test_h5, tmp_path / "crafted.h5", kind, secret)
    before = snapshot(tmp_path)
    out = tmp_path / "out" / "full.h5"
    assert generate_main(["--checkpoint", str(ckpt), "--h5", str(crafted), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(crafted) in err and re.search(ELSEWHERE[kind], err), err
    assert not out.exists() and snapshot(tmp_path) == before


def _pack(crafted: Path, tmp_path: Path):
    from speechanim.preprocess import pack

    return pack(tmp_path / "split.tsv", "test", [crafted], tmp_path / "packed.h5", progress=False)


READERS = {
    "WholeClips": lambda path, tmp: [WholeClips(path)[i] for i in range(2)],
    "TrainingWindows": lambda path, tmp: [TrainingWindows(path, 4, seed=0)[i] for i in range(2)],
    "read_clip": lambda path, tmp: [read_clip(h5py.File(path, "r"), k) for k in clip_keys(h5py.File(path, "r"))],
    "pack": _pack,
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("kind", ["external-storage", "virtual-dataset", "external-link-to-a-clip"])
def test_every_reader_of_packed_and_aligned_files_refuses_data_from_elsewhere(test_h5, tmp_path, reader, kind):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(10_000, 0.25, np.float32).tobytes())
    crafted = pointing_elsewhere(test_h5, tmp_path / "crafted.h5", kind, secret, aligned=reader == "pack")
    write_split(tmp_path / "split.tsv", {"s0": "test"})  # for pack
    before = snapshot(tmp_path)
    with pytest.raises(PackedFileError, match=ELSEWHERE[kind]):
        READERS[reader](crafted, tmp_path)
    assert snapshot(tmp_path) == before and not (tmp_path / "packed.h5").exists()


# ============================================================== 5. tracebacks: settings out of range, a full disk


OUT_OF_RANGE = {
    "fps-0": (dict(fps=0), r"its frame rate fps=0 is not a number in \[1, 240\]"),
    "fps-nan": (dict(fps=float("nan")), r"its frame rate fps=nan is not a number"),
    "fps-text": (dict(fps="25"), r"its frame rate fps='25' is not a number"),
    "sample-rate-1e6": (dict(config={"sample_rate": 1_000_000}), "sample_rate 1000000 exceeds 96000 Hz"),
    "window-0": (dict(config={"audio_window_s": 0.0}), r"audio_window_s 0.0 is not in \(0, 1.0\] s"),
    "width-negative": (dict(config={"width": -1.0}), "width must be > 0"),
    "dim-text": (dict(config={"id_dim": "8"}), "id_dim must be a whole number >= 1, got '8'"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_out_of_range_checkpoint_settings_are_a_clear_error_at_load(ckpt, inputs, tmp_path, capfd, case):
    given, message = OUT_OF_RANGE[case]
    bad = checkpoint_with(ckpt, tmp_path / "bad.pt", **given)
    with pytest.raises(CheckpointError, match=rf"bad\.pt: .*{message}"):
        load_generator(bad)
    before = snapshot(tmp_path)
    out = tmp_path / "out.mp4"
    rc = cli(["animate", "--image", str(inputs["image"]), "--audio", str(inputs["wav"]), "--checkpoint", str(bad),
              "-o", str(out), "--no-progress"])
    err = capfd.readouterr().err
    assert rc == 1 and "Traceback" not in err and re.search(message, err), err
    assert not out.exists() and snapshot(tmp_path) == before


def test_a_full_disk_in_generate_is_an_error_naming_the_file_and_leaves_no_temporary_file(ckpt, tmp_path):
    """RLIMIT_FSIZE makes the output too large to write (EFBIG, as a full disk gives ENOSPC): HDF5 used to fail
    inside its own clean-up and the process died of a segfault, leaving ``.full.h5.tmp<pid>``."""
    packed = tmp_path / "test.h5"
    write_talking_faces(packed, 6, n_frames=50, image_size=SIZE, sample_rate=RATE, seed=4)
    out = tmp_path / "generated" / "full.h5"
    out.parent.mkdir()
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    res = subprocess.run([sys.executable, "-m", "speechanim.generate", "--checkpoint", str(ckpt), "--h5", str(packed),
                          "--out", str(out), "--no-progress"], env=env, capture_output=True, text=True,
                         preexec_fn=limited, timeout=300)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert res.stderr.strip().splitlines()[-1] == (f"speechanim.generate: error: {out}: cannot write it (File too "
                                                   "large); nothing was written"), res.stderr[-2000:]
    assert "Traceback" not in res.stderr and snapshot(tmp_path) == before and not temporaries(tmp_path)
