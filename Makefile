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

# The main job. Until every stage has landed, the default target runs as far as README.md says.
table3: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

dag: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --dag | sed -n '/^digraph/,$$p' > results/dag.dot
