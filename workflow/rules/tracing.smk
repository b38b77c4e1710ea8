# Causal tracing: one long table per (localization, kind, window), and heatmaps of the first cases.
# The paper's localization (activation patching, Gaussian noise, P(target)) writes
# tracing/{kind}_w{window}.parquet; others tracing/{method}-{corruption}-{metric}/{kind}_w{window}.parquet.


rule trace:
    input:
        unpack(trace_inputs),
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
    threads: MODEL_THREADS
    params:
        tracing=pick(
            "tracing",
            "samples",
            "seed",
            "all_tokens",
            "cases",
            "min_clean_prob",
            "max_rows",
            "mixed_precision",
        ),
        localization=localization_params,
        model=model_params(),
        run=config["run"],
        partial=lambda wc: f"{RUN}/.partial/trace_{wc.loc + '_' if 'loc' in wc.keys() else ''}{wc.kind}_w{wc.window}",
    script:
        "../scripts/trace.py"


use rule trace as trace_localization with:
    output:
        f"{RUN}/tracing/{{loc}}/{{kind}}_w{{window}}.parquet",
    log:
        f"{LOGS}/trace_{{loc}}_{{kind}}_w{{window}}.log",
    benchmark:
        f"{BENCH}/trace_{{loc}}_{{kind}}_w{{window}}.tsv"
    wildcard_constraints:
        loc=LOCALIZATION_PATTERN,
        kind="hidden|mlp|attn",
        window=r"\d+",


rule replacement_subjects:
    input:
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
    output:
        f"{RUN}/tracing/str_partners.parquet",
    log:
        f"{LOGS}/replacement_subjects.log",
    benchmark:
        f"{BENCH}/replacement_subjects.tsv"
    conda:
        "../../envs/locedit.yaml"
    params:
        counterfact=config["data"].get("counterfact", "bundled"),
        seed=config["tracing"]["seed"],
        run=config["run"],
    script:
        "../scripts/replacement_subjects.py"


rule trace_heatmaps:
    input:
        lambda wc: main_table(wc.kind, wc.window),
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
