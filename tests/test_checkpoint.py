"""The checkpoint writer and reader (speechanim.checkpoint): what a written file reads back as, what a failed write
leaves, and each bound a file's settings are checked against, on both sides of it (values worked out by hand from
the module doc; tests/test_hostile_models.py drives the same checks through the commands)."""
from __future__ import annotations

import os
import re
import types
import zipfile
from collections import namedtuple
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from speechanim import checkpoint as ck
from speechanim.checkpoint import (CheckpointError, check_finite_weights, check_fps, check_model_config, load_checkpoint,
                                   load_generator, model_config_dict, model_config_from, save_checkpoint)
from speechanim.models import Generator, ModelConfig
from train_fixtures import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny() -> ModelConfig:
    return ModelConfig(**TINY_MODEL)


def test_a_checkpoint_reads_back_as_written_through_a_temporary_file(tmp_path):
    payload = {"epoch": 3, "generator": {"w": torch.arange(4.0)}, "history": [{"loss": 0.5}], "pair": (1, "a")}
    path = save_checkpoint(str(tmp_path / "sub" / "a.pt"), payload)
    assert path == tmp_path / "sub" / "a.pt" and [p.name for p in path.parent.iterdir()] == ["a.pt"]
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["history"] == [{"loss": 0.5}] and back["pair"] == (1, "a")
    assert torch.equal(back["generator"]["w"], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    # the same payload gives the same bytes (the temporary file's name is not recorded in the archive)
    assert save_checkpoint(tmp_path / "b.pt", payload).read_bytes() == path.read_bytes()
    saved = []
    real_save = torch.save
    with pytest.MonkeyPatch.context() as mp:  # torch.save is handed an open file, never a name
        mp.setattr(torch, "save", lambda obj, f: (saved.append(f), real_save(obj, f)))
        save_checkpoint(tmp_path / "c.pt", payload)
    assert not isinstance(saved[0], (str, bytes)) and hasattr(saved[0], "write")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("disk quota")])
def test_a_failed_write_keeps_the_old_file_and_names_the_file_and_the_free_space(tmp_path, monkeypatch, error):
    old = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    before = old.read_bytes()

    def fail(obj, f):
        f.write(b"half a file")
        raise error

    monkeypatch.setattr(torch, "save", fail)
    free = {tmp_path: 3_500_000}  # the disk holding the file's folder (3.5 MB, rounded half to even: 4)
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda folder: types.SimpleNamespace(free=free[Path(folder)]))
    with pytest.raises(CheckpointError) as e:
        save_checkpoint(old, {"epoch": 2})
    assert str(e.value) == (f"{old}: cannot write the checkpoint ({type(error).__name__}: {error}; 4 MB free on its "
                            "disk); the previous file, if any, is kept")
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert old.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    def unknown(folder):
        raise OSError("no such folder")

    monkeypatch.setattr(ck.shutil, "disk_usage", unknown)
    with pytest.raises(CheckpointError, match=r"; free space unknown\); the previous file"):
        save_checkpoint(old, {"epoch": 2})


class _Code:
    def __reduce__(self):
        return (print, ("ran code",))


def test_load_refuses_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"^.*nothing\.pt: no such checkpoint file$"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path)  # a folder
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pt: not a readable checkpoint \(UnpicklingError: invalid load "
                                              r"key, 'n'\.\)$"):
        load_checkpoint(tmp_path / "text.pt", trust=True)
    with pytest.raises(CheckpointError, match=r"text\.pt: refused: .*\(Unsupported operand 110\)"):
        load_checkpoint(tmp_path / "text.pt")  # the restricted unpickler stops at the first byte it does not know
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: not a readable checkpoint \(EOFError: \)$"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: not a speechanim checkpoint \(holds a list\)$"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"run": _Code()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match=r"code\.pt: refused: the file holds Python objects other than weights "
                                              r"and plain values \(.*print.*\); unpickling it could run code\. If you "
                                              r"trust its source, load it with --trust-checkpoint \(API: trust=True\)$"):
        load_checkpoint(tmp_path / "code.pt")
    assert load_checkpoint(tmp_path / "code.pt", trust=True) == {"run": None}  # print("ran code") returns None
    (tmp_path / "cut.pt").write_bytes((tmp_path / "list.pt").read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


Pair = namedtuple("Pair", "a b")


def test_numpy_scalars_are_read_as_python_numbers_and_other_numpy_values_refused(tmp_path):
    payload = {"rate": np.int64(16000), "gain": np.float32(0.5), "on": np.bool_(True),
               "nested": [np.int32(3), (np.float64(0.25), "x"), {"k": np.int16(-2)}], "plain": (1, 2),
               "array": np.arange(3)}
    torch.save(payload, tmp_path / "np.pt")
    back = load_checkpoint(tmp_path / "np.pt")
    assert back["rate"] == 16000 and type(back["rate"]) is int
    assert back["gain"] == 0.5 and type(back["gain"]) is float
    assert back["on"] is True
    assert back["nested"] == [3, (0.25, "x"), {"k": -2}] and type(back["nested"][0]) is int
    assert type(back["nested"][1]) is tuple and type(back["nested"][1][0]) is float and type(back["nested"][2]["k"]) is int
    assert back["plain"] == (1, 2) and back["array"].tolist() == [0, 1, 2]
    kept = load_checkpoint(tmp_path / "np.pt", trust=True)  # trusted: read as written
    assert type(kept["rate"]) is np.int64
    for value, kind in ((np.str_("grid"), "str_"), (np.complex64(1j), "complex64")):
        torch.save({"x": [value]}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=rf"bad\.pt: refused: it holds a numpy {kind} \(.*\); only numpy "
                                                  r"numbers \(bool, integer, floating\) are read as settings$"):
            load_checkpoint(tmp_path / "bad.pt", trust=False)
    # a tuple is rebuilt only where a value changed; a namedtuple keeps its numpy numbers
    same = (1, "a")
    assert ck._plain_numbers(same, tmp_path) is same
    changed = ck._plain_numbers((np.int64(1), "a"), tmp_path)
    assert changed == (1, "a") and type(changed) is tuple and type(changed[0]) is int
    named = Pair(np.int64(1), 2)
    assert ck._plain_numbers(named, tmp_path) is named
    listed = [np.int64(7)]
    assert ck._plain_numbers(listed, tmp_path) is listed and type(listed[0]) is int  # changed in place


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def test_values_nested_deeper_than_the_limit_are_refused(tmp_path):
    # the top-level dict is depth 0; the innermost list of {"x": _nested(k)} is at depth k + 1
    torch.save({"x": _nested(62)}, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["x"] == _nested(62)
    with pytest.raises(CheckpointError, match=r"^x: refused: its values are nested more than 64 deep$"):
        ck._plain_numbers({"x": _nested(63)}, "x")
    with pytest.raises(CheckpointError, match="nested more than 64"):
        ck._plain_numbers({"x": (_nested(62),)}, "x")  # tuples count as lists do


def test_a_zip_declaring_more_than_the_file_holds_is_refused_before_loading(tmp_path):
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", bytes(3_000_000))  # 3 MB of zeros, deflated to a few kB
    size = big.stat().st_size
    assert size < 10_000
    with pytest.raises(CheckpointError, match=rf"^.*big\.pt: refused: its records declare 3 MB in a "
                                              rf"{size / 1e6:.1f} MB file \(compressed records, which torch\.save never "
                                              r"writes\); loading would inflate them in memory$"):
        load_checkpoint(big)
    small = tmp_path / "small.pt"  # 1.0 MB declared: within the slack of 1 MiB, so torch.load is tried (and fails)
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", bytes(1_000_000))
    with pytest.raises(CheckpointError, match=r"small\.pt: not a readable checkpoint \("):
        load_checkpoint(small)
    assert ck.ARCHIVE_SLACK == 1_048_576


def test_model_config_from_reads_the_known_settings(tmp_path):
    cfg = model_config_from({"model_config": {**TINY_MODEL, "unknown_key": 1}})
    assert cfg == tiny() and cfg.image_size == tuple(TINY_MODEL["image_size"])
    with pytest.raises(CheckpointError, match=r"^f\.pt: has no model_config$"):
        model_config_from({"model_config": [1]}, "f.pt")
    with pytest.raises(CheckpointError, match=r"^checkpoint: has no model_config$"):
        model_config_from({})
    with pytest.raises(CheckpointError, match=r"^f\.pt: its model_config is not valid \(image size \(100, 100\)"):
        model_config_from({"model_config": {**TINY_MODEL, "image_size": [100, 100]}}, "f.pt")
    with pytest.raises(CheckpointError, match=r"^f\.pt: its model_config is not valid \(.*unet_skips"):
        model_config_from({"model_config": {**TINY_MODEL, "unet_skips": "some"}}, "f.pt")
    with pytest.raises(CheckpointError, match=r"^f\.pt: its model_config: id_dim must be a whole number >= 1, got 0$"):
        model_config_from({"model_config": {**TINY_MODEL, "id_dim": 0}}, "f.pt")
    d = model_config_dict(tiny())
    assert d["image_size"] == list(TINY_MODEL["image_size"]) and type(d["image_size"]) is list
    assert set(d) == {f.name for f in fields(ModelConfig)} and d["width"] == 0.125 and d["id_dim"] == 8


def _with(**values) -> ModelConfig:
    cfg = tiny()
    for k, v in values.items():
        setattr(cfg, k, v)  # as a file could hold them (ModelConfig itself does not check types)
    return cfg


def test_every_setting_must_be_a_whole_number_or_a_finite_number():
    assert ck._field_problems(tiny()) == []
    assert ck._field_problems(_with(id_dim=1, noise_std=1, width=2)) == []  # an int is a fine float setting
    assert ck._field_problems(_with(id_dim=0)) == ["id_dim must be a whole number >= 1, got 0"]
    assert ck._field_problems(_with(noise_dim=True)) == ["noise_dim must be a whole number >= 1, got True"]
    assert ck._field_problems(_with(context_dim=16.0)) == ["context_dim must be a whole number >= 1, got 16.0"]
    assert ck._field_problems(_with(noise_std=float("inf"))) == ["noise_std must be a finite number, got inf"]
    assert ck._field_problems(_with(width=False)) == ["width must be a finite number, got False"]
    assert ck._field_problems(_with(leaky_slope="0.2")) == ["leaky_slope must be a finite number, got '0.2'"]
    assert ck._field_problems(_with(id_dim=-3, noise_std=float("nan"))) == [
        "id_dim must be a whole number >= 1, got -3", "noise_std must be a finite number, got nan"]


def _ranges(**values):
    base = dict(image_size=(1024, 64), sample_rate=96_000, audio_window_s=1.0, audio_init_kernel_s=1.0,
                audio_init_stride_s=1.0, width=0.001, noise_std=0.0)
    return ck._range_problems(types.SimpleNamespace(**{**base, **values}))


def test_each_range_is_refused_just_outside_its_bound():
    assert _ranges() == []  # every value at its bound is allowed
    assert _ranges(image_size=(64, 1025)) == ["image_size [64, 1025] exceeds 1024 pixels a side"]
    assert _ranges(sample_rate=96_001) == ["sample_rate 96001 exceeds 96000 Hz"]
    assert _ranges(audio_window_s=1.01, audio_init_kernel_s=0.5, audio_init_stride_s=0.5) == [
        "audio_window_s 1.01 is not in (0, 1.0] s"]
    assert _ranges(audio_window_s=0.0) == ["audio_window_s 0.0 is not in (0, 1.0] s",
                                           "audio_init_kernel_s and audio_init_stride_s must lie in (0, audio_window_s]"]
    limits = "audio_init_kernel_s and audio_init_stride_s must lie in (0, audio_window_s]"
    assert _ranges(audio_init_kernel_s=1.5) == [limits]
    assert _ranges(audio_init_kernel_s=0.0) == [limits]
    assert _ranges(audio_init_stride_s=1.5) == [limits]
    assert _ranges(audio_init_stride_s=0.0) == [limits]
    assert _ranges(width=0.0) == ["width must be > 0, got 0.0"]
    assert _ranges(noise_std=-0.1) == ["noise_std must be >= 0, got -0.1"]


def test_check_model_config_names_the_file_what_was_read_and_every_problem(monkeypatch):
    assert check_model_config(tiny()) == tiny()
    with pytest.raises(CheckpointError, match=r"^a\.dat: its settings: id_dim must be a whole number >= 1, got 0; "
                                              r"noise_dim must be a whole number >= 1, got 0$"):
        check_model_config(_with(id_dim=0, noise_dim=0), "a.dat", "its settings")
    # the ranges are compared only once every value is a number (a text width would not compare)
    with pytest.raises(CheckpointError, match=r"^checkpoint: its model_config: width must be a finite number, got 'x'$"):
        check_model_config(_with(width="x", sample_rate=10**6))
    with pytest.raises(CheckpointError, match=r"^checkpoint: its model_config: sample_rate 1000000 exceeds 96000 Hz; "
                                              r"noise_std must be >= 0, got -1\.0$"):
        check_model_config(_with(sample_rate=10**6, noise_std=-1.0))
    n = ck.generator_parameters(ModelConfig())
    assert n == sum(p.numel() for p in Generator(ModelConfig()).parameters())  # the paper's model: 54 M
    assert round(n / 1e6) == 54
    monkeypatch.setattr(ck, "MAX_PARAMETERS", n)
    check_model_config(ModelConfig())  # exactly at the limit
    monkeypatch.setattr(ck, "MAX_PARAMETERS", n - 1)
    with pytest.raises(CheckpointError, match=r"^g\.pt: its model_config: a generator of 54 M parameters \(0\.2 GB\) "
                                              r"is above the limit of 54 M \(speechanim\.checkpoint\.MAX_PARAMETERS; "
                                              r"the paper's model has 54 M\): refused before it is built$"):
        check_model_config(ModelConfig(), "g.pt")
    monkeypatch.setattr(ck, "generator_parameters", lambda cfg: (_ for _ in ()).throw(RuntimeError("no such layer")))
    with pytest.raises(CheckpointError, match=r"^g\.pt: x: not a network this project can build \(no such layer\)$"):
        check_model_config(tiny(), "g.pt", "x")


def test_weights_must_be_finite_and_the_first_bad_one_is_named():
    check_finite_weights({"a": torch.ones(2), "steps": torch.tensor([3]), "meta": "x"}, "f.pt")
    bad = {"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")]), "c": torch.tensor([float("nan")])}
    with pytest.raises(CheckpointError, match=r"^f\.pt: generator weight b holds NaN or infinite values: refused "
                                              r"\(it would make NaN frames\)$"):
        check_finite_weights(bad, "f.pt")
    with pytest.raises(CheckpointError, match=r"^f\.pt: frame_discriminator weight c holds"):
        check_finite_weights({"c": torch.tensor([float("nan")], dtype=torch.float16)}, "f.pt", "frame_discriminator")
    with pytest.raises(CheckpointError, match=r"^f\.pt: the authors' weights hold a weight named \(0, 1\), not a "
                                              r"string: refused$"):
        check_finite_weights({"a": torch.ones(1), (0, 1): torch.ones(1)}, "f.pt", "the authors'")


@pytest.mark.parametrize("fps", [1, 1.0, 25, 29.97, 240, 240.0])
def test_a_frame_rate_within_the_range_is_accepted(fps):
    check_fps({"fps": fps}, "f.pt")


@pytest.mark.parametrize("fps", [0.99, 240.01, 0, -25, True, "25", None, float("nan"), float("inf")])
def test_a_frame_rate_outside_the_range_or_not_a_number_is_refused(fps):
    with pytest.raises(CheckpointError, match=rf"^f\.pt: its frame rate fps={fps!r} is not a number in \[1, 240\]$"
                       .replace("(", r"\(").replace(")", r"\)")):
        check_fps({"fps": fps}, "f.pt")


def test_no_recorded_frame_rate_is_fine():
    check_fps({}, "f.pt")


def test_load_generator_builds_the_recorded_network_in_eval_mode_channels_last(tmp_path):
    torch.manual_seed(0)
    gen = Generator(tiny())
    state = gen.state_dict()
    payload = {"model_config": model_config_dict(tiny()), "generator": state, "fps": 25}
    path = save_checkpoint(tmp_path / "g.pt", payload)
    loaded, back = load_generator(path)
    assert not loaded.training and back["fps"] == 25
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, state[name]), name
    convs = [p for p in loaded.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not all(p.is_contiguous() for p in convs)  # not the default layout

    def refused(name: str, match: str, **changes):
        save_checkpoint(tmp_path / name, {**payload, **changes})
        with pytest.raises(CheckpointError, match=match):
            load_generator(tmp_path / name)

    refused("none.pt", r"none\.pt: has no generator weights$", generator=None)
    refused("list.pt", r"list\.pt: has no generator weights$", generator=[1])
    refused("fps.pt", r"fps\.pt: its frame rate fps=0 ", fps=0)
    refused("nan.pt", r"nan\.pt: generator weight .* holds NaN",
            generator={k: (v * float("nan") if v.is_floating_point() else v) for k, v in state.items()})
    other = {k: v for k, v in state.items() if k != next(iter(state))}
    refused("missing.pt", r"missing\.pt: its generator weights do not fit the network its model_config describes "
                          r"\(.*Missing key", generator=other)
    refused("cfg.pt", r"cfg\.pt: has no model_config$", model_config=None)
    refused("intkey.pt", r"^.*intkey\.pt: generator weights hold a weight named 1, not a string: refused$",
            generator={**other, 1: next(iter(state.values()))})


class _Shell:
    def __reduce__(self):
        return (os.system, ("true",))  # never run: the tests below only load it untrusted


def test_a_refusal_names_what_torch_stopped_at_or_points_to_its_documentation(tmp_path):
    torch.save({"run": _Shell()}, tmp_path / "shell.pt")
    # os.system pickles as posix.system, a module torch blocks outright (its line: "unsupported GLOBAL ... blocked")
    with pytest.raises(CheckpointError, match=rf"shell\.pt: refused: the file holds Python objects other than weights "
                                              rf"and plain values \(Trying to load unsupported GLOBAL "
                                              rf"{os.system.__module__}\.system whose module {os.system.__module__} "
                                              r"is blocked\.\); unpickling it could run code"):
        load_checkpoint(tmp_path / "shell.pt")
    # a pickle that appends to a dict (EMPTY_DICT, BININT1 1, APPEND): no global at all, and torch's message names none
    (tmp_path / "append.pt").write_bytes(b"\x80\x02}K\x01a.")
    with pytest.raises(CheckpointError, match=r"append\.pt: refused: the file holds Python objects other than weights "
                                              r"and plain values \(see torch\.load\); unpickling it could run code"):
        load_checkpoint(tmp_path / "append.pt")


def test_code_is_refused_even_where_the_environment_turns_torchs_own_check_off(tmp_path, monkeypatch):
    torch.save({"run": _Code()}, tmp_path / "code.pt")
    # this variable makes torch.load unpickle fully wherever its caller leaves weights_only unset
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match=r"code\.pt: refused: .*unpickling it could run code"):
        load_checkpoint(tmp_path / "code.pt")


def _saved_on_a_gpu(path, payload, monkeypatch):
    """save_checkpoint as on a CUDA machine: each storage is recorded at cuda:0 (torch.serialization.location_tag
    names the device torch.load puts a storage back on unless map_location says otherwise)."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_checkpoint(path, payload)
    if not torch.cuda.is_available():  # the file does record cuda: torch.load alone cannot read it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)


def test_a_checkpoint_written_on_a_gpu_is_read_onto_the_cpu(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = Generator(tiny()).state_dict()
    path = tmp_path / "gpu.pt"
    _saved_on_a_gpu(path, {"model_config": model_config_dict(tiny()), "generator": state, "fps": 25}, monkeypatch)
    for trust in (False, True):
        weights = load_checkpoint(path, trust=trust)["generator"]
        assert {v.device.type for v in weights.values()} == {"cpu"}, trust
        assert all(torch.equal(weights[k], state[k]) for k in state), trust
    loaded, _ = load_generator(path)
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


def test_load_generator_refuses_code_unless_the_file_is_trusted(tmp_path):
    payload = {"model_config": model_config_dict(tiny()), "generator": Generator(tiny()).state_dict(), "run": _Code()}
    path = save_checkpoint(tmp_path / "code.pt", payload)
    with pytest.raises(CheckpointError, match=r"code\.pt: refused: .*\(API: trust=True\)$"):
        load_generator(path)
    loaded, back = load_generator(path, trust=True)
    assert back["run"] is None and not loaded.training  # print("ran code") returns None


def test_weights_that_do_not_fit_are_described_by_torchs_first_two_problems_cut_to_300_characters(tmp_path):
    state = Generator(tiny()).state_dict()
    first, resized = list(state)[0], next(k for k, v in state.items() if v.dim() == 4 and k != list(state)[0])
    # three problems: torch lists the missing key, then the unexpected one, then the size mismatch
    bad = {("renamed" if k == first else k): (torch.zeros(1) if k == resized else v) for k, v in state.items()}
    save_checkpoint(tmp_path / "three.pt", {"model_config": model_config_dict(tiny()), "generator": bad})
    with pytest.raises(CheckpointError, match=rf'three\.pt: its generator weights do not fit the network its '
                                              rf'model_config describes \(Missing key\(s\) in state_dict: '
                                              rf'"{re.escape(first)}"\.; Unexpected key\(s\) in state_dict: '
                                              r'"renamed"\.\)$'):
        load_generator(tmp_path / "three.pt")
    # every key renamed: the list of missing keys runs to thousands of characters, 300 are shown
    save_checkpoint(tmp_path / "all.pt", {"model_config": model_config_dict(tiny()),
                                          "generator": {f"x.{k}": v for k, v in state.items()}})
    with pytest.raises(CheckpointError) as e:
        load_generator(tmp_path / "all.pt")
    detail = str(e.value).split("describes (", 1)[1]
    assert detail.endswith(")") and len(detail) == 300 + 1 and detail.startswith('Missing key(s) in state_dict: "')


def test_a_damaged_zip_directory_is_named_as_such(tmp_path):
    data = bytearray(save_checkpoint(tmp_path / "good.pt", {"epoch": 1}).read_bytes())
    last = data.rfind(b"PK\x01\x02")  # the signature of the last central directory record
    data[last:last + 4] = b"PK\x00\x00"
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    assert zipfile.is_zipfile(tmp_path / "damaged.pt")  # its end record is intact: it still looks like a zip
    with pytest.raises(CheckpointError, match=r"^.*damaged\.pt: not a readable checkpoint \(a damaged zip archive: "
                                              r"Bad magic number for central directory\)$"):
        load_checkpoint(tmp_path / "damaged.pt")


def _zip_declaring(path, declared: int, size: int, stored: int = 0) -> None:
    """A zip of ``size`` bytes whose records declare ``declared``: ``stored`` random bytes kept as they are, the rest
    zeros deflated, the file padded to ``size`` by the archive's comment."""
    def write(comment: bytes) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("archive/random", np.random.default_rng(0).bytes(stored), compress_type=zipfile.ZIP_STORED)
            z.writestr("archive/data.pkl", bytes(declared - stored))
            z.comment = comment

    write(b"")
    write(b"x" * (size - path.stat().st_size))
    assert path.stat().st_size == size


def test_a_zip_may_declare_up_to_its_size_plus_the_slack_and_the_refusal_rounds_to_mb(tmp_path):
    at = tmp_path / "at.pt"
    _zip_declaring(at, ck.ARCHIVE_SLACK + 4000, 4000)  # exactly at the bound: torch.load is tried (and fails)
    with pytest.raises(CheckpointError, match=r"at\.pt: not a readable checkpoint \("):
        load_checkpoint(at)
    over = tmp_path / "over.pt"
    _zip_declaring(over, ck.ARCHIVE_SLACK + 4000, 3999)  # one byte over it
    with pytest.raises(CheckpointError, match=r"over\.pt: refused: its records declare 1 MB in a 0\.0 MB file"):
        load_checkpoint(over)
    # 3,500,000 bytes declared in 1,250,001: 3.5 MB and 1.250001 MB, shown as 4 (half to even) and 1.3
    big = tmp_path / "big.pt"
    _zip_declaring(big, 3_500_000, 1_250_001, stored=1_200_000)
    with pytest.raises(CheckpointError, match=r"big\.pt: refused: its records declare 4 MB in a 1\.3 MB file "):
        load_checkpoint(big)


def test_the_refusal_of_a_big_generator_states_its_size_in_millions_and_gigabytes(monkeypatch):
    # 187.5 M parameters of 4 bytes (0.75 GB) above a limit of 113.5 M: 188, 0.8 and 114 (halves go to the even digit)
    monkeypatch.setattr(ck, "generator_parameters", lambda cfg: 187_500_000)
    monkeypatch.setattr(ck, "MAX_PARAMETERS", 113_500_000)
    with pytest.raises(CheckpointError, match=r"^g\.pt: its model_config: a generator of 188 M parameters \(0\.8 GB\) "
                                              r"is above the limit of 114 M \(speechanim\.checkpoint\.MAX_PARAMETERS"):
        check_model_config(tiny(), "g.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_load_generator_puts_the_weights_and_the_generator_on_the_given_device(tmp_path):
    path = save_checkpoint(tmp_path / "g.pt", {"model_config": model_config_dict(tiny()),
                                               "generator": Generator(tiny()).state_dict()})
    loaded, back = load_generator(path, map_location="cuda")
    assert {v.device.type for v in back["generator"].values()} == {"cuda"}
    assert {p.device.type for p in loaded.parameters()} == {"cuda"}
