# Preprocessing (paper 4.1): align every speaker's clips to the canonical face, frame the audio,
# split speakers into train/val/test, pack each part into one HDF5 file (training mirrored), Table 1.
# One code path for every dataset: everything here reads the normalised raw layout.


rule align_speaker:
    """One speaker: mediapipe alignment of every clip, its normalised audio, into one HDF5 file."""
    input:
        f"{DATA}/raw/{{dataset}}/{{speaker}}/manifest.tsv",
    output:
        h5=f"{DATA}/aligned/{{dataset}}/{{speaker}}.h5",
        skipped=f"{RESULTS}/{{dataset}}/skipped/{{speaker}}.tsv",
    params:
        raw=lambda wc: f"{DATA}/raw/{wc.dataset}/{wc.speaker}",
        size=" ".join(str(v) for v in config["preprocess"]["image_size"]),
        sample_rate=config["preprocess"]["sample_rate"],
        smooth_window=config["preprocess"]["smooth_window"],
        max_gap=config["preprocess"]["max_gap"],
        fps=config["preprocess"]["fps"],
    log:
        f"{LOGS}/preprocess/{{dataset}}/{{speaker}}.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/align_{{speaker}}.tsv",
    resources:
        **planned_resources("align_speaker"),
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.preprocess align --raw {params.raw:q}"
        " --out {output.h5:q} --skipped {output.skipped:q} --size {params.size}"
        " --sample-rate {params.sample_rate} --smooth-window {params.smooth_window}"
        " --max-gap {params.max_gap} --fps {params.fps} 2> {log:q}"


rule skip_list:
    """Every clip the stage could not use, with the reason, in one table."""
    input:
        lambda wc: expand(f"{RESULTS}/{wc.dataset}/skipped/{{speaker}}.tsv", speaker=sorted(speakers(wc.dataset))),
    output:
        f"{RESULTS}/{{dataset}}/skipped.tsv",
    log:
        f"{LOGS}/preprocess/{{dataset}}/skiplist.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.preprocess skiplist --out {output:q} {input:q} 2> {log:q}"


rule split:
    """The speaker-independent split, written down (the DAG computes the same one: split_of); for a one-speaker
    corpus, the split of its utterances (speaker-dependent, not the paper's protocol: Table 1 says so)."""
    input:
        lambda wc: raw_manifests(wc.dataset),
    output:
        f"{RESULTS}/{{dataset}}/split.tsv",
    params:
        by=lambda wc, input: (shell_args("--by-utterance", *(os.path.dirname(m) for m in input))
                              if split_by(wc.dataset) == "utterance" else shell_args("--speakers", *speakers(wc.dataset))),
        seed=config["splits"]["seed"],
        ratios=lambda wc: " ".join(str(r) for r in split_ratios(wc.dataset)),
    log:
        f"{LOGS}/preprocess/{{dataset}}/split.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.preprocess split --dataset {wildcards.dataset} {params.by}"
        " --ratios {params.ratios} --seed {params.seed} --out {output:q} 2> {log:q}"


rule pack:
    """One part of a dataset in one HDF5 file; the training part with its mirror images (paper 4.1)."""
    input:
        split=f"{RESULTS}/{{dataset}}/split.tsv",
        aligned=lambda wc: expand(f"{DATA}/aligned/{wc.dataset}/{{speaker}}.h5", speaker=speakers_in(wc.dataset, wc.part)),
    output:
        f"{DATA}/packed/{{dataset}}/{{part}}.h5",
    wildcard_constraints:
        part="train|val|test",
    params:
        mirror=lambda wc: "--mirror" if wc.part == "train" and config["preprocess"]["mirror_train"] else "",
    log:
        f"{LOGS}/preprocess/{{dataset}}/pack_{{part}}.log",
    benchmark:
        f"{LOGS}/benchmarks/{{dataset}}/pack_{{part}}.tsv",
    resources:
        **planned_resources("pack"),
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.preprocess pack --split {input.split:q} --part {wildcards.part} {params.mirror}"
        " --out {output:q} {input.aligned:q} 2> {log:q}"


rule table1:
    """Table 1: samples and hours of video per dataset and part (training counts the mirror images)."""
    input:
        [packed(dataset, part) for dataset in RUN_DATASETS for part in ("train", "val", "test")],
    output:
        report(f"{RESULTS}/table1.csv", caption="../report/table1.rst", category="Tables"),
    params:
        args=shell_args(*[w for d in RUN_DATASETS for w in ("--dataset", d)], *[f"{DATA}/packed/{d}" for d in RUN_DATASETS]),
    log:
        f"{LOGS}/preprocess/table1.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.tables table1 {params.args} --out {output:q} 2> {log:q}"
