"""Rules trace / trace_localization: causal tracing of one shard of the cases (round robin) for one
(localization, kind, window), resumable per case (locedit.tracing.job.TraceJob); trace_merge joins
the shards."""
import logging

import pandas as pd
import torch

from locedit.io import CaseCheckpoint, read_json
from locedit.jobs import device_stamp, job, job_model
from locedit.plan import shard
from locedit.tracing.job import TraceJob, traced_cases

with job(snakemake):
    opts = snakemake.params.tracing
    loc = snakemake.params.localization
    index, shards = int(snakemake.wildcards.shard), opts.get("shards", 1)
    cases = traced_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                         opts["cases"])
    partners = {}
    if loc["corruption"] == "str":
        partners = pd.read_parquet(snakemake.input.partners).set_index("case_id").to_dict("index")
    trace_job = TraceJob(shard(cases, index, shards), kind=snakemake.wildcards.kind,
                         window=int(snakemake.wildcards.window), sigma=read_json(snakemake.input.noise)["sigma"],
                         tracing=opts, localization=loc, partners=partners)
    checkpoint = CaseCheckpoint(snakemake.params.partial, {
        **trace_job.settings, "model": snakemake.params.model["name"],
        "dtype": snakemake.params.model.get("dtype", "float32"), "device": device_stamp()})
    todo = checkpoint.todo(trace_job.case_ids)
    logging.info("shard %d of %d: %d cases to trace (%s), %d already in the checkpoint", index, shards, len(todo),
                 "-".join(loc.values()), len(trace_job.case_ids) - len(todo))
    if todo:
        model, tok = job_model(snakemake.input.model, snakemake.params.model)
        if opts.get("mixed_precision"):  # this job only: matmuls in bfloat16, logits float32
            model = model.to(torch.bfloat16)
        trace_job.run(model, tok, checkpoint)
    checkpoint.merge(trace_job.case_ids, snakemake.output[0])
