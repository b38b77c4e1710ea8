"""An edit job: one (method, problem) over a set of cases — which cases, their requests (built
once), the layers, the hyperparameters and what the method reads — and the loop that edits and
scores every (case, layer), many cases per pass. Built once from a run's settings, the one edit →
evaluate path of the workflow (``workflow/scripts/edit.py``), the tuning tool and the benchmarks::

    >>> cases = editable_cases(cases, correctness, "error_injection", max_cases=None)      # doctest: +SKIP
    >>> job = EditJob.for_cases(model, tok, "rome", "error_injection", cases, editing=config["editing"],
    ...                         layers=[0, 8, 17], sigma=0.12, noised=noised, stats=stats,
    ...                         templates=templates)                                        # doctest: +SKIP
    >>> tables, edit_s, eval_s = job.edit(job.requests[:8], job.window(8))                  # doctest: +SKIP
    >>> job.run(CaseCheckpoint("results/r/.partial/edit_rome_error_injection_shard0", settings))  # doctest: +SKIP

Which layers an edit touches is planned in :mod:`locedit.plan`; the prompts of a job are tokenised
once (:func:`locedit.prompts.encode` and :func:`~locedit.prompts.subject_range` remember their
answers), however many passes read them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from torch import nn
from tqdm import tqdm

from locedit.editing.evaluation import LowerLayers, evaluate, evaluate_cases
from locedit.editing.hparams import hparams_for
from locedit.editing.methods import METHODS
from locedit.editing.precision import bfloat16_optimisation
from locedit.editing.problems import PROBLEMS, EditRequest, request_for
from locedit.io import CaseCheckpoint
from locedit.plan import edited_layers

log = logging.getLogger("locedit")


def editable_cases(cases: pd.DataFrame, correctness: pd.DataFrame, problem: str, max_cases: int | None,
                   which: str = "correct") -> pd.DataFrame:
    """Correctly completed cases (all problems), with P(o_true) ≥ 0.02 too for fact erasure; the
    first ``max_cases`` of the correct ones, so every problem draws from the same cases.
    ``which="all"`` (``editing.cases``) skips the correctness filter (a random-weight model in
    benchmarks/scale.py completes nothing), not the erasure floor."""
    if which not in ("correct", "all"):
        raise ValueError(f"editing.cases {which!r} is not correct or all")
    table = cases.merge(correctness[["case_id", "is_correct", "p_true"]], on="case_id", validate="1:1")
    if which == "correct":
        table = table[table.is_correct]
    if max_cases is not None:
        table = table.head(max_cases)
    floor = PROBLEMS[problem].min_p_true
    if floor:
        dropped = table[table.p_true < floor]
        for case_id, p in zip(dropped.case_id, dropped.p_true):
            log.info("case_id %d left out of %s: P(o_true) %.4f < %.2f", case_id, problem, p, floor)
        table = table[table.p_true >= floor]
    return table


def requests(cases: pd.DataFrame, problem: str, noised: pd.DataFrame | None, eos: str, sigma: float,
             essence: pd.DataFrame | None = None):
    """The edit request of ``problem`` for each case; with ``essence`` (case_id, text_idx, text), its texts."""
    by_id = noised.set_index("case_id") if noised is not None else None
    texts = essence.sort_values("text_idx").groupby("case_id").text.agg(tuple) if essence is not None else None
    for case in cases.itertuples():
        row = by_id.loc[case.case_id] if by_id is not None else None
        request = request_for(case, PROBLEMS[problem], row, eos, sigma)
        if texts is not None:
            if case.case_id not in texts.index:
                raise KeyError(f"case_id {case.case_id} has no essence texts: rerun the essence_texts rule")
            request = replace(request, essence=texts[case.case_id])
        yield request


def pre_edit_table(model, tok, reqs: list[EditRequest], problem: str, seed: int = 1) -> pd.DataFrame:
    """Unedited probabilities of every evaluated prompt, once per (case, problem)."""
    parts = []
    for req in tqdm(reqs, desc=f"pre-edit {problem}", unit="case", mininterval=10):
        parts.append(evaluate(model, tok, req, seed).assign(case_id=req.case_id, problem=problem,
                                                           target=req.target, baseline=req.baseline))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def case_batches(case_ids: list[int], size: int) -> list[list[int]]:
    """Consecutive groups of ``size`` cases of a shard: fixed by the shard alone (not by what a
    checkpoint already holds), so a resumed job edits every case in the batch it had before.

        >>> case_batches([13, 37, 253, 307, 565], 2)
        [[13, 37], [253, 307], [565]]
    """
    return [case_ids[i:i + size] for i in range(0, len(case_ids), size)]


@dataclass(frozen=True)
class EditJob:
    """One (method, problem) edit job: its requests, central layers and settings (the module docstring
    shows use). ``templates`` are the method's own context templates; ``stats`` its key statistics
    (:class:`locedit.editing.key_stats.KeyStats`) or None. A variant (another hyperparameter, for the
    tuning tool) is ``dataclasses.replace(job, hparams=...)``."""

    model: nn.Module
    tok: Any
    method: str
    problem: str
    requests: list[EditRequest]
    layers: list[int]
    hparams: dict
    stats: Any = None
    templates: Any = None
    seed: int = 1
    batch_cases: int = 1
    mixed_precision: bool = False

    @classmethod
    def for_cases(cls, model: nn.Module, tok, method: str, problem: str, cases: pd.DataFrame, *, editing: dict,
                  layers: list[int], sigma: float, noised: pd.DataFrame | None, stats=None,
                  templates: dict | None = None, essence: pd.DataFrame | None = None) -> "EditJob":
        """The job a run's settings define: ``editing`` is the config's ``editing`` section (hyperparameters
        by :func:`locedit.editing.hparams.hparams_for`, seed, batch_cases, mixed_precision), ``templates``
        the run's context templates of every method (the job keeps its method's)."""
        spec = METHODS[method]
        if spec.templates and templates is None:
            raise ValueError(f"{method} needs context templates (the run's editing/context_templates.json); none given")
        return cls(model, tok, method, problem, list(requests(cases, problem, noised, tok.eos_token, sigma, essence)),
                   list(layers), hparams_for(editing, method, problem), stats,
                   templates[spec.templates] if spec.templates else None,
                   editing.get("seed", 1), editing.get("batch_cases", 1), editing.get("mixed_precision", False))

    def window(self, central: int) -> list[int]:
        """The layers an edit at ``central`` writes (the method's window, clipped at the edges)."""
        return edited_layers(central, METHODS[self.method].window, self.model.config.num_hidden_layers)

    def edit(self, requests: list[EditRequest], window: list[int], lower: LowerLayers | None = None
             ) -> tuple[list[pd.DataFrame], float, float]:
        """Edit ``requests`` together at ``window`` and evaluate each edited case: (one table per request,
        edit seconds, evaluation seconds). With ``mixed_precision`` the edit's optimisation runs through
        a bfloat16 copy of the model (:mod:`locedit.editing.precision`); evaluation is always float32, and
        with ``lower`` (one per set of requests, kept across layers) it runs from the lowest edited layer up."""
        start = time.perf_counter()
        with bfloat16_optimisation(self.model, enabled=self.mixed_precision):
            updates = METHODS[self.method].edit_cases(self.model, self.tok, requests, window, self.hparams, self.stats,
                                                      self.templates, self.seed)
        edit_s = time.perf_counter() - start
        tables = evaluate_cases(self.model, self.tok, requests, updates, self.seed, lower=lower)
        return tables, edit_s, time.perf_counter() - start - edit_s

    def run(self, checkpoint: CaseCheckpoint) -> None:
        """Edit and evaluate every (case, layer), ``batch_cases`` cases per pass (the weights are never
        written); each finished batch's cases go to ``checkpoint``, and each finished layer of a batch
        in progress too (a killed job resumes at the layer it was editing). ``edit_s`` / ``eval_s`` are the
        batch's times divided by its cases."""
        case_ids = [r.case_id for r in self.requests]
        todo = set(checkpoint.todo(case_ids))
        log.info("%s/%s: %d cases x %d layers, %d cases already done, %d (case, layer) pairs from layer checkpoints, "
                 "%d cases per batch", self.method, self.problem, len(todo), len(self.layers), len(case_ids) - len(todo),
                 checkpoint.layers_done(todo), self.batch_cases)
        by_id = {r.case_id: r for r in self.requests}
        batches = [b for b in case_batches(case_ids, self.batch_cases) if todo.intersection(b)]
        progress = tqdm(total=sum(len(b) for b in batches), desc=f"edit {self.method}/{self.problem}", unit="case",
                        mininterval=10)
        for batch in batches:
            reqs = [by_id[c] for c in batch]
            parts: dict[int, list[pd.DataFrame]] = {c: [] for c in batch}
            lower = LowerLayers()  # the batch's unedited evaluation states, shared by its layers
            for central in self.layers:
                saved = [checkpoint.load_layer(c, central) for c in batch]
                if all(table is not None for table in saved):  # a killed job's finished layer
                    for c, table in zip(batch, saved):
                        parts[c].append(table)
                    continue
                window = self.window(central)
                tables, edit_s, eval_s = self.edit(reqs, window, lower)
                for req, post in zip(reqs, tables):
                    table = post.assign(case_id=req.case_id, layer=central, edited_layers=",".join(map(str, window)),
                                        target=req.target, baseline=req.baseline, edit_s=edit_s / len(reqs),
                                        eval_s=eval_s / len(reqs))
                    checkpoint.save_layer(req.case_id, central, table)
                    parts[req.case_id].append(table)
            for case_id, tables in parts.items():
                checkpoint.save(case_id, pd.concat(tables, ignore_index=True).assign(method=self.method,
                                                                                     problem=self.problem))
            progress.update(len(batch))
        progress.close()
