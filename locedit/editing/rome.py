"""ROME (Meng et al. 2022): a rank-one update of one layer's MLP down-projection (paper-spec §6.4).

    >>> updates = rome_cases(model, tok, requests, layers=[5], hparams=ROME_DEFAULTS, stats=stats,
    ...                      templates=templates["rome"])                          # doctest: +SKIP

k̄ = mean key at the last subject token over the context templates; u = C⁻¹k̄/‖C⁻¹k̄‖; v* = v₀ + δ
with δ optimised at the MLP output; k*, m = key and MLP output of the plain prompt;
ΔW = ((v* − m)/(k*·u)) ⊗ u, so that the edited layer maps k* to v*.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from locedit.editing.apply import Deltas
from locedit.editing.case_updates import CaseUpdates, RankOne, case_deltas
from locedit.editing.hparams import ROME_DEFAULTS
from locedit.editing.problems import EditRequest
from locedit.editing.rows import case_means, case_rows, states_at_subject
from locedit.editing.site_delta import optimize_site_deltas
from locedit.models import architecture_of

@dataclass
class RankOneUpdate:
    """Per case: k* (key of the plain prompt), v* (the output it should map to), u (C⁻¹k̄, unit
    norm) and ``right`` = (v* − m)/(k*·u), so that ΔW = right ⊗ u maps k* to v*; each [cases, d]."""

    k_star: torch.Tensor
    v_star: torch.Tensor
    u: torch.Tensor
    right: torch.Tensor


def rank_one_updates(model: nn.Module, tok, requests: list[EditRequest], layer: int, hparams: dict, stats,
                     templates: list[str], seed: int = 1) -> RankOneUpdate:
    """ROME's update of ``layer`` for every request, computed together (:mod:`.site_delta`)."""
    hp = {**ROME_DEFAULTS, **hparams}
    down = architecture_of(model).down_proj(layer)
    device = next(model.parameters()).device
    sigma = requests[0].sigma
    texts = [[t.replace("{}", r.prompt) for t in templates] for r in requests]
    template_rows = case_rows(tok, requests, texts, None, device)
    keys = states_at_subject(model, template_rows, inputs_of=[down], sigma=sigma, seed=seed)[down, "in"]
    c_inv = stats.inverse(layer, device)
    u = (case_means(keys, template_rows.case, len(requests)).to(c_inv.dtype) @ c_inv.T).float()
    u = u / u.norm(dim=1, keepdim=True)

    v0, delta = optimize_site_deltas(model, tok, requests, texts, site=down, site_layer=layer, hparams=hp, seed=seed)
    plain = case_rows(tok, requests, [[r.prompt] for r in requests], None, device)
    states = states_at_subject(model, plain, inputs_of=[down], outputs_of=[down], sigma=sigma, seed=seed)
    k_star, m = states[down, "in"], states[down, "out"]
    v_star = (m if sigma is not None else v0) + delta  # under noise: δ on the mean noised output
    right = (v_star - m) / (k_star * u).sum(1, keepdim=True)
    return RankOneUpdate(k_star, v_star, u, right)


def rome_cases(model: nn.Module, tok, requests: list[EditRequest], layers: list[int], hparams: dict, stats,
               templates: list[str], seed: int = 1) -> CaseUpdates:
    """One rank-one update of the down-projection of ``layers[0]`` per request, applied per row by
    :func:`~locedit.editing.case_updates.rows_updated` (ROME edits a single layer)."""
    update = rank_one_updates(model, tok, requests, layers[0], hparams, stats, templates, seed)
    return {architecture_of(model).down_proj(layers[0]): RankOne(update.u, update.right)}


def rome(model: nn.Module, tok, request: EditRequest, layers: list[int], hparams: dict, stats,
         templates: list[str], seed: int = 1) -> Deltas:
    """The weight delta of one request (the plain path: applied in place by :mod:`.apply`)."""
    return case_deltas(model, rome_cases(model, tok, [request], layers, hparams, stats, templates, seed), 0)
