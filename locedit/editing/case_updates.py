"""Per-case weight updates applied row by row as hooks, so many edits share one forward pass and
the model's weights are never written.

Each update lives in the down-projection's mathematical layout ([d_out, d_in], whatever the
module stores) with a leading case axis; a forward hook adds, for every row, its own case's
correction to the module's output: ``(x·u_c) right_c`` for a rank-one update (ROME, MEMIT) and
``x ΔW_cᵀ + Δb_c`` for a dense one (FT)::

    >>> updates = {"model.layers.5.mlp.down_proj": RankOne(u, right)}           # doctest: +SKIP
    >>> with rows_updated(model, updates, row_case):                            # doctest: +SKIP
    ...     model(**batch)               # row r sees the edit of case row_case[r]
    >>> case_deltas(model, updates, 0)   # case 0's deltas in parameter layout   # doctest: +SKIP

:func:`case_deltas` gives the plain path's :data:`~locedit.editing.apply.Deltas` of one case, so a
batched edit can be compared with (or applied like) a sequential one.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from locedit.editing.apply import Deltas, transposed_if_needed


@dataclass
class RankOne:
    """ΔW_c = right_c ⊗ u_c for each case c: ``u`` [cases, d_in], ``right`` [cases, d_out]."""

    u: torch.Tensor
    right: torch.Tensor

    def correction(self, x: torch.Tensor, row_case: torch.Tensor) -> torch.Tensor:
        coef = torch.einsum("rsi,ri->rs", x.float(), self.u[row_case].float())
        return coef[..., None] * self.right[row_case].float()[:, None, :]

    @property
    def device(self) -> torch.device:
        return self.u.device

    def select(self, cases: torch.Tensor) -> "RankOne":
        return RankOne(_rows(self.u, cases), _rows(self.right, cases))

    def weight(self, case: int) -> torch.Tensor:
        return torch.outer(self.right[case], self.u[case])


@dataclass
class Dense:
    """ΔW_c [cases, d_out, d_in] and, for modules with a bias, Δb_c [cases, d_out].

    Rows must be grouped by case (``row_case`` non-decreasing), as every batch built by
    :func:`locedit.editing.rows.case_rows` is: each case's rows get one matmul with its own ΔW.
    """

    weight_delta: torch.Tensor
    bias_delta: torch.Tensor | None = None

    def correction(self, x: torch.Tensor, row_case: torch.Tensor) -> torch.Tensor:
        if not bool((row_case[1:] >= row_case[:-1]).all()):
            raise ValueError("Dense updates need rows grouped by case (row_case non-decreasing)")
        cases, counts = torch.unique_consecutive(row_case, return_counts=True)
        weight = _rows(self.weight_delta, cases)
        bias = None if self.bias_delta is None else _rows(self.bias_delta, cases)
        if bool((counts == counts[0]).all()):  # one batched product (its backward is one op too)
            grouped = x.to(weight.dtype).reshape(len(cases), -1, x.shape[-1])
            out = torch.bmm(grouped, weight.transpose(1, 2))
            out = out if bias is None else out + bias[:, None, :]
            return out.reshape(*x.shape[:-1], -1)
        # unequal groups: per-case products over unbound views (select's backward would allocate
        # a full [cases, d_out, d_in] gradient per case)
        parts = []
        biases = bias.unbind(0) if bias is not None else [None] * len(cases)
        for rows, w, b in zip(torch.split(x, counts.tolist()), weight.unbind(0), biases):
            part = rows.to(w.dtype) @ w.T
            parts.append(part if b is None else part + b)
        return torch.cat(parts)

    @property
    def device(self) -> torch.device:
        return self.weight_delta.device

    def select(self, cases: torch.Tensor) -> "Dense":
        return Dense(_rows(self.weight_delta, cases), None if self.bias_delta is None else _rows(self.bias_delta, cases))

    def weight(self, case: int) -> torch.Tensor:
        return self.weight_delta[case]


def _rows(values: torch.Tensor, cases: torch.Tensor) -> torch.Tensor:
    """``values[cases]`` by ``index_select`` (its backward is an ``index_add``; advanced indexing's
    accumulating ``index_put`` took seconds per FT-5 step on CPU), and no copy when all are kept."""
    if len(cases) == len(values) and bool((cases == torch.arange(len(values), device=cases.device)).all()):
        return values
    return values.index_select(0, cases)


Update = RankOne | Dense
CaseUpdates = dict[str, Update]  # down-projection module name -> its per-case update


@contextmanager
def rows_updated(model: nn.Module, updates: CaseUpdates, row_case: torch.Tensor) -> Iterator[None]:
    """During the block, row ``r`` of every forward pass sees case ``row_case[r]``'s updates."""
    handles = []
    try:
        for name, update in updates.items():

            def hook(_module, inputs, output, update=update):
                return output + update.correction(inputs[0], row_case).to(output.dtype)

            handles.append(model.get_submodule(name).register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def select_cases(updates: CaseUpdates, cases: list[int]) -> CaseUpdates:
    """The updates of ``cases`` only, renumbered 0, 1, …"""
    if not updates:
        return {}
    index = torch.tensor(cases, device=next(iter(updates.values())).device)
    return {name: update.select(index) for name, update in updates.items()}


def case_deltas(model: nn.Module, updates: CaseUpdates, case: int) -> Deltas:
    """Case ``case``'s weight (and bias) deltas in the layout of the model's parameters."""
    deltas: Deltas = {}
    for name, update in updates.items():
        deltas[name + ".weight"] = transposed_if_needed(model, update.weight(case).detach().float())
        if isinstance(update, Dense) and update.bias_delta is not None:
            deltas[name + ".bias"] = update.bias_delta[case].detach().float()
    return deltas
