"""Rules trace / trace_localization: causal tracing of one shard of the cases (round robin) for one
(localization, kind, window), resumable per case; trace_merge joins the shards. Under the logit
difference the contrast is the corrupted prompt's answer: the str partner's target_true, or the
case's target_new under Gaussian noise (locedit.tracing.job.trace_cases)."""
import logging

import pandas as pd
import torch

from locedit.io import CaseCheckpoint, read_json
from locedit.jobs import device_stamp, job, job_model
from locedit.editing.sweep import shard
from locedit.tracing.job import trace_cases, traced_cases

with job(snakemake):
    opts = snakemake.params.tracing
    loc = snakemake.params.localization
    kind, window, index = snakemake.wildcards.kind, int(snakemake.wildcards.window), int(snakemake.wildcards.shard)
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = traced_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                         opts["cases"])
    cases = shard(cases, index, opts.get("shards", 1))
    partners = {}
    if loc["corruption"] == "str":
        partners = pd.read_parquet(snakemake.input.partners).set_index("case_id").to_dict("index")
    settings = {"kind": kind, "window": window, "sigma": sigma, "samples": opts["samples"], "seed": opts["seed"],
                "all_tokens": opts["all_tokens"], "mixed_precision": opts.get("mixed_precision", False), **loc,
                "model": snakemake.params.model["name"], "dtype": snakemake.params.model.get("dtype", "float32"),
                "device": device_stamp()}
    if loc["metric"] == "logit_diff" or loc["method"] == "attribution":  # redefined in issue 38: no older checkpoint
        settings["definition"] = "issue 38: contrast = the corrupted prompt's answer; joint first-order window"
    checkpoint = CaseCheckpoint(snakemake.params.partial, settings)
    todo = checkpoint.todo(cases.case_id.tolist())
    logging.info("shard %d of %d: %d cases to trace (%s), %d already in the checkpoint", index,
                 opts.get("shards", 1), len(todo), "-".join(loc.values()), len(cases) - len(todo))
    if todo:
        model, tok = job_model(snakemake.input.model, snakemake.params.model)
        if opts.get("mixed_precision"):  # this job only: matmuls in bfloat16, logits float32
            model = model.to(torch.bfloat16)
        trace_cases(model, tok, cases, checkpoint, kind=kind, window=window, sigma=sigma, tracing=opts,
                    localization=loc, partners=partners)
    checkpoint.merge(cases.case_id.tolist(), snakemake.output[0])
