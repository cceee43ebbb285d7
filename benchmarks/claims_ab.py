"""Two runs' claims side by side: which claim's verdict differs between run A and run B.

    .venv/bin/python benchmarks/claims_ab.py A/claims.md B/claims.md [--names fp32 bf16]

For an A/B of a setting (e.g. ``training.precision`` fp32 vs bf16 on the embedded default, issue 29):
run the DAG twice with only that setting changed, then compare the two ``results/claims.md``. Prints
every claim with its verdict and figures in each run, and the claims whose verdict changed; exits 0
either way (the answer is the printout), 2 when the runs do not state the same claims.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

LINE = re.compile(r"^- \*\*(holds|not shown|contradicted)\*\*(?: \([^)]*\))? — (.+): (.*)$")


def verdicts(text: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(dataset, claim) -> (verdict, figures) from a claims.md (speechanim.claims' format)."""
    out, dataset = {}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            dataset = line[3:].strip()
        elif m := LINE.match(line):
            out[(dataset, m.group(2))] = (m.group(1), m.group(3))
    return out


def compare(a: dict, b: dict) -> list[tuple[str, str, str, str]]:
    """(dataset, claim, verdict in A, verdict in B) for each claim stated in both runs, in A's order."""
    return [(d, c, a[(d, c)][0], b[(d, c)][0]) for (d, c) in a if (d, c) in b]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--names", nargs=2, default=["A", "B"])
    args = ap.parse_args()
    a, b = verdicts(args.a.read_text()), verdicts(args.b.read_text())
    if not a:
        sys.exit(f"{args.a}: no claims found")
    rows = compare(a, b)
    na, nb = args.names
    for d, c, va, vb in rows:
        print(f"{'CHANGED' if va != vb else 'same':8s} {d}: {c}\n    {na}: {va} — {a[(d, c)][1]}\n    {nb}: {vb} — {b[(d, c)][1]}")
    changed = [r for r in rows if r[2] != r[3]]
    only = sorted(set(a) ^ set(b))
    print(f"\n{len(rows)} claims in both runs; verdict changed in {len(changed)}"
          + "".join(f"\n  {d}: {c}: {na} {va} -> {nb} {vb}" for d, c, va, vb in changed))
    if only:
        print(f"{len(only)} claims stated in one run only: " + "; ".join(f"{d}: {c}" for d, c in only))
        sys.exit(2)


if __name__ == "__main__":
    main()
