"""Rule key_stats_part: the sums of k kᵀ of one layer group over one corpus shard, resumable."""
import logging
from pathlib import Path

import torch

from locedit.editing.key_stats import collect_second_moments, corpus_texts, save_part
from locedit.jobs import job, job_model

with job(snakemake):
    opts = snakemake.params.stats
    shard, shards = int(snakemake.wildcards.shard), opts.get("shards", 1)
    if "corpus" in snakemake.input.keys():  # an hf: corpus, fetched once: its selected texts in order
        texts = corpus_texts(snakemake.input.corpus, None, shard=shard, shards=shards)
    else:
        texts = corpus_texts(opts["corpus"], opts["n_samples"], opts["seed"], shard=shard, shards=shards)
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    part = collect_second_moments(
        model, tok, texts, snakemake.params.layers, max_tokens=opts["max_tokens"], batch_size=opts["batch_size"],
        accumulate=getattr(torch, opts["dtype"]), checkpoint=snakemake.params.checkpoint,
        checkpoint_every=opts["checkpoint_every"],
        meta={"corpus": opts["corpus"], "n_samples": opts["n_samples"], "seed": opts["seed"],
              "model": snakemake.params.model["name"], "dtype": snakemake.params.model.get("dtype", "float32"),
              "shard": shard, "shards": shards},
    )
    logging.info("layers %s, corpus shard %d of %d: %d texts, %d tokens", snakemake.params.layers, shard, shards,
                 part.n_texts, part.n_tokens)
    save_part(part, snakemake.output[0])
    Path(snakemake.params.checkpoint).unlink(missing_ok=True)  # the part holds the same sums
