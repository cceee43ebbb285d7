"""The paper's tables as CSV (and markdown) files.

Table 1 (paper, section 4.1): "The samples and hours of video in the training (Tr), validation (V)
and test (T) sets", training counts including the mirrored copies.

    python -m speechanim.tables table1 --dataset synthgrid data/packed/synthgrid --out results/table1.csv

Table 2 (section 4.3): the ablation on the first dataset: ground truth, L1, L1 + Adv_img, the full model.
Table 3 (section 4.5): per dataset, the proposed (full) model against the static baseline.  Its User
column is the paper's user study: with ``--responses`` (a study's SQLite file or its CSV export,
:mod:`speechanim.study`), the share of preference trials in which each method was picked, its 95%
interval (participant-level bootstrap) and the number of participants, e.g. "62.0% [55.1, 68.4] (n=30)";
without, or for a row the study does not compare, empty.  Both read the JSON summaries of
:mod:`speechanim.evaluate`:

    python -m speechanim.tables table2 --metrics results/<ds>/metrics --out results/table2.csv
    python -m speechanim.tables table3 --dataset <ds> ... results/<ds>/metrics ... [--responses study.sqlite] \
        --out results/table3.csv

Several training seeds: give a dataset's metrics folders comma-separated, one per seed
(``results/<ds>/metrics,results/<ds>/seed1/metrics,...``).  Each trained method's cell is then
"mean +- std" over the seeds (sample std, ddof=1, formatted like the mean); the ground truth and the
controls do not depend on the seed and are read from the first folder only.

ACD is measured with dlib's ResNet face descriptor (128-d; OpenFace's model cannot be had offline),
so its scale is not the paper's; WER comes from the LipNet-style lipreader the DAG trains on each
dataset's real training videos.  Extra columns: LMD and the mouth-opening correlation (lip landmarks
against the real clip), LSE-D and LSE-C (the SyncNet the DAG trains), blink rate and mean duration.
Both tables hold the controls a reader needs to judge the methods: the still image repeated (the
PSNR/SSIM to beat, the floor of every motion metric) and the real video with shifted audio (the
floor of the sync metrics; N/A for what does not read the audio).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import json

import h5py
import numpy as np

from .packing import clip_keys
from .fileio import files_in, refuse_clashing_paths

TABLE1_COLUMNS = ["Dataset", "Samples (Tr)", "Hours (Tr)", "Samples (V)", "Hours (V)", "Samples (T)", "Hours (T)", "Split"]
#: Table 1's Split column: the paper's protocol (speakers), or a one-speaker corpus's departure from it.
SPLIT_PROTOCOLS = {"speaker": "speaker-independent (paper)",
                   "utterance": "speaker-dependent: utterances of the same speakers (not the paper's protocol)"}
SPLIT_FILES = {"Tr": "train.h5", "V": "val.h5", "T": "test.h5"}


def count_split(path: str | os.PathLike) -> tuple[int, float]:
    """Number of clips and hours of video in a packed HDF5 file."""
    samples, seconds = 0, 0.0
    with h5py.File(path, "r") as h5:
        for key in clip_keys(h5):
            g = h5[key]
            samples += 1
            seconds += g["frames"].shape[0] / float(g.attrs["fps"])
    return samples, seconds / 3600.0


def table1_row(dataset: str, packed_dir: str | os.PathLike) -> dict[str, str]:
    row = {"Dataset": dataset}
    for short, name in SPLIT_FILES.items():
        samples, hours = count_split(Path(packed_dir) / name)
        row[f"Samples ({short})"] = str(samples)
        row[f"Hours ({short})"] = f"{hours:.4f}" if hours < 1 else f"{hours:.2f}"
    with h5py.File(Path(packed_dir) / SPLIT_FILES["T"], "r") as h5:
        row["Split"] = SPLIT_PROTOCOLS[str(h5.attrs.get("split_by", "speaker"))]
    return row


def write_table(path: str | os.PathLike, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as CSV at ``path`` and as a markdown table beside it (``.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(r.get(c, "") for c in columns) + " |" for r in rows]
    path.with_suffix(".md").write_text("\n".join(md) + "\n")


ACD_COLUMN = "ACD (dlib)"
METRIC_COLUMNS = [("PSNR", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.3f}"), ("FDBM", "fdbm", "{:.3f}"),
                  ("CPBD", "cpbd", "{:.3f}"), (ACD_COLUMN, "acd", "{:.4f}")]
# lip sync against the real clip (LMD, mouth-opening r) and against the audio (SyncNet's LSE-D, LSE-C)
SYNC_COLUMNS = [("LMD", "lmd", "{:.4f}"), ("Mouth r", "mouth_r", "{:.2f}"), ("LSE-D", "lse_d", "{:.3f}"),
                ("LSE-C", "lse_c", "{:.3f}")]
BLINK_COLUMNS = [("Blinks/s", "blinks_per_s", "{:.2f}"), ("Blink (s)", "blink_duration_s", "{:.3f}")]
# the controls every method must beat: the still image repeated, the real video with shifted audio
CONTROL_ROWS = [("Still image", "still"), ("Real video, shifted audio", "shifted_audio")]
#: Below a "Beyond the paper" line in Tables 2 and 3: the full model with the synchronisation discriminator of
#: the authors' journal version (IJCV 2020; speechanim.losses), trained with every seed.
BEYOND_LINE = "Beyond the paper:"
BEYOND_ROWS = [("Proposed + D_sync (IJCV)", "full_sync")]
TABLE2_ROWS = [("Ground Truth Videos", "ground_truth"), *CONTROL_ROWS, ("L1 loss", "l1"),
               ("L1 + Adv_img", "l1_advimg"), ("L1 + Adv_img + Adv_seq", "full"), *BEYOND_ROWS]
TABLE2_COLUMNS = (["Method"] + [c for c, _, _ in METRIC_COLUMNS + SYNC_COLUMNS] + ["WER"]
                  + [c for c, _, _ in BLINK_COLUMNS])
TABLE3_ROWS = [("Proposed Model", "full"), ("Baseline", "static"), ("Ground Truth Videos", "ground_truth"), *CONTROL_ROWS,
               *BEYOND_ROWS]
#: The authors' released model, converted (speechanim import-sda; the DAG's `pretrained:`), for the datasets it is given.
PRETRAINED_ROW = ("Authors' released model", "pretrained")
TABLE3_COLUMNS = (["Dataset", "Method"] + [c for c, _, _ in METRIC_COLUMNS + SYNC_COLUMNS] + ["User", "WER"]
                  + [c for c, _, _ in BLINK_COLUMNS])
#: The summaries (results/<dataset>/metrics/<name>.json) the tables read.
TABLE2_METHODS = [name for _, name in TABLE2_ROWS]
TABLE3_METHODS = [name for _, name in TABLE3_ROWS]


#: Rows that do not depend on the generator's seed: read once, from a dataset's first metrics folder.
SEED_INDEPENDENT = ("ground_truth", *(name for _, name in CONTROL_ROWS), PRETRAINED_ROW[1])


def mean_std_cell(values: list, fmt: str) -> str:
    """One cell from per-seed values: the value itself for one seed, "mean +- std" (ddof=1) for several,
    over the seeds that have a value ("(k/n seeds)" added when some have none); "N/A" if none has."""
    have = [v for v in values if v is not None]
    if not have:
        return "N/A"
    if len(values) == 1:
        return fmt.format(have[0])
    cell = fmt.format(float(np.mean(have)))
    if len(have) > 1:
        cell += " +- " + fmt.format(float(np.std(have, ddof=1)))
    if len(have) < len(values):
        cell += f" ({len(have)}/{len(values)} seeds)"
    return cell


def metric_cells(summaries: dict | list[dict]) -> dict[str, str]:
    """The table cells of one method's summary (evaluate.py JSON), or of its summaries over seeds."""
    if isinstance(summaries, dict):
        summaries = [summaries]
    cells = {col: mean_std_cell([s.get(key) for s in summaries], fmt)
             for col, key, fmt in METRIC_COLUMNS + SYNC_COLUMNS + BLINK_COLUMNS}
    cells["WER"] = mean_std_cell([None if s.get("wer") is None else 100 * s["wer"] for s in summaries], "{:.1f}%")
    return cells


def read_summary(metrics_dir: str | os.PathLike, name: str) -> dict:
    path = Path(metrics_dir) / f"{name}.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the metrics summary ({e})") from e
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: not a metrics summary (a JSON object of speechanim.evaluate), "
                         f"holds a JSON {type(summary).__name__}")
    return summary


def seed_folders(metrics_dirs: str | os.PathLike | list) -> list[Path]:
    """A dataset's metrics folders, one per seed: a list, or one string with the folders comma-separated."""
    if isinstance(metrics_dirs, (str, os.PathLike)):
        metrics_dirs = [d for d in str(metrics_dirs).split(",") if d]
    if not metrics_dirs:
        raise ValueError("no metrics folder given")
    return [Path(d) for d in metrics_dirs]


def read_seeds(metrics_dirs: str | os.PathLike | list, name: str) -> list[dict]:
    """A method's summaries, one per seed; the seed-independent rows' from the first folder only."""
    folders = seed_folders(metrics_dirs)
    if name in SEED_INDEPENDENT:
        folders = folders[:1]
    return [read_summary(d, name) for d in folders]


#: Table 2's variants that no other table or claim compares: they may be trained with fewer seeds (the
#: config's `ablation_seeds`), their metrics folders then given apart (``--ablation-metrics``).
ABLATION_ONLY = ("l1", "l1_advimg")


def seed_cells(metrics_dirs: str | os.PathLike | list, name: str, ablation_dirs: str | list | None = None) -> dict[str, str]:
    """A method's cells over the seeds; an ablation-only variant read from ``ablation_dirs`` (fewer seeds)
    says so, "(k/n seeds)"."""
    if name in ABLATION_ONLY and ablation_dirs:
        summaries = read_seeds(ablation_dirs, name)
        return metric_cells(summaries + [{}] * max(0, len(seed_folders(metrics_dirs)) - len(summaries)))
    return metric_cells(read_seeds(metrics_dirs, name))


def with_beyond_line(rows: list[dict[str, str]], extra: dict[str, str] | None = None) -> list[dict[str, str]]:
    """``rows`` with the "Beyond the paper:" line (a row with no values) before the first row beyond it."""
    first = next((i for i, r in enumerate(rows) if r["Method"] in {label for label, _ in BEYOND_ROWS}), None)
    if first is None:
        return rows
    return rows[:first] + [{**(extra or {}), "Method": BEYOND_LINE}] + rows[first:]


def present(rows: list[tuple[str, str]], metrics_dirs: str | os.PathLike | list) -> list[tuple[str, str]]:
    """``rows`` less the beyond-the-paper ones that were not scored (a run from before the variant existed)."""
    first = seed_folders(metrics_dirs)[0]
    return [(label, name) for label, name in rows
            if (label, name) not in BEYOND_ROWS or (first / f"{name}.json").is_file()]


def table2_rows(metrics_dirs: str | os.PathLike | list, ablation_dirs: str | list | None = None) -> list[dict[str, str]]:
    return with_beyond_line([{"Method": label, **seed_cells(metrics_dirs, name, ablation_dirs)}
                             for label, name in present(TABLE2_ROWS, metrics_dirs)])


def table3_rows(dataset: str, metrics_dirs: str | os.PathLike | list,
                responses: list[dict] | None = None, pretrained: bool = False) -> list[dict[str, str]]:
    """Table 3's rows of one dataset; the User cells from the study's ``responses`` rows when given;
    with ``pretrained``, the authors' released model's row after the baseline."""
    rows = TABLE3_ROWS[:2] + [PRETRAINED_ROW] + TABLE3_ROWS[2:] if pretrained else TABLE3_ROWS
    user = {}
    if responses is not None:
        from .study.analysis import user_cells

        user = user_cells(responses, dataset)
    return with_beyond_line([{"Dataset": dataset, "Method": label, "User": user.get(name, ""),
                              **seed_cells(metrics_dirs, name)} for label, name in present(rows, metrics_dirs)],
                            {"Dataset": dataset})


def _reads(args: argparse.Namespace) -> dict[str, list[str]]:
    """The folders and files a table is made from, for :func:`~speechanim.fileio.refuse_clashing_paths`."""
    if args.table == "table1":
        return {"the packed file": files_in(args.packed_dirs, "*.h5")}
    comma_separated = [args.metrics] if args.table == "table2" else args.metrics_dirs
    return {"the metrics summary": files_in([d for s in comma_separated for d in s.split(",")], "*.json"),
            "--ablation-metrics": files_in((getattr(args, "ablation_metrics", None) or "").split(","), "*.json"),
            "--responses": [getattr(args, "responses", None)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.tables", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="table", required=True)
    t1 = sub.add_parser("table1", help="samples and hours per split")
    t1.add_argument("--dataset", action="append", required=True, help="dataset name (repeat, in order)")
    t1.add_argument("packed_dirs", nargs="+", help="data/packed/<dataset> folders, in the same order")
    t1.add_argument("--out", required=True)
    t2 = sub.add_parser("table2", help="the ablation study on one dataset")
    t2.add_argument("--metrics", required=True,
                    help="results/<dataset>/metrics (holds <method>.json); several seeds' folders comma-separated")
    t2.add_argument("--ablation-metrics", default=None,
                    help="the metrics folders of the seeds l1 and l1_advimg were trained with, when fewer (ablation_seeds)")
    t2.add_argument("--out", required=True)
    t3 = sub.add_parser("table3", help="proposed model vs static baseline per dataset")
    t3.add_argument("--dataset", action="append", required=True, help="dataset name (repeat, in order)")
    t3.add_argument("metrics_dirs", nargs="+",
                    help="results/<dataset>/metrics folders, in the same order; several seeds' comma-separated")
    t3.add_argument("--responses", default=None,
                    help="the user study's answers (SQLite file or CSV export): fills the User column")
    t3.add_argument("--pretrained", action="append", default=[], metavar="DATASET",
                    help="add the authors' released model's row (metrics/pretrained.json) for this dataset (repeat)")
    t3.add_argument("--out", required=True)
    args = p.parse_args(argv)
    refuse_clashing_paths(p, _reads(args), {"--out": args.out, "its markdown": str(Path(args.out).with_suffix(".md"))})
    try:
        if args.table == "table1":
            if len(args.dataset) != len(args.packed_dirs):
                p.error("give one --dataset per packed folder")
            columns, rows = TABLE1_COLUMNS, [table1_row(d, pd) for d, pd in zip(args.dataset, args.packed_dirs)]
        elif args.table == "table2":
            columns, rows = TABLE2_COLUMNS, table2_rows(args.metrics, args.ablation_metrics)
        else:
            if len(args.dataset) != len(args.metrics_dirs):
                p.error("give one --dataset per metrics folder")
            columns = TABLE3_COLUMNS
            responses = None
            if args.responses:
                from .study.db import read_responses

                responses = read_responses(args.responses)
            rows = [r for d, m in zip(args.dataset, args.metrics_dirs)
                    for r in table3_rows(d, m, responses, pretrained=d in args.pretrained)]
    except (OSError, ValueError) as e:
        print(f"speechanim.tables: error: {e}", file=sys.stderr)
        return 1
    write_table(args.out, columns, rows)
    print(Path(args.out).with_suffix(".md").read_text(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
