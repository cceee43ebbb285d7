# On a fresh clone:  make setup  then  make test  (what CI runs: .ci/run)  and  make table3  (the main job).
# Every target creates .venv with the pinned dependencies if it is missing. No conda or system ffmpeg needed.
# Each target's line in `make help` is the `## ` comment after its name (tests/test_docs.py checks every target has one).
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 8
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.speechanim-installed

.PHONY: help setup venv table3 report test dag docs plan mutants

help: ## list the targets
	@awk -F':.*## ' '/^[a-z][a-z0-9_-]*:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## .venv with the pinned dependencies, and the Debian packages the tests drive (apt-get as root; else names them)
	bash tests/system-packages.sh

venv: $(STAMP) ## .venv with the pinned dependencies only

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade-strategy only-if-needed -e '.[test,slurm]'
	touch $@

table3: $(STAMP) ## the main job: every table, figure and claim for the configured datasets (snakemake's default target)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) \
	  || { echo "make table3: a job failed; its log is named above (rule logs: logs/<stage>/..., logs_dir in config.yaml)." \
	       "After fixing it, rerun make table3 (a killed run: snakemake --cores $(CORES) --rerun-incomplete)" >&2; exit 1; }

report: $(STAMP) ## results/report.html of a finished run: tables, claims, figures, corpus samples, training curves
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --report results/report.html

test: $(STAMP) ## the test suite (run make setup first on a fresh machine)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

dag: $(STAMP) ## results/dag.dot: the DAG as Graphviz (dot -Tpng results/dag.dot > dag.png)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --dag | sed -n '/^digraph/,$$p' > results/dag.dot

plan: $(STAMP) ## each rule's jobs, CPU/GPU hours, memory and disk for CONFIG (default: the paper's, GRID) from docs/unit-costs.csv
	$(BIN)/speechanim plan --config $(or $(CONFIG),workflow/configs/paper.yaml)

docs: $(STAMP) ## rewrite the tables in README.md and docs/*.md that are copied from committed CSV files
	$(BIN)/python tests/docs_tables.py --write

MUTANT_JOBS ?= 1
mutants: $(STAMP) ## mutation testing of losses, metrics/, sda, audio, claims, checkpoint (mutmut; ~45 min on 2 cores, not CI): docs/mutants.md
	$(BIN)/python -c 'import mutmut' 2>/dev/null || $(BIN)/python -m pip install -e '.[test,slurm,mutants]'
	OMP_NUM_THREADS=1 SPEECHANIM_SHARED="$(abspath ..)/shared" PATH="$(abspath $(BIN)):$$PATH" \
	  nice -n 19 $(BIN)/mutmut run --max-children $(MUTANT_JOBS)
	$(BIN)/python tests/mutants_report.py
