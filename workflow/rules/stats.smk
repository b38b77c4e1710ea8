# Key statistics C = E[k kᵀ] of the MLP down-projection inputs, shared by ROME and MEMIT:
# fetch_corpus (hf: corpora only, once, network) -> key_stats_part (one job per layer group and
# corpus shard) -> key_stats (the parts' sums added into mom2_layer{l}.pt) -> factor_stats (C⁻¹
# per layer, inverted once: what the edit jobs read).


rule fetch_corpus:
    output:
        CORPUS_FILE,
    log:
        CORPUS_FILE.replace(".jsonl.gz", ".log"),
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("fetch_corpus"),
    params:
        stats=pick("stats", "corpus", "n_samples", "seed"),
    script:
        "../scripts/fetch_corpus.py"


rule key_stats_part:
    input:
        unpack(stats_corpus),
        model=MODEL_DIR,
    output:
        f"{STATS_DIR}/parts/{{group}}_shard{{shard}}.pt",
    log:
        f"{STATS_DIR}/logs/key_stats_part_{{group}}_shard{{shard}}.log",
    benchmark:
        f"{STATS_DIR}/benchmarks/key_stats_part_{{group}}_shard{{shard}}.tsv"
    wildcard_constraints:
        group=r"l\d+-\d+",
        shard=r"\d+",
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    resources:
        **planned("key_stats_part"),
    params:
        stats=pick(
            "stats",
            "corpus",
            "n_samples",
            "max_tokens",
            "batch_size",
            "dtype",
            "seed",
            "checkpoint_every",
            "shards",
        ),
        model=model_params(),
        layers=lambda wildcards: STATS_GROUPS[wildcards.group],
        checkpoint=lambda wildcards: f"{STATS_DIR}/parts/.{wildcards.group}_shard{wildcards.shard}.checkpoint.pt",
    script:
        "../scripts/key_stats_part.py"


rule key_stats:
    input:
        expand(
            f"{STATS_DIR}/parts/{{group}}_shard{{shard}}.pt",
            group=STATS_GROUPS,
            shard=STATS_SHARDS,
        ),
    output:
        expand(f"{STATS_DIR}/mom2_layer{{layer}}.pt", layer=STATS_LAYERS),
        meta=f"{STATS_DIR}/meta.json",
    log:
        f"{STATS_DIR}/key_stats.log",
    benchmark:
        f"{STATS_DIR}/key_stats.benchmark.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("key_stats"),
    script:
        "../scripts/key_stats.py"


rule factor_stats:
    input:
        f"{STATS_DIR}/mom2_layer{{layer}}.pt",
    output:
        f"{STATS_DIR}/inv_layer{{layer}}.pt",
    log:
        f"{STATS_DIR}/logs/factor_stats_layer{{layer}}.log",
    benchmark:
        f"{STATS_DIR}/benchmarks/factor_stats_layer{{layer}}.tsv"
    wildcard_constraints:
        layer=r"\d+",
    conda:
        "../../envs/locedit.yaml"
    # the edit jobs' threads: on the CPU, C⁻¹ bit for bit what they inverted themselves before
    threads: EDIT_THREADS
    resources:
        **planned("factor_stats"),
    params:
        device=config["model"].get("device", "auto"),
    script:
        "../scripts/factor_stats.py"
