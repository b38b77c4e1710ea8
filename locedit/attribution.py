"""Attribution patching: causal tracing to first order, from one corrupted forward and backward pass.

Restoring the traced module's clean output ``c`` in place of the corrupted ``s`` at (token ``t``,
layer ``j``) changes the metric ``M`` by about ``∇_s M · (c − s)`` (Nanda 2023; Syed et al. 2023;
Kramár et al. 2024, "AtP*"). One forward pass over the corrupted rows keeping every module's
output, one backward pass from ``M``, and the clean outputs give that estimate for every (token,
layer) at once; a window of layers restores them together, so its estimate is the sum over the
window. The result is a :class:`locedit.tracing.TraceResult` like exact tracing's, so the effects,
regressions and figures read it unchanged::

    >>> r = attribution_trace(model, tok, prompt, subject, target, GaussianNoise(3.09),
    ...                       kind="mlp", window=5)                             # doctest: +SKIP
    >>> r.scores[r.subject_range[1] - 1].argmax()                               # doctest: +SKIP

Where the metric is not close to linear in the restored state (restoring the whole residual
stream, ``hidden``, or saturated probabilities) the estimate can be far off; Zhang & Nanda (2024)
and Kramár et al. (2024) document such failures, and ``benchmarks/tracing.py`` measures the
agreement with exact tracing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .corruption import GaussianNoise, TokenReplacement
from .hooks import capture_outputs, edit_outputs
from .models import architecture_of, num_layers
from .prompts import encode, subject_range, unembed
from .trace_metric import Measure
from .tracing import TraceResult, layer_window, result_of


def attribution_trace(
    model: nn.Module,
    tok,
    prompt: str,
    subject: str,
    target: str,
    corruption: GaussianNoise | TokenReplacement,
    kind: str = "mlp",
    window: int = 10,
    metric: str = "prob",
    all_tokens: bool = False,
    max_rows: int = 512,
) -> TraceResult:
    """First-order estimates of :func:`locedit.tracing.trace`'s scores (``max_rows`` is unused: one pass)."""
    arch = architecture_of(model)
    n_layers = num_layers(model)
    encoded = encode(tok, prompt, target)
    b, e = subject_range(tok, prompt, subject)
    device = next(model.parameters()).device
    corrupted = corruption.corrupt(encoded.ids, (b, e), model.config.hidden_size, device)
    traced = [arch.module_for(kind, i) for i in range(n_layers)]

    with torch.no_grad(), capture_outputs(model, traced) as seen:
        one = torch.tensor([encoded.ids], device=device)
        clean_hidden = model.base_model(input_ids=one, attention_mask=torch.ones_like(one), use_cache=False).last_hidden_state
    clean_states = [seen[name][0] for name in traced]

    noise = corrupted.embedding_edit()

    def differentiable(name: str, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.detach().requires_grad_(True)
        return noise(name, hidden) if noise is not None else hidden

    ids = corrupted.ids
    with torch.enable_grad(), edit_outputs(model, {arch.embedding: differentiable}), \
            capture_outputs(model, traced, detach=False) as states:
        hidden = model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
        first = encoded.target_positions[0]
        measure = Measure.contrasted(metric, encoded, unembed(model, hidden[:, first]).detach())
        values = measure.of_hidden(model, hidden)
        corrupted_states = [states[name] for name in traced]
        grads = torch.autograd.grad(values.sum(), corrupted_states)

    with torch.no_grad():
        # per layer j and token t: mean over rows of ∇M · (clean − corrupted)
        per_layer = torch.stack([((clean_states[j][None].to(g.dtype) - corrupted_states[j]) * g).sum(-1).mean(0)
                                 for j, g in enumerate(grads)]).float().cpu().numpy()  # [L, T]
        clean = measure.of_hidden(model, clean_hidden).item()
    low = float(values.detach().mean())

    n_prompt = len(encoded.prompt_ids)
    first_traced = 0 if all_tokens else b
    scores = np.full((n_prompt, n_layers), low)
    for layer in range(n_layers):
        rows = list(layer_window(layer, window, n_layers))
        scores[first_traced:, layer] = low + per_layer[rows, first_traced:n_prompt].sum(axis=0)
    return result_of(tok, encoded, (b, e), first_traced, kind, window, scores, low, clean, corruption, measure,
                     "attribution")
