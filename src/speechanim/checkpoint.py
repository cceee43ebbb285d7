"""Checkpoint files: one ``torch.save`` dict per file, written atomically.

A training checkpoint holds (keys of the dict):

* ``model_config``  the :class:`speechanim.models.ModelConfig` fields (a plain dict)
* ``train_config``  the training settings (a plain dict)
* ``variant``       ``l1`` | ``l1_advimg`` | ``full`` | ``static``
* ``dataset``       the dataset it was trained on
* ``epoch``         the last finished epoch (0 before the first)
* ``fps``           the frame rate of the clips it was trained on (the authors' ``video_rate``)
* ``generator``, ``frame_discriminator``, ``sequence_discriminator``: state dicts (absent when the
  variant has no such network)
* ``optimisers``    a dict of optimiser state dicts, ``schedulers`` likewise
* ``rng``           torch, numpy and python RNG states, so that a resumed run continues the same stream
* ``best``          the best validation score so far and its epoch, ``history`` the per-epoch rows

Only ``model_config`` and ``generator`` are needed to generate; :func:`load_generator` reads them.

Loading never runs code from the file: ``torch.load(weights_only=True)`` unpickles only tensors,
plain Python values, the few numpy types the RNG states hold and numpy scalars (:func:`_safe_numpy`;
the authors' released files may store settings as ``numpy.int64`` and the like, which their loader
accepts). The numpy scalars are made Python numbers; one of another kind (text, complex, object)
is refused (:func:`_plain_numbers`). A file that
names anything else (a pickled function, a class with ``__reduce__``: code) is refused with
:class:`CheckpointError`. ``trust=True`` (``--trust-checkpoint``) unpickles it fully, for a file
from a source the user vouches for; no checkpoint this package writes needs it.

A small file must not make this process allocate gigabytes, nor carry a value that silently gives
black frames, so what a file declares is bounded before anything is built from it:
:func:`load_checkpoint` refuses a zip archive whose records declare more bytes than the file holds
(compressed records: ``torch.save`` never writes them, and loading would inflate them);
:func:`check_model_config` refuses settings that are not finite, lie outside the bounds below, or
describe a generator of more than :data:`MAX_PARAMETERS` parameters (counted on the ``meta`` device,
which allocates nothing); :func:`load_generator` also refuses a frame rate outside :data:`FPS_RANGE`
and weights that hold NaN or infinity, naming the tensor.
"""
from __future__ import annotations

import math
import os
import pickle
import shutil
import zipfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from .fileio import atomic_path
from .models import Generator, ModelConfig


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or lacks what is asked of it."""


#: Most generator parameters a checkpoint may describe: 500 M (2 GB of float32), 9x the paper's
#: GRID model (54 M; the authors' released grid.dat: 55 M). A file's model_config is checked against
#: it before the network is built: width 400 would otherwise allocate 7.7 T parameters.
MAX_PARAMETERS = 500_000_000
#: Largest frame side (pixels; the paper: 128 x 96): one frame's activations grow with its area.
MAX_IMAGE_SIDE = 1024
#: Highest audio rate (Hz; the project packs at 16 kHz, the released models hear 50 kHz) and longest
#: audio window (s; the paper: 0.16 s, the released models 0.2 s): every frame holds one window.
MAX_SAMPLE_RATE = 96_000
MAX_WINDOW_S = 1.0
#: The frame rates a checkpoint may record (``fps``, frames per second).
FPS_RANGE = (1.0, 240.0)
#: Slack for the few small records of a zip archive when its declared contents are compared with its size.
ARCHIVE_SLACK = 1 << 20


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` through a temporary file renamed on success (never a half file).

    torch.save is given the open file, not its name: given a name, it names the zip archive's records
    after it (the temporary name, with the process id), so the same payload gave different bytes.
    A failed write (a full disk) leaves the old file as it was and no temporary file, and raises
    :class:`CheckpointError` naming the file (torch's own message names neither file nor cause).
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(payload, f)
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({type(e).__name__}: {e}; "
                              f"{_free_space(path.parent)}); the previous file, if any, is kept") from None
    return path


def _free_space(folder: Path) -> str:
    """How much room the disk holding ``folder`` has left, for error messages (a full disk is the usual cause)."""
    try:
        return f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free on its disk"
    except OSError:
        return "free space unknown"


def _safe_numpy() -> list[Any]:
    """numpy's array reconstruction and dtype classes (what ``np.random.get_state()`` pickles to) and
    its scalar reconstruction (``numpy.int64(16000)`` pickles to ``scalar(dtype, bytes)``: data, no code)."""
    import numpy as np

    return [np.core.multiarray._reconstruct, np.core.multiarray.scalar, np.ndarray, np.dtype,
            *(getattr(np.dtypes, n) for n in np.dtypes.__all__)]


#: Deepest nesting of dicts, lists and tuples :func:`_plain_numbers` walks (a checkpoint's is about 6).
MAX_NESTING = 64


def _plain_numbers(value: Any, path: Path, depth: int = 0) -> Any:
    """``value`` with every numpy scalar made the Python number it holds (bool, int, float), dicts and
    lists changed in place (a state dict keeps its ``_metadata``), tuples rebuilt where one changed.
    A numpy scalar of another kind (text, bytes, complex, object), or nesting deeper than
    :data:`MAX_NESTING`, raises :class:`CheckpointError` naming the file."""
    import numpy as np

    if isinstance(value, np.generic):
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return value.item()
        raise CheckpointError(f"{path}: refused: it holds a numpy {type(value).__name__} ({value!r}); only numpy "
                              "numbers (bool, integer, floating) are read as settings")
    if not isinstance(value, (dict, list, tuple)):
        return value
    if depth >= MAX_NESTING:
        raise CheckpointError(f"{path}: refused: its values are nested more than {MAX_NESTING} deep")
    if isinstance(value, dict):
        for key in value:
            value[key] = _plain_numbers(value[key], path, depth + 1)
        return value
    items = [_plain_numbers(v, path, depth + 1) for v in value]
    if isinstance(value, list):
        value[:] = items
        return value
    changed = any(a is not b for a, b in zip(items, value))
    return tuple(items) if changed and type(value) is tuple else value  # a namedtuple keeps its numpy numbers


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    trust: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing one that carries code (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    _check_archive_size(path)
    try:
        if trust:
            payload = torch.load(path, map_location=map_location, weights_only=False)
        else:
            with torch.serialization.safe_globals(_safe_numpy()):
                payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e).lower() and "weights only" not in str(e).lower():
            raise CheckpointError(f"{path}: not a readable checkpoint (UnpicklingError: {e})") from None
        found = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise CheckpointError(f"{path}: refused: the file holds Python objects other than weights and plain values "
                              f"({found or 'see torch.load'}); unpickling it could run code. If you trust its source, "
                              f"load it with --trust-checkpoint (API: trust=True)") from None
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not trust:
        payload = _plain_numbers(payload, path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a speechanim checkpoint (holds a {type(payload).__name__})")
    return payload


def _check_archive_size(path: Path) -> None:
    """Refuse a zip-format checkpoint whose records declare more bytes than the file holds.

    ``torch.save`` stores its records uncompressed, so their sizes add up to a little less than the
    file's; ``torch.load`` would inflate compressed ones in memory (a 47 MB file to 1.7 GB) before any
    check could run. The legacy (pre-zip) format needs no such check: torch compares each storage's
    declared size with the bytes that follow it.
    """
    if not zipfile.is_zipfile(path):
        return
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (a damaged zip archive: {e})") from None
    if declared > size + ARCHIVE_SLACK:
        raise CheckpointError(f"{path}: refused: its records declare {declared / 1e6:.0f} MB in a {size / 1e6:.1f} MB "
                              f"file (compressed records, which torch.save never writes); loading would inflate them "
                              f"in memory")


def model_config_from(payload: dict[str, Any], path: str | os.PathLike = "checkpoint") -> ModelConfig:
    """The checkpoint's :class:`ModelConfig`, checked by :func:`check_model_config` before anything is built from it."""
    if not isinstance(payload.get("model_config"), dict):
        raise CheckpointError(f"{path}: has no model_config")
    known = {f.name for f in fields(ModelConfig)}
    try:
        cfg = ModelConfig(**{k: v for k, v in payload["model_config"].items() if k in known})
    except (TypeError, ValueError, OverflowError, IndexError) as e:
        raise CheckpointError(f"{path}: its model_config is not valid ({e})") from None
    return check_model_config(cfg, path)


def _field_problems(cfg: ModelConfig) -> list[str]:
    """Every int setting a whole number >= 1, every float setting a finite number (NaN noise_std: NaN frames)."""
    problems = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"{f.name} must be a whole number >= 1, got {value!r}")
        elif f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value)):
            problems.append(f"{f.name} must be a finite number, got {value!r}")
    return problems


def _range_problems(cfg: ModelConfig) -> list[str]:
    """The bounds of the module doc (MAX_IMAGE_SIDE, MAX_SAMPLE_RATE, MAX_WINDOW_S) and the signs the networks need."""
    checks = [
        (max(cfg.image_size) <= MAX_IMAGE_SIDE,
         f"image_size {list(cfg.image_size)} exceeds {MAX_IMAGE_SIDE} pixels a side"),
        (cfg.sample_rate <= MAX_SAMPLE_RATE, f"sample_rate {cfg.sample_rate} exceeds {MAX_SAMPLE_RATE} Hz"),
        (0 < cfg.audio_window_s <= MAX_WINDOW_S,
         f"audio_window_s {cfg.audio_window_s} is not in (0, {MAX_WINDOW_S}] s"),
        (0 < cfg.audio_init_kernel_s <= cfg.audio_window_s and 0 < cfg.audio_init_stride_s <= cfg.audio_window_s,
         "audio_init_kernel_s and audio_init_stride_s must lie in (0, audio_window_s]"),
        (cfg.width > 0, f"width must be > 0, got {cfg.width}"),
        (cfg.noise_std >= 0, f"noise_std must be >= 0, got {cfg.noise_std}"),
    ]
    return [msg for ok, msg in checks if not ok]


def generator_parameters(cfg: ModelConfig) -> int:
    """The parameter count of ``Generator(cfg)``, built on the ``meta`` device (shapes only, no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Generator(cfg).parameters())


def check_model_config(cfg: ModelConfig, path: str | os.PathLike = "checkpoint",
                       what: str = "its model_config") -> ModelConfig:
    """Refuse (:class:`CheckpointError` naming ``path`` and ``what`` was read) model settings read from a file
    before any network is built from them: not finite, out of the module doc's bounds, or a generator above
    :data:`MAX_PARAMETERS`."""
    problems = _field_problems(cfg)
    if not problems:  # the ranges compare numbers: only once every value is one
        problems = _range_problems(cfg)
    if problems:
        raise CheckpointError(f"{path}: {what}: {'; '.join(problems)}")
    try:
        n = generator_parameters(cfg)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"{path}: {what}: not a network this project can build ({e})") from None
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: {what}: a generator of {n / 1e6:,.0f} M parameters ({4 * n / 1e9:,.1f} GB) "
                              f"is above the limit of {MAX_PARAMETERS / 1e6:.0f} M (speechanim.checkpoint."
                              f"MAX_PARAMETERS; the paper's model has 54 M): refused before it is built")
    return cfg


def check_finite_weights(state: dict[str, Any], path: str | os.PathLike, what: str = "generator") -> None:
    """Refuse weights holding NaN or infinity (they make NaN frames: a black video), naming the first such tensor,
    and a weight named by anything but a string (torch's load_state_dict would fail on it with an AttributeError)."""
    for name, tensor in state.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: {what} weights hold a weight named {name!r}, not a string: refused")
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: {what} weight {name} holds NaN or infinite values: refused "
                                  "(it would make NaN frames)")


def check_fps(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """A recorded frame rate (``fps``) must be a number in :data:`FPS_RANGE` (0 fps divides by zero later)."""
    if "fps" not in payload:
        return
    fps = payload["fps"]
    lo, hi = FPS_RANGE
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not lo <= fps <= hi:
        raise CheckpointError(f"{path}: its frame rate fps={fps!r} is not a number in [{lo:g}, {hi:g}]")


def model_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["image_size"] = list(cfg.image_size)
    return d


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                   trust: bool = False) -> tuple[Generator, dict[str, Any]]:
    """The generator of a checkpoint, in eval mode on ``map_location``, and the checkpoint's dict.

    Its weights are kept channels-last, the layout it was trained in (speechanim.train.CHANNELS_LAST):
    the same parameters, and faster on the CPU than the default layout (README, the benchmark table).
    The settings, the frame rate and the weights are checked first (see the module doc).
    """
    payload = load_checkpoint(path, map_location, trust=trust)
    if "generator" not in payload or not isinstance(payload["generator"], dict):
        raise CheckpointError(f"{path}: has no generator weights")
    cfg = model_config_from(payload, path)  # bounded before the network is built
    check_fps(payload, path)
    check_finite_weights(payload["generator"], path)
    try:
        generator = Generator(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its model_config is not valid ({e})") from None
    try:
        generator.load_state_dict(payload["generator"])
    except RuntimeError as e:  # missing/unexpected keys or shapes that differ from model_config's network
        first = str(e).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0]
        raise CheckpointError(f"{path}: its generator weights do not fit the network its model_config describes "
                              f"({detail[:300]})") from None
    generator.to(map_location).to(memory_format=torch.channels_last).eval()
    return generator, payload
