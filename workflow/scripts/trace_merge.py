"""Rules trace_merge / trace_merge_localization: the shards of one (localization, kind, window) joined
into its tracing table, cases in case order (the unsharded table, bit for bit)."""
import pandas as pd

from locedit.io import read_json
from locedit.jobs import job
from locedit.tracing.job import merge_shards, traced_cases

with job(snakemake):
    opts, loc = snakemake.params.tracing, snakemake.params.localization
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = traced_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                         opts["cases"])
    merge_shards(cases.case_id.tolist(), snakemake.input.shards, snakemake.output[0],
                 {"model": snakemake.params.model["name"], "run": snakemake.params.run, "sigma": sigma,
                  "samples": opts["samples"], "seed": opts["seed"], **loc})
