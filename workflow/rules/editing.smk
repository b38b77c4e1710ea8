# Editing sweep: context templates, noised targets, pre-edit probabilities, edit jobs, scores.


rule context_templates:
    input:
        model=MODEL_DIR,
    output:
        f"{RUN}/editing/context_templates.json",
    log:
        f"{LOGS}/context_templates.log",
    benchmark:
        f"{BENCH}/context_templates.tsv"
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    resources:
        **planned("context_templates"),
    params:
        seed=config["editing"]["templates_seed"],
        rome_lengths=config["editing"]["rome_template_lengths"],
        model=model_params(),
    script:
        "../scripts/context_templates.py"


rule noised_targets:
    input:
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
        correctness=rules.check_correctness.output[0],
        noise=rules.noise_level.output[0],
    output:
        f"{RUN}/editing/noised_targets.parquet",
    log:
        f"{LOGS}/noised_targets.log",
    benchmark:
        f"{BENCH}/noised_targets.tsv"
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    resources:
        **planned("noised_targets"),
    params:
        editing=pick(
            "editing",
            "max_cases",
            "cases",
            "noised_target_tokens",
            "ff_noise_samples",
            "seed",
        ),
        model=model_params(),
    script:
        "../scripts/noised_targets.py"


rule essence_texts:
    input:
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
        correctness=rules.check_correctness.output[0],
    output:
        f"{RUN}/editing/essence_texts.parquet",
    log:
        f"{LOGS}/essence_texts.log",
    benchmark:
        f"{BENCH}/essence_texts.tsv"
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    resources:
        **planned("essence_texts"),
    params:
        editing=pick("editing", "max_cases", "cases", "essence", "seed"),
        model=model_params(),
    script:
        "../scripts/essence_texts.py"


rule pre_edit:
    input:
        unpack(essence_input),
        model=MODEL_DIR,
        cases=rules.select_cases.output[0],
        correctness=rules.check_correctness.output[0],
        noise=rules.noise_level.output[0],
        noised=rules.noised_targets.output[0],
    output:
        f"{RUN}/editing/pre/{{problem}}.parquet",
    log:
        f"{LOGS}/pre_edit_{{problem}}.log",
    benchmark:
        f"{BENCH}/pre_edit_{{problem}}.tsv"
    wildcard_constraints:
        problem="|".join(PROBLEM_NAMES),
    conda:
        "../../envs/locedit.yaml"
    threads: MODEL_THREADS
    resources:
        **planned("pre_edit"),
    params:
        editing=pick("editing", "max_cases", "cases", "seed"),
        model=model_params(),
        run=config["run"],
    script:
        "../scripts/pre_edit.py"


rule edit:
    input:
        unpack(edit_inputs),
    output:
        f"{RUN}/editing/{{method}}/{{problem}}/shard{{shard}}.parquet",
    log:
        f"{LOGS}/edit_{{method}}_{{problem}}_shard{{shard}}.log",
    benchmark:
        f"{BENCH}/edit_{{method}}_{{problem}}_shard{{shard}}.tsv"
    wildcard_constraints:
        method="|".join(METHOD_NAMES),
        problem="|".join(PROBLEM_NAMES),
        shard=r"\d+",
    priority: lambda wildcards: edit_priority(wildcards.method, wildcards.problem)
    conda:
        "../../envs/locedit.yaml"
    threads: EDIT_THREADS
    resources:
        **planned_edit(),
    params:
        editing=edit_settings,
        layers=CENTRAL_LAYERS,
        model=model_params(),
        run=config["run"],
        partial=lambda wc: f"{RUN}/.partial/edit_{wc.method}_{wc.problem}_shard{wc.shard}",
    script:
        "../scripts/edit.py"


rule scores:
    input:
        pre=expand(
            f"{RUN}/editing/pre/{{problem}}.parquet",
            problem=config["editing"]["problems"],
        ),
        post=edit_outputs(),
        trace=main_table("mlp", config["editing"]["effect_window"]),
    output:
        f"{RUN}/scores.parquet",
    log:
        f"{LOGS}/scores.log",
    benchmark:
        f"{BENCH}/scores.tsv"
    conda:
        "../../envs/locedit.yaml"
    resources:
        **planned("scores"),
    params:
        editing=pick("editing", "first_prompt_only", "effect_window"),
        model=model_params(),
        run=config["run"],
    script:
        "../scripts/scores.py"
