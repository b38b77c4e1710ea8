"""Rule trace: causal tracing of every selected case for one (kind, window), resumable per case."""
import logging

import pandas as pd
from tqdm import tqdm

from locedit.io import CaseCheckpoint, read_json
from locedit.jobs import job, job_model
from locedit.tracing import trace

with job(snakemake):
    opts = snakemake.params.tracing
    kind, window = snakemake.wildcards.kind, int(snakemake.wildcards.window)
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = pd.read_parquet(snakemake.input.cases).merge(
        pd.read_parquet(snakemake.input.correctness)[["case_id", "is_correct"]], on="case_id", validate="1:1"
    )
    if opts["cases"] == "correct":
        logging.info("tracing the %d correctly completed of %d cases", int(cases.is_correct.sum()), len(cases))
        cases = cases[cases.is_correct]
    settings = {"kind": kind, "window": window, "sigma": sigma, "samples": opts["samples"], "seed": opts["seed"],
                "all_tokens": opts["all_tokens"], "model": snakemake.params.model["name"], "dtype": snakemake.params.model.get("dtype", "float32")}
    checkpoint = CaseCheckpoint(snakemake.params.partial, settings)
    todo = set(checkpoint.todo(cases.case_id.tolist()))
    logging.info("%d cases to trace, %d already in the checkpoint", len(todo), len(cases) - len(todo))
    model, tok = job_model(snakemake.input.model, snakemake.params.model) if todo else (None, None)
    for case in tqdm(cases[cases.case_id.isin(todo)].itertuples(), total=len(todo), desc=f"trace {kind} w{window}",
                     unit="case", mininterval=10):
        result = trace(model, tok, case.prompt, case.subject, case.target_true, kind=kind, window=window,
                       samples=opts["samples"], noise=sigma, seed=opts["seed"], all_tokens=opts["all_tokens"],
                       max_rows=opts["max_rows"])
        if result.clean < opts["min_clean_prob"]:
            logging.info("case_id %d skipped: clean P(o_true) %.4f < tracing.min_clean_prob %.4f",
                         case.case_id, result.clean, opts["min_clean_prob"])
            checkpoint.save(case.case_id, pd.DataFrame())
            continue
        checkpoint.save(case.case_id, result.to_frame(case.case_id, is_correct=case.is_correct))
    checkpoint.merge(cases.case_id.tolist(), snakemake.output[0],
                     {"model": snakemake.params.model["name"], "run": snakemake.params.run, "sigma": sigma, "samples": opts["samples"],
                      "seed": opts["seed"]})
