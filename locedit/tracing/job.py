"""A tracing job: one shard of the cases traced for one (localization, kind, window), resumable per
case, and the merge of the shards into the one table downstream rules read (rules ``trace`` and
``trace_merge``, ``tracing.shards`` jobs per table)::

    >>> cases = traced_cases(cases, correctness, "correct")                               # doctest: +SKIP
    >>> for i in range(3):                                                                # doctest: +SKIP
    ...     part = shard(cases, i, 3)
    ...     checkpoint = CaseCheckpoint(f"results/r/.partial/trace_mlp_w5_shard{i}", settings)
    ...     trace_cases(model, tok, part, checkpoint, kind="mlp", window=5, sigma=0.12,
    ...                 tracing=opts, localization={"method": "exact", "corruption": "gaussian", "metric": "prob"})
    ...     checkpoint.merge(part.case_id.tolist(), f"results/r/tracing/shards/mlp_w5/shard{i}.parquet")
    >>> merge_shards(cases.case_id.tolist(), [f"results/r/tracing/shards/mlp_w5/shard{i}.parquet" for i in range(3)],
    ...              "results/r/tracing/mlp_w5.parquet", provenance={"run": "r"})         # doctest: +SKIP

Shards take the cases round robin (:func:`locedit.editing.sweep.shard`). A case's trace depends on that
case alone (its noise is ``RandomState(seed)`` drawn afresh for it), so the merged table is the
unsharded job's, bit for bit, whatever the number of shards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from locedit import provenance as job_provenance
from locedit.tracing.attribution import attribution_trace
from locedit.tracing.corruption import GaussianNoise, TokenReplacement
from locedit.io import CaseCheckpoint, write_parquet
from locedit.tracing.metric import answer_token
from locedit.tracing.trace import trace

log = logging.getLogger("locedit")


def traced_cases(cases: pd.DataFrame, correctness: pd.DataFrame, which: str) -> pd.DataFrame:
    """The cases a trace covers, in case order, with ``is_correct``: ``all``, or ``correct`` (the
    correctly completed ones, ``tracing.cases``)."""
    table = cases.merge(correctness[["case_id", "is_correct"]], on="case_id", validate="1:1")
    if which == "correct":
        log.info("tracing the %d correctly completed of %d cases", int(table.is_correct.sum()), len(table))
        table = table[table.is_correct]
    return table


def trace_cases(model, tok, cases: pd.DataFrame, checkpoint: CaseCheckpoint, *, kind: str, window: int,
                sigma: float, tracing: dict[str, Any], localization: dict[str, str],
                partners: dict[int, dict[str, Any]] | None = None) -> None:
    """Trace every case of ``cases`` not yet in ``checkpoint`` and save its long table there; a case
    left out (no ``str`` partner; under ``logit_diff`` a contrast answer starting with the target's
    token; clean P(o_true) below ``tracing.min_clean_prob``) is logged and saved as an empty table,
    so a resumed job does not retry it.

    Under the logit difference the contrast is the corrupted prompt's answer: the ``str`` partner's
    target_true (``partner_target``), or the case's target_new under Gaussian noise.

    ``tracing`` holds the rule's settings (samples, seed, all_tokens, max_rows, min_clean_prob),
    ``localization`` the method / corruption / metric, ``partners`` the ``str`` partner of each case_id.
    """
    run = attribution_trace if localization["method"] == "attribution" else trace
    todo = set(checkpoint.todo(cases.case_id.tolist()))
    for case in tqdm(cases[cases.case_id.isin(todo)].itertuples(), total=len(todo), desc=f"trace {kind} w{window}",
                     unit="case", mininterval=10):
        if localization["corruption"] == "str":
            partner = (partners or {})[case.case_id]
            if partner["prompt_ids"] is None:
                log.warning("case_id %d not traced under str: %s", case.case_id, partner["reason"])
                checkpoint.save(case.case_id, pd.DataFrame())
                continue
            corruption = TokenReplacement(tuple(int(i) for i in partner["prompt_ids"]), int(partner["partner_case_id"]))
        else:
            corruption = GaussianNoise(sigma, samples=tracing["samples"], seed=tracing["seed"])
        contrast = None  # the logit difference's only: the corrupted prompt's answer
        if localization["metric"] == "logit_diff":
            contrast = partner["partner_target"] if localization["corruption"] == "str" else case.target_new
        if contrast is not None and answer_token(tok, contrast) == answer_token(tok, case.target_true):
            log.warning("case_id %d not traced under logit_diff: its contrast answer %r starts with the token of "
                        "its target %r (the difference would be 0)", case.case_id, contrast, case.target_true)
            checkpoint.save(case.case_id, pd.DataFrame())
            continue
        result = run(model, tok, case.prompt, case.subject, case.target_true, corruption, kind=kind, window=window,
                     metric=localization["metric"], contrast=contrast, all_tokens=tracing["all_tokens"],
                     max_rows=tracing["max_rows"])
        if localization["metric"] == "prob" and result.clean < tracing["min_clean_prob"]:
            log.info("case_id %d skipped: clean P(o_true) %.4f < tracing.min_clean_prob %.4f",
                     case.case_id, result.clean, tracing["min_clean_prob"])
            checkpoint.save(case.case_id, pd.DataFrame())
            continue
        checkpoint.save(case.case_id, result.to_frame(case.case_id, is_correct=case.is_correct))


def merge_shards(case_ids: list[int], shards: list[str | Path], path: str | Path,
                 provenance: dict[str, Any] | None = None) -> Path:
    """The shards' tables joined into ``path`` with the cases in ``case_ids`` order (each case's rows
    as its shard wrote them) and ``provenance`` as constant columns. Inside a job, the table's
    record notes each shard's device and the model (:mod:`locedit.provenance`)."""
    parts = [part for part in map(pd.read_parquet, shards) if len(part)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(table):
        position = {case_id: i for i, case_id in enumerate(case_ids)}
        stray = sorted(set(table.case_id) - set(position))
        if stray:
            raise ValueError(f"shard tables hold case_ids {stray[:10]} that are not among the traced cases: they "
                             "come from another selection of cases; delete the shard tables and rerun the trace")
        order = np.argsort(table.case_id.map(position).to_numpy(), kind="stable")
        table = table.iloc[order].reset_index(drop=True)
    records = [job_provenance.read(shard) for shard in shards]
    job_provenance.note("shards", [{"shard": r.get("wildcards", {}).get("shard"), "device": r.get("device")}
                                   for r in records])
    model = next((r["model"] for r in records if r.get("model")), None)
    if model is not None:
        job_provenance.note("model", model)
    return write_parquet(table, path, provenance)
