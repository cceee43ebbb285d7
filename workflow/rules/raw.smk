# Raw stage: every corpus into the normalised layout data/raw/<dataset>/<speaker>/ (see
# src/speechanim/raw/layout.py). One job per speaker, never one per video.


def grid_cli_args():
    """The download options every GRID job passes on."""
    grid, dl = config["datasets"]["grid"], config["download"]
    record = f" --record-url {grid['record_url']}" if grid.get("record_url") else ""
    return (f"--base-url {grid['base_url']}{record} --downloads {DATA}/downloads/grid"
            f" --retries {dl['retries']} --backoff {dl['backoff_s']} --timeout {dl['timeout_s']}")


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
        "python -m speechanim.raw.grid shared --only {wildcards.archive}.zip {params.args} 2> {log}"


rule grid_speaker:
    """One GRID speaker: download its video archive and extract it with its audio and alignments."""
    input:
        grid_shared_inputs,
    output:
        f"{DATA}/raw/grid/{{speaker}}/manifest.tsv",
    params:
        args=grid_cli_args(),
        audio=config["datasets"]["grid"].get("audio_source", "video"),
    log:
        f"{LOGS}/raw/grid/{{speaker}}.log",
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.grid speaker {wildcards.speaker} {params.args} --audio-source {params.audio}"
        " --out {DATA}/raw/grid 2> {log}"


rule synthgrid_speaker:
    """One speaker of the embedded corpus, synthesised: espeak-ng speech and a rendered talking face."""
    output:
        f"{DATA}/raw/synthgrid/{{speaker}}/manifest.tsv",
    params:
        utterances=config["datasets"]["synthgrid"]["utterances"],
        seed=config["datasets"]["synthgrid"]["seed"],
    log:
        f"{LOGS}/raw/synthgrid/{{speaker}}.log",
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/synth.yaml"
    shell:
        "python -m speechanim.synth.corpus speaker {wildcards.speaker} --out {DATA}/raw/synthgrid"
        " --utterances {params.utterances} --seed {params.seed} 2> {log}"


rule synthgrid_samples:
    """A few frames of a few speakers of the embedded corpus."""
    input:
        lambda wildcards: raw_manifests("synthgrid"),
    output:
        f"{RESULTS}/synthgrid/samples.png",
    log:
        f"{LOGS}/raw/synthgrid/samples.log",
    conda:
        "../../envs/synth.yaml"
    shell:
        "python -m speechanim.synth.corpus samples {DATA}/raw/synthgrid --out {output} 2> {log}"


rule tcdtimit_speaker:
    """One TCD-TIMIT speaker, imported from the registered download named in config."""
    output:
        f"{DATA}/raw/tcdtimit/{{speaker}}/manifest.tsv",
    params:
        source=config["datasets"]["tcdtimit"]["source_dir"],
    log:
        f"{LOGS}/raw/tcdtimit/{{speaker}}.log",
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.tcdtimit speaker {wildcards.speaker} --source {params.source:q}"
        " --out {DATA}/raw/tcdtimit 2> {log}"
