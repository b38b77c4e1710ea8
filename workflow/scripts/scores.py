"""Rule scores: normalized edit scores per (method, problem, case, layer), joined with tracing effects."""
import logging

import pandas as pd

from locedit import provenance
from locedit.editing.metrics import edit_scores, prompt_scores
from locedit.io import write_parquet
from locedit.jobs import job
from locedit.plan import PROBLEMS
from locedit.tracing.effects import tracing_effects

with job(snakemake):
    opts = snakemake.params.editing
    pre = pd.concat([pd.read_parquet(p) for p in snakemake.input.pre], ignore_index=True)
    post = pd.concat([pd.read_parquet(p) for p in snakemake.input.post], ignore_index=True)
    prompts = prompt_scores(pre, post, {name: p.minimize for name, p in PROBLEMS.items()})
    scores = edit_scores(prompts, first_prompt_only=opts["first_prompt_only"])
    timing = post.groupby(["method", "problem", "case_id", "layer"])[["edit_s", "eval_s"]].first().reset_index()
    scores = scores.merge(timing, on=["method", "problem", "case_id", "layer"], validate="1:1")
    # what the tables were made with, kept in scores.parquet's metadata for the summary
    edits = {}
    for path in snakemake.input.post:
        record = provenance.read(path)
        if record:
            key = f"{record['wildcards']['method']}/{record['wildcards']['problem']}"
            edits[key] = {"editing": record["params"].get("editing"), "code": record.get("code")}
    provenance.note("edits", edits)
    provenance.note("tracing", provenance.read(snakemake.input.trace))
    effects = tracing_effects(pd.read_parquet(snakemake.input.trace))
    joined = scores.merge(effects, on=["case_id", "layer"], how="left", validate="m:1")
    missing = joined[joined.max_fraction_restored.isna()][["case_id", "layer"]].drop_duplicates()
    for case_id, layer in missing.itertuples(index=False):
        logging.warning("case_id %d layer %d has no tracing effect (not traced?)", case_id, layer)
    write_parquet(joined, snakemake.output[0], {"model": snakemake.params.model["name"], "run": snakemake.params.run,
                                                "effect_window": opts["effect_window"]})
