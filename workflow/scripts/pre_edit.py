"""Rule pre_edit: unedited probabilities of every evaluated prompt, once per (case, problem)."""
import pandas as pd

from locedit.editing.job import editable_cases, pre_edit_table, requests
from locedit.io import read_json, write_parquet
from locedit.jobs import job, job_model

with job(snakemake):
    opts = snakemake.params.editing
    problem = snakemake.wildcards.problem
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = editable_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                           problem, opts["max_cases"], opts.get("cases", "correct"))
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    essence = pd.read_parquet(snakemake.input.essence) if "essence" in snakemake.input.keys() else None
    reqs = list(requests(cases, problem, pd.read_parquet(snakemake.input.noised), tok.eos_token, sigma, essence))
    table = pre_edit_table(model, tok, reqs, problem, opts["seed"])
    write_parquet(table, snakemake.output[0], {"model": snakemake.params.model["name"], "run": snakemake.params.run})
