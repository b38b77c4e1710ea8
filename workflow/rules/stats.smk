# Key statistics C = E[k kᵀ] of the MLP down-projection inputs, shared by ROME and MEMIT.


rule key_stats:
    input:
        model=MODEL_DIR,
    output:
        expand(f"{STATS_DIR}/mom2_layer{{layer}}.pt", layer=STATS_LAYERS),
        meta=f"{STATS_DIR}/meta.json",
    log:
        f"{STATS_DIR}/key_stats.log",
    benchmark:
        f"{STATS_DIR}/key_stats.benchmark.tsv"
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    params:
        stats=config["stats"],
        model=model_params(),
        layers=STATS_LAYERS,
        checkpoint=f"{STATS_DIR}/.checkpoint.pt",
    script:
        "../scripts/key_stats.py"
