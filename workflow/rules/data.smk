# Model, cases and the correctness filter.


rule prepare_model:
    output:
        directory(MODEL_DIR),
    params:
        name=config["model"]["name"],
    log:
        f"resources/logs/prepare_model/{model_slug(config['model']['name'])}.log",
    benchmark:
        f"resources/benchmarks/prepare_model/{model_slug(config['model']['name'])}.tsv"
    script:
        "../scripts/prepare_model.py"


rule select_cases:
    output:
        f"{RUN}/cases.parquet",
    params:
        data=config["data"],
    log:
        f"{LOGS}/select_cases.log",
    benchmark:
        f"{BENCH}/select_cases.tsv"
    script:
        "../scripts/select_cases.py"


rule check_correctness:
    input:
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
    output:
        f"{RUN}/correctness.parquet",
    params:
        correctness=config["correctness"],
    threads: 2
    log:
        f"{LOGS}/check_correctness.log",
    benchmark:
        f"{BENCH}/check_correctness.tsv"
    script:
        "../scripts/check_correctness.py"


rule noise_level:
    input:
        model=MODEL_DIR,
    output:
        f"{RUN}/noise.json",
    params:
        noise=config["noise"],
    threads: 2
    log:
        f"{LOGS}/noise_level.log",
    benchmark:
        f"{BENCH}/noise_level.tsv"
    script:
        "../scripts/noise_level.py"
