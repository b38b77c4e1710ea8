"""Attribution patching: causal tracing to first order, a gradient in place of each restoration.

Restoring the traced module's clean outputs ``c_j`` in place of the corrupted ``s_j`` at token
``t`` for the layers ``j`` of a window ``W`` changes the metric ``M`` by about

    Σ_{j ∈ W}  ∂M/∂s_j |_{s_k fixed, k ∈ W \\ {j}}  · (c_j − s_j)

(Nanda 2023; Syed et al. 2023; Kramár et al. 2024, "AtP*"): the first-order term of restoring the
window *jointly*. Each gradient holds the window's other restored sites fixed (a stop-gradient at
them), because a joint restoration overwrites them whatever happens below: a path from layer j
through a later layer of the same window does not reach the metric. (Summing each layer's total
derivative instead counts such paths once per layer they cross, so a wider window inflates the
estimate; that was this module's estimate before issue 38.) With a window of one layer the two
agree. The result is a :class:`locedit.tracing.trace.TraceResult` like exact tracing's, so the effects,
regressions and figures read it unchanged::

    >>> r = attribution_trace(model, tok, prompt, subject, target, GaussianNoise(3.09),
    ...                       kind="mlp", window=5)                             # doctest: +SKIP
    >>> r.scores[r.subject_range[1] - 1].argmax()                               # doctest: +SKIP

How: every (token, layer) restoration of exact tracing (:func:`locedit.tracing.trace.restore`, the same
passes: from the window's first layer and the restored token on) runs with the window's sites
overwritten by leaf tensors equal to their corrupted outputs; the pass's values are the corrupted
run's, and one backward pass gives each site's gradient with the others held fixed. That costs a
backward pass on top of exact tracing's forward passes (``benchmarks/attribution.py`` measures
time and agreement). Where the metric is far from linear in the restored states (saturated
probabilities; the residual stream, ``hidden``) the estimate can be far off: Zhang & Nanda (2024)
and Kramár et al. (2024) document such failures.
"""

from __future__ import annotations

import torch
from torch import nn

from locedit.tracing.corruption import GaussianNoise, TokenReplacement
from locedit.tracing.trace import Runs, TraceResult, restore, trace


def attribution_trace(model: nn.Module, tok, prompt: str, subject: str, target: str,
                      corruption: GaussianNoise | TokenReplacement, **options) -> TraceResult:
    """First-order estimates of :func:`locedit.tracing.trace.trace`'s scores (same arguments):
    ``scores[t, l]`` = low + the window's joint first-order term (module docstring)."""
    return trace(model, tok, prompt, subject, target, corruption, estimate=first_order_terms, **options)


def first_order_terms(model, arch, runs: Runs, configs, start, kind, window, from_token, prefix) -> torch.Tensor:
    """Per config, the mean over its corrupted rows of Σ_j ∂M/∂s_j · (c_j − s_j), every site of
    the config's window a leaf (so held fixed for the others' gradients)."""
    sites: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # module j → rows, leaf, clean

    def leaf(j: int, rows: torch.Tensor, corrupted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        sites[j] = (rows, corrupted.detach().requires_grad_(True), clean)
        return sites[j][1]

    with torch.enable_grad():
        read = restore(model, arch, runs, configs, start, kind, window, from_token, prefix, replace=leaf)
        values = runs.measure.of_read(model, read)
        order = sorted(sites)
        grads = torch.autograd.grad(values.sum(), [sites[j][1] for j in order], allow_unused=True)
    terms = torch.zeros(len(values), dtype=torch.float32, device=values.device)
    for j, grad in zip(order, grads):
        if grad is None:  # the site does not reach the metric
            continue
        rows, corrupted, clean = sites[j]
        terms.index_add_(0, rows, ((clean.float() - corrupted.detach().float()) * grad.float()).sum(-1))
    return terms.view(len(configs), runs.corrupted.rows).mean(dim=1)
