"""Checkpoint files: one ``torch.save`` dict per file, written atomically.

A training checkpoint holds (keys of the dict):

* ``model_config``  the :class:`speechanim.models.ModelConfig` fields (a plain dict)
* ``train_config``  the training settings (a plain dict)
* ``variant``       ``l1`` | ``l1_advimg`` | ``full`` | ``static``
* ``dataset``       the dataset it was trained on
* ``epoch``         the last finished epoch (0 before the first)
* ``generator``, ``frame_discriminator``, ``sequence_discriminator``: state dicts (absent when the
  variant has no such network)
* ``optimisers``    a dict of optimiser state dicts, ``schedulers`` likewise
* ``rng``           torch, numpy and python RNG states, so that a resumed run continues the same stream
* ``best``          the best validation score so far and its epoch, ``history`` the per-epoch rows

Only ``model_config`` and ``generator`` are needed to generate; :func:`load_generator` reads them.
"""
from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from .models import Generator, ModelConfig


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or lacks what is asked of it."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` through a temporary file renamed on success (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
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


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """The generator of a checkpoint, in eval mode on ``map_location``, and the checkpoint's dict."""
    payload = load_checkpoint(path, map_location)
    if "generator" not in payload:
        raise CheckpointError(f"{path}: has no generator weights")
    generator = Generator(model_config_from(payload, path))
    generator.load_state_dict(payload["generator"])
    generator.to(map_location).eval()
    return generator, payload
