# Raw stage: every corpus into the normalised layout data/raw/<dataset>/<speaker>/ (see
# src/speechanim/raw/layout.py). One job per speaker, never one per video.


rule grid_shared_archive:
    """One of GRID's archives that hold every speaker: alignments.zip, or audio_25k.zip (2.6 GB,
    fetched only when datasets.grid.audio_source is "archive")."""
    output:
        f"{DATA}/downloads/grid/{{archive}}.zip",
    wildcard_constraints:
        archive="alignments|audio_25k",
    params:
        args=grid_cli_args(),
    log:
        f"{LOGS}/raw/grid/{{archive}}.log",
    resources:
        mem_mb=1000,
        runtime=240,
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.grid shared --only {wildcards.archive}.zip {params.args} 2> {log:q}"


rule grid_speaker:
    """One GRID speaker: download its video archive and extract it with its audio and alignments."""
    input:
        grid_shared_inputs,
    output:
        f"{DATA}/raw/grid/{{speaker}}/manifest.tsv",
    params:
        args=grid_cli_args(),
        audio=config["datasets"]["grid"].get("audio_source", "video"),
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),  # <data>/raw/grid
    log:
        f"{LOGS}/raw/grid/{{speaker}}.log",
    resources:
        **planned_resources("grid_speaker", "grid"),  # the download itself is not planned (network)
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.grid speaker {wildcards.speaker} {params.args} --audio-source {params.audio}"
        " --out {params.out:q} 2> {log:q}"


rule synthgrid_speaker:
    """One speaker of the embedded corpus, synthesised: espeak-ng speech and a rendered talking face."""
    output:
        f"{DATA}/raw/synthgrid/{{speaker}}/manifest.tsv",
    params:
        utterances=config["datasets"]["synthgrid"]["utterances"],
        seed=config["datasets"]["synthgrid"]["seed"],
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),  # <data>/raw/synthgrid
    log:
        f"{LOGS}/raw/synthgrid/{{speaker}}.log",
    resources:
        **planned_resources("synthgrid_speaker", "synthgrid"),
    conda:
        "../../envs/synth.yaml"
    shell:
        "python -m speechanim.synth.corpus speaker {wildcards.speaker} --out {params.out:q}"
        " --utterances {params.utterances} --seed {params.seed} 2> {log:q}"


rule synthgrid_samples:
    """A few frames of a few speakers of the embedded corpus."""
    input:
        lambda wildcards: raw_manifests("synthgrid"),
    output:
        report(f"{RESULTS}/synthgrid/samples.png", caption="../report/samples.rst", category="Data"),
    params:
        raw=lambda wc, input: os.path.dirname(os.path.dirname(input[0])),  # <data>/raw/synthgrid
    log:
        f"{LOGS}/raw/synthgrid/samples.log",
    conda:
        "../../envs/synth.yaml"
    shell:
        "python -m speechanim.synth.corpus samples {params.raw:q} --out {output:q} 2> {log:q}"


rule tcdtimit_speaker:
    """One TCD-TIMIT speaker, imported from the registered download named in config."""
    output:
        f"{DATA}/raw/tcdtimit/{{speaker}}/manifest.tsv",
    params:
        source=config["datasets"]["tcdtimit"]["source_dir"],
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),  # <data>/raw/tcdtimit
    log:
        f"{LOGS}/raw/tcdtimit/{{speaker}}.log",
    resources:
        **planned_resources("tcdtimit_speaker", "tcdtimit"),
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.tcdtimit speaker {wildcards.speaker} --source {params.source:q}"
        " --out {params.out:q} 2> {log:q}"


rule folder_speaker:
    """One speaker of a folder of talking-face videos (datasets.<name>: {kind: folder, root: PATH}): every clip
    checked (decodes, has audio, frame rate, frame count) and copied into the raw layout, with its skip list."""
    output:
        f"{DATA}/raw/{{dataset}}/{{speaker}}/manifest.tsv",
    wildcard_constraints:
        dataset=FOLDER_DATASET_PATTERN,
    params:
        root=lambda wc: config["datasets"][wc.dataset]["root"],
        single=lambda wc: folder_speaker_arg(wc.dataset),
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),  # <data>/raw/<dataset>
    log:
        f"{LOGS}/raw/{{dataset}}/{{speaker}}.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/raw_{{speaker}}.tsv",
    resources:
        **planned_resources("folder_speaker"),
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.folder speaker {wildcards.speaker} --root {params.root:q} --single-speaker {params.single}"
        " --out {params.out:q} 2> {log:q}"
