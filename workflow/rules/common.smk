# Shared setup and input functions. Every rule calls the package: `python -m speechanim.<stage> ...`.
import json
import os
import shlex
import sys
from pathlib import Path

REPO = Path(workflow.basedir)
# Rules and input functions use the package from this checkout, installed or not.
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))

from speechanim.config import validate_config  # noqa: E402

validate_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")

DATA = config["data_dir"]
RESULTS = config["results_dir"]
RUN_DATASETS = config["run_datasets"]
SEEDS = config["seeds"]
LOGS = "logs"

# GRID: speakers 1..34; speaker 21 has no video.
GRID_SPEAKERS = [f"s{i}" for i in range(1, 35) if i != 21]


wildcard_constraints:
    dataset="[a-z0-9]+",
    run="[a-z0-9]+(/seed[0-9]+)?",
    speaker="[A-Za-z0-9_-]+",


def speakers(dataset):
    """The speakers of a dataset, as the config selects them."""
    if dataset == "synthgrid":
        return [f"s{i}" for i in range(1, config["datasets"]["synthgrid"]["n_speakers"] + 1)]
    chosen = config["datasets"][dataset]["speakers"]
    if dataset == "grid":
        available = GRID_SPEAKERS
    elif dataset == "tcdtimit":
        from speechanim.raw.tcdtimit import list_speakers

        available = list_speakers(config["datasets"]["tcdtimit"]["source_dir"])
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    if chosen == "all":
        return list(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"config: datasets.{dataset}.speakers: not speakers of {dataset}: {', '.join(unknown)}")
    return list(chosen)


def raw_manifests(dataset):
    """The per-speaker manifest.tsv files that mark a dataset's raw stage complete."""
    return expand(f"{DATA}/raw/{dataset}/{{speaker}}/manifest.tsv", speaker=speakers(dataset))


def grid_shared_inputs(wildcards):
    """The shared GRID archives a speaker job extracts from (audio_25k.zip only when its audio is used)."""
    names = ["alignments"]
    if config["datasets"]["grid"].get("audio_source", "video") == "archive":
        names.append("audio_25k")
    return [f"{DATA}/downloads/grid/{name}.zip" for name in names]


_SPLITS = {}


def split_of(dataset):
    """speaker -> train/val/test, the same function the split rule writes down (deterministic)."""
    if dataset not in _SPLITS:
        from speechanim.preprocess import make_split

        cfg = config["splits"]
        _SPLITS[dataset] = make_split(dataset, speakers(dataset), ratios=tuple(cfg["ratios"]), seed=cfg["seed"])
    return _SPLITS[dataset]


def speakers_in(dataset, part):
    return sorted(s for s, p in split_of(dataset).items() if p == part)


def packed(dataset, part):
    return f"{DATA}/packed/{dataset}/{part}.h5"


def model_json(wildcards=None):
    """The generator's ModelConfig overrides: config's model section plus the preprocessing sizes it must match."""
    pre = config["preprocess"]
    model = dict(config["model"], image_size=list(pre["image_size"]), sample_rate=pre["sample_rate"],
                 audio_window_s=pre["audio_window_s"])
    return json.dumps(model, sort_keys=True)


# Training seeds. A run is one dataset trained and scored with one seed: seed 0 keeps the default
# paths (results/<dataset>/models, generated, metrics), seed k > 0 goes under results/<dataset>/seed<k>/,
# so a run with `seeds: [0]` is exactly the default one and a longer list adds runs beside it.
def run_of(dataset, seed):
    """The {run} wildcard of a dataset's seed: "<dataset>" or "<dataset>/seed<k>"."""
    return dataset if seed == 0 else f"{dataset}/seed{seed}"


def dataset_of(run):
    return run.split("/")[0]


def seed_of(run):
    return int(run.partition("/seed")[2] or 0)


def shell_args(*words):
    """Command-line words joined for a shell command, each quoted (paths may hold spaces)."""
    return shlex.join(str(w) for w in words)


def metrics_dirs(dataset):
    """A dataset's metrics folders, one per seed, comma-separated as speechanim.tables and .claims read them."""
    return ",".join(f"{RESULTS}/{run_of(dataset, seed)}/metrics" for seed in SEEDS)
