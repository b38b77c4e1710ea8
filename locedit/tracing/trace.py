"""Causal tracing (Meng et al. 2022, as used by Hase et al. 2023), batched and prefix-cached.

The corrupted run (``corruption``: Gaussian noise on the subject embeddings, the paper, or
symmetric token replacement, :mod:`locedit.tracing.corruption`) is measured (``metric``: P(target), the
paper, or the logit difference against ``contrast``, the corrupted prompt's answer,
:mod:`locedit.tracing.metric`); then, for every token from the
subject start and every layer, the clean output of the traced module (``hidden`` = the decoder
layer, ``mlp`` or ``attn``) is restored at that token in a window of layers around the layer::

    >>> r = trace(model, tok, "Michael Jordan plays the sport of", "Michael Jordan", "basketball",
    ...           GaussianNoise(sigma=3.09, samples=10, seed=1), kind="mlp", window=10)   # doctest: +SKIP
    >>> r.scores.shape, r.low, r.clean                                                   # doctest: +SKIP
    ((8, 18), 0.045, 0.761)

Speed, all exact: the corrupted run is computed once; a restoration whose window starts at layer
``a`` reuses the corrupted hidden state entering layer ``a`` and runs only layers ``a..L-1``; a
restoration at token ``t`` runs only positions ``t..T-1``, attending to the corrupted run's
keys and values of the positions before (they are unchanged: attention is causal); and all
restorations sharing ``(t, a)`` go through one forward pass, ``rows`` of the corruption each.
The plain algorithm (one full forward pass per (token, layer), as in the paper's code) is the
oracle in ``tests/test_tracing.py``.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from locedit.hooks import capture_outputs, edit_outputs, start_at_layer
from locedit.models import architecture_of, num_layers
from locedit.plan import layer_window
from locedit.prompts import Encoded, encode, subject_range, token_strings
from locedit.tracing.corruption import Corrupted, GaussianNoise, TokenReplacement
from locedit.tracing.metric import Measure

KINDS = ("hidden", "mlp", "attn")


@dataclass
class TraceResult:
    """Restored metric values (P(target) or a logit difference) of one (prompt, kind, window).

    ``scores[t, l]`` is the mean over corrupted rows of the metric with the traced module's clean
    output restored at token ``t`` in the window around layer ``l``. Tokens before
    ``first_traced`` are not traced: restoring there changes nothing, so they hold ``low``.
    """

    scores: np.ndarray
    low: float
    clean: float
    tokens: list[str]
    subject_range: tuple[int, int]
    first_traced: int
    kind: str
    window: int
    target_tokens: list[str] = field(default_factory=list)
    metric: str = "prob"
    corruption: str = "gaussian"
    contrast_target: str | None = None
    contrast_token: str | None = None
    partner_case_id: int | None = None
    method: str = "exact"

    @property
    def high(self) -> float:
        """max(clean, max restored), the reference code's ``orig_pred_prob``."""
        return float(max(self.clean, self.scores.max()))

    def to_frame(self, case_id: int, **columns) -> pd.DataFrame:
        """Long table, one row per (token, layer); extra ``columns`` are added as constants."""
        n_tokens, n_layers = self.scores.shape
        frame = pd.DataFrame(
            {
                "case_id": case_id,
                "token_idx": np.repeat(np.arange(n_tokens), n_layers),
                "token": np.repeat(self.tokens, n_layers),
                "layer": np.tile(np.arange(n_layers), n_tokens),
                "restored": self.scores.reshape(-1),
                "low": self.low,
                "clean": self.clean,
                "high": self.high,
                "subject_start": self.subject_range[0],
                "subject_end": self.subject_range[1],
                "first_traced": self.first_traced,
                "kind": self.kind,
                "window": self.window,
                "method": self.method,
                "metric": self.metric,
                "corruption": self.corruption,
                "contrast_target": self.contrast_target,
                "contrast_token": self.contrast_token,
                "partner_case_id": self.partner_case_id,
            }
        )
        for key, value in columns.items():
            frame[key] = value
        return frame


@dataclass
class Runs:
    """What the clean and the corrupted runs leave behind for the restorations."""

    encoded: Encoded
    corrupted: Corrupted
    measure: Measure
    clean_states: list[torch.Tensor]  # per layer: traced module's clean output, [T, d]
    corrupted_layer_out: list[torch.Tensor]  # per layer: decoder layer output of the corrupted rows
    clean: float
    low: float
    layer_returns_tuple: bool


@torch.no_grad()
def trace(
    model: nn.Module,
    tok,
    prompt: str,
    subject: str,
    target: str,
    corruption: GaussianNoise | TokenReplacement,
    kind: str = "mlp",
    window: int = 10,
    metric: str = "prob",
    contrast: str | None = None,
    all_tokens: bool = False,
    max_rows: int = 512,
    reuse_prefix: bool = True,
    estimate: Callable | None = None,
) -> TraceResult:
    """Trace one prompt (subject filled in); see the module docstring. ``contrast`` (``logit_diff``
    only): the corrupted prompt's answer, whose first token's logit is subtracted from the
    target's (the partner's ``target_true`` under token replacement, ``target_new`` under noise).

    ``reuse_prefix`` (default): each restoration at token ``t`` computes positions ``t`` onward only,
    on the corrupted run's keys and values of the positions before (exact: causal attention
    makes them equal); False runs every position, as before 2026-11 (kept for the benchmark).

    ``estimate`` (attribution patching, :func:`locedit.tracing.attribution.attribution_trace`): a
    function of one pass ``(model, arch, runs, configs, start, kind, window, from_token, prefix)``
    giving each config's change of the metric to first order, in place of running its restorations.
    """
    arch = architecture_of(model)
    n_layers = num_layers(model)
    encoded = encode(tok, prompt, target)
    b, e = subject_range(tok, prompt, subject)
    measure = Measure.of(tok, metric, encoded, contrast)
    runs = clean_and_corrupted(model, arch, encoded, (b, e), kind, corruption, measure)

    n_prompt = len(encoded.prompt_ids)
    first = 0 if all_tokens else b
    scores = np.full((n_prompt, n_layers), runs.low)
    passes = restoration_passes(model, arch, runs, first, window, max_rows, reuse_prefix)
    if estimate is not None:
        for configs, start, from_token, prefix in passes:
            terms = estimate(model, arch, runs, configs, start, kind, window, from_token, prefix)
            for (t, layer), term in zip(configs, terms.tolist()):
                scores[t, layer] = runs.low + term
        return result_of(tok, encoded, (b, e), first, kind, window, scores, runs.low, runs.clean, corruption,
                         runs.measure, contrast, "attribution")
    done: list[tuple[int, int]] = []
    reads: list[torch.Tensor] = []
    for configs, start, from_token, prefix in passes:
        reads.append(restore(model, arch, runs, configs, start, kind, window, from_token, prefix))
        done.extend(configs)
    # the unembedding (Gemma: 262k × 640) once per max_rows rows, not once per pass
    read = torch.cat(reads)
    values = torch.cat([runs.measure.of_read(model, read[i : i + max_rows]) for i in range(0, len(read), max_rows)])
    for (t, layer), v in zip(done, values.view(len(done), runs.corrupted.rows).mean(dim=1).tolist()):
        scores[t, layer] = v
    return result_of(tok, encoded, (b, e), first, kind, window, scores, runs.low, runs.clean, corruption,
                     runs.measure, contrast, "exact")


def restoration_passes(model, arch, runs: Runs, first: int, window: int, max_rows: int, reuse_prefix: bool = True):
    """The forward passes of a trace: ``(configs, start, from_token, prefix)`` per pass, where the
    (token, layer) ``configs`` (at most ``max_rows`` corrupted rows in all) share the window's first
    layer ``start`` and, with ``reuse_prefix``, the restored token ``from_token``; ``prefix`` is
    the corrupted key/value cache of the positions before it (None from position 0)."""
    n_layers = len(runs.corrupted_layer_out)
    passes: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for t in range(first, len(runs.encoded.prompt_ids)):
        for layer in range(n_layers):
            passes[(t if reuse_prefix else 0, layer_window(layer, window, n_layers).start)].append((t, layer))
    per_pass = max(1, max_rows // runs.corrupted.rows)
    prefix, prefix_length = None, 0  # the corrupted cache of positions < from_token (passes sorted by token)
    for (from_token, start), configs in sorted(passes.items()):
        if from_token != prefix_length:
            prefix, prefix_length = _corrupted_prefix(model, arch, runs.corrupted, from_token), from_token
        for i in range(0, len(configs), per_pass):
            yield configs[i : i + per_pass], start, from_token, prefix


def result_of(tok, encoded: Encoded, subject: tuple[int, int], first: int, kind: str, window: int,
              scores: np.ndarray, low: float, clean: float, corruption, measure: Measure, contrast: str | None,
              method: str) -> TraceResult:
    """The :class:`TraceResult` of a traced prompt, exact or attribution (:mod:`locedit.tracing.attribution`)."""
    return TraceResult(
        scores=scores,
        low=low,
        clean=clean,
        tokens=token_strings(tok, encoded.prompt_ids),
        subject_range=subject,
        first_traced=first,
        kind=kind,
        window=window,
        target_tokens=token_strings(tok, encoded.target_ids),
        metric=measure.metric,
        corruption=corruption.name,
        contrast_target=contrast if measure.contrast_id is not None else None,
        contrast_token=token_strings(tok, [measure.contrast_id])[0] if measure.contrast_id is not None else None,
        partner_case_id=getattr(corruption, "partner_case_id", None),
        method=method,
    )


@torch.no_grad()
def clean_and_corrupted(model, arch, encoded: Encoded, subject: tuple[int, int], kind, corruption,
                        measure: Measure) -> Runs:
    """The clean run (its traced module outputs and metric) and the corrupted run (its decoder
    layer outputs and mean metric, ``low``) that every restoration starts from."""
    n_layers = num_layers(model)
    device = next(model.parameters()).device
    corrupted = corruption.corrupt(encoded.ids, subject, model.config.hidden_size, device)
    layers = [arch.layer(i) for i in range(n_layers)]
    returns_tuple = []
    handle = model.get_submodule(layers[0]).register_forward_hook(
        lambda _m, _i, out: returns_tuple.append(isinstance(out, tuple))
    )
    ids = corrupted.ids
    edit = corrupted.embedding_edit()
    try:
        with edit_outputs(model, {arch.embedding: edit} if edit else {}), capture_outputs(model, layers) as seen:
            hidden = model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
    finally:
        handle.remove()
    low = measure.of_hidden(model, hidden).mean().item()

    one = torch.tensor([encoded.ids], device=device)
    traced = [arch.module_for(kind, i) for i in range(n_layers)]
    with capture_outputs(model, traced) as clean_seen:
        clean_hidden = model.base_model(input_ids=one, attention_mask=torch.ones_like(one), use_cache=False).last_hidden_state
    clean = measure.of_hidden(model, clean_hidden).item()
    return Runs(encoded, corrupted, measure, [clean_seen[name][0] for name in traced], [seen[n] for n in layers],
                 clean, low, returns_tuple[0])


@torch.no_grad()
def _corrupted_prefix(model, arch, corrupted: Corrupted, length: int):
    """The corrupted rows' key/value cache of positions ``[0, length)`` (one pass over the prefix)."""
    ids = corrupted.ids[:, :length]
    edit = corrupted.embedding_edit(0, length)
    with edit_outputs(model, {arch.embedding: edit} if edit else {}):
        out = model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    return out.cache


def restore(model, arch, runs: Runs, configs, start, kind, window, from_token=0, prefix=None,
            replace=None) -> torch.Tensor:
    """One forward pass restoring each (token, layer) config in ``configs`` on its own corrupted rows,
    from layer ``start`` up and, with a ``prefix`` cache, from position ``from_token`` on; returns
    the final hidden states the metric reads (``Measure.read``), configs × rows.

    At each window site (module ``j``, the config's token) the corrupted output is overwritten by
    ``replace(j, rows, corrupted, clean)``; by default the clean output (activation patching).
    :mod:`locedit.tracing.attribution` overwrites it with a leaf tensor equal to the corrupted output, so
    the sites are held fixed for each other's gradients. A tensor that is part of an autograd
    graph is copied before it is overwritten, never changed in place."""
    n_layers = len(runs.corrupted_layer_out)
    samples = runs.corrupted.rows
    copies = len(configs)
    n_rows = copies * samples
    device = runs.corrupted.ids.device
    ids = runs.corrupted.input_ids(copies, from_token)
    batch = {"input_ids": ids, "attention_mask": torch.ones(n_rows, runs.corrupted.ids.shape[1], dtype=torch.long,
                                                            device=device), "use_cache": prefix is not None}
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_select_indices(torch.arange(samples, device=device).repeat(copies))
        positions = torch.arange(from_token, runs.corrupted.ids.shape[1], device=device)
        batch.update(cache=cache, position_ids=positions.expand(n_rows, -1))

    rows_at: dict[int, list[int]] = defaultdict(list)
    tokens_at: dict[int, list[int]] = defaultdict(list)
    for c, (t, layer) in enumerate(configs):
        for j in layer_window(layer, window, n_layers):
            rows_at[j].extend(range(c * samples, (c + 1) * samples))
            tokens_at[j].extend([t] * samples)

    def restorer(j: int):
        rows = torch.tensor(rows_at[j], device=device)
        toks = torch.tensor(tokens_at[j], device=device)
        clean = runs.clean_states[j][toks]

        def overwrite(_name: str, hidden: torch.Tensor) -> torch.Tensor:
            if hidden.requires_grad:
                hidden = hidden.clone()
            value = clean if replace is None else replace(j, rows, hidden[rows, toks - from_token], clean)
            hidden[rows, toks - from_token] = value.to(hidden.dtype)
            return hidden

        return overwrite

    edits = {arch.module_for(kind, j): restorer(j) for j in rows_at}
    hidden_in = None
    if start == 0:
        if (noise := runs.corrupted.embedding_edit(from_token)) is not None:
            edits[arch.embedding] = noise
    else:
        hidden_in = runs.corrupted_layer_out[start - 1][:, from_token:].repeat(copies, 1, 1)
    layers = model.get_submodule(arch.layers)
    with start_at_layer(layers, start, hidden_in, runs.layer_returns_tuple), edit_outputs(model, edits):
        hidden = model.base_model(**batch).last_hidden_state
    return runs.measure.read(hidden, offset=from_token)
