"""Rule noise_level: σ for subject noise, 3 × std of the knowns' subject embeddings or a constant."""
import logging

from locedit.cases.counterfact import load_knowns
from locedit.io import write_json
from locedit.jobs import job, job_model
from locedit.noise import embedding_std

with job(snakemake):
    opts = snakemake.params.noise
    if opts["rule"] == "constant":
        record = {"rule": "constant", "sigma": float(opts["value"])}
    else:
        model, tok = job_model(snakemake.input.model, snakemake.params.model)
        subjects = [k["subject"] for k in load_knowns()]
        std = embedding_std(model, tok, subjects)
        record = {"rule": "s3", "factor": opts["factor"], "std": std, "sigma": opts["factor"] * std,
                  "n_subjects": len(subjects), "source": "known_1000 subjects, embedding-layer output"}
    record["model"] = snakemake.params.model["name"]
    logging.info("noise level: %s", record)
    write_json(record, snakemake.output[0])
