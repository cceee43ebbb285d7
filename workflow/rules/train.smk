# Training (paper 3.3): one job per dataset x seed x variant, and the lipreader that scores WER (paper 4.2).
# A job killed mid-training resumes from results/<run>/models/<variant>/work/last.pt when rerun.


rule train:
    """The temporal GAN (full, l1, l1_advimg) or the static baseline, on one dataset with one seed."""
    input:
        train=lambda wc: packed(dataset_of(wc.run), "train"),
        val=lambda wc: packed(dataset_of(wc.run), "val"),
    output:
        f"{RESULTS}/{{run}}/models/{{variant}}/generator.pt",
        f"{RESULTS}/{{run}}/models/{{variant}}/history.csv",
        f"{RESULTS}/{{run}}/models/{{variant}}/losses.png",
    wildcard_constraints:
        variant="l1|l1_advimg|full|static",
    params:
        dataset=lambda wc: dataset_of(wc.run),
        out=lambda wc: f"{RESULTS}/{wc.run}/models/{wc.variant}",
        model=model_json,
        training=lambda wc: json.dumps(dict(config["training"], seed=seed_of(wc.run)), sort_keys=True),
    log:
        f"{LOGS}/train/{{run}}/{{variant}}.log",
    benchmark:
        f"{LOGS}/benchmarks/{{run}}/train_{{variant}}.tsv",
    threads: 1
    resources:
        mem_mb=16000,
        runtime=2880,
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m speechanim.train --dataset {params.dataset} --variant {wildcards.variant}"
        " --train {input.train:q} --val {input.val:q} --out {params.out:q}"
        " --model {params.model:q} --training {params.training:q} 2> {log:q}"


rule lipreader:
    """A LipNet-style lipreader trained on the dataset's real training videos (no pretrained one is available offline)."""
    input:
        train=lambda wc: packed(wc.dataset, "train"),
        val=lambda wc: packed(wc.dataset, "val"),
    output:
        f"{RESULTS}/{{dataset}}/lipreader.pt",
    params:
        cfg=json.dumps(config["lipreader"], sort_keys=True),
    log:
        f"{LOGS}/train/{{dataset}}/lipreader.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/lipreader.tsv",
    threads: 1
    resources:
        mem_mb=16000,
        runtime=1440,
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m speechanim.lipreader train --train {input.train:q} --val {input.val:q}"
        " --out {output:q} --config {params.cfg:q} 2> {log:q}"


rule syncnet:
    """A SyncNet-style audio-video sync network trained on the dataset's real training videos (the sync scores)."""
    input:
        train=lambda wc: packed(wc.dataset, "train"),
        val=lambda wc: packed(wc.dataset, "val"),
    output:
        f"{RESULTS}/{{dataset}}/syncnet.pt",
    params:
        cfg=json.dumps(config["syncnet"], sort_keys=True),
    log:
        f"{LOGS}/train/{{dataset}}/syncnet.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/syncnet.tsv",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m speechanim.syncnet train --train {input.train:q} --val {input.val:q}"
        " --out {output:q} --config {params.cfg:q} 2> {log:q}"
