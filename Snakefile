# locedit: "Does Localization Inform Editing?" (Hase et al., NeurIPS 2023) as a Snakemake workflow.
#   snakemake --cores all                                  # embedded default (config.yaml)
#   snakemake --cores all --configfile configs/smoke.yaml  # tiny end-to-end run
import os
import sys

from locedit.config import ConfigError, validate_config
from locedit.editing import METHODS
from locedit.models import model_slug, planned_num_layers
from locedit.problems import PROBLEMS
from locedit.stats import stats_folder_name
from locedit.sweep import central_layers, stats_layers


configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate_config(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
except ConfigError as err:
    sys.exit(f"locedit: {err}")

RUN = f"results/{config['run']}"
MODEL_DIR = f"resources/models/{model_slug(config['model']['name'])}"
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"
METHOD_NAMES = list(METHODS)
PROBLEM_NAMES = list(PROBLEMS)
try:  # planned from the config alone: no model is loaded to build the DAG
    N_LAYERS = planned_num_layers(config["model"])
    CENTRAL_LAYERS = central_layers(config["editing"]["layers"], N_LAYERS)
except ValueError as err:
    sys.exit(f"locedit: {err}")
STATS_LAYERS = stats_layers(config["editing"]["methods"], CENTRAL_LAYERS, N_LAYERS)
STATS_DIR = f"resources/stats/{model_slug(config['model']['name'])}/{stats_folder_name(config['stats'])}"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tracing.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/editing.smk"


rule all:
    default_target: True
    input:
        rules.check_correctness.output,
        rules.noise_level.output,
        tracing_tables(),
        tracing_heatmaps(),
        rules.scores.output,


onsuccess:
    print(f"locedit: results are in {RUN}/")
