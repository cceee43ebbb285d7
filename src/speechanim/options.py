"""Command-line helpers shared by the training CLIs (generator, lipreader, SyncNet): config overrides as JSON,
the torch device, and atomic JSON results.  Errors are raised as the caller's error class, so each
CLI reports them in its own words."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from .fileio import write_text_atomic


def parse_overrides(text: str | None, config_cls, error: type[Exception], option: str = "--config"):
    """``config_cls`` from a JSON object of field overrides given as ``option`` (``--config``, ``--model``,
    ``--training``); the defaults when empty. Unknown keys and bad values raise ``error`` naming them."""
    if not text:
        return config_cls()
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{option}: not valid JSON ({e})") from e
    if not isinstance(overrides, dict):
        raise error(f"{option}: must be a JSON object of {config_cls.__name__} fields, got {type(overrides).__name__}")
    if hasattr(config_cls, "from_overrides"):  # its own checks and messages (LipReaderConfig, SyncNetConfig)
        return config_cls.from_overrides(overrides)
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise error(f"{option}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return config_cls(**overrides)
    except (TypeError, ValueError) as e:
        raise error(f"{option}: {e}") from e


def parse_device(name: str | None, error: type[Exception]) -> torch.device | None:
    """The torch device named by ``--device`` (None: the default); CUDA must be present if named."""
    if name is None:
        return None
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise error(f"--device: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error(f"--device {name}: CUDA is not available on this machine")
    return dev


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically (a temporary file renamed into place)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
