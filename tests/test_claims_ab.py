"""benchmarks/claims_ab.py: two runs' claims.md compared claim by claim (the bf16 A/B of issue 29)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from claims_ab import compare, verdicts  # noqa: E402

A = """# The paper's claims, measured

## synthgrid

- **holds** — Table 2: L1 has the best PSNR of the three models: L1 28.4 vs full 26.9, advantage +1.5 [+1.2, +1.8]
- **not shown** — Table 3: the proposed model beats the static baseline on WER: full 0.74 vs static 0.75, advantage +0.01 [-0.01, +0.04]

## grid

- **holds** — Table 2: L1 has the best PSNR of the three models: L1 30.0 vs full 29.0, advantage +1.0 [+0.5, +1.5]
"""
B = A.replace("**not shown** — Table 3", "**contradicted** — Table 3").replace("[-0.01, +0.04]", "[-0.04, -0.01]")


def test_verdicts_key_each_claim_by_dataset_and_text_with_its_colons():
    v = verdicts(A)
    assert v[("synthgrid", "Table 2: L1 has the best PSNR of the three models")] == (
        "holds", "L1 28.4 vs full 26.9, advantage +1.5 [+1.2, +1.8]")
    assert v[("grid", "Table 2: L1 has the best PSNR of the three models")][1].startswith("L1 30.0")
    assert len(v) == 3


def test_compare_names_the_one_claim_whose_verdict_changed(tmp_path):
    rows = compare(verdicts(A), verdicts(B))
    assert [(d, va, vb) for d, _, va, vb in rows if va != vb] == [("synthgrid", "not shown", "contradicted")]
    (tmp_path / "a.md").write_text(A)
    (tmp_path / "b.md").write_text(B)
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "claims_ab.py"), tmp_path / "a.md",
                          tmp_path / "b.md", "--names", "fp32", "bf16"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "3 claims in both runs; verdict changed in 1" in res.stdout
    assert "fp32 not shown -> bf16 contradicted" in res.stdout


def test_claims_stated_in_one_run_only_exit_2(tmp_path):
    (tmp_path / "a.md").write_text(A)
    (tmp_path / "b.md").write_text(A.split("## grid")[0])
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "claims_ab.py"), tmp_path / "a.md",
                          tmp_path / "b.md"], capture_output=True, text=True)
    assert res.returncode == 2 and "1 claims stated in one run only: grid: Table 2" in res.stdout
