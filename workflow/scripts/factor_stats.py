"""Rule factor_stats: C⁻¹ of one layer (float64, on the model's device), what the edit jobs read."""
import logging
from pathlib import Path

from locedit.editing.key_stats import save_factor
from locedit.jobs import job, job_device

with job(snakemake):
    device = job_device()  # resolved by job() from the device param, at the job's start
    path = save_factor(Path(snakemake.input[0]).parent, int(snakemake.wildcards.layer), device)
    logging.info("wrote %s (inverted on %s)", path, device)
