"""Rule edit: one (method, problem, shard) job; edits, evaluates and restores every (case, layer)."""
import pandas as pd

from locedit.editing.hparams import hparams_for
from locedit.editing.job import EditJob, editable_cases
from locedit.editing.key_stats import KeyStats
from locedit.editing.methods import METHODS
from locedit.io import CaseCheckpoint, read_json
from locedit.jobs import device_stamp, job, job_model
from locedit.plan import shard

with job(snakemake):
    opts = snakemake.params.editing
    method, problem, index = snakemake.wildcards.method, snakemake.wildcards.problem, int(snakemake.wildcards.shard)
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = editable_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                           problem, opts["max_cases"], opts.get("cases", "correct"))
    cases = shard(cases, index, opts["shards"])
    hparams = hparams_for(opts, method, problem)
    settings = {"hparams": hparams, "layers": snakemake.params.layers, "sigma": sigma, "model": snakemake.params.model["name"],
                "dtype": snakemake.params.model.get("dtype", "float32"), "seed": opts["seed"], "essence": opts.get("essence"),
                "batch_cases": opts["batch_cases"], "mixed_precision": opts["mixed_precision"],
                "device": device_stamp()}
    checkpoint = CaseCheckpoint(snakemake.params.partial, settings)
    if checkpoint.todo(cases.case_id.tolist()):
        model, tok = job_model(snakemake.input.model, snakemake.params.model)
        stats = KeyStats(snakemake.input.stats[0].rsplit("/", 1)[0] if "stats" in snakemake.input.keys() else None,
                         keep=METHODS[method].window)  # C⁻¹ of one edit window on the device at a time
        EditJob.for_cases(
            model, tok, method, problem, cases, editing=opts, layers=snakemake.params.layers, sigma=sigma,
            noised=pd.read_parquet(snakemake.input.noised), stats=stats,
            templates=read_json(snakemake.input.templates) if "templates" in snakemake.input.keys() else None,
            essence=pd.read_parquet(snakemake.input.essence) if "essence" in snakemake.input.keys() else None,
        ).run(checkpoint)
    checkpoint.merge(cases.case_id.tolist(), snakemake.output[0],
                     {"model": snakemake.params.model["name"], "run": snakemake.params.run, "shard": index})
