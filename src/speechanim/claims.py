"""The paper's claims, checked on the measured metrics: results/claims.md, one line per claim.

    python -m speechanim.claims --dataset synthgrid results/synthgrid/metrics,results/synthgrid/seed1/metrics,... \\
        [--dataset tcdtimit ...] --out results/claims.md

Reads the same JSON summaries as the tables (:mod:`speechanim.evaluate`), one folder per training seed
(comma-separated, as ``speechanim.tables``).  The first dataset gets the claims of Table 2 (section
4.3) and of the blinks (4.3); every dataset gets those of Table 3 (4.5) and of Fig. 8 (4.4).

Each claim is a pure function of per-seed values returning a :class:`Verdict`: whether it holds, its
margin in standard deviations and the figures.  The margin is the difference of the means, signed so
that it is positive when the claim holds, divided by the pooled standard deviation of the seeds
(the root mean of the compared methods' sample variances, ddof=1; the ground truth and the controls
have one value and no variance).  For "close" claims the difference is the tolerance minus the
absolute difference of the means.  A claim that does not hold is reported as such, with its figures.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tables import ABLATION_ONLY, read_seeds

#: "Close on PSNR/SSIM" (Table 3: "the difference in performance is slight for frame-based measures").
CLOSE_PSNR_DB = 1.0
CLOSE_SSIM = 0.02
#: Blinks (4.3): the full model's rate within this factor of the real videos', mean duration within this many s.
BLINK_RATE_FACTOR = 2.0
BLINK_DURATION_S = 0.1

NAMES = {"ground_truth": "real", "l1": "L1", "l1_advimg": "L1+Adv_img", "full": "full", "static": "static"}


@dataclass
class Verdict:
    holds: bool
    margin: float  # in pooled standard deviations; nan with one seed (no spread) or a missing value
    figures: str


def describe(values: list[float]) -> str:
    """"mean +- std" of per-seed values (sample std), or the value alone for one."""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{np.mean(values):.4g} +- {np.std(values, ddof=1):.2g}"


def pooled_std(*groups: list[float]) -> float:
    """Root mean of the sample variances (ddof=1) of the groups with two or more values; nan if none has."""
    variances = [np.var(g, ddof=1) for g in groups if len(g) > 1]
    return float(np.sqrt(np.mean(variances))) if variances else math.nan


def _margin(difference: float, std: float) -> float:
    """``difference`` in units of ``std``; +-inf when the seeds agree exactly (std 0)."""
    if math.isnan(std):
        return math.nan
    if std == 0:
        return math.copysign(math.inf, difference) if difference else 0.0
    return difference / std


def _missing(values: dict[str, list]) -> Verdict | None:
    """A claim on a value some method does not have (None: e.g. no blinks) does not hold."""
    def figure(name: str, v: list) -> str:
        missing = sum(x is None for x in v)
        return f"{NAMES.get(name, name)} " + (f"N/A in {missing} of {len(v)} seed(s)" if missing else describe(v))

    if any(x is None for v in values.values() for x in v):
        return Verdict(False, math.nan, ", ".join(figure(n, v) for n, v in values.items()))
    return None


def best_of(winner: str, values: dict[str, list[float]], higher: bool) -> Verdict:
    """``winner`` has the highest (``higher``) or lowest mean of all the methods in ``values``."""
    if (v := _missing(values)) is not None:
        return v
    sign = 1 if higher else -1
    mine = values[winner]
    gaps = {name: sign * (np.mean(mine) - np.mean(other)) for name, other in values.items() if name != winner}
    closest = min(gaps, key=gaps.get)
    margin = _margin(gaps[closest], pooled_std(mine, values[closest]))
    figures = ", ".join(f"{NAMES.get(n, n)} {describe(v)}" for n, v in values.items())
    return Verdict(bool(gaps[closest] > 0), margin, figures)


def close(a: list[float], b: list[float], tolerance: float, names: tuple[str, str]) -> Verdict:
    """The means of ``a`` and ``b`` differ by less than ``tolerance``."""
    if (v := _missing(dict(zip(names, (a, b))))) is not None:
        return v
    slack = tolerance - abs(np.mean(a) - np.mean(b))
    figures = (f"{NAMES.get(names[0], names[0])} {describe(a)}, {NAMES.get(names[1], names[1])} {describe(b)}, "
               f"|difference| {abs(np.mean(a) - np.mean(b)):.3g} (tolerance {tolerance:g})")
    return Verdict(bool(slack > 0), _margin(slack, pooled_std(a, b)), figures)


def within_factor(x: list[float], reference: list[float], factor: float, names: tuple[str, str]) -> Verdict:
    """The mean of ``x`` lies within ``factor`` times the mean of ``reference`` (above or below)."""
    if (v := _missing(dict(zip(names, (x, reference))))) is not None:
        return v
    m, ref = float(np.mean(x)), float(np.mean(reference))
    slack = min(m - ref / factor, ref * factor - m)  # distance inside the nearer bound
    figures = (f"{NAMES.get(names[0], names[0])} {describe(x)}, {NAMES.get(names[1], names[1])} {describe(reference)}, "
               f"allowed {ref / factor:.3g}-{ref * factor:.3g}")
    return Verdict(bool(slack > 0), _margin(slack, pooled_std(x, reference)), figures)


def within(x: list[float], reference: list[float], tolerance: float, names: tuple[str, str]) -> Verdict:
    """The mean of ``x`` lies within ``tolerance`` of the mean of ``reference``."""
    return close(x, reference, tolerance, names)


def _values(summaries: dict[str, list[dict]], key: str, *methods: str) -> dict[str, list]:
    return {m: [s.get(key) for s in summaries[m]] for m in methods}


def table2_claims(s: dict[str, list[dict]]) -> list[tuple[str, Verdict]]:
    """Table 2 (section 4.3) and the blinks, on the ablation dataset: ``s`` maps a method to its per-seed summaries."""
    three = ("l1", "l1_advimg", "full")
    return [
        ("Table 2: L1 has the best PSNR of the three models", best_of("l1", _values(s, "psnr", *three), higher=True)),
        ("Table 2: L1 has the best SSIM of the three models", best_of("l1", _values(s, "ssim", *three), higher=True)),
        ("Table 2: adding Adv_img makes frames sharper (CPBD, higher)",
         best_of("l1_advimg", _values(s, "cpbd", "l1_advimg", "l1"), higher=True)),
        ("Table 2: adding Adv_img makes frames sharper (FDBM, higher)",
         best_of("l1_advimg", _values(s, "fdbm", "l1_advimg", "l1"), higher=True)),
        ("Table 2: the full model has the best WER of the three",
         best_of("full", _values(s, "wer", *three), higher=False)),
        ("Table 2: the full model has the best sync of the three (LSE-D, lower)",
         best_of("full", _values(s, "lse_d", *three), higher=False)),
        ("Table 2: the full model has the best sync of the three (LSE-C, higher)",
         best_of("full", _values(s, "lse_c", *three), higher=True)),
        (f"4.3: the full model blinks as often as the real videos (blinks/s within a factor of {BLINK_RATE_FACTOR:g})",
         within_factor(*_values(s, "blinks_per_s", "full", "ground_truth").values(), BLINK_RATE_FACTOR,
                       ("full", "ground_truth"))),
        (f"4.3: the full model's blinks last as long as the real ones (mean duration within {BLINK_DURATION_S:g} s)",
         within(*_values(s, "blink_duration_s", "full", "ground_truth").values(), BLINK_DURATION_S,
                ("full", "ground_truth"))),
    ]


def table3_claims(s: dict[str, list[dict]]) -> list[tuple[str, Verdict]]:
    """Table 3 (4.5) and Fig. 8 (4.4) on one dataset: the proposed (full) model against the static baseline."""
    pair = ("full", "static")
    return [
        ("Table 3: the proposed model beats the static baseline on WER", best_of("full", _values(s, "wer", *pair), False)),
        ("Table 3: the proposed model beats the static baseline on LMD", best_of("full", _values(s, "lmd", *pair), False)),
        ("Table 3: the proposed model beats the static baseline on sync (LSE-D, lower)",
         best_of("full", _values(s, "lse_d", *pair), False)),
        ("Table 3: the proposed model beats the static baseline on sync (LSE-C, higher)",
         best_of("full", _values(s, "lse_c", *pair), True)),
        (f"Table 3: the proposed model is close to the baseline on PSNR (within {CLOSE_PSNR_DB:g} dB)",
         close(*_values(s, "psnr", *pair).values(), CLOSE_PSNR_DB, pair)),
        (f"Table 3: the proposed model is close to the baseline on SSIM (within {CLOSE_SSIM:g})",
         close(*_values(s, "ssim", *pair).values(), CLOSE_SSIM, pair)),
        ("Fig. 8: the static baseline moves its mouth more in silence than the proposed model "
         "(silence motion, grey levels per frame)", silence_claim(s)),
    ]


def silence_claim(s: dict[str, list[dict]]) -> Verdict:
    """Fig. 8 (4.4): the static baseline "opening the mouth when words are not spoken": its silence motion
    exceeds the full model's; the real videos' figure is given beside."""
    v = best_of("static", _values(s, "silence_motion", "static", "full"), higher=True)
    real = [x for x in _values(s, "silence_motion", "ground_truth")["ground_truth"] if x is not None]
    v.figures += f"; real {describe(real) if real else 'N/A'}"
    return v


def claim_line(text: str, v: Verdict) -> str:
    verdict = "holds" if v.holds else "does not hold"
    if math.isnan(v.margin):
        margin = "margin n/a"
    elif math.isinf(v.margin):
        margin = f"{v.margin:+} std: no spread, every seed gives the same values"
    else:
        margin = f"{v.margin:+.1f} std"
    return f"- **{verdict}** ({margin}) — {text}: {v.figures}"


HEADER = """# The paper's claims, measured

One line per claim: **holds** or **does not hold**, the margin in standard deviations, and the figures
(mean +- std over {n} training seed(s); the real videos and the controls do not depend on the seed).
Margin: the difference of the means, signed to be positive when the claim holds, over the pooled
standard deviation of the seeds (root mean of the compared methods' sample variances, ddof=1);
for "close" / "within" claims the difference is the tolerance minus |difference of the means|;
"margin n/a": one seed (no spread), or a value that some seed lacks (N/A, e.g. no blinks: does not hold);
"+-inf std: no spread": every seed gives the same values (e.g. no blinks at all), so any gap is infinite.
WER as a fraction of words.
Close: PSNR within {psnr:g} dB, SSIM within {ssim:g}. Blinks: rate within a factor of {factor:g},
mean duration within {duration:g} s of the real videos'. Silence motion: mean absolute change of the
lower half of the frame between consecutive frames whose audio windows are silent (speechanim.evaluate).
"""


def write_claims(datasets: list[tuple[str, str]], out: str | Path, ablation_dirs: str | None = None) -> str:
    """Check every claim on ``datasets`` ((name, comma-separated metrics folders), the first is Table 2's)
    and write the markdown to ``out``. ``ablation_dirs``: the first dataset's folders of the seeds that
    l1 and l1_advimg were trained with, when fewer than the others' (config `ablation_seeds`)."""
    lines, n_seeds = [], 0
    for i, (dataset, dirs) in enumerate(datasets):
        methods = ["ground_truth", "full", "static"] + (["l1", "l1_advimg"] if i == 0 else [])
        s = {m: read_seeds(ablation_dirs if i == 0 and ablation_dirs and m in ABLATION_ONLY else dirs, m)
             for m in methods}
        n_seeds = max(n_seeds, len(s["full"]))
        claims = (table2_claims(s) if i == 0 else []) + table3_claims(s)
        lines += ["", f"## {dataset}", ""]
        fewer = [m for m in methods if m != "ground_truth" and len(s[m]) < len(s["full"])]
        if fewer:  # ablation_seeds: the ablation-only variants trained with fewer seeds to fit the budget
            lines += [f"Trained with fewer seeds than the full model ({len(s['full'])}): "
                      + ", ".join(f"{NAMES.get(m, m)} {len(s[m])}" for m in fewer)
                      + " (config `ablation_seeds`); their claims rest on those seeds.", ""]
        lines += [claim_line(text, v) for text, v in claims]
    text = HEADER.format(n=n_seeds, psnr=CLOSE_PSNR_DB, ssim=CLOSE_SSIM, factor=BLINK_RATE_FACTOR,
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
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if len(args.dataset) != len(args.metrics_dirs):
        p.error("give one --dataset per metrics folder list")
    try:
        text = write_claims(list(zip(args.dataset, args.metrics_dirs)), args.out, args.ablation_metrics)
    except (OSError, ValueError) as e:
        print(f"speechanim.claims: error: {e}", file=sys.stderr)
        return 1
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
