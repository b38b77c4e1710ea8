"""Rule prepare_model: embedded GGUF -> HF folder, or a pointer to a hub id / local folder."""
from locedit.jobs import job
from locedit.models import prepare_model

with job(snakemake):
    prepare_model(snakemake.params.name, snakemake.output[0])
