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
plain Python values and the few numpy types the RNG states hold (:data:`SAFE_NUMPY`). A file that
names anything else (a pickled function, a class with ``__reduce__``: code) is refused with
:class:`CheckpointError`. ``trust=True`` (``--trust-checkpoint``) unpickles it fully, for a file
from a source the user vouches for; no checkpoint this package writes needs it.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from .fileio import atomic_path
from .models import Generator, ModelConfig


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or lacks what is asked of it."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` through a temporary file renamed on success (never a half file).

    torch.save is given the open file, not its name: given a name, it names the zip archive's records
    after it (the temporary name, with the process id), so the same payload gave different bytes.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    return path


def _safe_numpy() -> list[Any]:
    """numpy's array reconstruction and dtype classes: what ``np.random.get_state()`` pickles to."""
    import numpy as np

    return [np.core.multiarray._reconstruct, np.ndarray, np.dtype,
            *(getattr(np.dtypes, n) for n in np.dtypes.__all__)]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    trust: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing one that carries code (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
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
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a speechanim checkpoint (holds a {type(payload).__name__})")
    return payload


def model_config_from(payload: dict[str, Any], path: str | os.PathLike = "checkpoint") -> ModelConfig:
    if "model_config" not in payload:
        raise CheckpointError(f"{path}: has no model_config")
    known = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in payload["model_config"].items() if k in known})


def model_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["image_size"] = list(cfg.image_size)
    return d


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                   trust: bool = False) -> tuple[Generator, dict[str, Any]]:
    """The generator of a checkpoint, in eval mode on ``map_location``, and the checkpoint's dict.

    Its weights are kept channels-last, the layout it was trained in (speechanim.train.CHANNELS_LAST):
    the same parameters, and faster on the CPU than the default layout (README, the benchmark table).
    """
    payload = load_checkpoint(path, map_location, trust=trust)
    if "generator" not in payload or not isinstance(payload["generator"], dict):
        raise CheckpointError(f"{path}: has no generator weights")
    if not isinstance(payload.get("model_config"), dict):
        raise CheckpointError(f"{path}: has no model_config")
    try:
        generator = Generator(model_config_from(payload, path))
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
