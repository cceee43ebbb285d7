# The user study and Turing test of paper 4.5, run with people: the study set the page shows
# (results/study/), and, once `user_study.responses` names the answers, Fig. 9 (Table 3's User column
# is filled by the table3 rule from the same file).


rule study:
    """The study set: preference pairs (proposed vs static baseline) and the Turing-test pool, as mp4, and the manifest."""
    input:
        test=[packed(d, "test") for d in RUN_DATASETS],
        generated=[f"{generated_dir(d)}/{m}.h5" for d in RUN_DATASETS for m in ("full", "static")],
    output:
        manifest=f"{RESULTS}/study/manifest.json",
        media=directory(f"{RESULTS}/study/media"),
    params:
        datasets=shell_args(*[w for d in RUN_DATASETS for w in ("--dataset", d, "--test", packed(d, "test"),
                                                                 "--generated", generated_dir(d))]),
        settings=study_args(),
        out=lambda wc, output: os.path.dirname(output.manifest),  # results/study
    log:
        f"{LOGS}/study/build.log",
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/torch.yaml"
    shell:
        "python -m speechanim.study.build {params.datasets} {params.settings} --out {params.out:q} 2> {log:q}"


if USER_STUDY_RESPONSES:

    rule fig9_turing:
        """Fig. 9: the distribution of participants' Turing-test scores, from the study's answers."""
        input:
            responses=USER_STUDY_RESPONSES,
        output:
            report(f"{RESULTS}/figures/fig9_turing.png", caption="../report/fig9_turing.rst", category="Figures"),
        log:
            f"{LOGS}/study/fig9_turing.log",
        conda:
            "../../envs/torch.yaml"
        shell:
            "python -m speechanim.study.analysis fig9 --responses {input.responses:q} --out {output:q} 2> {log:q}"
