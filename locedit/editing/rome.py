"""ROME (Meng et al. 2022): a rank-one update of one layer's MLP down-projection (paper-spec §6.4).

    >>> deltas = rome(model, tok, request, layers=[5], hparams=ROME_DEFAULTS, stats=stats,
    ...               templates=templates["rome"])                                 # doctest: +SKIP

k̄ = mean key at the last subject token over the context templates; u = C⁻¹k̄/‖C⁻¹k̄‖; v* = v₀ + δ
with δ optimised at the MLP output; k*, m = key and MLP output of the plain prompt;
ΔW = ((v* − m)/(k*·u)) ⊗ u, so that the edited layer maps k* to v*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import architecture_of
from ..problems import EditRequest
from .apply import Deltas
from .case_updates import CaseUpdates, RankOne
from .common import keys_at_subject, optimize_site_delta, output_at_subject, prompt_batch, transposed_if_needed
from .rows import case_means, case_rows, states_at_subject
from .site_delta import optimize_site_deltas

ROME_DEFAULTS: dict[str, Any] = {
    "v_steps": 20,
    "v_lr": 0.5,
    "v_weight_decay": 0.5,
    "clamp_norm_factor": 4.0,
    "kl_factor": 0.0625,
    "upper_only": True,
    "shared_prefix": True,
}


@dataclass
class RankOneUpdate:
    """k* (key of the plain prompt), v* (the output it should map to), u (C⁻¹k̄, unit norm), and the
    weight update in the down-projection's layout."""

    k_star: torch.Tensor
    v_star: torch.Tensor
    u: torch.Tensor
    update: torch.Tensor


def rome_update(model: nn.Module, tok, request: EditRequest, layer: int, hparams: dict, stats,
                templates: list[str]) -> RankOneUpdate:
    hp = {**ROME_DEFAULTS, **hparams}
    arch = architecture_of(model)
    device = next(model.parameters()).device
    texts = [t.replace("{}", request.prompt) for t in templates]
    keys = keys_at_subject(model, prompt_batch(tok, texts, request.subject, None, device), layer, request.noise)
    c_inv = stats.inverse(layer).to(device)
    u = (c_inv @ keys.mean(0).to(c_inv.dtype)).float()
    u = u / u.norm()

    v0, delta = optimize_site_delta(
        model, tok, request, texts, site=arch.down_proj(layer), site_layer=layer,
        steps=hp["v_steps"], lr=hp["v_lr"], kl_factor=hp["kl_factor"], weight_decay=hp["v_weight_decay"],
        clamp_norm_factor=hp["clamp_norm_factor"], upper_only=hp["upper_only"],
        shared_prefix=hp["shared_prefix"],
    )
    plain = prompt_batch(tok, [request.prompt], request.subject, None, device)
    k_star = keys_at_subject(model, plain, layer, request.noise)[0]
    m = output_at_subject(model, plain, arch.down_proj(layer), request.noise)[0]
    v_star = (m if request.noise is not None else v0) + delta  # under noise: δ on the mean noised output
    right = (v_star - m) / torch.dot(k_star, u)
    return RankOneUpdate(k_star, v_star, u, transposed_if_needed(model, torch.outer(right, u)))


def rome(model: nn.Module, tok, request: EditRequest, layers: list[int], hparams: dict, stats,
         templates: list[str]) -> Deltas:
    """Weight delta of the down-projection of ``layers[0]`` (ROME edits a single layer)."""
    update = rome_update(model, tok, request, layers[0], hparams, stats, templates)
    return {architecture_of(model).down_proj(layers[0]) + ".weight": update.update}


def rome_cases(model: nn.Module, tok, requests: list[EditRequest], layers: list[int], hparams: dict, stats,
               templates: list[str], seed: int = 1) -> CaseUpdates:
    """ROME for many requests at once (:mod:`locedit.editing.site_delta`): one rank-one update per
    case, applied per row by :func:`~locedit.editing.case_updates.rows_updated`."""
    hp = {**ROME_DEFAULTS, **hparams}
    arch = architecture_of(model)
    device = next(model.parameters()).device
    layer, down = layers[0], arch.down_proj(layers[0])
    noise = requests[0].noise
    texts = [[t.replace("{}", r.prompt) for t in templates] for r in requests]
    template_rows = case_rows(tok, requests, texts, None, device)
    keys = states_at_subject(model, template_rows, inputs_of=[down], noise=noise)[down, "in"]
    c_inv = stats.inverse(layer).to(device)
    u = (case_means(keys, template_rows.case, len(requests)).to(c_inv.dtype) @ c_inv.T).float()
    u = u / u.norm(dim=1, keepdim=True)

    v0, delta = optimize_site_deltas(model, tok, requests, texts, site=down, site_layer=layer, hparams=hp, seed=seed)
    plain = case_rows(tok, requests, [[r.prompt] for r in requests], None, device)
    states = states_at_subject(model, plain, inputs_of=[down], outputs_of=[down], noise=noise)
    k_star, m = states[down, "in"], states[down, "out"]
    v_star = (m if noise is not None else v0) + delta  # under noise: δ on the mean noised output
    right = (v_star - m) / (k_star * u).sum(1, keepdim=True)
    return {down: RankOne(u, right)}
