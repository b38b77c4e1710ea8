# Model, CounterFact, cases and the correctness filter.


rule prepare_model:
    output:
        directory(MODEL_DIR),
    log:
        f"resources/logs/prepare_model/{model_slug(config['model']['name'])}.log",
    benchmark:
        f"resources/benchmarks/prepare_model/{model_slug(config['model']['name'])}.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("prepare_model"),
    params:
        name=config["model"]["name"],
    script:
        "../scripts/prepare_model.py"


rule fetch_counterfact:
    output:
        counterfact_copy() or [],
    log:
        "resources/logs/fetch_counterfact.log",
    benchmark:
        "resources/benchmarks/fetch_counterfact.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("fetch_counterfact"),
    params:
        url=config["data"]["counterfact"],
        sha256=config["data"].get("counterfact_sha256"),
    script:
        "../scripts/fetch_counterfact.py"


rule select_cases:
    input:
        unpack(counterfact_input),
    output:
        f"{RUN}/cases.parquet",
    log:
        f"{LOGS}/select_cases.log",
    benchmark:
        f"{BENCH}/select_cases.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("select_cases"),
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
    resources:
        **planned("check_correctness"),
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
    resources:
        **planned("noise_level"),
    params:
        noise=config["noise"],
        model=model_params(),
    script:
        "../scripts/noise_level.py"
