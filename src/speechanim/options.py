"""Command-line helpers shared by the training CLIs (generator, lipreader, SyncNet): config overrides as JSON,
the torch device, and atomic JSON results.  Errors are raised as the caller's error class, so each
CLI reports them in its own words.  Also the argparse types that bound what ``speechanim``'s options
accept (:func:`sample_rate_hz`, :func:`positive_seconds`, :func:`port_number`): a value that would
hang or crash the command later is refused with argparse's usage line (exit 2)."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

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


def parse_device(name: str | None, error: type[Exception]):
    """The torch device named by ``--device`` (None: the default); CUDA must be present if named."""
    import torch  # imported here: the argparse types below are used where torch is not loaded yet

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


def sample_rate_hz(text: str) -> int:
    """argparse type: a sample rate in Hz within :data:`speechanim.stream.MIN_RATE` .. ``MAX_RATE``
    (``--rate 1`` would make 16,000 samples, 640 frames, of every input sample: a stream that never ends)."""
    from .stream import check_rate

    try:
        return check_rate(int(text), "rate")
    except ValueError:
        from .stream import MAX_RATE, MIN_RATE

        raise argparse.ArgumentTypeError(f"{text!r} is not a sample rate from {MIN_RATE} to {MAX_RATE} Hz") from None


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 (``nan`` would never time out)."""
    from .stream import check_seconds

    try:
        return check_seconds(text, "seconds")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds above 0") from None


def positive_gain(text: str) -> float:
    """argparse type: a finite factor above 0 (``--gain nan`` made a black video), checked before any file opens."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number above 0")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 0 (any free port) to 65535")
    return port
