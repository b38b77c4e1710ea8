"""Rule factor_stats: C⁻¹ of one layer (float64, on the model's device), what the edit jobs read."""
import logging
from pathlib import Path

from locedit.jobs import job
from locedit.models import resolve_device
from locedit.stats import save_factor

with job(snakemake):
    device = resolve_device(snakemake.params.device)
    path = save_factor(Path(snakemake.input[0]).parent, int(snakemake.wildcards.layer), device)
    logging.info("wrote %s (inverted on %s)", path, device)
