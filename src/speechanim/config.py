"""Load and validate the pipeline's configuration against ``workflow/schemas/config.schema.yaml``.

The Snakefile calls :func:`validate_config` before it builds the DAG, so an unknown key or a bad
value fails at once with a message that names the key, e.g.
``config: datasets.grid.speakers: 'some' is not valid under any of the given schemas``.

Before anything walks it, :func:`check_shape` bounds the configuration's size and depth (a few
hundred bytes of nested YAML aliases would otherwise keep the walk busy for hours), and after the
command line's strings are typed, :func:`non_finite` refuses NaN and infinity anywhere (JSON
Schema's bounds let NaN through). Beyond the schema, :func:`check_values` checks what would otherwise fail late, after the
preprocessing: the ``model``, ``training``, ``lipreader`` and ``syncnet`` sections are built into
their dataclasses (unknown keys and bad values named), the frame size must suit the networks, the
sample rate must give a whole number of samples per video frame, and the split ratios must sum to 1.
Values given on the command line (``snakemake --config 'preprocess={image_size: [128, 96]}'``)
arrive as strings inside nested values; :func:`coerce` turns them into the numbers and booleans the
schema asks for first.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema; the message names the offending key."""


#: The most values a configuration may hold, each alias counted every time it appears: ``config.yaml``
#: holds about 90. A few hundred bytes of nested YAML aliases (a "billion laughs") load as a few shared
#: objects that a walk sees as 10^8 values; the check counts up to this bound and stops.
MAX_VALUES = 20_000

#: The deepest nesting of mappings and lists a configuration may have (``config.yaml``: 3).
MAX_DEPTH = 20


def check_shape(config: Any, source: str = "config") -> None:
    """Refuse a configuration with more than :data:`MAX_VALUES` values or nested deeper than
    :data:`MAX_DEPTH`, before anything else walks it (:func:`coerce`, the schema): the walk stops at
    the bound, so its time is bounded whatever the file's aliases expand to."""
    stack, seen = [(config, ())], 0
    while stack:
        value, path = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(f"{source}: {_key(path)}: the configuration holds more than {MAX_VALUES:,} values "
                              f"(nested YAML aliases?); refused before checking it")
        if len(path) > MAX_DEPTH:
            raise ConfigError(f"{source}: {_key(path[:MAX_DEPTH + 1])}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, (*path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))


def non_finite(config: Any, path: tuple = ()) -> list[str]:
    """Every NaN or infinite number in ``config`` (the schema's ``minimum`` and ``maximum`` let NaN
    through, and infinity past a minimum), one line each naming its key."""
    if isinstance(config, float) and not math.isfinite(config):
        return [f"{_key(path)}: {config} is not a finite number"]
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    return [problem for k, v in items for problem in non_finite(v, (*path, k))]


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _types(schema: dict) -> set[str]:
    t = schema.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float)) or value is None else text


def coerce(value: Any, schema: dict | None) -> Any:
    """``value`` with strings turned into numbers, booleans or null where the schema (or, in a free-form
    section, the text itself) asks for one; in place for dicts and lists, which are also returned."""
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get("properties")
        for k, v in value.items():  # a free-form section (no properties): every leaf as its text reads
            value[k] = coerce(v, props.get(k) if props is not None else None)
        return value
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        for i, v in enumerate(value):
            value[i] = coerce(v, items)
        return value
    if isinstance(value, str):
        wanted = _types(schema)
        if not schema or (wanted and "string" not in wanted):
            converted = _scalar(value)
            if not schema or not wanted or _kind(converted) in wanted or (_kind(converted) == "integer" and "number" in wanted):
                return converted
    return value


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if v is None:
        return "null"
    return "string"


def dataset_problems(config: dict[str, Any]) -> list[str]:
    """``run_datasets`` naming a dataset that ``datasets`` does not configure (checked with the schema's errors)."""
    run, datasets = config.get("run_datasets"), config.get("datasets")
    if not isinstance(run, list) or not isinstance(datasets, dict):
        return []
    return [f"run_datasets.{i}: {name!r} is not configured under datasets (known: {', '.join(datasets)}; a folder "
            f"of videos: datasets.{name}: {{kind: folder, root: PATH}})"
            for i, name in enumerate(run) if isinstance(name, str) and name not in datasets]


def check_values(config: dict[str, Any]) -> list[str]:
    """Problems the schema cannot see (see the module doc), one line each, naming the key."""
    from dataclasses import fields

    from .lipreader import LipReaderConfig
    from .models import ModelConfig
    from .syncnet import SyncNetConfig
    from .train import TrainConfig

    problems = []
    pre = config["preprocess"]
    rate, fps = pre["sample_rate"], pre["fps"]
    if abs(rate / fps - round(rate / fps)) > 1e-9:
        problems.append(f"preprocess.sample_rate: {rate} Hz is not a whole number of samples per video frame at "
                        f"preprocess.fps {fps} ({rate / fps:g}); pick a rate that is a multiple of the frame rate")
    for key in ("ratios", "utterance_ratios"):
        ratios = config["splits"].get(key)
        if ratios is not None and abs(sum(ratios) - 1) > 1e-6:
            problems.append(f"splits.{key}: {ratios} sum to {sum(ratios):g}, not 1 (train, validation, test)")
    ablation = config.get("ablation_seeds")
    if ablation and (ablation[0] != config["seeds"][0] or not set(ablation) <= set(config["seeds"])):
        problems.append(f"ablation_seeds: {ablation} must be some of seeds {config['seeds']}, starting with the first "
                        f"({config['seeds'][0]}: the figures and Table 2 read its models)")
    sections = {
        "model": (ModelConfig, dict(image_size=tuple(pre["image_size"]), sample_rate=rate,
                                    audio_window_s=pre["audio_window_s"])),
        "training": (TrainConfig, {}),
        "lipreader": (LipReaderConfig, {}),
        "syncnet": (SyncNetConfig, {}),
    }
    for name, (cls, extra) in sections.items():
        given = config.get(name) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        for key in unknown:
            problems.append(f"{name}.{key}: unknown key (known: {', '.join(sorted(known - set(extra)))})")
        if unknown:
            continue
        try:
            cls(**{**given, **extra})
        except (TypeError, ValueError) as e:
            where = "preprocess.image_size / model" if name == "model" and "image" in str(e).lower() else name
            problems.append(f"{where}: {e}")
    return problems


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike = SCHEMA, source: str = "config") -> dict:
    """Check ``config`` against the schema and :func:`check_values`; raise :class:`ConfigError` listing
    every problem by key. Its size is bounded first (:func:`check_shape`), command-line strings are
    then coerced to the schema's types (:func:`coerce`), and NaN or infinity is refused (:func:`non_finite`)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    check_shape(config, source)  # first: coerce and the schema walk every value, aliases expanded
    coerce(config, schema)
    infinite = non_finite(config)
    named = {line.split(": ")[0] for line in infinite}  # keys the schema need not name again
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    errors = [e for e in errors if _key(e.absolute_path) not in named]
    if errors or infinite:
        lines = [f"{source}: {p}" for p in infinite]
        for err in errors:
            if err.validator == "additionalProperties":
                extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
                where = _key(err.absolute_path)
                for name in extra:
                    key = f"{where}.{name}" if err.absolute_path else name
                    lines.append(f"{source}: {key}: unknown key")
            else:
                lines.append(f"{source}: {_key(err.absolute_path)}: {err.message}")
        lines += [f"{source}: {p}" for p in dataset_problems(config)]
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines))
    problems = dataset_problems(config) + check_values(config)
    if problems:
        raise ConfigError("invalid configuration\n  " + "\n  ".join(f"{source}: {p}" for p in problems))
    return config


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike = SCHEMA) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    return validate_config(config, schema_path, source=str(path))


def model_json(config: dict[str, Any]) -> str:
    """The generator's ModelConfig overrides of a run's config: its model section plus the preprocessing sizes the
    model must match (what the train rule passes as --model; the plan and the benchmarks read it the same way)."""
    import json

    pre = config["preprocess"]
    return json.dumps(dict(config["model"], image_size=list(pre["image_size"]), sample_rate=pre["sample_rate"],
                           audio_window_s=pre["audio_window_s"]), sort_keys=True)
