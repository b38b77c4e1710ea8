# Model, cases and the correctness filter.


rule prepare_model:
    output:
        directory(MODEL_DIR),
    log:
        f"resources/logs/prepare_model/{model_slug(config['model']['name'])}.log",
    benchmark:
        f"resources/benchmarks/prepare_model/{model_slug(config['model']['name'])}.tsv"
    conda:
        "../../envs/locedit.yaml"
    params:
        name=config["model"]["name"],
    script:
        "../scripts/prepare_model.py"


rule select_cases:
    output:
        f"{RUN}/cases.parquet",
    log:
        f"{LOGS}/select_cases.log",
    benchmark:
        f"{BENCH}/select_cases.tsv"
    conda:
        "../../envs/locedit.yaml"
    params:
        data=config["data"],
    script:
        "../scripts/select_cases.py"


rule check_correctness:
    input:
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
    output:
        f"{RUN}/correctness.parquet",
    log:
        f"{LOGS}/check_correctness.log",
    benchmark:
        f"{BENCH}/check_correctness.tsv"
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    params:
        correctness=config["correctness"],
        model=model_params(),
        run=config["run"],
    script:
        "../scripts/check_correctness.py"


rule noise_level:
    input:
        model=MODEL_DIR,
    output:
        f"{RUN}/noise.json",
    log:
        f"{LOGS}/noise_level.log",
    benchmark:
        f"{BENCH}/noise_level.tsv"
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    params:
        noise=config["noise"],
        model=model_params(),
    script:
        "../scripts/noise_level.py"
