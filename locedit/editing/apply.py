"""The one place that touches the model's weights: applies deltas and restores the exact
originals, freezes gradients, and maps updates into a parameter's layout.

    >>> with applied(model, deltas):          # doctest: +SKIP
    ...     evaluate(model)                   # the edited model
    >>> # here every weight is bit-identical to before (restored from a copy, not by subtraction)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from locedit.models import architecture_of

Deltas = dict[str, torch.Tensor]  # parameter name -> delta of the same shape


@contextmanager
def applied(model: nn.Module, deltas: Deltas) -> Iterator[nn.Module]:
    """Add ``deltas`` to the named parameters for the block, then copy the originals back."""
    with preserved(model, list(deltas)):
        with torch.no_grad():
            for name, delta in deltas.items():
                param = model.get_parameter(name)
                param.add_(delta.to(param.device, param.dtype))
        yield model


@contextmanager
def preserved(model: nn.Module, names: list[str]) -> Iterator[None]:
    """Whatever happens to the named parameters inside the block, they come back bit-identical."""
    originals = {name: model.get_parameter(name).detach().clone() for name in names}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, original in originals.items():
                model.get_parameter(name).copy_(original)


def deltas_since(model: nn.Module, originals: dict[str, torch.Tensor]) -> Deltas:
    """Current value minus ``originals`` for each named parameter (float32, detached), subtracted in
    the parameter's precision where that is finer than float32 (a float64 model's small deltas)."""
    deltas = {}
    for name, w0 in originals.items():
        dtype = torch.promote_types(w0.dtype, torch.float32)
        deltas[name] = (model.get_parameter(name).detach().to(dtype) - w0.to(dtype)).float()
    return deltas


@contextmanager
def frozen(model: nn.Module, except_names: tuple[str, ...] = ()) -> Iterator[None]:
    """No weight gradients inside the block (but for ``except_names``); flags restored after."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        for n, p in model.named_parameters():
            p.requires_grad_(n in except_names)
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


def transposed_if_needed(model: nn.Module, update: torch.Tensor) -> torch.Tensor:
    """A [d_out, d_in] update in the layout of the down-projection weight (GPT-2 stores [in, out])."""
    return update.T.contiguous() if architecture_of(model).down_proj_transposed else update
