# Training (paper 3.3): one job per dataset x seed x variant, and the lipreader that scores WER (paper 4.2).
# A job killed mid-training resumes from results/<run>/models/<variant>/work/last.pt when rerun.
# Inside a SLURM job, a training stops between two epochs before its `runtime` (minus `train_stop_margin_s`) and
# exits with status 75; the profile resubmits it and it resumes (docs/cluster.md). Elsewhere it has no time limit.
TRAIN_STOP_MARGIN_S = config.get("train_stop_margin_s", 600)


rule train:
    """The temporal GAN (full, l1, l1_advimg), the static baseline, or beyond the paper the full model with the
    journal version's sync discriminator (full_sync), on one dataset with one seed."""
    input:
        train=lambda wc: packed(dataset_of(wc.run), "train"),
        val=lambda wc: packed(dataset_of(wc.run), "val"),
    output:
        f"{RESULTS}/{{run}}/models/{{variant}}/generator.pt",
        f"{RESULTS}/{{run}}/models/{{variant}}/history.csv",
        report(f"{RESULTS}/{{run}}/models/{{variant}}/losses.png", caption="../report/losses.rst", category="Training",
               subcategory="{run}", labels={"run": "{run}", "variant": "{variant}"}),
        # every epoch's checkpoint, for the learning curves (training.keep_epochs)
        [directory(f"{RESULTS}/{{run}}/models/{{variant}}/epochs")] if config["training"].get("keep_epochs") else [],
    wildcard_constraints:
        variant="l1|l1_advimg|full|static|full_sync",
    params:
        dataset=lambda wc: dataset_of(wc.run),
        out=lambda wc: f"{RESULTS}/{wc.run}/models/{wc.variant}",
        model=model_json,
        # what changes the result; num_workers (data-loader processes) does not, and goes in as a resource
        training=lambda wc: json.dumps({k: v for k, v in dict(config["training"], seed=seed_of(wc.run)).items()
                                        if k != "num_workers"}, sort_keys=True),
    log:
        f"{LOGS}/train/{{run}}/{{variant}}.log",
    benchmark:
        f"{LOGS}/benchmarks/{{run}}/train_{{variant}}.tsv",
    priority: 1  # before generation and scoring, which wait for the lipreader and the SyncNet anyway
    threads: 1
    resources:
        **planned_resources("train"),
        gpu=1,
        num_workers=config["training"].get("num_workers", 4),
    conda:
        "../../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m speechanim.train --dataset {params.dataset} --variant {wildcards.variant}"
        " --train {input.train:q} --val {input.val:q} --out {params.out:q}"
        " --model {params.model:q} --training {params.training:q} --num-workers {resources.num_workers}"
        " ${{SLURM_JOB_ID:+--time-limit {resources.runtime} --stop-margin {TRAIN_STOP_MARGIN_S}}}"
        " --no-progress 2> {log:q}"


rule lipreader:
    """A LipNet-style lipreader trained on the dataset's real training videos (no pretrained one is available offline)."""
    input:
        train=lambda wc: packed(wc.dataset, "train"),
        val=lambda wc: packed(wc.dataset, "val"),
    output:
        model=f"{RESULTS}/{{dataset}}/lipreader.pt",
        history=f"{RESULTS}/{{dataset}}/lipreader.csv",
    params:
        cfg=json.dumps(config["lipreader"], sort_keys=True),
    log:
        f"{LOGS}/train/{{dataset}}/lipreader.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/lipreader.tsv",
    priority: 3  # the longest job: started first, so that 2 cores end together
    threads: 1
    resources:
        **planned_resources("lipreader"),
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m speechanim.lipreader train --train {input.train:q} --val {input.val:q}"
        " --out {output.model:q} --config {params.cfg:q} 2> {log:q}"


rule syncnet:
    """A SyncNet-style audio-video sync network trained on the dataset's real training videos (the sync scores)."""
    input:
        train=lambda wc: packed(wc.dataset, "train"),
        val=lambda wc: packed(wc.dataset, "val"),
    output:
        model=f"{RESULTS}/{{dataset}}/syncnet.pt",
        history=f"{RESULTS}/{{dataset}}/syncnet.csv",
    params:
        cfg=json.dumps(config["syncnet"], sort_keys=True),
    log:
        f"{LOGS}/train/{{dataset}}/syncnet.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/syncnet.tsv",
    priority: 2  # every evaluation needs it: done early, not last
    threads: 1
    resources:
        **planned_resources("syncnet"),
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m speechanim.syncnet train --train {input.train:q} --val {input.val:q}"
        " --out {output.model:q} --config {params.cfg:q} 2> {log:q}"


rule import_pretrained:
    """The authors' released model of a dataset (config `pretrained`: their grid.dat, timit.dat, ...) in this
    project's checkpoint format, scored as a method of Table 3 (speechanim import-sda)."""
    input:
        lambda wc: PRETRAINED[wc.dataset],
    output:
        f"{RESULTS}/{{dataset}}/models/pretrained/generator.pt",
    wildcard_constraints:
        dataset="[^/]+",
    log:
        f"{LOGS}/train/{{dataset}}/import_pretrained.log",
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.sda {input:q} -o {output:q} > {log:q} 2>&1"
