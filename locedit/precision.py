"""Mixed precision inside an edit: the unembedding (for Gemma 262k × 640, about half of every
optimisation step's arithmetic and most of its memory traffic) runs in bfloat16, while the body,
δ, ΔW, Adam's state, the loss and every probability stay float32.

    >>> with bfloat16_unembedding(model):                                        # doctest: +SKIP
    ...     updates = METHODS["rome"].edit_cases(model, tok, requests, [8], hp, stats, tpl)
    >>> evaluate_cases(model, tok, requests, updates)   # evaluated in float32   # doctest: +SKIP

Only the edit's optimisation carries bfloat16 rounding; evaluation before and after the edit is
float32, so stored probabilities are exact for the edit that was made.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

_LOW = "_locedit_bfloat16_unembedding"


@contextmanager
def bfloat16_unembedding(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """During the block, :func:`unembed` multiplies by a bfloat16 copy of the output embedding."""
    if not enabled or getattr(model, _LOW, None) is not None:
        yield
        return
    head = model.get_output_embeddings()
    model.__dict__[_LOW] = head.weight.detach().to(torch.bfloat16)
    try:
        yield
    finally:
        del model.__dict__[_LOW]


def unembed(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Logits of ``hidden`` [rows, d] (float32 out); in bfloat16 inside :func:`bfloat16_unembedding`."""
    low = model.__dict__.get(_LOW)
    head = model.get_output_embeddings()
    if low is None:
        return head(hidden)
    bias = None if head.bias is None else head.bias.to(low.dtype)
    return torch.nn.functional.linear(hidden.to(low.dtype), low, bias).float()
