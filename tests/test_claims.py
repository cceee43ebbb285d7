"""Several training seeds: the tables' "mean +- std" cells (speechanim.tables), and the paper's claims checked
by bootstrap intervals over seeds and clips (speechanim.claims), on hand-made scores whose answer is known."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

import numpy as np

from speechanim.claims import (Scores, best_of, better, bootstrap, clip_columns, close, figure, main as claims_main,
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
    assert "Trained with fewer seeds than the full model (2): L1 1, L1+Adv_img 1" in text
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
