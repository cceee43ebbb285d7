"""The tables in README.md and docs/*.md that are copies of a committed CSV file, kept equal to it.

A copied table sits between two markers naming its source (a path from the repository root):

    <!-- table: docs/evidence/table3.csv -->
    | Dataset | Method | ... |
    ...
    <!-- end table -->

and is the CSV rendered as `speechanim.tables.write_table` renders its `.md` (header, `|---|` rule, one row per
line). `make docs` (`python tests/docs_tables.py --write`) rewrites every such table from its CSV;
`tests/test_docs.py` fails when one differs from it. `--find` lists the unmarked tables that equal a committed
CSV, to be marked.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"(<!-- table: (?P<src>\S+) -->\n)(?P<table>.*?)(\n<!-- end table -->)", re.S)


#: Folders of a run's committed outputs (its table*.csv and their .md twins): sources, never rewritten here.
RUNS = ("default-run", "evidence", "evidence-grid-s1")


def pages() -> list[Path]:
    """README.md and the docs pages (not the runs' own files)."""
    return [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md"))]


def twins() -> list[tuple[Path, Path]]:
    """(table*.csv, its .md) of each committed run: written together by speechanim.tables.write_table."""
    return [(c, c.with_suffix(".md")) for run in RUNS for c in sorted((REPO / "docs" / run).glob("table*.csv"))]


def render(csv_path: Path) -> str:
    """The CSV as a markdown table, in write_table's form."""
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    columns, body = rows[0], rows[1:]
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(md)


def marked_tables(page: Path) -> list[tuple[str, str]]:
    """(source path, table text) of every marked table of a page."""
    return [(m.group("src"), m.group("table")) for m in MARKED.finditer(page.read_text())]


def stale() -> list[str]:
    """One line per marked table that differs from its source (or whose source is missing)."""
    problems = []
    for src, md in twins():
        if not md.is_file() or md.read_text().rstrip("\n") != render(src):
            problems.append(f"{md.relative_to(REPO)} differs from {src.relative_to(REPO)} (both are written by speechanim.tables)")
    for page in pages():
        for src, table in marked_tables(page):
            path = REPO / src
            if not path.is_file():
                problems.append(f"{page.relative_to(REPO)}: its table's source {src} does not exist")
            elif table != render(path):
                problems.append(f"{page.relative_to(REPO)}: the table copied from {src} differs from it (make docs)")
    return problems


#: What a run's README.md must say once: when and on which machine it was made ("Made on 2026-12-06 on this
#: project's 2-core CPU machine (Intel Xeon, AMX), no GPU"), since the same config and seeds give the same
#: bytes on one machine, not across CPUs.
MADE_ON = re.compile(r"Made on \d{4}-\d{2}-\d{2}\b[^.]*? on [^.]*?\b(CPU|GPU)\b")


def unsourced() -> list[str]:
    """One line per marked table whose run folder has no README.md saying when and on which machine it was made."""
    problems = []
    for page in pages():
        for src, _ in marked_tables(page):
            readme = (REPO / src).parent / "README.md"
            if not readme.is_file() or not MADE_ON.search(readme.read_text()):
                problems.append(f"{page.relative_to(REPO)}: {src}'s run has no README.md saying "
                                f"'Made on <date> on <machine, CPU or GPU>'")
    return sorted(set(problems))


def write() -> list[Path]:
    """Rewrite every marked table from its source; the pages changed."""
    changed = []
    for page in pages():
        text = page.read_text()
        new = MARKED.sub(lambda m: m.group(1) + render(REPO / m.group("src")) + m.group(4), text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def find_unmarked() -> list[str]:
    """Markdown tables in the pages, outside markers, that equal a committed table*.csv."""
    sources = {render(p): p.relative_to(REPO) for p in sorted((REPO / "docs").rglob("*.csv"))}
    found = []
    for page in pages():
        text = MARKED.sub("", page.read_text())
        for table in re.findall(r"(?m)(?:^\|.*\|\n?)+", text):
            table = table.rstrip("\n")
            if table in sources:
                found.append(f"{page.relative_to(REPO)}: a copy of {sources[table]}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite the marked tables from their CSV files")
    p.add_argument("--find", action="store_true", help="list unmarked tables that equal a committed CSV")
    args = p.parse_args(argv)
    if args.find:
        print("\n".join(find_unmarked()) or "no unmarked copy")
        return 0
    if args.write:
        for page in write():
            print(f"rewrote {page.relative_to(REPO)}")
    problems = stale()
    print("\n".join(problems) or "every copied table equals its CSV", file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
