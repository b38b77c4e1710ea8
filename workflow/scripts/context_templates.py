"""Rule context_templates: ROME/MEMIT context templates, sampled once per model with a fixed seed."""
from locedit.editing.templates import context_templates
from locedit.io import write_json
from locedit.jobs import job, job_model

with job(snakemake):
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    write_json({**context_templates(model, tok, seed=snakemake.params.seed,
                                       rome_lengths=snakemake.params.rome_lengths), "model": snakemake.params.model["name"]},
               snakemake.output[0])
