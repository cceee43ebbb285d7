"""Write docs/mutants.md from a finished ``mutmut run`` (``make mutants``): killed / survived / timeout per
module, and every mutant not killed with its one-line change and why it is harmless.

The reasons are written by hand in docs/mutants.md's survivor table; a rerun keeps each reason whose mutant
(its name and its change) survives again, and marks a new survivor ``TODO``. Run from the repository root,
after ``mutmut run``: ``python tests/mutants_report.py`` (``--check`` exits 1 while a survivor has no reason
or a module is below the target).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from datetime import date
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "mutants.md"
TARGET = 0.90  # the least share of each module's mutants the tests must kill (issue 31)
#: exit codes of a mutant's test run -> the column it is counted in (mutmut.stats.status_by_exit_code, grouped)
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}

HEAD = """\
# Mutation testing

Which one-line mistakes in the maths modules would the fast unit tests miss?

```sh
make mutants  # mutmut over the modules below, then rewrites this page (~45 min on 2 cores; not part of CI)
```

[mutmut](https://mutmut.readthedocs.io) changes one thing at a time in `losses.py`, `metrics/`, `sda.py`,
`audio.py`, `claims.py` and `checkpoint.py` (the checkpoint writer and reader): a `+` made `-`, a `<` made
`<=`, a constant made another, an argument dropped, a string changed. For each such *mutant* it runs the
fast unit tests that execute the changed function (the selection is `[tool.mutmut]` in `pyproject.toml`; one
traced run finds which tests reach which function). A mutant is *killed* when a test fails, *survives* when
all pass, and has *no tests* when none of the selected tests reaches its function. A survivor is either a
test to write or a change no caller can observe; each one is listed below with which.

Run it before changing the maths of these modules, and after, to see that the tests still notice a wrong
number: `make mutants` works in `mutants/` (a copy; git ignores it) under `nice`, one mutant at a time, and
reruns only what changed since its last run. `mutmut show <name>` prints a mutant's diff, `mutmut run <name>`
reruns one, `mutmut browse` lists them; run by hand, mutmut needs `OMP_NUM_THREADS=1` and
`SPEECHANIM_SHARED=<the ../shared folder>` (its tests run inside `mutants/`, where `../shared` is not beside
them), which `make mutants` sets, and `python tests/mutants_report.py` rewrites this page afterwards.
`MUTANT_JOBS=4 make mutants` tests 4 mutants at a time on a machine with the cores to spare.

How long it takes depends on what else the machine runs: on this project's 2 cores (2026-12-06), writing the
4,308 mutants took 31 s with the machine lightly loaded and 34 minutes at `nice 19` beside a Snakemake run
that kept both cores busy; one traced run of the selected tests then finds which tests reach which function.
The first whole run (2026-12-06, `--max-children 2`) tested the 4,308 mutants in about 45 minutes, `claims`
(its bootstrap tests) the slowest at about one mutant a second, the last 24 minutes at `nice 19` beside the
test suite: 3,867 killed (89.8 %), 441 survivors, `audio`, `checkpoint`, `claims`, `metrics.blinks` and `sda`
below 90 %. Tests were then written for the survivors and every survivor rerun by name (`mutmut run <names>`
reruns a mutant whatever its last result; a killed one stays killed when tests are only added), each module's
in its own copy of the repository and the remaining 117 once more together, 2026-12-06: the figures below.
The functions changed since (`checkpoint.check_finite_weights`, `claims.interval`) had their new mutants run:
all killed.
"""


def load_results() -> dict[str, tuple[Path, dict[str, int | None]]]:
    """module (``speechanim.metrics.cpbd``) -> (its source path, mutant name -> exit code), from
    ``mutants/**/*.py.meta``."""
    results = {}
    for meta in sorted((REPO / "mutants" / "src").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            source = meta.relative_to(REPO / "mutants").as_posix().removesuffix(".meta")
            module = source.removeprefix("src/").removesuffix(".py").replace("/", ".")
            results[module] = (Path(source), codes)
    return results


def one_line_change(name: str, path: Path, context: int = 30) -> str:
    """The first line the mutant changes, old -> new, cut to the changed part and ``context`` characters around it."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=path).splitlines()
    old = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    new = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    pairs = [(a, b) for a, b in zip(old, new) if a != b] or [(old[0] if old else "", new[0] if new else "")]
    a, b = pairs[0]
    start = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    end = 0  # common suffix, not overlapping the prefix
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    lo = max(0, start - context)

    def cut(text: str) -> str:
        hi = min(len(text), len(text) - end + context)
        return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")

    old_text, new_text = (cut(t).replace("`", "'").replace("|", "\\|") for t in (a, b))
    return f"`{old_text}` → `{new_text}`"


def old_reasons() -> dict[tuple[str, str], str]:
    """(mutant, change) -> reason, from the survivor table of the page as it is."""
    if not PAGE.exists():
        return {}
    reasons = {}
    for line in PAGE.read_text().splitlines():
        m = re.match(r"\| `(speechanim\.[^`]+)` \| [^|]+ \| (.*) \| (.*) \|$", line)
        if m:
            reasons[(m.group(1), m.group(2))] = m.group(3)
    return reasons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a survivor has no reason or a module misses the target")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from mutmut.stats import status_by_exit_code

    results = load_results()
    if not results:
        print("no mutmut results under mutants/: run make mutants first", file=sys.stderr)
        return 1
    reasons = old_reasons()
    rows, survivors, below = [], [], []
    totals = Counter()
    for module, (path, codes) in sorted(results.items()):
        count = Counter()
        for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            status = status_by_exit_code[code]
            column = ("killed" if status in DETECTED and status != "timeout" else
                      status if status in ("timeout", "survived", "no tests", "not checked") else "other")
            count[column] += 1
            if status in ("survived", "no tests", "suspicious", "skipped"):
                change = one_line_change(name, path)
                survivors.append((name, change, status, reasons.get((name, change)) or "TODO"))
        total = sum(count.values())
        share = (count["killed"] + count["timeout"]) / total
        if share < TARGET or count["not checked"]:
            below.append(module)
        totals.update(count)
        rows.append(f"| `{module.removeprefix('speechanim.')}` | {total} | {count['killed']} | {count['survived']} | "
                    f"{count['no tests']} | {count['timeout']} | {count['not checked'] + count['other']} | "
                    f"{_share(count)} |")
    total = sum(totals.values())
    rows.append(f"| all | {total} | {totals['killed']} | {totals['survived']} | {totals['no tests']} | "
                f"{totals['timeout']} | {totals['not checked'] + totals['other']} | "
                f"{_share(totals)} |")

    out = [HEAD, f"## Per module\n\nmutmut {version('mutmut')}, {date.today().isoformat()}. *Killed* counts a test "
           "failure (a timeout, the mutant looping, is counted apart and as detected); *no tests*: no selected test "
           "runs the function; *unchecked*: not run yet, or the run ended oddly (`mutmut browse`). Target: at least "
           f"{100 * TARGET:.0f} % detected in each module."
           + (f" **{totals['not checked']} of the {total} mutants are not checked yet**: the run was stopped before "
              "it reached them (`make mutants` resumes where it stopped); the shares below are of the checked ones."
              if totals["not checked"] else "") + "\n",
           "| module | mutants | killed | survived | no tests | timeout | unchecked | detected |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, "",
           "## Every survivor\n\nEach mutant that survived or that no selected test reaches: its change (the first "
           "line it changes, cut to the change) and why no test needs to notice it, or the test to write.\n",
           "| mutant | result | change | why it is harmless |", "| --- | --- | --- | --- |"]
    out += [f"| `{name}` | {status} | {change} | {reason} |" for name, change, status, reason in survivors]
    PAGE.write_text("\n".join(out) + "\n")
    todo = [s for s in survivors if s[3] == "TODO"]
    print(f"{PAGE.relative_to(REPO)}: {total} mutants, {len(survivors)} not killed ({len(todo)} without a reason); "
          f"below {100 * TARGET:.0f} % or not all checked: {', '.join(below) or 'none'}")
    return 1 if args.check and (todo or below) else 0


def _share(count: Counter) -> str:
    """The detected share of the mutants; of the checked ones (and how many those are) while some are not."""
    checked = sum(count.values()) - count["not checked"]
    if not checked:
        return "—"
    share = f"{100 * (count['killed'] + count['timeout']) / checked:.1f} %"
    return share if checked == sum(count.values()) else f"{share} of {checked} checked"


def _natural(name: str) -> tuple:
    head, _, n = name.rpartition("_")
    return (head, int(n)) if n.isdigit() else (name, 0)


if __name__ == "__main__":
    sys.exit(main())
