#!/usr/bin/env bash
# With --use-conda, snakemake runs this once in each new env, from its working directory: it installs this
# checkout's package into the env (editable; no dependencies, the env's pins have them), so that the rules'
# `python -m speechanim.<stage>` run the checkout's code. Run snakemake --use-conda from the checkout.
set -euo pipefail
if ! grep -qs '^name = "speechanim"$' pyproject.toml; then
  echo "envs/*.post-deploy.sh: $(pwd) is not the speechanim checkout (no pyproject.toml naming it):" \
       "run snakemake --use-conda from the checkout, or pip install -e <checkout> in ${CONDA_PREFIX:-the env}" >&2
  exit 1
fi
python -m pip install --no-deps --quiet -e .
