"""Norm-constrained finetuning (FT-1 / FT-5; paper-spec §6.3).

    >>> deltas = finetune(model, tok, request, layers=[5], hparams={"norm_constraint": 1e-4})  # doctest: +SKIP

Adam on the weight and bias of the down-projection of every edited layer; after each step every
parameter is clamped to ±``norm_constraint`` around its original value (an L∞ ball). Loss:
−Σ_rows log P(target | prompt), or P(target) itself when minimising (fact erasure). A step is
taken only while the loss is ≥ 1e-2, and (except when minimising) training stops once the loss
has stayed below 1e-2 for 5 consecutive steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..hooks import edit_outputs, layer_input, run_from
from ..models import architecture_of
from ..prompts import gather_target_log_probs
from ..problems import EditRequest
from .apply import Deltas, deltas_since, preserved
from .common import frozen, noise_for, prompt_batch

FT_DEFAULTS: dict[str, Any] = {
    "lr": 5e-4,
    "steps": 25,
    "norm_constraint": 5e-5,
    "noise_samples": 10,  # rows per step under fact forcing (each with fresh noise)
    "upper_only": True,
}
LOSS_FLOOR = 1e-2
PATIENCE = 5


def finetune(model: nn.Module, tok, request: EditRequest, layers: list[int], hparams: dict, stats=None,
             templates=None) -> Deltas:
    hp = {**FT_DEFAULTS, **hparams}
    arch = architecture_of(model)
    device = next(model.parameters()).device
    names = [n for i in layers for n, _ in model.get_submodule(arch.down_proj(i)).named_parameters(prefix=arch.down_proj(i))]
    rows_per_step = hp["noise_samples"] if request.noise is not None else 1
    rows = prompt_batch(tok, [request.prompt] * rows_per_step, request.subject, request.target, device)
    noise = noise_for(request, rows, np.random.RandomState(1), arch.embedding)
    cached = layer_input(model, arch.layers, rows.batch, min(layers)) if hp["upper_only"] and not noise else None

    params = [model.get_parameter(n) for n in names]
    with preserved(model, names), frozen(model, except_names=tuple(names)):
        originals = {n: p.detach().clone() for n, p in zip(names, params)}
        optimizer = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0))
        eps = hp["norm_constraint"]
        calm = 0
        for _ in range(hp["steps"]):
            with run_from(model, arch.layers, cached), edit_outputs(model, noise):
                nll = -gather_target_log_probs(model, rows.batch, rows.encoded).sum()
            loss = torch.exp(-nll) if request.minimize else nll
            if loss.item() >= LOSS_FLOOR:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                for n, p in zip(names, params):
                    p.copy_(torch.clamp(p, originals[n] - eps, originals[n] + eps))
            calm = calm + 1 if loss.item() < LOSS_FLOOR else 0
            if calm >= PATIENCE and not request.minimize:
                break
        return deltas_since(model, originals)
