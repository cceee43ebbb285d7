"""The README and docs/ stay true: CI runs the README's set-up and test commands and nothing else, `make help`
lists every target, `make setup` names what is missing, the tables copied from committed CSV files equal them,
every relative link resolves, and every docs page opens with the question it answers."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import docs_tables
from test_readme_commands import documented_pages

REPO = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def readme_setup_and_test_commands() -> list[str]:
    """The Quick start block's commands up to and including `make test`: what a newcomer runs to test."""
    quick = (REPO / "README.md").read_text().split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", quick, re.S).group(1)
    commands = _commands(block)
    assert "make test" in commands, commands
    return commands[: commands.index("make test") + 1]


def ci_steps() -> list[str]:
    """`.ci/run`'s commands, less the shell's own set-up (shebang, `set -euo pipefail`, the `cd` to the checkout)."""
    steps = _commands((REPO / ".ci" / "run").read_text())
    return [s for s in steps if not s.startswith("set -") and s != 'cd "$(dirname "$0")/.."']


def test_ci_runs_exactly_the_readmes_setup_and_test_commands():
    assert readme_setup_and_test_commands() == ["make setup", "make test"]
    assert ci_steps() == readme_setup_and_test_commands()


def test_make_help_lists_every_target():
    makefile = (REPO / "Makefile").read_text()
    targets = [t for t in re.findall(r"^([a-z][a-z0-9_-]*):(?!=)", makefile, re.M)]
    assert {"setup", "test", "table3", "help", "docs"} <= set(targets)
    res = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    listed = {}
    for line in res.stdout.splitlines():
        name, _, what = line.strip().partition(" ")
        listed[name] = what.strip()
    for target in targets:
        assert listed.get(target), f"make help does not list {target!r} with a line saying what it does"
    assert sorted(listed) == sorted(targets)


def test_setup_names_the_missing_packages_and_the_command_that_installs_them(tmp_path):
    """Not root and none of the packages on PATH: nothing is installed, exit 1, each named with its command."""
    fake_id = tmp_path / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(0o755)
    res = subprocess.run(["/bin/bash", str(REPO / "tests" / "system-packages.sh")], capture_output=True, text=True,
                         env={"PATH": str(tmp_path)}, timeout=60)
    assert res.returncode == 1
    assert "missing Debian package(s) the test suite drives: chromium slurm-wlm munge" in res.stderr
    assert "sudo apt-get install -y chromium slurm-wlm munge" in res.stderr


def test_tables_copied_from_a_committed_csv_equal_it():
    assert docs_tables.stale() == []
    marked = [src for page in documented_pages() for src, _ in docs_tables.marked_tables(page)]
    assert "docs/evidence-grid-s1/table3.csv" in marked and "docs/evidence/table2.csv" in marked
    assert docs_tables.find_unmarked() == []  # a new literal copy must be marked, so that it is checked


def test_every_copied_table_names_the_run_date_and_machine_it_comes_from():
    assert docs_tables.unsourced() == []
    assert docs_tables.MADE_ON.search("Made on 2026-12-06 on this project's 2-core CPU machine")
    assert not docs_tables.MADE_ON.search("Made at commit 67a143b.")


def test_a_changed_csv_makes_its_copy_stale(tmp_path, monkeypatch):
    src = tmp_path / "docs" / "t.csv"
    src.parent.mkdir()
    src.write_text("A,B\n1,\"2, 3\"\n")
    page = tmp_path / "README.md"
    page.write_text("x\n<!-- table: docs/t.csv -->\n| A | B |\n|---|---|\n| 1 | 2, 3 |\n<!-- end table -->\ny\n")
    monkeypatch.setattr(docs_tables, "REPO", tmp_path)
    assert docs_tables.stale() == []
    src.write_text("A,B\n1,4\n")
    assert docs_tables.stale() == ["README.md: the table copied from docs/t.csv differs from it (make docs)"]
    assert docs_tables.write() == [page] and docs_tables.stale() == []
    assert "| 1 | 4 |" in page.read_text() and page.read_text().endswith("<!-- end table -->\ny\n")


def test_every_relative_link_and_image_resolves():
    broken = []
    for page in documented_pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#")[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_every_docs_page_opens_with_the_question_it_answers():
    for page in sorted((REPO / "docs").glob("*.md")):
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# "), page.name
        opening = next(line for line in lines[1:] if line.strip())
        assert opening.rstrip().endswith("?"), f"{page.name}: {opening!r}"


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def test_the_mutation_report_meets_its_target_and_gives_every_survivor_a_reason():
    """docs/mutants.md (``make mutants``, issue 31): each module's counts add up and reach the 90 % target, every
    survivor the per-module table counts is listed with a reason, and a rerun of the report keeps those reasons."""
    import mutants_report

    page = (REPO / "docs" / "mutants.md").read_text()
    modules = re.findall(r"^\| `([\w.]+)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) % \|$", page, re.M)
    assert {m[0] for m in modules} >= {"audio", "checkpoint", "claims", "losses", "sda", "metrics.lmd", "metrics.cpbd"}
    not_killed = 0
    for name, total, killed, survived, no_tests, timeout, unchecked, share in modules:
        total, killed, survived, no_tests, timeout, unchecked = map(int, (total, killed, survived, no_tests, timeout,
                                                                           unchecked))
        assert killed + survived + no_tests + timeout + unchecked == total, name
        assert unchecked == 0 and float(share) == round(100 * (killed + timeout) / total, 1) >= 100 * mutants_report.TARGET
        not_killed += survived + no_tests
    survivors = re.findall(r"^\| `(speechanim\.[^`]+)` \| (survived|no tests) \| .+ \| (.*) \|$", page, re.M)
    assert len(survivors) == not_killed == len({s[0] for s in survivors})
    assert all(reason != "TODO" and len(reason) > 20 for _, _, reason in survivors)
    assert len(mutants_report.old_reasons()) == not_killed
