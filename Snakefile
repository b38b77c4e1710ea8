# locedit: "Does Localization Inform Editing?" (Hase et al., NeurIPS 2023) as a Snakemake workflow.
#   snakemake --cores all                                  # embedded default (config.yaml)
#   snakemake --cores all --configfile configs/smoke.yaml  # tiny end-to-end run
import os
import sys

from locedit.config import ConfigError, validate_config
from locedit.models import model_slug


configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate_config(config, os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"))
except ConfigError as err:
    sys.exit(f"locedit: {err}")

RUN = f"results/{config['run']}"
MODEL_DIR = f"resources/models/{model_slug(config['model']['name'])}"
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"


include: "workflow/rules/data.smk"
include: "workflow/rules/tracing.smk"


rule all:
    default_target: True
    input:
        rules.check_correctness.output,
        rules.noise_level.output,
        tracing_tables(),
        tracing_heatmaps(),


onsuccess:
    print(f"locedit: results are in {RUN}/")
