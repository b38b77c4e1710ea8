"""Rule fetch_corpus: the selected texts of an hf: corpus (network), in order, to a local JSON-lines file."""
import logging

from locedit.editing.key_stats import corpus_texts, save_corpus
from locedit.jobs import job

with job(snakemake):
    opts = snakemake.params.stats
    count = save_corpus(corpus_texts(opts["corpus"], opts["n_samples"], opts["seed"]), snakemake.output[0])
    logging.info("%d texts of %s", count, opts["corpus"])
