"""Small context managers that read or replace module outputs (the nethook idea, typed).

Modules may return a tensor or a tuple whose first element is the hidden state (attention
modules do); both are handled::

    >>> with capture_outputs(model, ["model.layers.3.mlp"]) as seen:      # doctest: +SKIP
    ...     model(**batch)
    >>> seen["model.layers.3.mlp"].shape                                 # doctest: +SKIP
    torch.Size([11, 9, 640])

    >>> def zero(name, h):  # edit a hidden state in place or return a new one
    ...     h[:, 2] = 0
    ...     return h
    >>> with edit_outputs(model, {"model.layers.3.mlp": zero}):           # doctest: +SKIP
    ...     model(**batch)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

EditFn = Callable[[str, torch.Tensor], torch.Tensor]


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden-state tensor inside a module output (tensor, or tuple whose first item is it)."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced by ``hidden``, keeping the tuple shape."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def edit_outputs(model: nn.Module, edits: dict[str, EditFn]) -> Iterator[None]:
    """Run ``edits[name](name, hidden)`` on the output of each named module during the block."""
    handles = []
    try:
        for name, fn in edits.items():

            def hook(_module, _inputs, output, name=name, fn=fn):
                return with_hidden(output, fn(name, hidden_of(output)))

            handles.append(model.get_submodule(name).register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_outputs(model: nn.Module, names: list[str], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the hidden-state output of each named module (the last call wins)."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, hidden: torch.Tensor) -> torch.Tensor:
        seen[name] = hidden.detach() if detach else hidden
        return hidden

    with edit_outputs(model, {name: keep for name in names}):
        yield seen


@contextmanager
def capture_inputs(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the first positional input of each named module (e.g. the key of an MLP down-projection)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:

            def hook(_module, inputs, name=name):
                seen[name] = inputs[0].detach()

            handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


class _Replay(nn.Module):
    """Stands in for a decoder layer: returns a fixed hidden state (or its input, when none)."""

    def __init__(self, hidden: torch.Tensor | None, returns_tuple: bool):
        super().__init__()
        self.hidden = hidden
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = hidden_states if self.hidden is None else self.hidden
        return (out,) if self.returns_tuple else out


@contextmanager
def start_at_layer(
    layers: nn.ModuleList, start: int, hidden_in: torch.Tensor, returns_tuple: bool = False
) -> Iterator[None]:
    """Skip layers ``0 .. start-1``: layer ``start`` receives ``hidden_in`` as its input.

    The skipped layers are swapped for cheap stand-ins for the duration of the block, so a
    forward pass computes only the layers from ``start`` up. ``hidden_in`` must have the batch
    and sequence shape of the forward pass that follows.
    """
    if start == 0:
        yield
        return
    originals = [layers[i] for i in range(start)]
    try:
        for i in range(start - 1):
            layers[i] = _Replay(None, returns_tuple)
        layers[start - 1] = _Replay(hidden_in, returns_tuple)
        yield
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer


@dataclass
class LayerInput:
    """The hidden state entering layer ``start`` for one batch, to rerun only the layers above."""

    start: int
    hidden: torch.Tensor | None
    returns_tuple: bool


class _Stop(Exception):
    pass


def _stop(_module, _inputs, _output):
    raise _Stop


def forward_until(model: nn.Module, batch: dict[str, torch.Tensor], last: str | None) -> None:
    """``model.base_model(**batch)`` that ends as soon as module ``last`` has run (``None``: the whole
    pass); hooks registered before the call have seen every output up to ``last``, and nothing
    above it is computed. Capturing a layer's states needs no more than this::

        >>> with capture_outputs(model, ["model.layers.3"]) as seen:           # doctest: +SKIP
        ...     forward_until(model, batch, "model.layers.3")                 # layers 4.. never run
    """
    batch = {"use_cache": False, **batch}
    if last is None:
        model.base_model(**batch)
        return
    handle = model.get_submodule(last).register_forward_hook(_stop)  # after the hooks already there
    try:
        model.base_model(**batch)
    except _Stop:
        pass
    finally:
        handle.remove()


@torch.no_grad()
def layer_input(model: nn.Module, layers_path: str, batch: dict[str, torch.Tensor], start: int) -> LayerInput:
    """Run ``batch`` through layers ``0 .. start-1`` only and keep what enters layer ``start``."""
    last = f"{layers_path}.{max(start - 1, 0)}"
    seen: dict[str, Any] = {}

    def keep(_module, _inputs, output):
        seen["out"] = output  # the whole output: whether the layer returns a tuple matters

    handle = model.get_submodule(last).register_forward_hook(keep)
    try:
        forward_until(model, batch, last)
    finally:
        handle.remove()
    returns_tuple = isinstance(seen["out"], tuple)
    return LayerInput(start, hidden_of(seen["out"]).detach() if start > 0 else None, returns_tuple)


@torch.no_grad()
def layer_inputs(model: nn.Module, layers_path: str, batch: dict[str, torch.Tensor]) -> list[LayerInput]:
    """What enters every layer for ``batch``, from one full pass: ``[i]`` reruns layers ``i`` up.

        >>> inputs = layer_inputs(model, "model.layers", batch)                 # doctest: +SKIP
        >>> with run_from(model, "model.layers", inputs[5]):                   # doctest: +SKIP
        ...     model(**batch)            # layers 0-4 replayed from the cache
    """
    layers = model.get_submodule(layers_path)
    outputs: list[Any] = [None] * len(layers)

    def keeper(i: int):
        def keep(_module, _inputs, output):
            outputs[i] = output
        return keep

    handles = [layer.register_forward_hook(keeper(i)) for i, layer in enumerate(layers)]
    try:
        model.base_model(**{"use_cache": False, **batch})
    finally:
        for handle in handles:
            handle.remove()
    returns_tuple = isinstance(outputs[0], tuple)
    return [LayerInput(0, None, returns_tuple)] + [
        LayerInput(i + 1, hidden_of(out).detach(), returns_tuple) for i, out in enumerate(outputs[:-1])]


@contextmanager
def run_from(model: nn.Module, layers_path: str, cached: LayerInput | None) -> Iterator[None]:
    """Forward passes in the block compute only the layers from ``cached.start`` up (all when None)."""
    if cached is None or cached.start == 0:
        yield
        return
    with start_at_layer(model.get_submodule(layers_path), cached.start, cached.hidden, cached.returns_tuple):
        yield
