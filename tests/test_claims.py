"""Several training seeds: the tables' "mean +- std" cells (speechanim.tables) and the paper's claims
checked on per-seed values (speechanim.claims), on hand-made evaluate summaries with known figures."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from speechanim.claims import (Verdict, best_of, close, main as claims_main, pooled_std, table2_claims,
                               table3_claims, within, within_factor)
from speechanim.tables import main as tables_main, mean_std_cell, metric_cells


def summary(**values) -> dict:
    base = dict(psnr=24.0, ssim=0.70, fdbm=0.30, cpbd=0.45, acd=0.40, lmd=0.02, mouth_r=0.4, lse_d=8.0, lse_c=1.0,
                wer=0.86, blinks_per_s=0.30, blink_duration_s=0.12, silence_motion=1.0)
    base.update(values)
    return base


def write(folder: Path, summaries: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, s in summaries.items():
        (folder / f"{name}.json").write_text(json.dumps(s))
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


def test_a_missing_seed_summary_is_named(tmp_path, capsys):
    dirs = two_seeds(tmp_path)
    (tmp_path / "ds" / "seed1" / "metrics" / "static.json").unlink()
    assert tables_main(["table3", "--dataset", "ds", dirs, "--out", str(tmp_path / "t3.csv")]) == 1
    assert str(tmp_path / "ds" / "seed1" / "metrics" / "static.json") in capsys.readouterr().err
    assert claims_main(["--dataset", "ds", dirs, "--out", str(tmp_path / "claims.md")]) == 1
    assert "static.json" in capsys.readouterr().err and not (tmp_path / "claims.md").exists()


def test_ablation_variants_with_fewer_seeds_are_read_from_their_folders_and_say_so(tmp_path):
    """ablation_seeds: l1 and l1_advimg trained with seed 0 only, the full model and the baseline with both."""
    dirs = two_seeds(tmp_path)
    seed0, seed1 = dirs.split(",")
    for name in ("l1", "l1_advimg"):
        (Path(seed1) / f"{name}.json").unlink()
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
    assert "L1 24.2, L1+Adv_img 23.1, full 22.9 +- 0.14" in text  # L1's PSNR claim: one seed each, two for full


def test_pooled_std_is_the_root_mean_of_the_sample_variances():
    assert pooled_std([1.0, 3.0], [2.0, 2.0]) == pytest.approx(math.sqrt((2.0 + 0.0) / 2))
    assert pooled_std([1.0, 3.0], [5.0]) == pytest.approx(math.sqrt(2.0))  # one value: no variance to pool
    assert math.isnan(pooled_std([1.0], [2.0]))


def test_best_of_holds_fails_and_gives_the_margin_to_the_closest_rival():
    v = best_of("a", {"a": [10.0, 12.0], "b": [8.0, 10.0], "c": [1.0, 3.0]}, higher=True)
    assert v.holds and v.margin == pytest.approx(2.0 / math.sqrt(2.0))  # mean 11 vs 9, pooled std sqrt(2)
    v = best_of("a", {"a": [10.0, 12.0], "b": [8.0, 10.0]}, higher=False)
    assert not v.holds and v.margin == pytest.approx(-2.0 / math.sqrt(2.0))
    v = best_of("a", {"a": [1.0], "b": [2.0]}, higher=False)
    assert v.holds and math.isnan(v.margin)  # one seed: no spread to measure the margin by
    v = best_of("a", {"a": [1.0, None], "b": [2.0, 2.0]}, higher=False)
    assert not v.holds and math.isnan(v.margin) and "N/A" in v.figures


def test_close_within_and_within_factor():
    v = close([23.0, 23.2], [23.5, 23.7], 1.0, ("full", "static"))
    assert v.holds and v.margin == pytest.approx((1.0 - 0.5) / math.sqrt(0.02))
    assert not close([21.0, 21.2], [23.5, 23.7], 1.0, ("full", "static")).holds
    assert within_factor([0.2, 0.3], [0.3], 2.0, ("full", "ground_truth")).holds  # 0.25 in [0.15, 0.6]
    v = within_factor([0.0, 0.1], [0.3], 2.0, ("full", "ground_truth"))  # 0.05 below 0.15
    assert not v.holds and v.margin == pytest.approx((0.05 - 0.15) / math.sqrt(0.005))
    assert within([0.15, 0.17], [0.118], 0.1, ("full", "ground_truth")).holds
    assert not within([0.3, 0.32], [0.118], 0.1, ("full", "ground_truth")).holds


def test_claims_of_tables_2_and_3_on_known_figures(tmp_path):
    from speechanim.tables import read_seeds

    dirs = two_seeds(tmp_path)
    s = {m: read_seeds(dirs, m) for m in ("ground_truth", "l1", "l1_advimg", "full", "static")}
    t2 = dict(table2_claims(s))
    assert all(isinstance(v, Verdict) for v in t2.values())
    holds = {text.split(": ", 1)[1]: v.holds for text, v in t2.items()}
    assert holds == {
        "L1 has the best PSNR of the three models": True, "L1 has the best SSIM of the three models": True,
        "adding Adv_img makes frames sharper (CPBD, higher)": True,
        "adding Adv_img makes frames sharper (FDBM, higher)": True,
        "the full model has the best WER of the three": True,
        "the full model has the best sync of the three (LSE-D, lower)": True,
        "the full model has the best sync of the three (LSE-C, higher)": True,
        "the full model blinks as often as the real videos (blinks/s within a factor of 2)": False,  # 0.05 vs 0.3
        "the full model's blinks last as long as the real ones (mean duration within 0.1 s)": False,  # one seed: none
    }
    t3 = dict(table3_claims(s))
    # SSIM 0.675 against 0.725: 0.05 apart, beyond the 0.02 of "close"
    assert [v.holds for v in t3.values()] == [True, True, True, True, True, False, True]
    silence = t3[next(t for t in t3 if t.startswith("Fig. 8"))]
    assert silence.margin == pytest.approx((2.1 - 0.6) / math.sqrt(0.02)) and "real 0.2" in silence.figures


def test_claims_md_has_one_line_per_claim_with_verdict_and_margin(tmp_path):
    dirs = two_seeds(tmp_path)
    out = tmp_path / "results" / "claims.md"
    assert claims_main(["--dataset", "ds", dirs, "--out", str(out)]) == 0
    lines = [line for line in out.read_text().splitlines() if line.startswith("- ")]
    assert len(lines) == 9 + 7
    assert lines[0].startswith("- **holds** (+") and " std) — Table 2: L1 has the best PSNR" in lines[0]
    assert "L1 24.3 +- 0.14, L1+Adv_img 23.2 +- 0.14, full 22.9 +- 0.14" in lines[0]
    assert lines[7].startswith("- **does not hold** (-") and "allowed 0.15-0.6" in lines[7]
    assert "pooled" in out.read_text() and "2 training seed(s)" in out.read_text()


def test_a_margin_without_spread_is_printed_as_infinite_and_explained():
    """Every seed without blinks (std 0) against real blinks: -inf std, said in words, not a bare "-inf"."""
    from speechanim.claims import Verdict, claim_line

    line = claim_line("4.3: the full model blinks", Verdict(False, -math.inf, "full 0 +- 0, real 0.32"))
    assert line.startswith("- **does not hold** (-inf std: no spread, every seed gives the same values) — 4.3")
    assert claim_line("x", Verdict(True, 1.25, "f")).startswith("- **holds** (+1.2 std) — x")
