#!/usr/bin/env bash
# `make setup`: the Debian packages the test suite drives, beside the PyPI ones in .venv:
#   chromium   the headless browser of the HTML-report test and of tests/test_study.py (Playwright from PyPI is
#              pointed at /usr/bin/chromium: no browser is downloaded)
#   slurm-wlm  the one-node SLURM cluster tests/test_slurm.py starts (tests/slurm/start.sh)
#   munge      its authentication daemon
# Installed with apt-get when run as root; otherwise the missing ones are named with the command that installs them.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ ${#need[@]} -eq 0 ]; then
    echo "make setup: the Debian packages the tests drive are installed (chromium, slurm-wlm, munge)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make setup: installing ${need[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    exit 0
fi
echo "make setup: missing Debian package(s) the test suite drives: ${need[*]}" >&2
echo "install them with:  sudo apt-get install -y ${need[*]}" >&2
echo "(then run make setup again; make table3 does not need them)" >&2
exit 1
