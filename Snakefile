# speechanim: the whole reproduction as one DAG.
#   raw download/import -> (alignment, mirroring, audio framing, HDF5 packing) -> training
#   -> generation -> metrics -> results/table{1,2,3}.csv and figures
# Stages land one issue at a time; README.md says how far the DAG runs today.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="[a-z0-9]+",
    run="[a-z0-9]+(/seed[0-9]+)?",
    speaker="[A-Za-z0-9_-]+",


include: "workflow/rules/raw.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/study.smk"


rule all:
    default_target: True
    input:
        all_targets(),
