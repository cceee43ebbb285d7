"""The workflow's conventions (workflow/README.md): `snakemake --lint` finds nothing, and the rules run the
package installed in their environment (no PYTHONPATH): a missing install fails early, naming the fix."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

def test_lint_finds_nothing():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=env)
    findings = [m.group(1) for m in re.finditer(r"^    \* (.+?)(?: in line \d+)?\.?:?$", res.stdout + res.stderr, re.M)]
    out = res.stdout + res.stderr
    assert findings or "Congratulations" in out, f"the lint's output is not understood:\n{out[-2000:]}"
    assert findings == [] and "Congratulations" in out, out[-4000:]


def test_a_missing_package_install_fails_the_workflow_early_naming_the_fix(tmp_path):
    """Without the package in snakemake's environment (and no --use-conda) the rules could not run it: the
    workflow stops before any job and says `make setup`. The editable install's path entry is removed here."""
    src = str(REPO / "src")
    code = ("import sys; sys.path[:] = [p for p in sys.path if p != %r]; sys.argv[0] = 'snakemake';"
            "from snakemake.cli import main; main()" % src)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    res = subprocess.run([sys.executable, "-c", code, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(REPO / "config.yaml"), "-n"],
                         capture_output=True, text=True, timeout=300, env=env)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "speechanim package is not installed" in out and "make setup" in out, out[-2000:]


def test_conda_post_deploy_script_installs_the_checkout_and_refuses_elsewhere(tmp_path):
    """envs/*.post-deploy.sh (run by snakemake --use-conda in each new env, from the working directory) installs
    the checkout editable without dependencies; from a directory that is not the checkout it fails, saying so.
    A `python` that records its arguments stands in for the env's interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$(pwd) $*" >> {calls}\n')
    (bin_dir / "python").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    scripts = sorted((REPO / "envs").glob("*.post-deploy.sh"))
    assert [s.name.split(".")[0] for s in scripts] == sorted(p.stem for p in (REPO / "envs").glob("*.yaml"))
    for script in scripts:
        ok = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True, env=env)
        assert ok.returncode == 0, ok.stderr
        refused = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, env=env)
        assert refused.returncode == 1 and "is not the speechanim checkout" in refused.stderr
    assert calls.read_text().splitlines() == [f"{REPO} -m pip install --no-deps --quiet -e ."] * len(scripts)
