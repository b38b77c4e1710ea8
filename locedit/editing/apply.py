"""The one place that applies weight deltas and restores the exact original weights.

    >>> with applied(model, deltas):          # doctest: +SKIP
    ...     evaluate(model)                   # the edited model
    >>> # here every weight is bit-identical to before (restored from a copy, not by subtraction)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

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
    """Current value minus ``originals`` for each named parameter (float32, detached)."""
    return {name: (model.get_parameter(name).detach().float() - w0.float()) for name, w0 in originals.items()}
