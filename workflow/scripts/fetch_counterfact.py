"""Rule fetch_counterfact: data.counterfact's URL downloaded once into resources/data/, sha256 checked.
A local rule (the Snakefile's localrules): it needs the network, the jobs that read the file do not."""
import logging
from pathlib import Path

from locedit.cases.counterfact import download_counterfact
from locedit.jobs import job

with job(snakemake):
    if snakemake.output:
        download_counterfact(snakemake.params.url, Path(snakemake.output[0]), snakemake.params.sha256)
    else:
        logging.info("data.counterfact is %r, not an http(s) URL: nothing to fetch", snakemake.params.url)
