"""Rule check_correctness: greedy generation + substring rule, P(o_true) and P(o_new)."""
import logging

import pandas as pd

from locedit.cases.correctness import check_correctness
from locedit.io import write_parquet
from locedit.jobs import job, job_model

with job(snakemake):
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    opts = snakemake.params.correctness
    cases = pd.read_parquet(snakemake.input.cases)
    table = check_correctness(model, tok, cases, opts["max_new_tokens"], opts["batch_size"])
    logging.info("%d of %d cases completed correctly", int(table.is_correct.sum()), len(table))
    write_parquet(table, snakemake.output[0], {"model": snakemake.params.model["name"], "run": snakemake.params.run})
