"""Load and validate the pipeline's configuration against ``workflow/schemas/config.schema.yaml``.

The Snakefile calls :func:`validate_config` before it builds the DAG, so an unknown key or a bad
value fails at once with a message that names the key, e.g.
``config: datasets.grid.speakers: 'some' is not valid under any of the given schemas``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema; the message names the offending key."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike = SCHEMA, source: str = "config") -> dict:
    """Check ``config`` against the schema; raise :class:`ConfigError` listing every problem by key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors:
            if err.validator == "additionalProperties":
                extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
                where = _key(err.absolute_path)
                for name in extra:
                    key = f"{where}.{name}" if err.absolute_path else name
                    lines.append(f"{source}: {key}: unknown key")
            else:
                lines.append(f"{source}: {_key(err.absolute_path)}: {err.message}")
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines))
    return config


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike = SCHEMA) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    return validate_config(config, schema_path, source=str(path))
