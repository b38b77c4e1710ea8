# locedit: "Does Localization Inform Editing?" (Hase et al., NeurIPS 2023) as a Snakemake workflow.
#   snakemake --cores all                                  # embedded default (config.yaml)
#   snakemake --cores all --configfile configs/smoke.yaml  # tiny end-to-end run
import dataclasses
import math
import os
import sys

# torch-free: the DAG is planned from the config alone (test_plan checks that no torch is imported)
from locedit.config import ConfigError, validate_config, with_tuning
from locedit.localization import PAPER, Localization, configured
from locedit.plan import (
    EDIT_SITES,
    GPU_RULES,
    PROBLEM_NAMES,
    Plan,
    central_layers,
    check_windows,
    edit_priority,
    corpus_file,
    model_slug,
    planned_num_layers,
    stats_folder_name,
    stats_groups,
    stats_layers,
    uses_gpu,
)


configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate_config(
        config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
    )
    # the model's tuned hyperparameters (configs/tuned/{model}.yaml) under the config files'
    config.update(with_tuning(config))
except ConfigError as err:
    sys.exit(f"locedit: {err}")

# scripts import locedit from this checkout, also inside a --sdm conda environment (set here,
# not asserted with envvars: the user need not define it)
_paths = [workflow.basedir, os.environ.get("PYTHONPATH")]
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in _paths if p))
# bit-identical CPU results whatever threads a job gets: MKL's strict reproducible GEMM (AVX2 /
# AVX-512; measured: 1 vs 2 threads differed by 5e-8 without it, 0 with it, same speed) and no
# dynamic thread counts. A user's own setting wins.
for _var, _value in {
    "MKL_CBWR": "AUTO,STRICT",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
}.items():
    os.environ.setdefault(_var, _value)

RUN = f"results/{config['run']}"
MODEL_DIR = f"resources/models/{model_slug(config['model']['name'])}"
# cores a model-running job reserves and the torch threads it runs (locedit.jobs): model.threads
# where set, else 2; edit jobs else editing.threads (1: two side by side on 2 cores)
MODEL_THREADS = config["model"].get("threads") or 2
EDIT_THREADS = config["model"].get("threads") or config["editing"].get("threads", 1)
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"
METHOD_NAMES = list(EDIT_SITES)
try:  # planned from the config alone: no model is loaded to build the DAG
    N_LAYERS = planned_num_layers(config["model"], MODEL_DIR)
    CENTRAL_LAYERS = central_layers(config["editing"]["layers"], N_LAYERS)
    check_windows(config["tracing"]["windows"], N_LAYERS)
except ValueError as err:
    sys.exit(f"locedit: {err}")
STATS_LAYERS = stats_layers(config["editing"]["methods"], CENTRAL_LAYERS, N_LAYERS)
ANALYSIS = config.get("analysis", {})
CORRELATION_LAYER = ANALYSIS.get("correlation_layer")
if CORRELATION_LAYER is None:
    CORRELATION_LAYER = min(
        CENTRAL_LAYERS, key=lambda layer: abs(layer - (N_LAYERS - 1) / 2)
    )
MLP_WINDOWS = (
    sorted(config["tracing"]["windows"]) if "mlp" in config["tracing"]["kinds"] else []
)
LOCALIZATIONS = configured(config)  # the main analysis's first, then analysis.effects
MAIN_LOCALIZATION = LOCALIZATIONS[0]
STATS_DIR = f"resources/stats/{model_slug(config['model']['name'])}/{stats_folder_name(config['stats'])}"
# key_stats_part jobs: layer groups (stats.layers_per_job) x corpus shards (stats.shards)
STATS_GROUPS = stats_groups(STATS_LAYERS, config["stats"].get("layers_per_job"))
STATS_SHARDS = range(config["stats"].get("shards", 1))
# an hf: statistics corpus's selected texts, fetched once (rule fetch_corpus)
CORPUS_FILE = corpus_file(config["stats"])
try:  # every rule's memory, GPU and runtime (python -m locedit.plan prints the table)
    PLAN = Plan(config, MODEL_DIR)
except ValueError as err:
    PLAN = None
    print(f"locedit: {err}; jobs get the profile's default resources", file=sys.stderr)


# rules that need the network run where snakemake runs (the login node under SLURM)
localrules:
    prepare_model,
    fetch_counterfact,
    fetch_corpus,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tracing.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/editing.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        rules.check_correctness.output,
        rules.noise_level.output,
        tracing_tables(),
        tracing_heatmaps(),
        rules.scores.output,
        rules.regressions.output,
        rules.figures.output,
        rules.localization_figures.output if len(LOCALIZATIONS) > 1 else [],


onsuccess:
    summary = rules.regressions.output.summary
    print(f"locedit: results are in {RUN}/ (summary: {summary})")
    if os.path.exists(summary):
        from locedit.analysis.summary import (
            headline_from_summary,
        )  # after the run: torch may load now

        print(f"locedit: {headline_from_summary(summary)}")
