"""Mixed precision inside an edit: the edit's optimisation (ROME's v*, MEMIT's z, FT's ΔW) runs
its forward and backward passes through a bfloat16 copy of the model, while δ, ΔW, Adam's state
and the loss stay float32; the keys, the unedited outputs an update is anchored to, and every
evaluated probability come from the float32 model.

    >>> with bfloat16_optimisation(model):                                       # doctest: +SKIP
    ...     updates = METHODS["rome"].edit_cases(model, tok, requests, [8], hp, stats, tpl)
    >>> evaluate_cases(model, tok, requests, updates)   # evaluated in float32   # doctest: +SKIP

Inside the block, :func:`optimisation_model` returns the bfloat16 copy (made once per model and
kept for the next block: a job edits many batches); outside it, the model itself. Only the edit
carries bfloat16 rounding: the stored probabilities are exact for the edit that was made.

Why: on a CPU with AMX / avx512_bf16 the body's matmuls run about 4× faster in bfloat16 (measured
454 vs 103 GFLOP/s on this project's machine, docs/performance.md); on CUDA, tensor cores.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

_TWIN = "_locedit_bfloat16_twin"
_ACTIVE = "_locedit_bfloat16_active"


@contextmanager
def bfloat16_optimisation(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """During the block, :func:`optimisation_model` of ``model`` is its bfloat16 copy."""
    if not enabled or model.__dict__.get(_ACTIVE):
        yield
        return
    if _TWIN not in model.__dict__:
        model.__dict__[_TWIN] = bfloat16_copy(model)
    model.__dict__[_ACTIVE] = True
    try:
        yield
    finally:
        model.__dict__[_ACTIVE] = False


def optimisation_model(model: nn.Module) -> nn.Module:
    """The model an edit optimises through: the bfloat16 copy inside :func:`bfloat16_optimisation`."""
    return model.__dict__[_TWIN] if model.__dict__.get(_ACTIVE) else model


def bfloat16_copy(model: nn.Module) -> nn.Module:
    """A frozen bfloat16 copy on the same device (tied weights stay tied).

    Made parameter by parameter: each weight is cast straight into its bfloat16 copy, so the
    float32 weights are never copied (a deep copy cast afterwards holds a second float32 model for
    a moment: 24 GB more on GPT-J). Buffers (rotary frequencies, …) are copied, then cast as
    ``Module.to`` casts them; the twin equals ``copy.deepcopy(model).to(torch.bfloat16)`` bit for bit.
    """
    memo = {id(p): nn.Parameter(p.detach().to(torch.bfloat16) if p.is_floating_point() else p.detach().clone(),
                                requires_grad=False)
            for p in model.parameters()}
    twin = copy.deepcopy(model, memo).to(torch.bfloat16)
    twin.requires_grad_(False)
    twin.eval()
    return twin
