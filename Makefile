# Two commands on a fresh clone:  make table3  (the main job)  and  make test.
# Both create .venv with the pinned dependencies if it is missing. No conda or system ffmpeg needed.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 8
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.speechanim-installed

.PHONY: venv table3 test dag clean-results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -e '.[test,slurm]'
	touch $@

# The main job: every table and figure for the configured datasets.
table3: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) results/table3.csv

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

dag: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake results/table3.csv --dag | sed -n '/^digraph/,$$p' > results/dag.dot
