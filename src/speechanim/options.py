"""Command-line helpers shared by the training CLIs (lipreader, SyncNet): config overrides as JSON,
the torch device, and atomic JSON results.  Errors are raised as the caller's error class, so each
CLI reports them in its own words."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


def parse_overrides(text: str | None, config_cls, error: type[Exception]):
    """``config_cls`` from a JSON object of field overrides (``--config``); the defaults when empty."""
    if not text:
        return config_cls()
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"--config: not valid JSON ({e})") from e
    if not isinstance(overrides, dict):
        raise error(f"--config: must be a JSON object of {config_cls.__name__} fields, got {type(overrides).__name__}")
    return config_cls.from_overrides(overrides)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
