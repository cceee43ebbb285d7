"""The paper's claims, checked on the measured per-clip scores: results/claims.md, one line per claim.

    python -m speechanim.claims --dataset synthgrid results/synthgrid/metrics,results/synthgrid/seed1/metrics,... \\
        [--dataset tcdtimit ...] [--ablation-metrics ...] [--resamples 10000] --out results/claims.md

Reads the per-clip scores that :mod:`speechanim.evaluate` writes beside each summary
(``<metrics>/<method>.csv``), one folder per training seed (comma-separated, as ``speechanim.tables``).
The first dataset gets the claims of Table 2 (section 4.3) and of the blinks (4.3); every dataset gets
those of Table 3 (4.5) and Fig. 8 (4.4), and the controls every model must beat (the still image).

Every claim compares methods by the 95% interval of a difference from a **hierarchical bootstrap**:
each resample draws every method's training seeds with replacement, then the test clips with
replacement (the same clips for every method: they are scored on the same clips), and recomputes
each method's figure as the tables do (the mean over its seeds of the per-seed figure over the
clips: a mean over clips, or a ratio of sums for WER and the blink rate and duration).  The
resamples are seeded, so the same scores give the same bytes.  Verdicts: **holds** when the
interval excludes 0 in the claimed direction, **contradicted** when it excludes 0 the other way,
**not shown** when it includes 0.  A "close" claim holds when the whole interval lies within the
tolerance and is contradicted when it lies wholly outside.  With one training seed the intervals
are over clips only, and ``claims.md`` says so: a second seed's model may land elsewhere.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics.wer import edit_distance, normalise_text
from .fileio import files_in, refuse_clashing_paths
from .tables import ABLATION_ONLY, SEED_INDEPENDENT, seed_folders

#: "Close on PSNR/SSIM" (Table 3: "the difference in performance is slight for frame-based measures").
CLOSE_PSNR_DB = 1.0
CLOSE_SSIM = 0.02
#: Blinks (4.3): the full model's rate within this factor of the real videos', mean duration within this many s.
BLINK_RATE_FACTOR = 2.0
BLINK_DURATION_S = 0.1
#: Bootstrap resamples per claim, the interval's coverage, and the resampling seed.
RESAMPLES = 10_000
COVERAGE = 0.95
SEED = 0

NAMES = {"ground_truth": "real", "still": "still image", "l1": "L1", "l1_advimg": "L1+Adv_img", "full": "full",
         "static": "static", "full_sync": "full+D_sync"}
#: Figures that are a mean over clips; the others are ratios of per-clip sums (numerator, denominator columns).
MEAN_METRICS = ("psnr", "ssim", "fdbm", "cpbd", "acd", "lmd", "mouth_r", "lse_d", "lse_c", "silence_motion")
RATIO_METRICS = {"wer": ("word_errors", "n_words"), "blinks_per_s": ("blinks", "seconds"),
                 "blink_duration_s": ("blink_seconds", "blinks")}


class ClaimsError(ValueError):
    """The per-clip scores cannot be read; the message names the file."""


# --------------------------------------------------------------------------------------------------
# Per-clip scores


def _number(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "None") else math.nan
    except ValueError:
        return math.nan


def clip_columns(row: dict[str, str]) -> dict[str, float]:
    """One clip's values of every column the claims use (nan where the clip has none): the mean metrics as
    evaluated, and the parts of the ratio metrics (WER's word errors and words; blinks, seconds, blink time)."""
    out = {m: _number(row.get(m)) for m in MEAN_METRICS}
    if row.get("transcript") is not None and row.get("words") is not None:
        ref, hyp = normalise_text(row["words"]).split(), normalise_text(row["transcript"]).split()
        out["word_errors"], out["n_words"] = float(edit_distance(ref, hyp)), float(len(ref))
    else:
        out["word_errors"] = out["n_words"] = math.nan
    blinks, fps = _number(row.get("blinks")), _number(row.get("fps"))
    out["blinks"] = blinks
    out["seconds"] = _number(row.get("seconds")) if not math.isnan(blinks) else math.nan  # clips with a face only
    out["blink_seconds"] = _number(row.get("blink_frames")) / fps if not math.isnan(blinks) else math.nan
    return out


def read_clip_scores(folder: str | Path, name: str) -> dict[str, dict[str, float]]:
    """clip key -> :func:`clip_columns` of ``<folder>/<name>.csv``."""
    path = Path(folder) / f"{name}.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise ClaimsError(f"{path}: cannot read the per-clip scores ({e.strerror or e})") from e
    if rows and "key" not in rows[0]:
        raise ClaimsError(f"{path}: not per-clip scores of speechanim.evaluate (no 'key' column)")
    return {r["key"]: clip_columns(r) for r in rows}


@dataclass
class Scores:
    """One method's per-clip columns over its training seeds: column -> array (seeds, clips), nan where none."""

    name: str
    columns: dict[str, np.ndarray]

    @property
    def n_seeds(self) -> int:
        return next(iter(self.columns.values())).shape[0]


def load_scores(folders: list[Path], name: str, keys: list[str]) -> Scores:
    """A method's scores on the clips ``keys`` (in that order), one row per seed folder."""
    per_seed = [read_clip_scores(folder, name) for folder in folders]
    columns = list(clip_columns({}).keys())
    nan = dict.fromkeys(columns, math.nan)
    return Scores(name, {c: np.array([[seed.get(k, nan)[c] for k in keys] for seed in per_seed]) for c in columns})


# --------------------------------------------------------------------------------------------------
# The bootstrap


def _per_seed(scores: Scores, metric: str, idx: np.ndarray) -> np.ndarray:
    """(seeds, resamples) figures of ``metric`` over the clips ``idx`` (resamples, clips)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in RATIO_METRICS:
            num, den = (np.nan_to_num(scores.columns[c])[:, idx].sum(-1) for c in RATIO_METRICS[metric])
            present = np.isfinite(scores.columns[RATIO_METRICS[metric][1]])[:, idx].any(-1)
            return np.where(present & (den > 0), num / np.where(den > 0, den, 1), np.nan)
        values = scores.columns[metric][:, idx]
        counts = np.isfinite(values).sum(-1)
        return np.where(counts > 0, np.nansum(values, -1) / np.maximum(counts, 1), np.nan)


def figure(scores: Scores, metric: str) -> float:
    """The method's figure as the tables give it: the mean over seeds of each seed's figure on every clip."""
    n = next(iter(scores.columns.values())).shape[1]
    per_seed = _per_seed(scores, metric, np.arange(n)[None])[:, 0]
    return float(np.mean(per_seed)) if np.isfinite(per_seed).all() else math.nan


def bootstrap(methods: list[Scores], metric: str, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(len(methods), resamples) figures of ``metric``: each resample draws each method's seeds, then the
    clips (shared by the methods), with replacement; a method's figure is the mean over its drawn seeds."""
    rng = np.random.default_rng(seed)
    n = next(iter(methods[0].columns.values())).shape[1]
    idx = rng.integers(0, n, (resamples, n))
    out = []
    for m in methods:
        per_seed = _per_seed(m, metric, idx)  # (S, B)
        draws = rng.integers(0, m.n_seeds, (resamples, m.n_seeds))  # (B, S)
        out.append(per_seed[draws, np.arange(resamples)[:, None]].mean(-1))
    return np.array(out)


def interval(samples: np.ndarray, coverage: float = COVERAGE) -> tuple[float, float]:
    """The percentile interval of ``coverage`` of the finite and infinite samples (nan ones left out). A percentile
    between samples of which one is infinite (a ratio over resamples whose reference is 0) is that infinity, where
    numpy's interpolation gives nan (inf - inf); between -inf and +inf it stays nan."""
    tail = 100 * (1 - coverage) / 2
    q = [tail, 100 - tail]
    with np.errstate(invalid="ignore"):
        linear = np.nanpercentile(samples, q)
    below, above = (np.nanpercentile(samples, q, method=m) for m in ("lower", "higher"))
    infinite = np.where(below == above, below, np.where(np.isfinite(below), above, np.where(np.isfinite(above),
                                                                                         below, np.nan)))
    lo, hi = np.where(np.isnan(linear), infinite, linear)
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------------
# Claims


@dataclass
class Verdict:
    verdict: str  # "holds", "not shown" or "contradicted"
    figures: str


def _fmt(x: float) -> str:
    return "N/A" if not math.isfinite(x) else f"{x:.4g}"


def _interval_text(diff: float, lo: float, hi: float) -> str:
    """``+1.10 [+0.90, +1.30]``: the three with the decimals that give the largest three significant digits."""
    top = max(abs(diff), abs(lo), abs(hi))
    decimals = max(0, 2 - math.floor(math.log10(top))) if top > 0 else 3
    return f"{diff:+.{decimals}f} [{lo:+.{decimals}f}, {hi:+.{decimals}f}]"


def _missing(methods: list[Scores], metric: str) -> Verdict | None:
    """A claim on a figure some method lacks (e.g. no blink to time) is not shown."""
    values = {m.name: figure(m, metric) for m in methods}
    if all(math.isfinite(v) for v in values.values()):
        return None
    return Verdict("not shown", ", ".join(f"{NAMES.get(k, k)} {_fmt(v)}" for k, v in values.items())
                   + " (a figure is missing, so nothing is compared)")


def better(winner: Scores, rival: Scores, metric: str, higher: bool, resamples: int = RESAMPLES) -> Verdict:
    """``winner``'s figure is above (``higher``) or below ``rival``'s: the interval of the signed difference."""
    if (v := _missing([winner, rival], metric)) is not None:
        return v
    sign = 1 if higher else -1
    a, b = bootstrap([winner, rival], metric, resamples)
    lo, hi = interval(sign * (a - b))
    diff = sign * (figure(winner, metric) - figure(rival, metric))
    verdict = "holds" if lo > 0 else "contradicted" if hi < 0 else "not shown"
    return Verdict(verdict, f"{NAMES.get(winner.name, winner.name)} {_fmt(figure(winner, metric))} vs "
                            f"{NAMES.get(rival.name, rival.name)} {_fmt(figure(rival, metric))}, "
                            f"{'advantage' if higher else 'advantage (lower is better)'} {_interval_text(diff, lo, hi)}")


def best_of(winner: Scores, rivals: list[Scores], metric: str, higher: bool, resamples: int = RESAMPLES) -> Verdict:
    """``winner`` beats every rival: holds if it does by every interval, contradicted if any rival beats it."""
    parts = [better(winner, r, metric, higher, resamples) for r in rivals]
    verdicts = {p.verdict for p in parts}
    verdict = "contradicted" if "contradicted" in verdicts else "holds" if verdicts == {"holds"} else "not shown"
    return Verdict(verdict, "; ".join(p.figures for p in parts))


def close(a: Scores, b: Scores, metric: str, tolerance: float, resamples: int = RESAMPLES) -> Verdict:
    """The figures of ``a`` and ``b`` differ by less than ``tolerance``: the interval of the difference lies within
    +-tolerance (holds), wholly outside it (contradicted), or across its edge (not shown)."""
    if (v := _missing([a, b], metric)) is not None:
        return v
    x, y = bootstrap([a, b], metric, resamples)
    lo, hi = interval(x - y)
    verdict = "holds" if -tolerance < lo and hi < tolerance else "contradicted" if lo > tolerance or hi < -tolerance \
        else "not shown"
    diff = figure(a, metric) - figure(b, metric)
    return Verdict(verdict, f"{NAMES.get(a.name, a.name)} {_fmt(figure(a, metric))}, {NAMES.get(b.name, b.name)} "
                            f"{_fmt(figure(b, metric))}, difference {_interval_text(diff, lo, hi)} (tolerance +-{tolerance:g})")


def within_factor(x: Scores, reference: Scores, metric: str, factor: float, resamples: int = RESAMPLES) -> Verdict:
    """``x``'s figure lies within ``factor`` times ``reference``'s (above or below): the interval of the ratio."""
    if (v := _missing([x, reference], metric)) is not None:
        return v
    a, b = bootstrap([x, reference], metric, resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = interval(a / b)
    verdict = "holds" if 1 / factor < lo and hi < factor else "contradicted" if hi < 1 / factor or lo > factor \
        else "not shown"
    ratio = figure(x, metric) / figure(reference, metric)
    return Verdict(verdict, f"{NAMES.get(x.name, x.name)} {_fmt(figure(x, metric))}, {NAMES.get(reference.name, reference.name)} "
                            f"{_fmt(figure(reference, metric))}, ratio {ratio:.3g} [{lo:.3g}, {hi:.3g}] "
                            f"(allowed {1 / factor:.3g}-{factor:.3g})")


def table2_claims(s: dict[str, Scores], resamples: int = RESAMPLES) -> list[tuple[str, Verdict]]:
    """Table 2 (section 4.3) and the blinks, on the ablation dataset (``s``: method -> its scores)."""
    def best(winner, rivals, metric, higher):
        return best_of(s[winner], [s[r] for r in rivals], metric, higher, resamples)

    return [
        ("Table 2: L1 has the best PSNR of the three models", best("l1", ["l1_advimg", "full"], "psnr", True)),
        ("Table 2: L1 has the best SSIM of the three models", best("l1", ["l1_advimg", "full"], "ssim", True)),
        ("Table 2: adding Adv_img makes frames sharper (CPBD, higher)", best("l1_advimg", ["l1"], "cpbd", True)),
        ("Table 2: adding Adv_img makes frames sharper (FDBM, higher)", best("l1_advimg", ["l1"], "fdbm", True)),
        ("Table 2: the full model has the best WER of the three", best("full", ["l1", "l1_advimg"], "wer", False)),
        ("Table 2: the full model has the best sync of the three (LSE-D, lower)",
         best("full", ["l1", "l1_advimg"], "lse_d", False)),
        ("Table 2: the full model has the best sync of the three (LSE-C, higher)",
         best("full", ["l1", "l1_advimg"], "lse_c", True)),
        (f"4.3: the full model blinks as often as the real videos (blinks/s within a factor of {BLINK_RATE_FACTOR:g})",
         within_factor(s["full"], s["ground_truth"], "blinks_per_s", BLINK_RATE_FACTOR, resamples)),
        (f"4.3: the full model's blinks last as long as the real ones (mean duration within {BLINK_DURATION_S:g} s)",
         close(s["full"], s["ground_truth"], "blink_duration_s", BLINK_DURATION_S, resamples)),
    ]


def table3_claims(s: dict[str, Scores], resamples: int = RESAMPLES) -> list[tuple[str, Verdict]]:
    """Table 3 (4.5), Fig. 8 (4.4) and the still-image control on one dataset."""
    full, static = s["full"], s["static"]
    claims = [
        ("Table 3: the proposed model beats the static baseline on WER", better(full, static, "wer", False, resamples)),
        ("Table 3: the proposed model beats the static baseline on LMD", better(full, static, "lmd", False, resamples)),
        ("Table 3: the proposed model beats the static baseline on sync (LSE-D, lower)",
         better(full, static, "lse_d", False, resamples)),
        ("Table 3: the proposed model beats the static baseline on sync (LSE-C, higher)",
         better(full, static, "lse_c", True, resamples)),
        (f"Table 3: the proposed model is close to the baseline on PSNR (within {CLOSE_PSNR_DB:g} dB)",
         close(full, static, "psnr", CLOSE_PSNR_DB, resamples)),
        (f"Table 3: the proposed model is close to the baseline on SSIM (within {CLOSE_SSIM:g})",
         close(full, static, "ssim", CLOSE_SSIM, resamples)),
        ("Fig. 8: the static baseline moves its mouth more in silence than the proposed model "
         "(silence motion, grey levels per frame)", better(static, full, "silence_motion", True, resamples)),
    ]
    if "ground_truth" in s and math.isfinite(figure(s["ground_truth"], "silence_motion")):
        claims[-1][1].figures += f"; real {_fmt(figure(s['ground_truth'], 'silence_motion'))}"
    if "still" in s:  # the control: a model whose lips follow the speech reads and syncs better than a frozen face
        claims += [
            ("Control: the proposed model's lips read better than the still image (WER)",
             better(full, s["still"], "wer", False, resamples)),
            ("Control: the proposed model is in sync better than the still image (LSE-C, higher)",
             better(full, s["still"], "lse_c", True, resamples)),
        ]
    return claims


def beyond_claims(s: dict[str, Scores], resamples: int = RESAMPLES) -> list[tuple[str, Verdict]]:
    """Not the paper's: what the journal version's synchronisation discriminator (IJCV 2020) should add to the
    full model, on one dataset: better sync (LSE-C, LMD) than the full model and the static baseline, and lips
    that read closer to the real videos' (WER)."""
    sync, full, static = s["full_sync"], s["full"], s["static"]
    return [
        ("D_sync: full+D_sync is in better sync than the full model (LSE-C, higher)",
         better(sync, full, "lse_c", True, resamples)),
        ("D_sync: full+D_sync follows the real lips better than the full model (LMD, lower)",
         better(sync, full, "lmd", False, resamples)),
        ("D_sync: full+D_sync is in better sync than the static baseline (LSE-C, higher)",
         better(sync, static, "lse_c", True, resamples)),
        ("D_sync: full+D_sync follows the real lips better than the static baseline (LMD, lower)",
         better(sync, static, "lmd", False, resamples)),
        ("D_sync: full+D_sync's lips read better than the full model's (WER)", better(sync, full, "wer", False, resamples)),
    ]


def claim_line(text: str, v: Verdict) -> str:
    return f"- **{v.verdict}** — {text}: {v.figures}"


HEADER = """# The paper's claims, measured

One line per claim: holds, not shown or contradicted, from the {coverage:.0%} interval of the
difference between the methods' figures (in [brackets]) over {resamples:,} hierarchical bootstrap resamples:
each draws every method's training seeds with replacement, then the test clips (the same for every method).
holds: the interval excludes 0 in the claimed direction; contradicted: it excludes 0 the other way; not shown:
it includes 0. "Close" claims hold when the whole interval lies within the tolerance. Figures as in the tables
(mean over {n} training seed(s) of each seed's figure over the test clips; the real videos and the controls do
not depend on the seed). {one_seed}
WER as a fraction of words. Close: PSNR within {psnr:g} dB, SSIM within {ssim:g}. Blinks: rate within a factor of
{factor:g}, mean duration within {duration:g} s of the real videos'. Silence motion: mean absolute change of the
lower half of the frame between consecutive frames whose audio windows are silent (speechanim.evaluate).
"""
ONE_SEED = ("With one training seed the intervals are over test clips only: they do not hold the spread between "
            "trainings, which another seed would show.")


def write_claims(datasets: list[tuple[str, str]], out: str | Path, ablation_dirs: str | None = None,
                 resamples: int = RESAMPLES) -> str:
    """Check every claim on ``datasets`` ((name, comma-separated metrics folders), the first is Table 2's)
    and write the markdown to ``out``. ``ablation_dirs``: the first dataset's folders of the seeds that
    l1 and l1_advimg were trained with, when fewer than the others' (config `ablation_seeds`)."""
    lines, n_seeds = [], 0
    for i, (dataset, dirs) in enumerate(datasets):
        folders = seed_folders(dirs)
        methods = ["ground_truth", "still", "full", "static", "full_sync"] + (list(ABLATION_ONLY) if i == 0 else [])
        keys = list(read_clip_scores(folders[0], "ground_truth"))
        s = {}
        for m in methods:
            where = seed_folders(ablation_dirs) if i == 0 and ablation_dirs and m in ABLATION_ONLY else folders
            where = where[:1] if m in SEED_INDEPENDENT else where
            if m in ("still", "full_sync") and not (where[0] / f"{m}.csv").is_file():
                continue  # an older run without the control's per-clip scores, or without the D_sync variant
            s[m] = load_scores(where, m, keys)
        n_seeds = max(n_seeds, s["full"].n_seeds)
        claims = (table2_claims(s, resamples) if i == 0 else []) + table3_claims(s, resamples)
        lines += ["", f"## {dataset}", ""]
        fewer = [m for m in s if m not in SEED_INDEPENDENT and s[m].n_seeds < s["full"].n_seeds]
        if fewer:  # ablation_seeds: the ablation-only variants trained with fewer seeds to fit the budget
            lines += [f"Trained with fewer seeds than the full model ({s['full'].n_seeds}): "
                      + ", ".join(f"{NAMES.get(m, m)} {s[m].n_seeds}" for m in fewer)
                      + " (config `ablation_seeds`); their claims rest on those seeds.", ""]
        lines += [claim_line(text, v) for text, v in claims]
        if "full_sync" in s:
            lines += ["", "Beyond the paper (the journal version's synchronisation discriminator, IJCV 2020):", ""]
            lines += [claim_line(text, v) for text, v in beyond_claims(s, resamples)]
    text = HEADER.format(n=n_seeds, coverage=COVERAGE, resamples=resamples, one_seed=ONE_SEED if n_seeds == 1 else "",
                         psnr=CLOSE_PSNR_DB, ssim=CLOSE_SSIM, factor=BLINK_RATE_FACTOR,
                         duration=BLINK_DURATION_S) + "\n".join(lines) + "\n"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechanim.claims", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", required=True, help="dataset name (repeat, in order; the first is Table 2's)")
    p.add_argument("metrics_dirs", nargs="+", help="per dataset: its metrics folders, one per seed, comma-separated")
    p.add_argument("--ablation-metrics", default=None,
                   help="the first dataset's metrics folders of the seeds l1 and l1_advimg were trained with, when fewer")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples per claim (default {RESAMPLES:,})")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if len(args.dataset) != len(args.metrics_dirs):
        p.error("give one --dataset per metrics folder list")
    if args.resamples < 1:
        p.error("--resamples must be >= 1")
    folders = [d for s in args.metrics_dirs for d in s.split(",")]
    refuse_clashing_paths(p, {"the per-clip scores": files_in(folders, "*.csv"),
                              "--ablation-metrics": files_in((args.ablation_metrics or "").split(","), "*.csv")},
                          {"--out": args.out})
    try:
        text = write_claims(list(zip(args.dataset, args.metrics_dirs)), args.out, args.ablation_metrics, args.resamples)
    except (OSError, ValueError) as e:
        print(f"speechanim.claims: error: {e}", file=sys.stderr)
        return 1
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
