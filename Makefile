# Two commands on a fresh clone:  make table3  (the main job)  and  make test.
# Both create .venv with the pinned dependencies if it is missing. No conda or system ffmpeg needed.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 8
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.speechanim-installed

.PHONY: venv table3 report test dag clean-results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -e '.[test,slurm]'
	touch $@

# The main job: every table, figure and claim for the configured datasets (snakemake's default target, all).
table3: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) \
	  || { echo "make table3: a job failed; its log is named above (rule logs: logs/<stage>/..., logs_dir in config.yaml)." \
	       "After fixing it, rerun make table3 (a killed run: snakemake --cores $(CORES) --rerun-incomplete)" >&2; exit 1; }

# The HTML report of a finished run: Tables 1-3, the claims, every figure, the corpus samples, the training curves.
report: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --report results/report.html

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

dag: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --dag | sed -n '/^digraph/,$$p' > results/dag.dot
