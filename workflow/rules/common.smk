# Input functions, target lists and per-rule params shared by the rule files.
#
# Each rule's params are exactly the settings its job reads, so Snakemake reruns a job when one of
# them changes and only then: the model's name / dtype / device / threads for every job that runs
# the model, and for an edit job its own method's hyperparameters only.


def noise_model(wildcards):
    """The model, for σ from its subject embeddings (``noise.rule: s3``); a constant σ loads none."""
    return {} if config["noise"]["rule"] == "constant" else {"model": MODEL_DIR}


def model_params():
    """The model settings a model-running job reads."""
    return {
        k: config["model"][k]
        for k in ("name", "dtype", "device", "threads")
        if k in config["model"]
    }


def pick(section, *keys):
    """The named keys of a config section (those present)."""
    return {k: config[section][k] for k in keys if k in config[section]}


def counterfact_copy():
    """The local file rule fetch_counterfact downloads data.counterfact to when it is an http(s)
    URL (as locedit.cases.counterfact.load_counterfact would); None for bundled or a local path.
    """
    source = config["data"]["counterfact"]
    if source.startswith(("https://", "http://")):
        return f"resources/data/{os.path.basename(source.split('?')[0])}"
    return None


def counterfact_input(wildcards):
    """select_cases reads the fetched copy of a URL (no network in its job)."""
    copy = counterfact_copy()
    return {"counterfact": copy} if copy else {}


def edit_settings(wildcards):
    """An edit job's settings: its method's hyperparameters and overrides, not the other methods'."""
    editing = config["editing"]
    method = wildcards.method
    return {
        **pick(
            "editing",
            "max_cases",
            "cases",
            "shards",
            "seed",
            "essence",
            "batch_cases",
            "mixed_precision",
            "tuned_from",
        ),
        "hparams": {method: editing.get("hparams", {}).get(method, {})},
        "overrides": {method: editing.get("overrides", {}).get(method, {})},
    }


def tracing_tables():
    """Every kind × window of the main localization."""
    return [
        MAIN_LOCALIZATION.table(RUN, kind, window)
        for kind in config["tracing"]["kinds"]
        for window in config["tracing"]["windows"]
    ]


def main_table(kind, window):
    return MAIN_LOCALIZATION.table(RUN, kind, window)


def tracing_heatmaps():
    return expand(
        f"{RUN}/tracing/heatmaps/{{kind}}_w{{window}}",
        kind=config["tracing"]["kinds"],
        window=config["tracing"]["windows"],
    )


def figure(name, caption):
    """A PNG under analysis/figures/, in the report with workflow/report/{caption}.rst."""
    return report(
        f"{RUN}/analysis/figures/{name}",
        caption=f"../report/{caption}.rst",
        category="Figures",
    )


def edit_outputs():
    return expand(
        f"{RUN}/editing/{{method}}/{{problem}}/shard{{shard}}.parquet",
        method=config["editing"]["methods"],
        problem=config["editing"]["problems"],
        shard=range(config["editing"]["shards"]),
    )


def edit_inputs(wildcards):
    """Model, cases, noise and noised targets; key statistics and templates for ROME / MEMIT."""
    inputs = {
        "model": MODEL_DIR,
        "cases": f"{RUN}/cases.parquet",
        "correctness": f"{RUN}/correctness.parquet",
        "noise": f"{RUN}/noise.json",
        "noised": f"{RUN}/editing/noised_targets.parquet",
    }
    if EDIT_SITES[wildcards.method].needs_stats:
        # C⁻¹ of the layers this method edits (rule factor_stats)
        layers = stats_layers([wildcards.method], CENTRAL_LAYERS, N_LAYERS)
        inputs["stats"] = expand(f"{STATS_DIR}/inv_layer{{layer}}.pt", layer=layers)
    if EDIT_SITES[wildcards.method].templates:
        inputs["templates"] = f"{RUN}/editing/context_templates.json"
    return {**inputs, **essence_input(wildcards)}


def essence_input(wildcards):
    """The sampled essence texts, when ``editing.essence.enabled``."""
    if config["editing"].get("essence", {}).get("enabled"):
        return {"essence": f"{RUN}/editing/essence_texts.parquet"}
    return {}


LOCALIZATION_PATTERN = "(exact|attribution)-(gaussian|str)-(prob|logit_diff)"


def wildcard_localization(wildcards):
    """The localization a tracing job runs: the paper's, or the one its ``loc`` wildcard names."""
    return Localization.parse(wildcards.loc) if "loc" in wildcards.keys() else PAPER


def localization_params(wildcards):
    return dataclasses.asdict(wildcard_localization(wildcards))


def trace_inputs(wildcards):
    """Model, cases, correctness and noise; the str partners under token replacement."""
    inputs = {
        "model": MODEL_DIR,
        "cases": f"{RUN}/cases.parquet",
        "correctness": f"{RUN}/correctness.parquet",
        "noise": f"{RUN}/noise.json",
    }
    if wildcard_localization(wildcards).corruption == "str":
        inputs["partners"] = f"{RUN}/tracing/str_partners.parquet"
    return inputs


def trace_settings():
    """The tracing settings a trace job (and its merge) reads."""
    return pick(
        "tracing",
        "samples",
        "seed",
        "all_tokens",
        "cases",
        "min_clean_prob",
        "max_rows",
        "mixed_precision",
        "shards",
    )


def trace_folder(wildcards):
    """tracing/, or tracing/{loc}/ for a localization other than the paper's."""
    return (
        f"{RUN}/tracing/{wildcards.loc}"
        if "loc" in wildcards.keys()
        else f"{RUN}/tracing"
    )


def trace_shards(wildcards):
    """The tracing.shards tables a trace merge joins."""
    return expand(
        f"{trace_folder(wildcards)}/shards/{wildcards.kind}_w{wildcards.window}/shard{{shard}}.parquet",
        shard=range(config["tracing"].get("shards", 1)),
    )


def trace_partial(wildcards):
    """A trace shard's checkpoint folder (finished cases of a killed job)."""
    loc = f"{wildcards.loc}_" if "loc" in wildcards.keys() else ""
    return f"{RUN}/.partial/trace_{loc}{wildcards.kind}_w{wildcards.window}_shard{wildcards.shard}"


def effect_tables():
    """The effect-window MLP table of each configured localization, main first (id → path)."""
    window = config["editing"]["effect_window"]
    return {loc.id: loc.table(RUN, "mlp", window) for loc in LOCALIZATIONS}


def planned(rule):
    """The rule's resources from locedit.plan: mem_mb, runtime, and gpu / gpu_mem_mb where its
    jobs run on a GPU (without a shape for the model, only the GPU: the profile's defaults apply).
    Memory and time grow by half the plan with each retry (attempt 2, 3)."""
    if PLAN is None:
        return _unplanned(rule)
    return {
        key: _growing(key, lambda wildcards: PLAN.resources(rule))
        for key in PLAN.resources(rule)
    }


def planned_edit():
    """An edit job's planned resources, by its method and problem."""
    if PLAN is None:
        return _unplanned("edit")
    of_job = lambda wildcards: PLAN.resources(
        "edit", wildcards.method, wildcards.problem
    )
    keys = PLAN.resources("edit", METHOD_NAMES[0], PROBLEM_NAMES[0])
    return {key: _growing(key, of_job) for key in keys}


def _unplanned(rule):
    """Without a model shape the profile's memory and time apply, but a job that computes on a GPU
    still takes one (one at a time locally; the GPU partition on SLURM)."""
    constant_noise = rule == "noise_level" and config["noise"]["rule"] == "constant"
    on_gpu = rule in GPU_RULES and not constant_noise and uses_gpu(config["model"])
    return {"gpu": 1} if on_gpu else {}


def _growing(key, of_job):
    """Resource ``key`` of a job (``of_job(wildcards)``), memory and runtime grown on retries."""
    if key in ("mem_mb", "runtime"):
        return lambda wildcards, attempt: math.ceil(
            of_job(wildcards)[key] * (1 + (attempt - 1) / 2)
        )
    return lambda wildcards: of_job(wildcards)[key]


def corpus_fetched():
    """An hf: statistics corpus is fetched once (rule fetch_corpus); the others are read in place."""
    return config["stats"]["corpus"].startswith("hf:")


def stats_corpus(wildcards):
    """A key_stats_part job's fetched corpus file, when there is one."""
    return {"corpus": CORPUS_FILE} if corpus_fetched() else {}
