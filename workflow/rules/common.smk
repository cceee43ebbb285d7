# Shared setup and input functions. The rules call the package (`python -m speechanim.<stage> ...`).
import json
import os
import re
import shlex
import sys
from pathlib import Path

REPO = Path(workflow.basedir)


def check_package_installed():
    """The rules run `python -m speechanim.<stage>` from the environment they run in: the one snakemake runs
    from (`make setup` installs the checkout there, editable), or with --use-conda the rule's env, whose
    post-deploy script installs it (envs/*.post-deploy.sh). Fail early, naming the fix, when it is missing."""
    from importlib.util import find_spec

    from snakemake.exceptions import WorkflowError
    from snakemake.settings.types import DeploymentMethod

    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return
    spec = find_spec("speechanim")
    if spec is None:
        raise WorkflowError(f"the speechanim package is not installed in {sys.prefix}: the rules run it from there. "
                            f"Run `make setup` (or `pip install -e {REPO}`) first, or use --use-conda.")
    here = (REPO / "src" / "speechanim").resolve()
    if Path(spec.origin).parent.resolve() != here:
        print(f"note: the rules run speechanim from {Path(spec.origin).parent}, not from this checkout ({here})",
              file=sys.stderr)


check_package_installed()
# The input functions below import the package from this checkout (in the snakemake process only).
sys.path.insert(0, str(REPO / "src"))

from speechanim.config import model_json as config_model_json, validate_config  # noqa: E402
# The rows of the tables, as speechanim.tables reads them: the controls (still, shifted_audio) and the
# real videos (ground_truth) are made from the test set and do not depend on the generator's seed.
from speechanim.evaluate import CONTROLS  # noqa: E402
from speechanim.tables import SEED_INDEPENDENT, TABLE2_METHODS, TABLE3_METHODS  # noqa: E402

validate_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")

DATA = config["data_dir"]
RESULTS = config["results_dir"]
RUN_DATASETS = config["run_datasets"]
SEEDS = config["seeds"]
# The ablation-only variants (Table 2's L1 and L1 + Adv_img) may be trained with fewer seeds than the full model
# and the static baseline, which Table 3 and most claims compare (`ablation_seeds`; null: every seed).
ABLATION_ONLY = ("l1", "l1_advimg")
ABLATION_SEEDS = config.get("ablation_seeds") or SEEDS
LOGS = config["logs_dir"]
# The authors' released models to score in Table 3: dataset -> their .dat file (speechanim import-sda).
PRETRAINED = {d: path for d, path in (config.get("pretrained") or {}).items() if d in RUN_DATASETS}
# The user study's answers (a SQLite file or its CSV export), or None: Table 3's User column and Fig. 9.
USER_STUDY_RESPONSES = config["user_study"]["responses"]

# GRID: speakers 1..34; speaker 21 has no video.
GRID_SPEAKERS = [f"s{i}" for i in range(1, 35) if i != 21]
# Datasets that are a folder of talking-face videos (speechanim.raw.folder): a user's recordings, GRID's speaker 1.
FOLDER_DATASETS = sorted(d for d, c in config["datasets"].items() if (c or {}).get("kind") == "folder")
# The folder rule's {dataset} wildcard: the folder datasets' names (a pattern that matches nothing when there are none).
FOLDER_DATASET_PATTERN = "|".join(FOLDER_DATASETS) or "(?!)"


def folder_speaker_arg(dataset):
    """The one speaker id of a folder that holds its videos directly (datasets.<name>.speaker, default s1)."""
    return config["datasets"][dataset].get("speaker", "s1")



def speakers(dataset):
    """The speakers of a dataset, as the config selects them."""
    if dataset == "synthgrid":
        return [f"s{i}" for i in range(1, config["datasets"]["synthgrid"]["n_speakers"] + 1)]
    chosen = config["datasets"][dataset].get("speakers", "all")
    if dataset in FOLDER_DATASETS:
        from speechanim.raw.folder import list_speakers

        available = list_speakers(config["datasets"][dataset]["root"], single_speaker=folder_speaker_arg(dataset))
    elif dataset == "grid":
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


def has_transcripts(dataset):
    """Whether a dataset's clips have transcripts (a folder of videos may have none: no lipreader, WER N/A)."""
    if dataset in FOLDER_DATASETS:
        from speechanim.raw.folder import has_transcripts as folder_has_transcripts

        return folder_has_transcripts(config["datasets"][dataset]["root"], single_speaker=folder_speaker_arg(dataset))
    return True


def lipreader_of(dataset):
    """The dataset's lipreader checkpoint, or nothing when it has no transcripts to train one on."""
    return [f"{RESULTS}/{dataset}/lipreader.pt"] if has_transcripts(dataset) else []


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


def split_by(dataset):
    """"speaker" (the paper's speaker-independent split) or "utterance" (speaker-dependent: a one-speaker corpus,
    or `splits.by: utterance`). `splits.by: auto` (the default) splits by utterance only when there is one speaker."""
    by = config["splits"].get("by", "auto")
    if by == "auto":
        return "utterance" if len(speakers(dataset)) == 1 else "speaker"
    return by


def split_ratios(dataset):
    """The split's ratios: `splits.ratios` (paper 50/20/30 of the speakers) or, by utterance, `splits.utterance_ratios`."""
    if split_by(dataset) == "utterance":
        return config["splits"].get("utterance_ratios", [0.8, 0.1, 0.1])
    return config["splits"]["ratios"]


def split_of(dataset):
    """speaker -> train/val/test, the same function the split rule writes down (deterministic).
    Only for a split by speaker: an utterance split is read from the manifests when the split rule runs."""
    if dataset not in _SPLITS:
        from speechanim.preprocess import make_split

        cfg = config["splits"]
        _SPLITS[dataset] = make_split(dataset, speakers(dataset), ratios=tuple(cfg["ratios"]), seed=cfg["seed"])
    return _SPLITS[dataset]


def speakers_in(dataset, part):
    """The speakers whose aligned files a part is packed from (by utterance: every speaker)."""
    if split_by(dataset) == "utterance":
        return sorted(speakers(dataset))
    return sorted(s for s, p in split_of(dataset).items() if p == part)


def packed(dataset, part):
    return f"{DATA}/packed/{dataset}/{part}.h5"


def model_json(wildcards=None):
    """The generator's ModelConfig overrides: config's model section plus the preprocessing sizes it must match."""
    return config_model_json(config)


# Training seeds. A run is one dataset trained and scored with one seed: seed 0 keeps the default
# paths (results/<dataset>/models, generated, metrics), seed k > 0 goes under results/<dataset>/seed<k>/,
# so a run with `seeds: [0]` is exactly the default one and a longer list adds runs beside it.
def run_of(dataset, seed):
    """The {run} wildcard of a dataset's seed: "<dataset>" or "<dataset>/seed<k>"."""
    return dataset if seed == 0 else f"{dataset}/seed{seed}"


def dataset_of(run):
    return run.split("/")[0]


def seed_of(run):
    match = re.fullmatch(r"[a-z0-9]+(?:.seed(\d+))?", run)  # "<dataset>" or "<dataset>/seed<k>"
    return int(match.group(1) or 0)


def shell_args(*words):
    """Command-line words joined for a shell command, each quoted (paths may hold spaces)."""
    return shlex.join(str(w) for w in words)


def metrics_dirs(dataset, seeds=None):
    """A dataset's metrics folders, one per seed, comma-separated as speechanim.tables and .claims read them."""
    return ",".join(f"{RESULTS}/{run_of(dataset, seed)}/metrics" for seed in (seeds or SEEDS))


def ablation_args(dataset):
    """--ablation-metrics with the folders of the seeds the ablation-only variants train with, when fewer than SEEDS."""
    return [] if ABLATION_SEEDS == SEEDS else ["--ablation-metrics", metrics_dirs(dataset, ABLATION_SEEDS)]


def metrics_dirs_of(input_files):
    """The metrics folders of a table's input summaries, in order of first appearance (the first seed's
    first), comma-separated as speechanim.tables reads them."""
    return ",".join(dict.fromkeys(os.path.dirname(f) for f in input_files))


def ablation_args_of(input_files):
    """--ablation-metrics from a table's input summaries: the folders of the l1 summaries, when the ablation-only
    variants were trained with fewer seeds than the others (`ablation_seeds`)."""
    mine = [f for f in input_files if os.path.basename(f) == f"{ABLATION_ONLY[0]}.json"]
    every = metrics_dirs_of(input_files).split(",")
    return "" if len(mine) == len(every) else shell_args("--ablation-metrics", metrics_dirs_of(mine))


# --- the raw stage


def grid_cli_args():
    """The download options every GRID job passes on."""
    grid, dl = config["datasets"]["grid"], config["download"]
    words = ["--base-url", grid["base_url"]] + (["--record-url", grid["record_url"]] if grid.get("record_url") else [])
    words += ["--downloads", f"{DATA}/downloads/grid", "--retries", dl["retries"], "--backoff", dl["backoff_s"],
              "--timeout", dl["timeout_s"]] + ([] if grid.get("verify", True) else ["--no-verify"])
    return shell_args(*words)


# --- evaluation


def evaluate_args(wildcards):
    """The evaluate command's options for one method or control (the values it reads from `evaluation`)."""
    ev = config["evaluation"]
    args = f"--frame-step {ev['frame_step']}"
    if ev.get("max_clips"):
        args += f" --max-clips {ev['max_clips']}"
    if wildcards.method in CONTROLS:
        args += f" --control {wildcards.method}"
    if wildcards.method == "shifted_audio":
        args += f" --shift-s {ev['control_shift_s']}"
    return args


def generated_video(wildcards):
    """A method's generated videos; none for the real videos and the controls made from them."""
    if wildcards.method in SEED_INDEPENDENT and wildcards.method != "pretrained":
        return []
    return f"{RESULTS}/{wildcards.run}/generated/{wildcards.method}.h5"


def _trained_methods(methods):
    return [m for m in methods if m not in SEED_INDEPENDENT]


def table3_metrics(dataset):
    """Table 3's summaries of a dataset: seed_metrics, and the authors' model's when `pretrained` names one."""
    extra = [f"{RESULTS}/{run_of(dataset, SEEDS[0])}/metrics/pretrained.json"] if dataset in PRETRAINED else []
    return seed_metrics(dataset, TABLE3_METHODS) + extra


def seed_metrics(dataset, methods):
    """The summaries a table reads: the trained methods' for every seed, the seed-independent rows' once
    (from the first seed's folder, as speechanim.tables reads them)."""
    first = run_of(dataset, SEEDS[0])
    return [f"{RESULTS}/{first}/metrics/{m}.json" for m in methods if m not in _trained_methods(methods)] + [
        f"{RESULTS}/{run_of(dataset, s)}/metrics/{m}.json" for s in SEEDS for m in _trained_methods(methods)
        if m not in ABLATION_ONLY or s in ABLATION_SEEDS]


# --- the user study (paper 4.5)


def generated_dir(dataset):
    """The first seed's generated videos of a dataset (the study shows those)."""
    return f"{RESULTS}/{run_of(dataset, SEEDS[0])}/generated"


def study_args():
    """The study build's options from `user_study` (the counts go into the manifest as the server's defaults)."""
    us = config["user_study"]
    return shell_args("--pairs", us["pairs"], "--fake", us["turing_fake"], "--real", us["turing_real"],
                      "--max-clips", us["max_clips"] or 0, "--seed", us["seed"])


# --- the targets


def figures_of(dataset):
    return [f"{RESULTS}/figures/{dataset}/{name}.png" for name in
            ("fig4_l1_vs_full", "fig5_same_face", "fig6_same_audio", "fig7_blinks", "fig8_silence", "fig_sync")]


def all_targets():
    """The default target (`all`, `make table3`): Tables 1-3, the claims, every figure, the skip lists,
    the user study's set (and Fig. 9 once `user_study.responses` is set) and, for the embedded corpus, its samples."""
    targets = [f"{RESULTS}/table1.csv", f"{RESULTS}/table2.csv", f"{RESULTS}/table3.csv", f"{RESULTS}/claims.md"]
    for dataset in RUN_DATASETS:
        targets += figures_of(dataset) + [f"{RESULTS}/{dataset}/skipped.tsv"]
    if "synthgrid" in RUN_DATASETS:
        targets.append(f"{RESULTS}/synthgrid/samples.png")
    targets.append(f"{RESULTS}/study/manifest.json")  # the user study's videos, for `speechanim study serve`
    if USER_STUDY_RESPONSES:
        targets.append(f"{RESULTS}/figures/fig9_turing.png")
    return targets


# --- resources (mem_mb, runtime, disk_mb): from `speechanim plan` for this config (docs/cluster.md)

_PLAN = []


def planned(rule, name, dataset=None):
    """A resource of a rule's jobs as speechanim.plan gives it for this config: the plan's peak memory x1.5, its
    time x1.5 capped at cluster.partition_limit_minutes, its output size; the largest job of the rule's dataset."""

    def resource(wildcards):
        if not _PLAN:
            from speechanim.plan import Plan

            _PLAN.append(Plan(config))
        ds = dataset or wildcards.get("dataset") or dataset_of(wildcards.get("run"))
        return _PLAN[0].request(rule, ds)[name]

    return resource


def planned_resources(rule, dataset=None):
    """mem_mb, runtime and disk_mb of a rule, from the plan (for `resources: **planned_resources(...)`); none
    before benchmarks/unit_costs.py has measured docs/unit-costs.csv (its own run of the DAG): the partition's limit only."""
    if not (REPO / "docs" / "unit-costs.csv").is_file():
        return {"runtime": (config.get("cluster") or {}).get("partition_limit_minutes", 2880)}
    return {name: planned(rule, name, dataset) for name in ("mem_mb", "runtime", "disk_mb")}
