"""The workflow's conventions (workflow/README.md): `snakemake --lint` finds nothing but the one finding
explained there."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Findings explained in workflow/README.md.
EXPLAINED = {"Environment variable PYTHONPATH used but not asserted with envvars directive"}


def test_lint_finds_only_what_workflow_readme_explains():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=env)
    findings = [m.group(1) for m in re.finditer(r"^    \* (.+?)(?: in line \d+)?\.?:?$", res.stdout + res.stderr, re.M)]
    out = res.stdout + res.stderr
    assert findings or "Congratulations" in out, f"the lint's output is not understood:\n{out[-2000:]}"
    unexplained = [f for f in findings if not any(f.startswith(e) for e in EXPLAINED)]
    assert unexplained == [], out[-4000:]
    readme = (REPO / "workflow" / "README.md").read_text()
    assert all(e in readme for e in EXPLAINED)
