"""The editing sweep: which cases, hyperparameters per (method, problem), and the loop an edit job
runs (edit and evaluate every (case, layer) of its shard, many cases per pass); which layers it
edits is planned in :mod:`locedit.plan`.

"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import pandas as pd
from tqdm import tqdm

from locedit.editing.methods import METHODS
from locedit.editing.evaluation import LowerLayers, evaluate, evaluate_cases
from locedit.io import CaseCheckpoint
from locedit.editing.precision import bfloat16_optimisation
from locedit.plan import edited_layers
from locedit.editing.problems import PROBLEMS, request_for

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


def shard(table: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    """Cases ``index, index + count, …`` of ``table`` (round robin, so shards stay balanced)."""
    return table.iloc[index::count]


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


def pre_edit_table(model, tok, cases, problem, noised, sigma, seed=1, essence=None) -> pd.DataFrame:
    """Unedited probabilities of every evaluated prompt, once per (case, problem)."""
    parts = []
    for req in tqdm(list(requests(cases, problem, noised, tok.eos_token, sigma, essence)), desc=f"pre-edit {problem}",
                    unit="case", mininterval=10):
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


def edit_and_evaluate(model, tok, method: str, reqs: list, window: list[int], hparams: dict, stats,
                      templates, seed: int = 1, mixed_precision: bool = False, lower: LowerLayers | None = None
                      ) -> tuple[list[pd.DataFrame], float, float]:
    """Edit ``reqs`` together at ``window`` and evaluate each edited case: (one table per request,
    edit seconds, evaluation seconds). With ``mixed_precision`` the edit's optimisation runs through
    a bfloat16 copy of the model (:mod:`locedit.editing.precision`); evaluation is always float32, and with
    ``lower`` (one per set of ``reqs``, kept across layers) it runs from the lowest edited layer up.
    The one edit → evaluate path
    of the workflow, the tuning tool and the benchmark::

        >>> tables, edit_s, eval_s = edit_and_evaluate(model, tok, "rome", reqs, [8], hp, stats, tpl)  # doctest: +SKIP
    """
    start = time.perf_counter()
    with bfloat16_optimisation(model, enabled=mixed_precision):
        updates = METHODS[method].edit_cases(model, tok, reqs, window, hparams, stats, templates, seed)
    edit_s = time.perf_counter() - start
    tables = evaluate_cases(model, tok, reqs, updates, seed, lower=lower)
    return tables, edit_s, time.perf_counter() - start - edit_s


def run_edit_job(model, tok, method: str, problem: str, cases: pd.DataFrame, noised, sigma: float,
                 layers: list[int], hparams: dict, stats, templates: dict | None, checkpoint: CaseCheckpoint,
                 seed: int = 1, essence: pd.DataFrame | None = None, batch_cases: int = 1,
                 mixed_precision: bool = False) -> None:
    """Edit and evaluate every (case, layer), ``batch_cases`` cases per pass (the weights are never
    written); each finished batch's cases go to ``checkpoint``, and each finished layer of a batch
    in progress too (a killed job resumes at the layer it was editing). ``edit_s`` / ``eval_s`` are the
    batch's times divided by its cases."""
    spec = METHODS[method]
    n_layers = model.config.num_hidden_layers
    todo = set(checkpoint.todo(cases.case_id.tolist()))
    log.info("%s/%s: %d cases x %d layers, %d cases already done, %d (case, layer) pairs from layer checkpoints, "
             "%d cases per batch", method, problem, len(todo), len(layers), len(cases) - len(todo),
             checkpoint.layers_done(todo), batch_cases)
    by_id = {r.case_id: r for r in requests(cases, problem, noised, tok.eos_token, sigma, essence)}
    batches = [b for b in case_batches(cases.case_id.tolist(), batch_cases) if todo.intersection(b)]
    method_templates = templates[spec.templates] if spec.templates else None
    progress = tqdm(total=sum(len(b) for b in batches), desc=f"edit {method}/{problem}", unit="case", mininterval=10)
    for batch in batches:
        reqs = [by_id[c] for c in batch]
        parts: dict[int, list[pd.DataFrame]] = {c: [] for c in batch}
        lower = LowerLayers()  # the batch's unedited evaluation states, shared by its layers
        for central in layers:
            saved = [checkpoint.load_layer(c, central) for c in batch]
            if all(table is not None for table in saved):  # a killed job's finished layer
                for c, table in zip(batch, saved):
                    parts[c].append(table)
                continue
            window = edited_layers(central, spec.window, n_layers)
            tables, edit_s, eval_s = edit_and_evaluate(model, tok, method, reqs, window, hparams, stats,
                                                       method_templates, seed, mixed_precision, lower)
            for req, post in zip(reqs, tables):
                table = post.assign(case_id=req.case_id, layer=central, edited_layers=",".join(map(str, window)),
                                    target=req.target, baseline=req.baseline, edit_s=edit_s / len(reqs),
                                    eval_s=eval_s / len(reqs))
                checkpoint.save_layer(req.case_id, central, table)
                parts[req.case_id].append(table)
        for case_id, tables in parts.items():
            checkpoint.save(case_id, pd.concat(tables, ignore_index=True).assign(method=method, problem=problem))
        progress.update(len(batch))
    progress.close()
