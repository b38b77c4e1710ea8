"""A tracing job: one shard of the cases traced for one (localization, kind, window), resumable per
case, and the merge of the shards into the one table downstream rules read (rules ``trace`` and
``trace_merge``, ``tracing.shards`` jobs per table)::

    >>> cases = traced_cases(cases, correctness, "correct")                               # doctest: +SKIP
    >>> for i in range(3):                                                                # doctest: +SKIP
    ...     job = TraceJob(shard(cases, i, 3), kind="mlp", window=5, sigma=0.12, tracing=opts,
    ...                    localization={"method": "exact", "corruption": "gaussian", "metric": "prob"})
    ...     checkpoint = CaseCheckpoint(f"results/r/.partial/trace_mlp_w5_shard{i}", job.settings)
    ...     job.run(model, tok, checkpoint)
    ...     checkpoint.merge(job.case_ids, f"results/r/tracing/shards/mlp_w5/shard{i}.parquet")
    >>> merge_shards(cases.case_id.tolist(), [f"results/r/tracing/shards/mlp_w5/shard{i}.parquet" for i in range(3)],
    ...              "results/r/tracing/mlp_w5.parquet", provenance={"run": "r"})         # doctest: +SKIP

Shards take the cases round robin (:func:`locedit.plan.shard`). A case's trace depends on that
case alone (its noise is ``RandomState(seed)`` drawn afresh for it), so the merged table is the
unsharded job's, bit for bit, whatever the number of shards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from locedit import provenance as job_provenance
from locedit.io import CaseCheckpoint, write_parquet
from locedit.tracing.attribution import attribution_trace
from locedit.tracing.corruption import GaussianNoise, TokenReplacement
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


@dataclass(frozen=True)
class TraceJob:
    """One tracing job (the module docstring shows use): ``cases`` (with ``is_correct``), the traced module
    ``kind`` and ``window``, the noise level ``sigma``, ``tracing`` the rule's settings (samples, seed,
    all_tokens, max_rows, min_clean_prob), ``localization`` the method / corruption / metric, and
    ``partners`` the ``str`` partner of each case_id (token replacement only)."""

    cases: pd.DataFrame
    kind: str
    window: int
    sigma: float
    tracing: dict[str, Any]
    localization: dict[str, str]
    partners: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def case_ids(self) -> list[int]:
        return self.cases.case_id.tolist()

    @property
    def settings(self) -> dict[str, Any]:
        """What the job's tables depend on, for its checkpoint's stamp (the caller adds model and device)."""
        settings = {"kind": self.kind, "window": self.window, "sigma": self.sigma, "samples": self.tracing["samples"],
                    "seed": self.tracing["seed"], "all_tokens": self.tracing["all_tokens"],
                    "mixed_precision": self.tracing.get("mixed_precision", False), **self.localization}
        if self.localization["metric"] == "logit_diff" or self.localization["method"] == "attribution":
            settings["definition"] = "issue 38: contrast = the corrupted prompt's answer; joint first-order window"
        return settings

    def corruption(self, case) -> GaussianNoise | TokenReplacement | str:
        """The case's corruption, or why it has none (a ``str`` case without a partner)."""
        if self.localization["corruption"] != "str":
            return GaussianNoise(self.sigma, samples=self.tracing["samples"], seed=self.tracing["seed"])
        partner = self.partners[case.case_id]
        if partner["prompt_ids"] is None:
            return f"not traced under str: {partner['reason']}"
        return TokenReplacement(tuple(int(i) for i in partner["prompt_ids"]), int(partner["partner_case_id"]))

    def contrast(self, case) -> str | None:
        """The logit difference's contrast, the corrupted prompt's answer: the ``str`` partner's
        target_true, or the case's target_new under Gaussian noise; None under ``prob``."""
        if self.localization["metric"] != "logit_diff":
            return None
        if self.localization["corruption"] == "str":
            return self.partners[case.case_id]["partner_target"]
        return case.target_new

    def run(self, model, tok, checkpoint: CaseCheckpoint) -> None:
        """Trace every case not yet in ``checkpoint`` and save its long table there; a case left out (no
        ``str`` partner; under ``logit_diff`` a contrast answer starting with the target's token; clean
        P(o_true) below ``tracing.min_clean_prob``) is logged and saved as an empty table, so a resumed
        job does not retry it."""
        trace_one = attribution_trace if self.localization["method"] == "attribution" else trace
        todo = set(checkpoint.todo(self.case_ids))
        for case in tqdm(self.cases[self.cases.case_id.isin(todo)].itertuples(), total=len(todo),
                         desc=f"trace {self.kind} w{self.window}", unit="case", mininterval=10):
            corruption, contrast = self.corruption(case), self.contrast(case)
            if isinstance(corruption, str):
                log.warning("case_id %d %s", case.case_id, corruption)
                checkpoint.save(case.case_id, pd.DataFrame())
                continue
            if contrast is not None and answer_token(tok, contrast) == answer_token(tok, case.target_true):
                log.warning("case_id %d not traced under logit_diff: its contrast answer %r starts with the token of "
                            "its target %r (the difference would be 0)", case.case_id, contrast, case.target_true)
                checkpoint.save(case.case_id, pd.DataFrame())
                continue
            result = trace_one(model, tok, case.prompt, case.subject, case.target_true, corruption, kind=self.kind,
                               window=self.window, metric=self.localization["metric"], contrast=contrast,
                               all_tokens=self.tracing["all_tokens"], max_rows=self.tracing["max_rows"])
            if self.localization["metric"] == "prob" and result.clean < self.tracing["min_clean_prob"]:
                log.info("case_id %d skipped: clean P(o_true) %.4f < tracing.min_clean_prob %.4f",
                         case.case_id, result.clean, self.tracing["min_clean_prob"])
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
