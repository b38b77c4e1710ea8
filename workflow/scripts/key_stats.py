"""Rule key_stats: the parts' sums added exactly into C = E[k kᵀ] per layer (mom2_layer{l}.pt) and meta.json."""
import logging

from locedit.editing.key_stats import save_merged_moments
from locedit.jobs import job

with job(snakemake):
    paths = save_merged_moments(list(snakemake.input), snakemake.output.meta.rsplit("/", 1)[0])
    logging.info("C of %d layers from %d parts", len(paths), len(snakemake.input))
