"""The paper's tables as CSV (and markdown) files.

Table 1 (paper, section 4.1): "The samples and hours of video in the training (Tr), validation (V)
and test (T) sets", training counts including the mirrored copies.

    python -m speechanim.tables table1 --dataset synthgrid data/packed/synthgrid --out results/table1.csv
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import h5py

from .packing import clip_keys

TABLE1_COLUMNS = ["Dataset", "Samples (Tr)", "Hours (Tr)", "Samples (V)", "Hours (V)", "Samples (T)", "Hours (T)"]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.tables", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="table", required=True)
    t1 = sub.add_parser("table1", help="samples and hours per split")
    t1.add_argument("--dataset", action="append", required=True, help="dataset name (repeat, in order)")
    t1.add_argument("packed_dirs", nargs="+", help="data/packed/<dataset> folders, in the same order")
    t1.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if len(args.dataset) != len(args.packed_dirs):
        p.error("give one --dataset per packed folder")
    rows = [table1_row(d, pd) for d, pd in zip(args.dataset, args.packed_dirs)]
    write_table(args.out, TABLE1_COLUMNS, rows)
    print(Path(args.out).with_suffix(".md").read_text(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
