# Causal tracing: one long table per (localization, kind, window), and heatmaps of the first cases.
# The paper's localization (activation patching, Gaussian noise, P(target)) writes
# tracing/{kind}_w{window}.parquet; others tracing/{method}-{corruption}-{metric}/{kind}_w{window}.parquet.
# Each table is traced by tracing.shards jobs (cases dealt round robin, each resumable from its own
# .partial/ checkpoint) whose tables under shards/ are merged in case order, then removed (temp).


rule trace:
    input:
        unpack(trace_inputs),
    output:
        temp(f"{RUN}/tracing/shards/{{kind}}_w{{window}}/shard{{shard}}.parquet"),
    log:
        f"{LOGS}/trace_{{kind}}_w{{window}}_shard{{shard}}.log",
    benchmark:
        f"{BENCH}/trace_{{kind}}_w{{window}}_shard{{shard}}.tsv"
    wildcard_constraints:
        kind="hidden|mlp|attn",
        window=r"\d+",
        shard=r"\d+",
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    resources:
        **planned("trace"),
    params:
        tracing=trace_settings(),
        localization=localization_params,
        model=model_params(),
        run=config["run"],
        partial=trace_partial,
    script:
        "../scripts/trace.py"


use rule trace as trace_localization with:
    output:
        temp(
            f"{RUN}/tracing/{{loc}}/shards/{{kind}}_w{{window}}/shard{{shard}}.parquet"
        ),
    log:
        f"{LOGS}/trace_{{loc}}_{{kind}}_w{{window}}_shard{{shard}}.log",
    benchmark:
        f"{BENCH}/trace_{{loc}}_{{kind}}_w{{window}}_shard{{shard}}.tsv"
    wildcard_constraints:
        loc=LOCALIZATION_PATTERN,
        kind="hidden|mlp|attn",
        window=r"\d+",
        shard=r"\d+",


# the same params as the shards': a changed setting reruns the merge, which reruns its (removed) shards
rule trace_merge:
    input:
        cases=f"{RUN}/cases.parquet",
        correctness=f"{RUN}/correctness.parquet",
        noise=f"{RUN}/noise.json",
        shards=trace_shards,
    output:
        f"{RUN}/tracing/{{kind}}_w{{window}}.parquet",
    log:
        f"{LOGS}/trace_merge_{{kind}}_w{{window}}.log",
    benchmark:
        f"{BENCH}/trace_merge_{{kind}}_w{{window}}.tsv"
    wildcard_constraints:
        kind="hidden|mlp|attn",
        window=r"\d+",
    localrule: True
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("trace_merge"),
    params:
        tracing=trace_settings(),
        localization=localization_params,
        model=model_params(),
        run=config["run"],
    script:
        "../scripts/trace_merge.py"


use rule trace_merge as trace_merge_localization with:
    output:
        f"{RUN}/tracing/{{loc}}/{{kind}}_w{{window}}.parquet",
    log:
        f"{LOGS}/trace_merge_{{loc}}_{{kind}}_w{{window}}.log",
    benchmark:
        f"{BENCH}/trace_merge_{{loc}}_{{kind}}_w{{window}}.tsv"
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
    resources:
        **planned("replacement_subjects"),
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
    resources:
        **planned("trace_heatmaps"),
    params:
        cases=config["tracing"]["heatmap_cases"],
    script:
        "../scripts/trace_heatmaps.py"
