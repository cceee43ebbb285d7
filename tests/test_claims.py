"""Several training seeds: the tables' "mean +- std" cells (speechanim.tables), and the paper's claims checked
by bootstrap intervals over seeds and clips (speechanim.claims), on hand-made scores whose answer is known."""
from __future__ import annotations

import csv
import json
import math
import re
import warnings
from pathlib import Path

import pytest

import numpy as np

from speechanim.claims import (ClaimsError, Scores, _fmt, _interval_text, best_of, better, bootstrap, clip_columns, close,
                               figure, interval, load_scores, main as claims_main, read_clip_scores, table3_claims,
                               within_factor)
from speechanim.metrics.wer import wer
from speechanim.tables import main as tables_main, mean_std_cell, metric_cells


def summary(**values) -> dict:
    base = dict(psnr=24.0, ssim=0.70, fdbm=0.30, cpbd=0.45, acd=0.40, lmd=0.02, mouth_r=0.4, lse_d=8.0, lse_c=1.0,
                wer=0.86, blinks_per_s=0.30, blink_duration_s=0.12, silence_motion=1.0)
    base.update(values)
    return base


def write(folder: Path, summaries: dict[str, dict]) -> Path:
    """Each method's summary JSON and per-clip CSV: 6 clips whose mean metrics average to the summary's,
    spread +-1% around it, and whose words make the summary's WER (50 words a clip)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, s in summaries.items():
        (folder / f"{name}.json").write_text(json.dumps(s))
        rows = []
        for i, spread in enumerate((-0.01, 0.01, -0.005, 0.005, 0.0, 0.0)):
            row = {"key": f"s9/u{i}", "fps": 25.0, "seconds": 3.0}
            for k in ("psnr", "ssim", "fdbm", "cpbd", "acd", "lmd", "mouth_r", "lse_d", "lse_c", "silence_motion"):
                row[k] = "" if s.get(k) is None else s[k] * (1 + spread)
            words = ["word"] * 50
            if s.get("wer") is not None:
                errors = round(s["wer"] * 50)
                row["transcript"] = " ".join(["wrong"] * errors + words[errors:])
            row["words"] = " ".join(words)
            rate = s.get("blinks_per_s")
            row["blinks"] = "" if rate is None else rate * 3.0
            row["blink_frames"] = "" if rate is None else (s.get("blink_duration_s") or 0) * rate * 3.0 * 25.0
            rows.append(row)
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return folder


def two_seeds(tmp_path: Path) -> str:
    """Seed 0's folder with every method and the controls, seed 1's with the trained methods only."""
    real = {"ground_truth": summary(psnr=None, ssim=None, wer=0.586, silence_motion=0.2),
            "still": summary(psnr=23.0), "shifted_audio": summary(psnr=None, wer=None)}
    seed0 = write(tmp_path / "ds" / "metrics", {**real,
        "l1": summary(psnr=24.2, ssim=0.78, cpbd=0.24, fdbm=0.18, wer=0.89, lse_d=8.5, lse_c=0.8),
        "l1_advimg": summary(psnr=23.1, ssim=0.69, cpbd=0.50, fdbm=0.34, wer=0.86, lse_d=8.3, lse_c=0.9),
        "full": summary(psnr=23.0, ssim=0.68, cpbd=0.52, fdbm=0.37, wer=0.80, lse_d=7.9, lse_c=1.3, lmd=0.018,
                        blinks_per_s=0.0, blink_duration_s=None, silence_motion=0.5),
        "static": summary(psnr=23.4, ssim=0.73, wer=0.86, lse_d=8.6, lse_c=0.7, lmd=0.025, silence_motion=2.0)})
    seed1 = write(tmp_path / "ds" / "seed1" / "metrics", {
        "l1": summary(psnr=24.4, ssim=0.77, cpbd=0.26, fdbm=0.20, wer=0.91, lse_d=8.6, lse_c=0.7),
        "l1_advimg": summary(psnr=23.3, ssim=0.70, cpbd=0.48, fdbm=0.32, wer=0.84, lse_d=8.2, lse_c=1.0),
        "full": summary(psnr=22.8, ssim=0.67, cpbd=0.50, fdbm=0.36, wer=0.82, lse_d=8.1, lse_c=1.1, lmd=0.020,
                        blinks_per_s=0.1, blink_duration_s=0.08, silence_motion=0.7),
        "static": summary(psnr=23.6, ssim=0.72, wer=0.88, lse_d=8.4, lse_c=0.9, lmd=0.027, silence_motion=2.2)})
    return f"{seed0},{seed1}"


def test_mean_std_cell_one_seed_is_todays_cell_several_give_mean_and_sample_std():
    assert mean_std_cell([24.131], "{:.2f}") == "24.13"
    assert mean_std_cell([None], "{:.2f}") == mean_std_cell([None, None], "{:.2f}") == "N/A"
    assert mean_std_cell([24.0, 24.2, 24.4], "{:.2f}") == "24.20 +- 0.20"  # std with ddof=1
    assert mean_std_cell([86.0, 88.0], "{:.1f}%") == "87.0% +- 1.4%"
    assert mean_std_cell([0.1, None, 0.3], "{:.3f}") == "0.200 +- 0.141 (2/3 seeds)"
    assert mean_std_cell([0.1, None], "{:.3f}") == "0.100 (1/2 seeds)"
    assert metric_cells(summary(wer=0.2545)) == metric_cells([summary(wer=0.2545)])
    assert metric_cells([summary(wer=0.25), summary(wer=0.27)])["WER"] == "26.0% +- 1.4%"


def test_table2_and_table3_over_seeds_read_the_real_rows_once(tmp_path):
    dirs = two_seeds(tmp_path)
    out = tmp_path / "table2.csv"
    assert tables_main(["table2", "--metrics", dirs, "--out", str(out)]) == 0
    rows = {r["Method"]: r for r in csv.DictReader(out.open())}
    assert rows["Ground Truth Videos"]["WER"] == "58.6%" and rows["Still image"]["PSNR"] == "23.00"
    assert rows["L1 loss"]["PSNR"] == "24.30 +- 0.14" and rows["L1 loss"]["WER"] == "90.0% +- 1.4%"
    assert rows["L1 + Adv_img + Adv_seq"]["Blink (s)"] == "0.080 (1/2 seeds)"
    out3 = tmp_path / "table3.csv"
    assert tables_main(["table3", "--dataset", "ds", dirs, "--out", str(out3)]) == 0
    rows3 = {r["Method"]: r for r in csv.DictReader(out3.open())}
    assert rows3["Baseline"]["SSIM"] == "0.725 +- 0.007" and rows3["Ground Truth Videos"]["PSNR"] == "N/A"
    assert "Beyond the paper:" not in rows and "Beyond the paper:" not in rows3  # a run without the D_sync variant
    for folder, lse_c in zip(dirs.split(","), (1.9, 1.8)):
        write(Path(folder), {"full_sync": summary(lse_c=lse_c)})
    assert tables_main(["table2", "--metrics", dirs, "--out", str(out)]) == 0
    methods = [r["Method"] for r in csv.DictReader(out.open())]
    assert methods[-2:] == ["Beyond the paper:", "Proposed + D_sync (IJCV)"]
    assert next(r for r in csv.DictReader(out.open()) if r["Method"].startswith("Proposed"))["LSE-C"] == "1.850 +- 0.071"


def test_a_missing_seed_summary_is_named(tmp_path, capsys):
    dirs = two_seeds(tmp_path)
    (tmp_path / "ds" / "seed1" / "metrics" / "static.json").unlink()
    assert tables_main(["table3", "--dataset", "ds", dirs, "--out", str(tmp_path / "t3.csv")]) == 1
    assert str(tmp_path / "ds" / "seed1" / "metrics" / "static.json") in capsys.readouterr().err
    (tmp_path / "ds" / "seed1" / "metrics" / "static.csv").unlink()
    assert claims_main(["--dataset", "ds", dirs, "--out", str(tmp_path / "claims.md")]) == 1
    assert "static.csv" in capsys.readouterr().err and not (tmp_path / "claims.md").exists()


def test_ablation_variants_with_fewer_seeds_are_read_from_their_folders_and_say_so(tmp_path):
    """ablation_seeds: l1 and l1_advimg trained with seed 0 only, the full model and the baseline with both."""
    dirs = two_seeds(tmp_path)
    seed0, seed1 = dirs.split(",")
    for name in ("l1", "l1_advimg"):
        (Path(seed1) / f"{name}.json").unlink()
        (Path(seed1) / f"{name}.csv").unlink()
    out = tmp_path / "table2.csv"
    assert tables_main(["table2", "--metrics", dirs, "--out", str(out)]) == 1  # missing without the option
    assert tables_main(["table2", "--metrics", dirs, "--ablation-metrics", seed0, "--out", str(out)]) == 0
    rows = {r["Method"]: r for r in csv.DictReader(out.open())}
    assert rows["L1 loss"]["PSNR"] == "24.20 (1/2 seeds)" and rows["L1 + Adv_img"]["WER"] == "86.0% (1/2 seeds)"
    assert rows["L1 + Adv_img + Adv_seq"]["PSNR"] == "22.90 +- 0.14"  # both seeds
    md = tmp_path / "claims.md"
    assert claims_main(["--dataset", "ds", dirs, "--ablation-metrics", seed0, "--out", str(md)]) == 0
    text = md.read_text()
    assert ("\n## ds\n\nTrained with fewer seeds than the full model (2): L1 1, L1+Adv_img 1 (config `ablation_seeds`); "
            "their claims rest on those seeds.\n\n- **") in text  # under the dataset's heading, before its claims
    assert "L1 24.2 vs L1+Adv_img 23.1" in text and "L1 24.2 vs full 22.9" in text  # L1: seed 0; full: both


# ------------------------------------------------------------------ the bootstrap, on scores with a known answer


def scores(name: str, per_seed_clips: list[list[float]], metric: str = "psnr") -> Scores:
    """A method's scores with one metric given per seed and clip."""
    values = np.array(per_seed_clips, float)
    columns = {c: np.full_like(values, np.nan) for c in clip_columns({})}
    columns[metric] = values
    return Scores(name, columns)


RNG = np.random.default_rng(1)
NOISE = RNG.normal(0, 1, (3, 60))  # per-clip spread of a figure: sd 1 around its clip's level
LEVEL = RNG.normal(25, 3, 60)  # clips differ far more than methods do: paired resampling must see through that


def test_a_clear_win_holds_a_tie_is_not_shown_a_clear_loss_is_contradicted():
    base = scores("static", LEVEL + NOISE)
    win = scores("full", LEVEL + 1.0 + NOISE[::-1])
    v = better(win, base, "psnr", higher=True, resamples=2000)
    assert v.verdict == "holds" and "advantage +1.0" in v.figures, v.figures
    tie = scores("full", LEVEL + NOISE[::-1])
    assert better(tie, base, "psnr", higher=True, resamples=2000).verdict == "not shown"
    loss = better(scores("full", LEVEL - 1.0 + NOISE[::-1]), base, "psnr", higher=True, resamples=2000)
    assert loss.verdict == "contradicted" and "advantage -1.0" in loss.figures
    # lower is better (e.g. LMD): the same win read the other way is contradicted
    assert better(win, base, "psnr", higher=False, resamples=2000).verdict == "contradicted"
    assert best_of(win, [base, tie], "psnr", True, resamples=2000).verdict == "holds"
    assert best_of(win, [base, scores("l1", LEVEL + 2.0 + NOISE)], "psnr", True, resamples=2000).verdict == "contradicted"


def test_the_interval_holds_the_spread_between_seeds():
    """A 1 dB mean advantage whose seeds scatter by +-3 dB (whole-model shifts) is not shown; the same mean with
    tight seeds holds: the bootstrap resamples the seeds, not only the clips."""
    base = scores("static", LEVEL + NOISE)
    scattered = scores("full", LEVEL + NOISE[::-1] + np.array([[-2.0], [1.0], [4.0]]))  # mean +1
    assert figure(scattered, "psnr") == pytest.approx(figure(base, "psnr") + 1.0, abs=0.3)
    assert better(scattered, base, "psnr", True, resamples=4000).verdict == "not shown"
    tight = scores("full", LEVEL + NOISE[::-1] + np.array([[0.9], [1.0], [1.1]]))
    assert better(tight, base, "psnr", True, resamples=4000).verdict == "holds"


def test_a_close_call_holds_only_when_the_whole_interval_is_inside_the_tolerance():
    base = scores("static", LEVEL + NOISE)
    near = scores("full", LEVEL + 0.2 + NOISE[::-1])  # 0.2 dB apart, interval well within +-1
    assert close(near, base, "psnr", 1.0, resamples=2000).verdict == "holds"
    edge = scores("full", LEVEL + 1.0 + NOISE[::-1])  # 1 dB apart: the interval straddles the tolerance
    assert close(edge, base, "psnr", 1.0, resamples=2000).verdict == "not shown"
    far = scores("full", LEVEL + 3.0 + NOISE[::-1])
    v = close(far, base, "psnr", 1.0, resamples=2000)
    assert v.verdict == "contradicted" and "(tolerance +-1)" in v.figures


def test_wer_and_blink_rate_are_ratios_of_sums_like_the_tables():
    words = ["bin blue at f two now", "lay red", "set white with p nine soon please again"]
    heard = ["bin blue at f two now", "lay green", "set white"]
    rows = [clip_columns({"key": str(i), "words": w, "transcript": h, "fps": "25", "seconds": "3", "blinks": str(b),
                          "blink_frames": str(f)}) for i, (w, h, b, f) in enumerate(zip(words, heard, (1, 0, 2), (4, 0, 6)))]
    s = Scores("full", {c: np.array([[r[c] for r in rows]]) for c in rows[0]})
    assert figure(s, "wer") == pytest.approx(wer(words, heard))  # 7 errors in 16 words, not the mean of per-clip rates
    assert figure(s, "blinks_per_s") == pytest.approx(3 / 9)
    assert figure(s, "blink_duration_s") == pytest.approx((10 / 25) / 3)
    none = Scores("static", {c: np.where(np.isin(c, ["blinks", "blink_seconds"]), 0.0, v) for c, v in s.columns.items()})
    v = within_factor(none, s, "blinks_per_s", 2.0, resamples=500)
    assert v.verdict == "contradicted" and "ratio 0 [0, 0]" in v.figures  # never blinks: outside any factor
    assert close(none, s, "blink_duration_s", 0.1, resamples=500).verdict == "not shown"  # no blink to time


def test_bootstrap_is_seeded_and_resamples_each_methods_seeds():
    a, b = scores("a", LEVEL + NOISE), scores("b", [LEVEL + 5.0])
    first = bootstrap([a, b], "psnr", resamples=300)
    assert first.shape == (2, 300) and np.array_equal(first, bootstrap([a, b], "psnr", resamples=300))
    assert np.allclose(first[1] - first[1].mean(), first[0] - first[0].mean(), atol=3)  # the same clips drawn
    assert not np.array_equal(first, bootstrap([a, b], "psnr", resamples=300, seed=1))


def test_claims_md_gives_verdicts_differences_and_intervals(tmp_path):
    dirs = two_seeds(tmp_path)
    out = tmp_path / "results" / "claims.md"
    assert claims_main(["--dataset", "ds", dirs, "--resamples", "2000", "--out", str(out)]) == 0
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == 9 + 7 + 2  # Table 2 and blinks; Table 3 and Fig. 8; the still-image controls
    verdicts = [line.split("**")[1] for line in lines]
    assert set(verdicts) <= {"holds", "not shown", "contradicted"}
    # L1's PSNR 24.3 against the full model's 22.9 and L1+Adv_img's 23.2, +-1% per clip: a clear win
    assert lines[0].startswith("- **holds** — Table 2: L1 has the best PSNR") and "advantage +1.10 [+0.9" in lines[0]
    assert verdicts[7] == "contradicted" and "allowed 0.5-2" in lines[7]  # full 0.05 blinks/s against real 0.3
    assert "(tolerance +-0.02)" in next(line for line in lines if "SSIM (within 0.02)" in line)
    assert "hierarchical bootstrap" in text and "2 training seed(s)" in text
    out2 = tmp_path / "again.md"
    assert claims_main(["--dataset", "ds", dirs, "--resamples", "2000", "--out", str(out2)]) == 0
    assert out2.read_bytes() == out.read_bytes()  # seeded: the same scores give the same bytes


def test_the_d_sync_variant_gets_its_own_claims_below_the_papers(tmp_path):
    """Beyond the paper: with full_sync's scores in the folders, five claims follow the paper's under their own
    heading; a variant clearly in better sync (LSE-C 1.9 against the full model's 1.2 and the baseline's 0.8)
    holds, one that reads no better is not shown or contradicted by its interval."""
    dirs = two_seeds(tmp_path)
    for folder, lse_c in zip(dirs.split(","), (1.9, 1.8)):
        write(Path(folder), {"full_sync": summary(lse_c=lse_c, lmd=0.010, wer=0.90)})
    out = tmp_path / "claims.md"
    assert claims_main(["--dataset", "ds", dirs, "--resamples", "2000", "--out", str(out)]) == 0
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == 9 + 7 + 2 + 5
    assert text.index("Beyond the paper") > text.index(lines[17]) and text.index("Beyond the paper") < text.index(lines[18])
    sync = dict(zip(["lse_c full", "lmd full", "lse_c static", "lmd static", "wer full"], lines[18:]))
    assert sync["lse_c full"].startswith("- **holds** — D_sync:") and "full+D_sync 1.85 vs full 1.2" in sync["lse_c full"]
    assert sync["lmd static"].startswith("- **holds**")  # 0.010 against 0.026
    assert sync["wer full"].startswith("- **contradicted**")  # 90% of words wrong against 81%


def test_one_seed_still_gives_intervals_and_says_so(tmp_path):
    dirs = two_seeds(tmp_path).split(",")[0]
    out = tmp_path / "claims.md"
    assert claims_main(["--dataset", "ds", dirs, "--resamples", "500", "--out", str(out)]) == 0
    text = out.read_text()
    assert "1 training seed(s)" in text and "intervals are over test clips only" in text
    assert all("[" in line for line in text.splitlines() if line.startswith("- **holds**"))


# ------------------------------------------------------------------ each rule on inputs whose answer is exact
# (mutation testing, docs/mutants.md): constant per-clip scores make every bootstrap resample give the same
# difference, so the interval's ends are known and each verdict's boundary can be tested from both sides.


def const(name: str, value: float, metric: str = "psnr", seeds: int = 1, clips: int = 4) -> Scores:
    return scores(name, [[value] * clips] * seeds, metric)


def test_per_clip_columns_are_parsed_as_the_evaluation_wrote_them():
    row = {"key": "s1/u0", "psnr": "24", "ssim": "", "lmd": "None", "cpbd": "n/a", "words": "Bin blue",
           "transcript": "bin RED at", "blinks": "2", "fps": "25", "seconds": "3", "blink_frames": "10"}
    c = clip_columns(row)
    assert c["psnr"] == 24.0 and all(math.isnan(c[m]) for m in ("ssim", "lmd", "cpbd", "fdbm", "silence_motion"))
    assert c["word_errors"] == 2.0 and c["n_words"] == 2.0  # "blue" read as "red", "at" inserted
    assert c["blinks"] == 2.0 and c["seconds"] == 3.0 and c["blink_seconds"] == pytest.approx(0.4)  # 10 frames / 25
    no_face = clip_columns({**row, "blinks": ""})
    assert all(math.isnan(no_face[k]) for k in ("blinks", "seconds", "blink_seconds"))
    for missing in ("words", "transcript"):
        c = clip_columns({k: v for k, v in row.items() if k != missing})
        assert math.isnan(c["word_errors"]) and math.isnan(c["n_words"])
    assert set(clip_columns({})) == {"psnr", "ssim", "fdbm", "cpbd", "acd", "lmd", "mouth_r", "lse_d", "lse_c",
                                     "silence_motion", "word_errors", "n_words", "blinks", "seconds", "blink_seconds"}


def test_per_clip_files_that_cannot_be_read_are_named(tmp_path):
    with pytest.raises(ClaimsError, match=rf"^{tmp_path}/full\.csv: cannot read the per-clip scores \(No such file or "
                                          r"directory\)$"):
        read_clip_scores(tmp_path, "full")
    (tmp_path / "full.csv").write_text("psnr,ssim\n1,2\n")
    with pytest.raises(ClaimsError, match=r"full\.csv: not per-clip scores of speechanim\.evaluate \(no 'key' column\)$"):
        read_clip_scores(tmp_path, "full")
    (tmp_path / "full.csv").write_text("key,psnr\n")
    assert read_clip_scores(tmp_path, "full") == {}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "full.csv").write_text("key,psnr\nu0,1\nu1,2\n")
    (tmp_path / "b" / "full.csv").write_text("key,psnr\nu1,5\n")
    s = load_scores([tmp_path / "a", tmp_path / "b"], "full", ["u1", "u0"])
    assert s.name == "full" and s.n_seeds == 2
    np.testing.assert_array_equal(s.columns["psnr"], [[2.0, 1.0], [5.0, np.nan]])  # u0 missing in seed b: nan


def test_figures_are_means_over_seeds_of_means_or_ratios_over_clips():
    s = scores("full", [[1.0, np.nan, 3.0], [4.0, 4.0, 4.0]])
    assert figure(s, "psnr") == pytest.approx((2.0 + 4.0) / 2)  # a clip without a value is left out
    assert math.isnan(figure(scores("full", [[1.0, 2.0], [np.nan, np.nan]]), "psnr"))  # a seed without any value
    cols = {c: np.full((1, 3), np.nan) for c in clip_columns({})}
    cols["word_errors"], cols["n_words"] = np.array([[1.0, 3.0, np.nan]]), np.array([[4.0, 4.0, np.nan]])
    assert figure(Scores("full", cols), "wer") == pytest.approx(4 / 8)
    cols["n_words"] = np.array([[0.0, 0.0, np.nan]])
    assert math.isnan(figure(Scores("full", cols), "wer"))  # no reference words: no rate
    cols["n_words"] = np.full((1, 3), np.nan)
    assert math.isnan(figure(Scores("full", cols), "wer"))


def test_bootstrap_draws_seeds_and_clips_with_replacement():
    two = scores("a", [[1.0] * 3, [3.0] * 3])  # seeds at 1 and 3: a resample's mean over 2 drawn seeds is 1, 2 or 3
    draws = bootstrap([two], "psnr", resamples=2000)[0]
    assert set(np.unique(draws)) == {1.0, 2.0, 3.0} and (draws == 2.0).mean() == pytest.approx(0.5, abs=0.05)
    clips = bootstrap([scores("b", [[0.0, 10.0]])], "psnr", resamples=2000)[0]  # 2 clips drawn of 2
    assert set(np.unique(clips)) == {0.0, 5.0, 10.0} and (clips == 5.0).mean() == pytest.approx(0.5, abs=0.05)


def test_interval_is_the_central_coverage_of_the_resamples():
    samples = np.append(np.arange(101.0), np.nan)
    assert interval(samples) == pytest.approx((2.5, 97.5))
    assert interval(samples, 0.9) == pytest.approx((5.0, 95.0))


def test_an_interval_reaching_infinite_resamples_ends_at_infinity_not_nan():
    """Ratios over resamples whose reference is 0 are infinite: a percentile between two of them is infinite (numpy
    interpolates inf - inf to nan), one between a finite and an infinite sample is too, and the finite end stays."""
    inf = math.inf
    half = np.array([1.0] * 50 + [inf] * 50)  # 2.5th percentile at 1, 97.5th between two infinities
    assert interval(half) == (1.0, inf)
    assert interval(np.array([1.0, 2.0, inf])) == (pytest.approx(1.05), inf)  # 97.5th between 2 and inf
    assert interval(np.array([inf] * 9 + [np.nan])) == (inf, inf)
    assert interval(np.array([-inf] * 3 + [0.0] * 94 + [inf] * 3)) == (-inf, inf)
    assert interval(np.array([-inf, inf]), 0.5) == pytest.approx((math.nan, math.nan), nan_ok=True)  # no side wins
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert interval(np.array([2.0] * 97 + [inf] * 3)) == (2.0, inf)


@pytest.mark.parametrize("diff, lo, hi, text", [
    (1.1, 0.9, 1.3, "+1.10 [+0.90, +1.30]"),
    (12.34, 10.0, 15.0, "+12.3 [+10.0, +15.0]"),
    (0.01234, 0.01, 0.015, "+0.0123 [+0.0100, +0.0150]"),
    (150.0, 100.0, 200.0, "+150 [+100, +200]"),
    (1234.0, 1000.0, 1500.0, "+1234 [+1000, +1500]"),
    (-1.5, -2.0, -1.0, "-1.50 [-2.00, -1.00]"),
    (0.0, 0.0, 0.0, "+0.000 [+0.000, +0.000]"),
    (0.5, -0.1, 9.99, "+0.50 [-0.10, +9.99]"),  # the largest of the three sets the decimals
    (10.0, 1.0, 2.0, "+10.0 [+1.0, +2.0]"),  # the difference the largest: a percentile interval need not hold it
    (1.0, -10.0, 2.0, "+1.0 [-10.0, +2.0]"),  # the lower end the largest
])
def test_interval_text_gives_three_significant_digits_to_the_largest(diff, lo, hi, text):
    assert _interval_text(diff, lo, hi) == text


def test_fmt():
    assert _fmt(math.nan) == "N/A" and _fmt(math.inf) == "N/A" and _fmt(0.123456) == "0.1235" and _fmt(24.3) == "24.3"


def test_better_verdicts_at_and_beside_zero():
    v = better(const("full", 2.0), const("static", 1.0), "psnr", True, resamples=50)
    assert (v.verdict, v.figures) == ("holds", "full 2 vs static 1, advantage +1.00 [+1.00, +1.00]")
    v = better(const("full", 2.0), const("static", 1.0), "psnr", False, resamples=50)
    assert (v.verdict, v.figures) == ("contradicted", "full 2 vs static 1, advantage (lower is better) "
                                                      "-1.00 [-1.00, -1.00]")
    v = better(const("l1_advimg", 1.0), const("other", 1.0), "psnr", True, resamples=50)
    assert (v.verdict, v.figures) == ("not shown", "L1+Adv_img 1 vs other 1, advantage +0.000 [+0.000, +0.000]")
    v = better(const("full", 1.0), const("ground_truth", np.nan), "psnr", True, resamples=50)
    assert (v.verdict, v.figures) == ("not shown", "full 1, real N/A (a figure is missing, so nothing is compared)")


def test_best_of_holds_only_if_every_rival_is_beaten():
    w, lo, same, hi = const("full", 2.0), const("l1", 1.0), const("static", 2.0), const("still", 3.0)
    v = best_of(w, [lo, lo], "psnr", True, resamples=20)
    assert v.verdict == "holds" and v.figures == "full 2 vs L1 1, advantage +1.00 [+1.00, +1.00]; " \
                                                 "full 2 vs L1 1, advantage +1.00 [+1.00, +1.00]"
    assert best_of(w, [lo, same], "psnr", True, resamples=20).verdict == "not shown"
    assert best_of(w, [lo, same, hi], "psnr", True, resamples=20).verdict == "contradicted"
    assert best_of(w, [hi, same], "psnr", True, resamples=20).verdict == "contradicted"


@pytest.mark.parametrize("a, verdict", [(1.5, "holds"), (0.5, "holds"), (2.0, "not shown"), (0.0, "not shown"),
                                        (2.5, "contradicted"), (-0.5, "contradicted")])
def test_close_at_and_beside_the_tolerance(a, verdict):
    v = close(const("full", a), const("static", 1.0), "psnr", 1.0, resamples=20)
    assert v.verdict == verdict
    d = _interval_text(a - 1.0, a - 1.0, a - 1.0)
    assert v.figures == f"full {a:.4g}, static 1, difference {d} (tolerance +-1)"


def test_close_on_a_missing_figure_is_not_shown():
    v = close(const("full", np.nan), const("static", 1.0), "psnr", 1.0, resamples=20)
    assert (v.verdict, v.figures) == ("not shown", "full N/A, static 1 (a figure is missing, so nothing is compared)")


@pytest.mark.parametrize("x, verdict", [(1.5, "holds"), (0.6, "holds"), (2.0, "not shown"), (0.5, "not shown"),
                                        (3.0, "contradicted"), (0.25, "contradicted")])
def test_within_factor_at_and_beside_the_factor(x, verdict):
    v = within_factor(const("full", x), const("ground_truth", 1.0), "psnr", 2.0, resamples=20)
    assert v.verdict == verdict
    assert v.figures == f"full {x:.4g}, real 1, ratio {x:.3g} [{x:.3g}, {x:.3g}] (allowed 0.5-2)"
    v = within_factor(const("full", x), const("ground_truth", np.nan), "psnr", 2.0, resamples=20)
    assert v.verdict == "not shown" and v.figures.endswith("(a figure is missing, so nothing is compared)")


CLAIMS_DS1 = [
    "Table 2: L1 has the best PSNR of the three models",
    "Table 2: L1 has the best SSIM of the three models",
    "Table 2: adding Adv_img makes frames sharper (CPBD, higher)",
    "Table 2: adding Adv_img makes frames sharper (FDBM, higher)",
    "Table 2: the full model has the best WER of the three",
    "Table 2: the full model has the best sync of the three (LSE-D, lower)",
    "Table 2: the full model has the best sync of the three (LSE-C, higher)",
    "4.3: the full model blinks as often as the real videos (blinks/s within a factor of 2)",
    "4.3: the full model's blinks last as long as the real ones (mean duration within 0.1 s)",
]
CLAIMS_EVERY = [
    "Table 3: the proposed model beats the static baseline on WER",
    "Table 3: the proposed model beats the static baseline on LMD",
    "Table 3: the proposed model beats the static baseline on sync (LSE-D, lower)",
    "Table 3: the proposed model beats the static baseline on sync (LSE-C, higher)",
    "Table 3: the proposed model is close to the baseline on PSNR (within 1 dB)",
    "Table 3: the proposed model is close to the baseline on SSIM (within 0.02)",
    "Fig. 8: the static baseline moves its mouth more in silence than the proposed model (silence motion, grey levels "
    "per frame)",
    "Control: the proposed model's lips read better than the still image (WER)",
    "Control: the proposed model is in sync better than the still image (LSE-C, higher)",
]
CLAIMS_SYNC = [
    "D_sync: full+D_sync is in better sync than the full model (LSE-C, higher)",
    "D_sync: full+D_sync follows the real lips better than the full model (LMD, lower)",
    "D_sync: full+D_sync is in better sync than the static baseline (LSE-C, higher)",
    "D_sync: full+D_sync follows the real lips better than the static baseline (LMD, lower)",
    "D_sync: full+D_sync's lips read better than the full model's (WER)",
]


def test_claims_md_states_every_claim_of_the_paper_in_order_under_its_dataset(tmp_path, capsys):
    """The claims' wording is what a reader checks against the paper: the whole list, for a first dataset
    (Table 2, the blinks, Table 3, the controls; full_sync's claims below them) and a second (Table 3 only)."""
    dirs = two_seeds(tmp_path / "a")
    for folder in dirs.split(","):
        write(Path(folder), {"full_sync": summary(lse_c=1.9)})
    one = two_seeds(tmp_path / "b").split(",")[0]  # one seed, no full_sync
    out = tmp_path / "claims.md"
    assert claims_main(["--dataset", "ds", "--dataset", "tcd", dirs, one, "--resamples", "20", "--out", str(out)]) == 0
    text = out.read_text()
    assert capsys.readouterr().err == text + "\n"  # also printed
    head, ds, tcd = text.split("\n## ")
    assert head == (
        "# The paper's claims, measured\n\n"
        "One line per claim: holds, not shown or contradicted, from the 95% interval of the\n"
        "difference between the methods' figures (in [brackets]) over 20 hierarchical bootstrap resamples:\n"
        "each draws every method's training seeds with replacement, then the test clips (the same for every method).\n"
        "holds: the interval excludes 0 in the claimed direction; contradicted: it excludes 0 the other way; not shown:\n"
        "it includes 0. \"Close\" claims hold when the whole interval lies within the tolerance. Figures as in the tables\n"
        "(mean over 2 training seed(s) of each seed's figure over the test clips; the real videos and the controls do\n"
        "not depend on the seed). \n"
        "WER as a fraction of words. Close: PSNR within 1 dB, SSIM within 0.02. Blinks: rate within a factor of\n"
        "2, mean duration within 0.1 s of the real videos'. Silence motion: mean absolute change of the\n"
        "lower half of the frame between consecutive frames whose audio windows are silent (speechanim.evaluate).\n")
    claims = lambda part: [line.split(" — ", 1)[1].rsplit(": ", 1)[0] if line.count(": ") > 1 else line
                           for line in part.splitlines() if line.startswith("- **")]
    ds_lines = ds.splitlines()
    assert ds_lines[0] == "ds" and ds_lines[1] == ""
    assert [line.split(" — ", 1)[1][: len(c)] for line, c in zip([x for x in ds_lines if x.startswith("- **")],
                                                                  CLAIMS_DS1 + CLAIMS_EVERY + CLAIMS_SYNC)] \
        == CLAIMS_DS1 + CLAIMS_EVERY + CLAIMS_SYNC
    assert len(claims(ds)) == 23 and len(claims(tcd)) == len(CLAIMS_EVERY)
    assert "\n\nBeyond the paper (the journal version's synchronisation discriminator, IJCV 2020):\n\n- **" in ds
    assert "Beyond the paper" not in tcd  # tcd's folders hold no full_sync scores
    assert tcd.splitlines()[0] == "tcd" and all(line.split(" — ", 1)[1].startswith(c) for line, c in zip(
        [x for x in tcd.splitlines() if x.startswith("- **")], CLAIMS_EVERY))
    fig8 = next(line for line in tcd.splitlines() if "Fig. 8" in line)
    assert fig8.endswith("; real 0.2")  # the real videos' silence motion beside the two models'
    assert all(line.startswith(("- **holds** — ", "- **not shown** — ", "- **contradicted** — "))
               for line in text.splitlines() if line.startswith("- "))
    assert text.endswith("]\n") and not text.endswith("\n\n")  # the last claim's interval, then one newline


def test_the_output_may_not_overwrite_an_input(tmp_path, capsys):
    dirs = two_seeds(tmp_path)
    seed0 = dirs.split(",")[0]
    seed1 = dirs.split(",")[1]
    for extra, out in (([], f"{seed0}/full.csv"), (["--ablation-metrics", seed0], f"{seed0}/l1.csv")):
        with pytest.raises(SystemExit) as e:
            claims_main(["--dataset", "ds", dirs, *extra, "--out", out])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"error: --out {out} is the same file as the per-clip scores {out}: " in err
    # the second of two --ablation-metrics folders is read too
    with pytest.raises(SystemExit):
        claims_main(["--dataset", "ds", seed1, "--ablation-metrics", f"{seed1},{seed0}", "--out", f"{seed0}/l1.csv"])
    assert f"error: --out {seed0}/l1.csv is the same file as --ablation-metrics {seed0}/l1.csv: " in capsys.readouterr().err


def test_one_seed_header_and_the_commands_errors(tmp_path, capsys):
    one = str(tmp_path / "ds" / "metrics")
    two_seeds(tmp_path)
    out = tmp_path / "claims.md"
    assert claims_main(["--dataset", "ds", one, "--resamples", "20", "--out", str(out)]) == 0
    assert ("(mean over 1 training seed(s) of each seed's figure over the test clips; the real videos and the controls "
            "do\nnot depend on the seed). With one training seed the intervals are over test clips only: they do not "
            "hold the spread between trainings, which another seed would show.\nWER as") in out.read_text()
    capsys.readouterr()
    for args, message in ((["--dataset", "a", "--dataset", "b", one], "give one --dataset per metrics folder list"),
                          (["--dataset", "a", one, "--resamples", "0"], "--resamples must be >= 1")):
        with pytest.raises(SystemExit) as e:
            claims_main([*args, "--out", str(tmp_path / "x.md")])
        assert e.value.code == 2 and f"python -m speechanim.claims: error: {message}\n" in capsys.readouterr().err
    assert claims_main(["--dataset", "a", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.md")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("speechanim.claims: error: ") and "ground_truth.csv: cannot read the per-clip scores" in err
    assert not (tmp_path / "x.md").exists()


def test_methods_are_named_as_in_the_paper_or_by_their_own_name():
    """The paper's methods by their names in the tables (ground_truth: "real"), any other by its own name."""
    v = better(const("novel", 2.0), const("ground_truth", 1.0), "psnr", True, resamples=5)
    assert (v.verdict, v.figures) == ("holds", "novel 2 vs real 1, advantage +1.00 [+1.00, +1.00]")
    v = better(const("novel", np.nan), const("ground_truth", 1.0), "psnr", True, resamples=5)
    assert v.figures == "novel N/A, real 1 (a figure is missing, so nothing is compared)"
    for a, b, shown in (("ground_truth", "novel", "real 1.5, novel 1"), ("novel", "ground_truth", "novel 1.5, real 1")):
        v = close(const(a, 1.5), const(b, 1.0), "psnr", 1.0, resamples=5)
        assert (v.verdict, v.figures) == ("holds", f"{shown}, difference +0.500 [+0.500, +0.500] (tolerance +-1)")
    # a reference other than 1: the ratio 3 / 2 = 1.5, within a factor of 2 either way
    for a, b, shown in (("ground_truth", "novel", "real 3, novel 2"), ("novel", "ground_truth", "novel 3, real 2")):
        v = within_factor(const(a, 3.0), const(b, 2.0), "psnr", 2.0, resamples=5)
        assert (v.verdict, v.figures) == ("holds", f"{shown}, ratio 1.5 [1.5, 1.5] (allowed 0.5-2)")


def test_figures_from_the_fewest_values():
    """A seed with one clip's value, a single blink, under a second of face, and ratios over two seeds."""
    assert figure(scores("full", [[np.nan, 5.0], [2.0, 4.0]]), "psnr") == pytest.approx((5.0 + 3.0) / 2)
    cols = {c: np.full((2, 1), np.nan) for c in clip_columns({})}
    cols["word_errors"], cols["n_words"] = np.array([[1.0], [3.0]]), np.array([[2.0], [4.0]])
    assert figure(Scores("full", cols), "wer") == pytest.approx((1 / 2 + 3 / 4) / 2)  # each seed's rate, then the mean
    cols = {c: np.full((1, 2), np.nan) for c in clip_columns({})}
    cols["blinks"], cols["blink_seconds"], cols["seconds"] = np.array([[1.0, 0.0]]), np.array([[0.2, 0.0]]), \
        np.array([[0.25, 0.25]])
    assert figure(Scores("full", cols), "blink_duration_s") == pytest.approx(0.2)  # one blink of 0.2 s
    assert figure(Scores("full", cols), "blinks_per_s") == pytest.approx(1 / 0.5)  # one blink in half a second


def test_a_ratio_whose_reference_has_no_blink_in_some_resamples_is_not_shown_and_warns_nothing():
    """Real videos that blink in one clip of four: the resamples without it give the full model's ratio no finite
    value (x / 0, or 0 / 0 where neither blinks), so the interval has no finite upper end; numpy stays quiet."""
    def blinking(name, blinks):
        cols = {c: np.full((1, 4), np.nan) for c in clip_columns({})}
        cols["blinks"], cols["seconds"] = np.array([blinks], float), np.full((1, 4), 3.0)
        return Scores(name, cols)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        v = within_factor(blinking("full", [1, 1, 0, 0]), blinking("ground_truth", [1, 0, 0, 0]), "blinks_per_s", 2.0,
                          resamples=200)
    # 2 blinks in 12 s against 1 in 12 s; the full model blinks wherever the real videos do, so the ratio is >= 1
    assert v.verdict == "not shown" and v.figures.startswith("full 0.1667, real 0.08333, ratio 2 [1, ")
    assert not math.isfinite(float(v.figures.split("[1, ")[1].split("]")[0]))


def test_table3_claims_need_only_the_full_model_and_the_baseline():
    """Without the real videos (or without their silence motion) Fig. 8's line has no "real" figure; without the
    still image, no control claims."""
    full, static = const("full", 0.5, "silence_motion"), const("static", 2.0, "silence_motion")
    claims = table3_claims({"full": full, "static": static}, resamples=5)
    assert [text for text, _ in claims] == CLAIMS_EVERY[:7]
    assert claims[6][1].figures == "static 2 vs full 0.5, advantage +1.50 [+1.50, +1.50]"
    claims = table3_claims({"full": full, "static": static, "ground_truth": const("ground_truth", 1.0)}, resamples=5)
    assert claims[6][1].figures == "static 2 vs full 0.5, advantage +1.50 [+1.50, +1.50]"  # psnr only: no motion


def paper_holds(root: Path) -> str:
    """Two seeds' scores on which every claim of the paper (and of D_sync) holds in every seed and every clip, so
    that each resample, whichever seeds and clips it draws, finds it; the seeds differ, so resamples differ."""
    real = {"ground_truth": summary(psnr=None, ssim=None, blinks_per_s=0.30, blink_duration_s=0.12),
            "still": summary(wer=0.95, lse_c=0.3)}
    seeds = []
    for i, (a, b) in enumerate(((0.0, 0.0), (0.2, 0.01))):  # seed 1 shifted: PSNR by b*20 dB, the rest by about b
        seeds.append(write(root / f"seed{i}" / "metrics", {**(real if i == 0 else {}),
            "l1": summary(psnr=25 + 20 * b, ssim=0.80 + b, cpbd=0.30 + b, fdbm=0.20 + b, wer=0.90 - 2 * b, lse_d=8.5 + a,
                          lse_c=0.8 - a / 2),
            "l1_advimg": summary(psnr=23 + 20 * b, ssim=0.70 + b, cpbd=0.50 + b, fdbm=0.35 + b, wer=0.84 + 2 * b,
                                 lse_d=8.3 - a, lse_c=0.9 + a / 2),
            "full": summary(psnr=23.5 - 20 * b, ssim=0.725 - b / 2, wer=0.60 + 4 * b, lse_d=7.0 + a, lse_c=2.0 - a / 2,
                            lmd=0.015 + b / 10, blinks_per_s=0.25 + 10 * b, blink_duration_s=0.14 + 2 * b,
                            silence_motion=0.5 + a),
            "static": summary(psnr=23.8 - 20 * b, ssim=0.73 - b / 2, wer=0.90 + 2 * b, lse_d=8.6 - a, lse_c=0.7 + a,
                              lmd=0.025 + b / 5, silence_motion=2.0 + a),
            "full_sync": summary(lse_c=2.5 + a / 2, lmd=0.010 + b / 10, wer=0.50 + 2 * b)}))
    return ",".join(map(str, seeds))


def test_every_claim_reads_its_direction_and_the_resamples_asked_for(tmp_path):
    """On scores where each claim holds whichever seeds and clips are drawn, every line says "holds" (a claim
    read the wrong way round would be contradicted); with --resamples 1 each interval is one resample's
    difference, both ends the same (the default 10,000 resamples of two seeds would spread them)."""
    out = tmp_path / "results" / "ds" / "claims.md"  # its folders are made
    assert claims_main(["--dataset", "ds", paper_holds(tmp_path), "--resamples", "1", "--out", str(out)]) == 0
    lines = [line for line in out.read_text().splitlines() if line.startswith("- ")]
    assert [line.split(" — ", 1)[1][: len(c)] for line, c in zip(lines, CLAIMS_DS1 + CLAIMS_EVERY + CLAIMS_SYNC)] \
        == CLAIMS_DS1 + CLAIMS_EVERY + CLAIMS_SYNC and len(lines) == 23
    assert [line for line in lines if not line.startswith("- **holds** — ")] == []
    for line in lines:
        ends = re.findall(r"\[([^\[\],]+), ([^\[\],]+)\]", line)
        assert len(ends) == (2 if "of the three" in line else 1) and all(lo == hi for lo, hi in ends), line


def test_a_later_dataset_needs_neither_the_ablation_variants_nor_the_controls(tmp_path):
    """Table 2's variants (l1, l1_advimg) are read for the first dataset only, and the still image wherever it
    was scored: a second dataset with the real videos, the full model and the baseline gets Table 3's claims."""
    first = paper_holds(tmp_path / "a")
    second = write(tmp_path / "b" / "metrics", {"ground_truth": summary(psnr=None, ssim=None),
                                                "full": summary(wer=0.6), "static": summary()})
    out = tmp_path / "claims.md"
    assert claims_main(["--dataset", "ds", "--dataset", "tcd", first, str(second), "--resamples", "5",
                        "--out", str(out)]) == 0
    tcd = [line.split(" — ", 1)[1] for line in out.read_text().split("\n## tcd\n")[1].splitlines()
           if line.startswith("- ")]
    assert len(tcd) == 7 and all(line.startswith(c) for line, c in zip(tcd, CLAIMS_EVERY[:7]))  # no control claims


def test_the_command_line_names_its_program_and_explains_every_argument(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps the help to the terminal, breaking words at hyphens
    with pytest.raises(SystemExit) as e:
        claims_main(["--help"])
    assert e.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert help_text.startswith("usage: python -m speechanim.claims ")
    assert "one line per claim. positional arguments:" in help_text  # the docstring's first paragraph, not all of it
    for words in ("The paper's claims, checked on the measured per-clip scores: results/claims.md, one line per claim.",
                  "--dataset DATASET dataset name (repeat, in order; the first is Table 2's)",
                  "metrics_dirs per dataset: its metrics folders, one per seed, comma-separated",
                  "--ablation-metrics ABLATION_METRICS the first dataset's metrics folders of the seeds l1 and l1_advimg "
                  "were trained with, when fewer",
                  "--resamples RESAMPLES bootstrap resamples per claim (default 10,000)"):
        assert words in help_text, words
    for missing, args in (("--dataset", ["m", "--out", "x.md"]), ("--out", ["--dataset", "a", "m"])):
        with pytest.raises(SystemExit) as e:
            claims_main(args)
        assert e.value.code == 2 and f"error: the following arguments are required: {missing}" in capsys.readouterr().err
