"""MEMIT (Meng et al. 2023) for one edit: z at the last edited layer, the residual spread over the
window (paper-spec §6.6).

    >>> deltas = memit(model, tok, request, layers=[3, 4, 5, 6, 7], hparams=MEMIT_DEFAULTS,
    ...                stats=stats, templates=templates["memit"])                    # doctest: +SKIP

For each edited layer i (ascending, earlier updates already in place): k = mean key over the
template groups, r = z − h(z_layer), resid = r / (layers left), ΔWᵢ = resid ⊗ adj with
adj = (λC + kkᵀ)⁻¹k, which for a single key is C⁻¹k / (λ + kᵀC⁻¹k) (Sherman–Morrison).

Families with a norm between the MLP output and the residual add (Gemma's
post_feedforward_layernorm) need the residual change mapped back through that norm first:
ΔWᵢk must move the down-projection output m by the Δm with norm(m + Δm) = norm(m) + resid
(:func:`through_post_mlp_norm`), not by resid itself. The reference code (GPT-2 / GPT-J, no such
norm) has no counterpart; without it MEMIT barely edits Gemma.
"""

from __future__ import annotations

import torch
from torch import nn

from locedit.editing.apply import Deltas, deltas_since, preserved, transposed_if_needed
from locedit.editing.case_updates import CaseUpdates, RankOne
from locedit.editing.hparams import MEMIT_DEFAULTS
from locedit.editing.problems import EditRequest
from locedit.editing.rows import case_means, case_rows, one_case, prompt_batch, states_at_subject
from locedit.editing.site_delta import optimize_site_deltas
from locedit.models import architecture_of

def sherman_morrison_adjustment(c_inv: torch.Tensor, k: torch.Tensor, lam: float) -> torch.Tensor:
    """(λC + kkᵀ)⁻¹k for one key k, from C⁻¹: C⁻¹k / (λ + kᵀC⁻¹k)."""
    k = k.to(c_inv.dtype)
    c_inv_k = c_inv @ k
    return c_inv_k / (lam + k @ c_inv_k)


def solve_adjustment(c: torch.Tensor, k: torch.Tensor, lam: float) -> torch.Tensor:
    """(λC + kkᵀ)⁻¹k by a float64 linear solve (the reference's way; the test oracle)."""
    c, k = c.double(), k.double()
    return torch.linalg.solve(lam * c + torch.outer(k, k), k)


def truncated_pinv(matrix: torch.Tensor, rtol: float) -> torch.Tensor:
    """``torch.linalg.pinv(matrix, rtol=rtol)``, redone in float64 where the float32 SVD does not
    converge. MKL's strict reproducible mode (``MKL_CBWR=AUTO,STRICT``, which the Snakefile sets) on
    one thread failed so on a 640 × 640 RMS-norm Jacobian of Gemma (layer 8, case batch of group 5b)
    that two threads, or float64, decompose; float64 agrees with float32 there to 1e-5 relative.

        >>> truncated_pinv(torch.diag(torch.tensor([2.0, 1e-6])), rtol=1e-3)
        tensor([[0.5000, 0.0000],
                [0.0000, 0.0000]])
    """
    try:
        return torch.linalg.pinv(matrix, rtol=rtol)
    except torch.linalg.LinAlgError:
        return torch.linalg.pinv(matrix.double(), rtol=rtol).to(matrix.dtype)


def through_post_mlp_norm(norm: nn.Module, m: torch.Tensor, resid: torch.Tensor, iterations: int = 5,
                          rtol: float = 1e-3, halvings: int = 20) -> torch.Tensor:
    """Δm with ``norm(m + Δm) ≈ norm(m) + resid``, by Gauss–Newton with a truncated pseudo-inverse
    and a backtracking line search.

    An RMS norm's output has a fixed scale and near-zero gains on some coordinates, so not every
    residual change is reachable; the truncation (singular values below ``rtol``·σ_max dropped)
    returns the least-squares, smallest Δm instead of blowing up, and each step is halved until it
    lowers the error (none that does ends the search). Without the line search Gemma's layers 0–2,
    where the wanted change is as large as the norm's output, got Δm 1,800–19,000× ‖m‖ that
    reached 20% of the change or moved away from it, and MEMIT's update there broke the model.

        >>> norm = torch.nn.LayerNorm(4, elementwise_affine=False)
        >>> m = torch.tensor([1.0, -2.0, 0.5, 0.5]); wanted = norm(torch.tensor([1.0, -1.0, 2.0, -2.0])) - norm(m)
        >>> torch.allclose(norm(m + through_post_mlp_norm(norm, m, wanted)), norm(m) + wanted, atol=1e-4)
        True
    """
    m, resid = m.detach().float(), resid.detach().float()
    with torch.no_grad():
        target = norm(m) + resid
    dm = torch.zeros_like(m)
    error = resid.norm()
    for _ in range(iterations):
        # one batched backward (row by row it was 17% of a Gemma MEMIT edit)
        jac = torch.autograd.functional.jacobian(lambda x: norm(x), m + dm, vectorize=True)
        with torch.no_grad():
            step = truncated_pinv(jac, rtol) @ (target - norm(m + dm))
            for _ in range(halvings):
                new_error = (target - norm(m + dm + step)).norm()
                if new_error < error:
                    dm, error = dm + step, new_error
                    break
                step = step / 2
            else:
                break
    return dm


def memit(model: nn.Module, tok, request: EditRequest, layers: list[int], hparams: dict, stats,
          templates: list[list[str]], seed: int = 1) -> Deltas:
    """Weight deltas of the down-projections of ``layers`` for one request: the plain path, each
    layer's update written into the weights before the next layer's keys are read."""
    hp = {**MEMIT_DEFAULTS, **hparams}
    arch = architecture_of(model)
    device = next(model.parameters()).device
    layers = sorted(layers)
    z_site = arch.layer(layers[-1])
    flat = [t for group in templates for t in group]
    texts = [t.replace("{}", request.prompt) for t in flat]
    h0, delta = optimize_site_deltas(model, tok, [request], [texts], site=z_site, site_layer=layers[-1], hparams=hp,
                                     seed=seed)
    plain = one_case(prompt_batch(tok, [request.prompt], request.subject, None, device))
    if request.sigma is not None:  # δ on the mean noised state, as the keys below
        h0 = states_at_subject(model, plain, outputs_of=[z_site], sigma=request.sigma, seed=seed)[z_site, "out"]
    z = (h0 + delta)[0]
    template_rows = one_case(prompt_batch(tok, texts, request.subject, None, device))
    sizes = [len(group) for group in templates]
    names = [arch.down_proj(i) + ".weight" for i in layers]
    with preserved(model, names):
        originals = {n: model.get_parameter(n).detach().clone() for n in names}
        for idx, layer in enumerate(layers):
            down = arch.down_proj(layer)
            keys = states_at_subject(model, template_rows, inputs_of=[down], sigma=request.sigma, seed=seed)[down, "in"]
            k = torch.stack([g.mean(0) for g in torch.split(keys, sizes)]).mean(0)
            states = states_at_subject(model, plain, outputs_of=[z_site, down], sigma=request.sigma, seed=seed)
            resid = (z - states[z_site, "out"][0]) / (len(layers) - idx)
            norm_name = arch.post_mlp_norm(layer)
            if norm_name is not None:
                resid = through_post_mlp_norm(model.get_submodule(norm_name), states[down, "out"][0], resid)
            adj = sherman_morrison_adjustment(stats.inverse(layer, device), k, hp["mom2_update_weight"])
            update = transposed_if_needed(model, torch.outer(resid, adj.float()))
            with torch.no_grad():
                weight = model.get_parameter(names[idx])
                weight.add_(update.to(weight.dtype))
        return deltas_since(model, originals)


def memit_cases(model: nn.Module, tok, requests: list[EditRequest], layers: list[int], hparams: dict, stats,
                templates: list[list[str]], seed: int = 1) -> CaseUpdates:
    """MEMIT for many requests at once: z_c for every case in shared passes, then, layer by layer,
    keys and residuals of all cases in one pass each, with every case's earlier-layer updates in
    place per row (so later layers see them, as in :func:`memit`)."""
    hp = {**MEMIT_DEFAULTS, **hparams}
    arch = architecture_of(model)
    device = next(model.parameters()).device
    layers = sorted(layers)
    z_layer, z_site = layers[-1], arch.layer(layers[-1])
    sigma = requests[0].sigma
    flat = [t for group in templates for t in group]
    texts = [[t.replace("{}", r.prompt) for t in flat] for r in requests]
    h0, delta = optimize_site_deltas(model, tok, requests, texts, site=z_site, site_layer=z_layer, hparams=hp,
                                     seed=seed)
    plain = case_rows(tok, requests, [[r.prompt] for r in requests], None, device)
    if sigma is not None:  # δ on the mean noised state, as the keys below
        h0 = states_at_subject(model, plain, outputs_of=[z_site], sigma=sigma, seed=seed)[z_site, "out"]
    z = h0 + delta
    template_rows = case_rows(tok, requests, texts, None, device)
    group_of_row = torch.tensor([g for g, group in enumerate(templates) for _ in group] * len(requests), device=device)
    updates: CaseUpdates = {}
    for idx, layer in enumerate(layers):
        down = arch.down_proj(layer)
        keys = states_at_subject(model, template_rows, inputs_of=[down], sigma=sigma, updates=updates,
                                 seed=seed)[down, "in"]
        group_means = case_means(keys, template_rows.case * len(templates) + group_of_row, len(requests) * len(templates))
        k = group_means.view(len(requests), len(templates), -1).mean(1)
        states = states_at_subject(model, plain, outputs_of=[z_site, down], sigma=sigma, updates=updates, seed=seed)
        resid = (z - states[z_site, "out"]) / (len(layers) - idx)
        norm_name = arch.post_mlp_norm(layer)
        if norm_name is not None:
            norm = model.get_submodule(norm_name)
            resid = torch.stack([through_post_mlp_norm(norm, m, r) for m, r in zip(states[down, "out"], resid)])
        c_inv = stats.inverse(layer, device)
        adj = torch.stack([sherman_morrison_adjustment(c_inv, key, hp["mom2_update_weight"]) for key in k])
        updates[down] = RankOne(adj.float(), resid.float())
    return updates
