"""The study's answers back into the paper: Table 3's User column and Fig. 9.

**User column** (paper 4.5, Table 3): per dataset, the share of answered preference trials in which the
proposed model was picked as the more natural (the baseline's cell is the rest), with a 95% interval and
the number of participants: ``"62.0% [55.1, 68.4] (n=30)"``.  The interval is a **participant-level
(cluster) bootstrap**: participants are resampled with replacement (10,000 times, fixed seed, so the
same answers give the same cell) and the share recomputed over their trials; 2.5 and 97.5 percentiles.
Trials are not independent (one participant's taste runs through all of their 30 answers), so a Wilson
interval over trials would be too narrow; resampling whole participants keeps that correlation, and the
interval stays inside [0, 100].  With one participant there is no interval, only the share.

**Fig. 9**: the distribution of participants' Turing-test scores (share of their videos labelled
correctly), over the participants who answered every Turing trial they were shown, with the mean
marked (the paper: 153 users, mean 63%)::

    python -m speechanim.study.analysis fig9 --responses study.sqlite --out results/figures/fig9_turing.png

Both read a study's SQLite file or its CSV export (:func:`speechanim.study.db.read_responses`).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, refuse_clashing_paths
from .db import ResponsesError, read_responses

PROPOSED, BASELINE = "full", "static"
BOOTSTRAP = 10_000


@dataclass(frozen=True)
class Preference:
    """The proposed model's share of the preference answers on one dataset (percent), its 95% interval."""
    share: float
    low: float | None
    high: float | None
    participants: int
    trials: int


def _interval(picked: np.ndarray, answered: np.ndarray, seed: int = 0) -> tuple[float, float] | tuple[None, None]:
    """Participant-level bootstrap percentile interval of sum(picked) / sum(answered), in percent."""
    n = len(picked)
    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    shares = np.empty(BOOTSTRAP)
    for start in range(0, BOOTSTRAP, 1000):  # in blocks: memory stays small with many participants
        idx = rng.integers(0, n, size=(min(1000, BOOTSTRAP - start), n))
        shares[start:start + len(idx)] = picked[idx].sum(1) / answered[idx].sum(1)
    low, high = np.percentile(100 * shares, [2.5, 97.5])
    return float(low), float(high)


def preference(rows: list[dict], dataset: str) -> Preference | None:
    """The proposed model's share on ``dataset`` (None when no preference trial of it is answered)."""
    picked, answered = defaultdict(int), defaultdict(int)
    for r in rows:
        if r["kind"] == "preference" and r["dataset"] == dataset and r["answer"]:
            answered[r["participant"]] += 1
            picked[r["participant"]] += r["chosen_method"] == PROPOSED
    if not answered:
        return None
    people = sorted(answered)
    y = np.array([picked[p] for p in people], float)
    m = np.array([answered[p] for p in people], float)
    low, high = _interval(y, m)
    return Preference(float(100 * y.sum() / m.sum()), low, high, len(people), int(m.sum()))


def _cell(share: float, low: float | None, high: float | None, n: int) -> str:
    interval = "" if low is None else f" [{low:.1f}, {high:.1f}]"
    return f"{share:.1f}%{interval} (n={n})"


def user_cells(rows: list[dict], dataset: str) -> dict[str, str]:
    """Table 3's User cells of a dataset by method name ({"full": ..., "static": ...}); empty if no answers."""
    pref = preference(rows, dataset)
    if pref is None:
        return {}
    return {PROPOSED: _cell(pref.share, pref.low, pref.high, pref.participants),
            BASELINE: _cell(100 - pref.share, None if pref.high is None else 100 - pref.high,
                            None if pref.low is None else 100 - pref.low, pref.participants)}


def turing_scores(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """(correct, shown) per participant who answered every Turing trial they were shown."""
    shown, correct, unanswered = defaultdict(int), defaultdict(int), set()
    for r in rows:
        if r["kind"] != "turing":
            continue
        shown[r["participant"]] += 1
        if not r["answer"]:
            unanswered.add(r["participant"])
        correct[r["participant"]] += r["answer"] == r["truth"]
    return {p: (correct[p], shown[p]) for p in sorted(shown) if p not in unanswered}


def fig9(rows: list[dict], out: str | Path) -> Path:
    """Fig. 9: the histogram of participants' Turing-test scores (percent correct), the mean marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = turing_scores(rows)
    pct = np.array([100 * c / n for c, n in scores.values()])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if len(pct):
        counts = {n for _, n in scores.values()}
        step = 100 / counts.pop() if len(counts) == 1 else 10  # one bar per possible score when all saw as many
        edges = np.arange(-step / 2, 100 + step, step)
        ax.hist(pct, bins=edges, weights=np.full(len(pct), 100 / len(pct)), color="#4878a8", edgecolor="white")
        mean = float(pct.mean())
        ax.axvline(mean, color="#c0392b", linestyle="--", linewidth=2, label=f"mean {mean:.0f}%")
        ax.axvline(50, color="grey", linestyle=":", linewidth=1.5, label="chance (50%)")
        ax.legend(loc="upper left", frameon=False)
        title = f"Turing test: {len(pct)} participants, mean {mean:.0f}% correct"
    else:
        ax.text(50, 0.5, "no participant has finished the Turing test yet", ha="center", va="center")
        title = "Turing test: no complete answers yet"
    ax.set_xlim(-5, 105)
    ax.set_xlabel("videos labelled correctly (%)")
    ax.set_ylabel("participants (%)")
    ax.set_title(title)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.study.analysis", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fig9", help="the distribution of Turing-test scores (paper Fig. 9)")
    f.add_argument("--responses", required=True, type=Path, help="the study's SQLite file or its CSV export")
    f.add_argument("--out", required=True, type=Path, help="the PNG to write")
    args = p.parse_args(argv)
    refuse_clashing_paths(p, {"--responses": [args.responses, f"{args.responses}-wal", f"{args.responses}-shm"]},
                          {"--out": args.out})
    try:
        rows = read_responses(args.responses)
    except ResponsesError as e:
        print(f"speechanim.study.analysis: error: {e}", file=sys.stderr)
        return 1
    fig9(rows, args.out)
    scores = turing_scores(rows)
    print(f"{args.out}: {len(scores)} participants' Turing-test scores", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
