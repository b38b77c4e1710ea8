# Causal tracing: one long table per (kind, window), and heatmaps of the first cases.


rule trace:
    input:
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
        correctness=rules.check_correctness.output[0],
        noise=rules.noise_level.output[0],
    output:
        f"{RUN}/tracing/{{kind}}_w{{window}}.parquet",
    log:
        f"{LOGS}/trace_{{kind}}_w{{window}}.log",
    benchmark:
        f"{BENCH}/trace_{{kind}}_w{{window}}.tsv"
    wildcard_constraints:
        kind="hidden|mlp|attn",
        window=r"\d+",
    conda:
        "../../envs/locedit.yaml"
    threads: 2
    params:
        tracing=pick(
            "tracing",
            "samples",
            "seed",
            "all_tokens",
            "cases",
            "min_clean_prob",
            "max_rows",
        ),
        model=model_params(),
        run=config["run"],
        partial=lambda wc: f"{RUN}/.partial/trace_{wc.kind}_w{wc.window}",
    script:
        "../scripts/trace.py"


rule trace_heatmaps:
    input:
        rules.trace.output[0],
    output:
        directory(f"{RUN}/tracing/heatmaps/{{kind}}_w{{window}}"),
    log:
        f"{LOGS}/trace_heatmaps_{{kind}}_w{{window}}.log",
    benchmark:
        f"{BENCH}/trace_heatmaps_{{kind}}_w{{window}}.tsv"
    conda:
        "../../envs/locedit.yaml"
    params:
        cases=config["tracing"]["heatmap_cases"],
    script:
        "../scripts/trace_heatmaps.py"
