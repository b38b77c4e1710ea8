"""Rule key_stats: E[k kᵀ] of the down-projection inputs for all needed layers in one pass, resumable."""
import logging

import torch

from locedit.jobs import job, job_model
from locedit.stats import collect_second_moments, corpus_texts, save_layer_moments

with job(snakemake):
    opts = snakemake.params.stats
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    texts = corpus_texts(opts["corpus"], opts["n_samples"], opts["seed"])
    moments = collect_second_moments(
        model, tok, texts, snakemake.params.layers, max_tokens=opts["max_tokens"], batch_size=opts["batch_size"],
        accumulate=getattr(torch, opts["dtype"]), checkpoint=snakemake.params.checkpoint,
        checkpoint_every=opts["checkpoint_every"],
    )
    moments.meta.update(corpus=opts["corpus"], n_samples=opts["n_samples"], seed=opts["seed"], model=snakemake.params.model["name"])
    logging.info("%d texts, %d tokens, layers %s", moments.n_texts, moments.n_tokens, snakemake.params.layers)
    save_layer_moments(moments, snakemake.output.meta.rsplit("/", 1)[0])
