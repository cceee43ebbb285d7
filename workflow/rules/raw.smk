# Raw stage: every corpus into the normalised layout data/raw/<dataset>/<speaker>/ (see
# src/speechanim/raw/layout.py). One job per speaker, never one per video.


rule grid_shared_archives:
    """GRID's archives that hold every speaker: the 25 kHz audio and the word alignments."""
    output:
        audio=f"{DATA}/downloads/grid/audio_25k.zip",
        align=f"{DATA}/downloads/grid/alignments.zip",
    params:
        base_url=config["datasets"]["grid"]["base_url"],
        record=f"--record-url {config['datasets']['grid']['record_url']}" if config["datasets"]["grid"].get("record_url") else "",
        dl=config["download"],
    log:
        f"{LOGS}/raw/grid/shared.log",
    resources:
        mem_mb=1000,
        runtime=240,
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.grid shared --base-url {params.base_url} {params.record}"
        " --downloads {DATA}/downloads/grid"
        " --retries {params.dl[retries]} --backoff {params.dl[backoff_s]} --timeout {params.dl[timeout_s]}"
        " 2> {log}"


rule grid_speaker:
    """One GRID speaker: download its video archive and extract it with its audio and alignments."""
    input:
        rules.grid_shared_archives.output,
    output:
        f"{DATA}/raw/grid/{{speaker}}/manifest.tsv",
    params:
        base_url=config["datasets"]["grid"]["base_url"],
        record=f"--record-url {config['datasets']['grid']['record_url']}" if config["datasets"]["grid"].get("record_url") else "",
        dl=config["download"],
    log:
        f"{LOGS}/raw/grid/{{speaker}}.log",
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../../envs/raw.yaml"
    shell:
        "python -m speechanim.raw.grid speaker {wildcards.speaker} --base-url {params.base_url} {params.record}"
        " --downloads {DATA}/downloads/grid --out {DATA}/raw/grid"
        " --retries {params.dl[retries]} --backoff {params.dl[backoff_s]} --timeout {params.dl[timeout_s]}"
        " 2> {log}"


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
