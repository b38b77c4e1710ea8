# Input functions, target lists and per-rule params shared by the rule files.
#
# Each rule's params are exactly the settings its job reads, so Snakemake reruns a job when one of
# them changes and only then: the model's name / dtype / device / threads for every job that runs
# the model, and for an edit job its own method's hyperparameters only.


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


def edit_settings(wildcards):
    """An edit job's settings: its method's hyperparameters and overrides, not the other methods'."""
    editing = config["editing"]
    method = wildcards.method
    return {
        **pick(
            "editing",
            "max_cases",
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
        inputs["stats"] = expand(
            f"{STATS_DIR}/mom2_layer{{layer}}.pt", layer=STATS_LAYERS
        )
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


def effect_tables():
    """The effect-window MLP table of each configured localization, main first (id → path)."""
    window = config["editing"]["effect_window"]
    return {loc.id: loc.table(RUN, "mlp", window) for loc in LOCALIZATIONS}


def planned(rule):
    """The rule's resources from locedit.plan: mem_mb, runtime, and gpu / gpu_mem_mb where its
    jobs run on a GPU (none when the plan has no shape for the model: the profile's defaults)."""
    return PLAN.resources(rule) if PLAN else {}


def _edit_resource(key):
    return lambda wildcards: PLAN.resources("edit", wildcards.method, wildcards.problem)[key]


def planned_edit():
    """An edit job's planned resources, by its method and problem."""
    if PLAN is None:
        return {}
    keys = PLAN.resources("edit", METHOD_NAMES[0], PROBLEM_NAMES[0])
    return {key: _edit_resource(key) for key in keys}
