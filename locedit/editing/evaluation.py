"""Raw probabilities of an edit request's prompts: rewrite, paraphrases and neighborhood.

For every prompt, P(target) and P(baseline) over the whole target are recorded, raw, so any
score can be derived downstream. Under fact forcing every prompt that contains the subject gets
subject noise at its own subject tokens, ``SubjectNoise(σ, seed)`` with every row a case of its own
(:mod:`locedit.noise`): each row draws from ``RandomState(seed)`` as if alone, so a prompt sees the
same noise before and after an edit, whatever shares its batch::

    >>> evaluate(model, tok, request).columns.tolist()                 # doctest: +SKIP
    ['prompt_type', 'prompt_idx', 'prompt', 'p_target', 'p_baseline', 'ppl']

Evaluating the edits of one set of requests at many layers (a job's loop), the layers below each
edit see unedited inputs: :class:`LowerLayers` keeps what enters every layer of each evaluation
pass the first time and later passes compute only the layers from the lowest edited one up::

    >>> lower = LowerLayers()
    >>> for layer in (0, 8, 17):                                        # doctest: +SKIP
    ...     evaluate_cases(model, tok, requests, METHODS["ft1"].edit_cases(...), lower=lower)

A request with essence texts adds one row per text (``prompt_type`` ``essence``) whose ``ppl``
is the text's perplexity (:mod:`locedit.editing.essence`); ``ppl`` is NaN on the other rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from locedit.editing.case_updates import CaseUpdates, rows_updated, select_cases
from locedit.editing.essence import perplexities
from locedit.editing.problems import EditRequest
from locedit.hooks import LayerInput, layer_inputs, run_from
from locedit.models import architecture_of
from locedit.noise import SubjectNoise, noised_subjects
from locedit.prompts import Encoded, encode, logits_at, pad_batch, subject_range, subject_span


def evaluation_prompts(request: EditRequest) -> list[tuple[str, int, str]]:
    rows = [("rewrite", 0, request.prompt)]
    rows += [("paraphrase", i, p) for i, p in enumerate(request.paraphrases)]
    rows += [("neighborhood", i, p) for i, p in enumerate(request.neighborhood)]
    return rows


def evaluate(model: nn.Module, tok, request: EditRequest, seed: int = 1) -> pd.DataFrame:
    """One row per evaluated prompt: P(target), P(baseline) in one batched pass."""
    return evaluate_cases(model, tok, [request], None, seed)[0]


@torch.no_grad()
def evaluate_cases(model: nn.Module, tok, requests: list[EditRequest], updates: CaseUpdates | None = None,
                   seed: int = 1, max_rows: int = 256, lower: "LowerLayers | None" = None) -> list[pd.DataFrame]:
    """:func:`evaluate` for each request, many requests per pass; with ``updates`` (per-case, from
    a method's ``edit_cases``) every row sees its own case's edit, so the weights are never written.
    With ``lower``, the unedited layers below the edit come from (or go to) that cache.

        >>> tables = evaluate_cases(model, tok, requests, METHODS["rome"].edit_cases(...))  # doctest: +SKIP
    """
    if len({r.sigma for r in requests}) > 1:
        raise ValueError("requests evaluated together share one noise level (one problem)")
    device = next(model.parameters()).device
    arch = architecture_of(model)
    start = _lowest_layer(arch.layers, updates or {})
    tables: list[pd.DataFrame] = []
    for index, chunk in enumerate(_chunks(requests, max_rows)):
        first = len(tables)
        prompts = [evaluation_prompts(r) for r in chunk]
        readouts = _Readouts()
        for c, (req, rows) in enumerate(zip(chunk, prompts)):
            for _, _, text in rows:
                span = subject_range(tok, text, req.subject) if subject_span(text, req.subject) else None
                readouts.add_prompt(encode(tok, text, req.target), encode(tok, text, req.baseline), span, c)
        batch = pad_batch([e.ids for e in readouts.encoded], tok.pad_token_id, device)
        sigma = chunk[0].sigma
        noise = SubjectNoise(sigma, seed) if sigma is not None else None
        rows_alone = range(len(readouts.ranges))  # every row a case of its own: the same draw for a prompt's rows
        chunk_updates = select_cases(updates or {}, list(range(first, first + len(chunk))))
        cached = None
        if lower is not None and start > 0:
            with noised_subjects(model, readouts.ranges, noise, rows_alone):
                cached = lower.layer_input(index, batch, start, lambda: layer_inputs(model, arch.layers, batch))
        row_case = torch.tensor(readouts.row_case, device=device)
        with run_from(model, arch.layers, cached), noised_subjects(model, readouts.ranges, noise, rows_alone), \
                rows_updated(model, chunk_updates, row_case):
            probs = readouts.log_probs(model, batch).exp().view(-1, 2).cpu().numpy()
        offset = 0
        for c, (req, rows) in enumerate(zip(chunk, prompts)):
            table = _table(rows, probs[offset:offset + len(rows)])
            offset += len(rows)
            if req.essence:
                with rows_updated(model, select_cases(chunk_updates, [c]),
                                  torch.zeros(1, dtype=torch.long, device=device)):
                    table = pd.concat([table, _essence_table(model, tok, req, seed)], ignore_index=True)
            tables.append(table)
    return tables


class LowerLayers:
    """What enters each layer of each evaluation pass of one set of requests, unedited: computed
    once, then every edit of those requests is evaluated from its lowest edited layer up (the
    upper layers get the same inputs as a full pass, so the probabilities are the full pass's).
    A pass whose tokens differ from the cached one's replaces it."""

    def __init__(self) -> None:
        self._passes: dict[int, tuple[torch.Tensor, list[LayerInput]]] = {}

    def layer_input(self, index: int, batch: dict, start: int, compute) -> LayerInput:
        ids = batch["input_ids"]
        kept = self._passes.get(index)
        if kept is None or not torch.equal(kept[0], ids):
            kept = self._passes[index] = (ids, compute())
        return kept[1][start]


def _lowest_layer(layers_path: str, updates: CaseUpdates) -> int:
    """The lowest layer any update touches (0 without updates): ``model.layers.5.mlp.down_proj`` → 5."""
    prefix = layers_path + "."
    return min((int(name[len(prefix):].split(".")[0]) for name in updates), default=0)


class _Readouts:
    """Rows and the (row, position, token) log-probs that give each prompt's P(target) and
    P(baseline). A prompt takes one row, prompt + the longer of the two, when the other is a single
    token (its probability is read at the last prompt position of the same row), else two rows."""

    def __init__(self) -> None:
        self.encoded: list[Encoded] = []
        self.ranges: list[tuple[int, int] | None] = []
        self.row_case: list[int] = []
        self.reads: list[tuple[int, int, int, int]] = []  # row, position, token, slot
        self.slots = 0

    def add_prompt(self, target: Encoded, baseline: Encoded, span, case: int) -> None:
        pair = [(target, self.slots), (baseline, self.slots + 1)]
        self.slots += 2
        if len(baseline.target_ids) == 1 or len(target.target_ids) == 1:
            (long, long_slot), (short, short_slot) = sorted(pair, key=lambda p: -len(p[0].target_ids))
            row = self._row(long, span, case)
            self.reads.append((row, len(short.prompt_ids) - 1, short.target_ids[0], short_slot))
            pair = [(long, long_slot)]
        for enc, slot in pair:
            row = self._row(enc, span, case) if len(pair) == 2 else row
            self.reads += [(row, pos, t, slot) for pos, t in zip(enc.target_positions, enc.target_ids)]

    def _row(self, enc: Encoded, span, case: int) -> int:
        self.encoded.append(enc)
        self.ranges.append(span)
        self.row_case.append(case)
        return len(self.encoded) - 1

    def log_probs(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """log P of every slot, one pass (each (row, position) unembedded once)."""
        device = batch["input_ids"].device
        sites = sorted({(r, p) for r, p, _, _ in self.reads})
        index = {site: i for i, site in enumerate(sites)}
        logits = logits_at(model, batch, torch.tensor([r for r, _ in sites], device=device),
                           torch.tensor([p for _, p in sites], device=device))
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp[torch.tensor([index[r, p] for r, p, _, _ in self.reads], device=device),
                      torch.tensor([t for _, _, t, _ in self.reads], device=device)]
        slots = torch.tensor([s for _, _, _, s in self.reads], device=device)
        return torch.zeros(self.slots, device=device).index_add_(0, slots, picked)


def _chunks(requests: list[EditRequest], max_rows: int):
    """Consecutive requests whose evaluation rows (two per prompt) fit in ``max_rows`` (at least one)."""
    chunk, rows = [], 0
    for req in requests:
        n = 2 * len(evaluation_prompts(req))
        if chunk and rows + n > max_rows:
            yield chunk
            chunk, rows = [], 0
        chunk.append(req)
        rows += n
    if chunk:
        yield chunk


def _table(prompts: list[tuple[str, int, str]], probs: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt_type": [t for t, _, _ in prompts],
            "prompt_idx": [i for _, i, _ in prompts],
            "prompt": [p for _, _, p in prompts],
            "p_target": probs[:, 0],
            "p_baseline": probs[:, 1],
            "ppl": np.nan,
        }
    )


def _essence_table(model: nn.Module, tok, request: EditRequest, seed: int) -> pd.DataFrame:
    ppl = perplexities(model, tok, list(request.essence), request.subject, request.sigma, seed)
    return pd.DataFrame({"prompt_type": "essence", "prompt_idx": range(len(ppl)), "prompt": list(request.essence),
                         "p_target": np.nan, "p_baseline": np.nan, "ppl": ppl})
