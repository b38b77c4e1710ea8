"""Rules trace / trace_localization: causal tracing of every selected case for one (localization,
kind, window), resumable per case. Under the logit difference the contrast is the corrupted
prompt's answer: the str partner's target_true, or the case's target_new under Gaussian noise."""
import logging

import pandas as pd
import torch
from tqdm import tqdm

from locedit.attribution import attribution_trace
from locedit.corruption import GaussianNoise, TokenReplacement
from locedit.io import CaseCheckpoint, read_json
from locedit.jobs import job, job_model
from locedit.trace_metric import answer_token
from locedit.tracing import trace

with job(snakemake):
    opts = snakemake.params.tracing
    loc = snakemake.params.localization
    kind, window = snakemake.wildcards.kind, int(snakemake.wildcards.window)
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = pd.read_parquet(snakemake.input.cases).merge(
        pd.read_parquet(snakemake.input.correctness)[["case_id", "is_correct"]], on="case_id", validate="1:1"
    )
    if opts["cases"] == "correct":
        logging.info("tracing the %d correctly completed of %d cases", int(cases.is_correct.sum()), len(cases))
        cases = cases[cases.is_correct]
    partners = {}
    if loc["corruption"] == "str":
        table = pd.read_parquet(snakemake.input.partners).set_index("case_id")
        partners = table.to_dict("index")
    settings = {"kind": kind, "window": window, "sigma": sigma, "samples": opts["samples"], "seed": opts["seed"],
                "all_tokens": opts["all_tokens"], "mixed_precision": opts.get("mixed_precision", False), **loc, "model": snakemake.params.model["name"],
                "dtype": snakemake.params.model.get("dtype", "float32")}
    if loc["metric"] == "logit_diff" or loc["method"] == "attribution":  # redefined in issue 38: no older checkpoint
        settings["definition"] = "issue 38: contrast = the corrupted prompt's answer; joint first-order window"
    checkpoint = CaseCheckpoint(snakemake.params.partial, settings)
    todo = set(checkpoint.todo(cases.case_id.tolist()))
    logging.info("%d cases to trace (%s), %d already in the checkpoint", len(todo),
                 "-".join(loc.values()), len(cases) - len(todo))
    model, tok = job_model(snakemake.input.model, snakemake.params.model) if todo else (None, None)
    if todo and opts.get("mixed_precision"):  # this job only: matmuls in bfloat16, logits float32
        model = model.to(torch.bfloat16)
    run = attribution_trace if loc["method"] == "attribution" else trace
    for case in tqdm(cases[cases.case_id.isin(todo)].itertuples(), total=len(todo), desc=f"trace {kind} w{window}",
                     unit="case", mininterval=10):
        if loc["corruption"] == "str":
            partner = partners[case.case_id]
            if partner["prompt_ids"] is None:
                logging.warning("case_id %d not traced under str: %s", case.case_id, partner["reason"])
                checkpoint.save(case.case_id, pd.DataFrame())
                continue
            corruption = TokenReplacement(tuple(int(i) for i in partner["prompt_ids"]), int(partner["partner_case_id"]))
            contrast = partner["partner_target"]
        else:
            corruption = GaussianNoise(sigma, samples=opts["samples"], seed=opts["seed"])
            contrast = case.target_new
        if loc["metric"] == "logit_diff" and answer_token(tok, contrast) == answer_token(tok, case.target_true):
            logging.warning("case_id %d not traced under logit_diff: its contrast answer %r starts with the token of "
                            "its target %r (the difference would be 0)", case.case_id, contrast, case.target_true)
            checkpoint.save(case.case_id, pd.DataFrame())
            continue
        result = run(model, tok, case.prompt, case.subject, case.target_true, corruption, kind=kind, window=window,
                     metric=loc["metric"], contrast=contrast, all_tokens=opts["all_tokens"],
                     max_rows=opts["max_rows"])
        if loc["metric"] == "prob" and result.clean < opts["min_clean_prob"]:
            logging.info("case_id %d skipped: clean P(o_true) %.4f < tracing.min_clean_prob %.4f",
                         case.case_id, result.clean, opts["min_clean_prob"])
            checkpoint.save(case.case_id, pd.DataFrame())
            continue
        checkpoint.save(case.case_id, result.to_frame(case.case_id, is_correct=case.is_correct))
    checkpoint.merge(cases.case_id.tolist(), snakemake.output[0],
                     {"model": snakemake.params.model["name"], "run": snakemake.params.run, "sigma": sigma, "samples": opts["samples"],
                      "seed": opts["seed"], **loc})
