"""Norm-constrained finetuning (FT-1 / FT-5; paper-spec §6.3).

    >>> deltas = finetune(model, tok, request, layers=[5], hparams={"norm_constraint": 1e-4})  # doctest: +SKIP

Adam on the weight and bias of the down-projection of every edited layer; after each step every
parameter is clamped to ±``norm_constraint`` around its original value (an L∞ ball). Loss:
−Σ_rows log P(target | prompt), or P(target) itself when minimising (fact erasure); under fact
forcing ``noise_samples`` rows of the prompt, with new subject noise every step
(``SubjectNoise(σ, seed, fresh=True)``, one generator per case). A step is
taken only while the loss is ≥ 1e-2, and (except when minimising) training stops once the loss
has stayed below 1e-2 for 5 consecutive steps.
"""

from __future__ import annotations

import torch
from torch import nn

from locedit.editing.apply import Deltas, deltas_since, frozen, preserved
from locedit.editing.case_updates import CaseUpdates, Dense, rows_updated
from locedit.editing.hparams import FT_DEFAULTS
from locedit.editing.precision import optimisation_model
from locedit.editing.problems import EditRequest
from locedit.editing.rows import case_rows, prompt_batch
from locedit.hooks import LayerInput, layer_input, run_from
from locedit.models import architecture_of
from locedit.noise import SubjectNoise, noised_subjects
from locedit.prompts import gather_target_log_probs

LOSS_FLOOR = 1e-2
PATIENCE = 5


def finetune(model: nn.Module, tok, request: EditRequest, layers: list[int], hparams: dict, stats=None,
             templates=None, seed: int = 1) -> Deltas:
    hp = {**FT_DEFAULTS, **hparams}
    arch = architecture_of(model)
    device = next(model.parameters()).device
    names = [n for i in layers for n, _ in model.get_submodule(arch.down_proj(i)).named_parameters(prefix=arch.down_proj(i))]
    rows_per_step = hp["noise_samples"] if request.sigma is not None else 1
    rows = prompt_batch(tok, [request.prompt] * rows_per_step, request.subject, request.target, device)
    noise = SubjectNoise(request.sigma, seed, fresh=True) if request.sigma is not None else None
    cached = layer_input(model, arch.layers, rows.batch, min(layers)) if hp["upper_only"] and noise is None else None

    params = [model.get_parameter(n) for n in names]
    with preserved(model, names), frozen(model, except_names=tuple(names)), \
            noised_subjects(model, rows.subject_ranges, noise):  # new noise every step
        originals = {n: p.detach().clone() for n, p in zip(names, params)}
        optimizer = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0))
        eps = hp["norm_constraint"]
        calm = 0
        for _ in range(hp["steps"]):
            with run_from(model, arch.layers, cached):
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


def finetune_cases(model: nn.Module, tok, requests: list[EditRequest], layers: list[int], hparams: dict, stats=None,
                   templates=None, seed: int = 1) -> CaseUpdates:
    """FT for many requests at once: a ΔW_c (and Δb_c) per case and edited layer, added per row
    (:class:`~locedit.editing.case_updates.Dense`), so the weights are never written.

    Per case, as :func:`finetune` does alone: its own Adam state and step count (a case whose loss
    is below the floor takes no step), the L∞ clamp of ΔW_c, and the patience stop (a stopped case
    keeps its ΔW_c frozen while the others go on).

    Inside :func:`locedit.editing.precision.bfloat16_optimisation` the steps run through the model's
    bfloat16 copy; ΔW_c, Δb_c, Adam's state and the loss stay float32. On a float64 model ΔW_c,
    Δb_c and Adam's state are float64 (the loss is float32, as :func:`finetune`'s), and the result
    equals :func:`finetune`'s bit for bit (tests/test_batched_editing.py).
    """
    hp = {**FT_DEFAULTS, **hparams}
    exact, model = model, optimisation_model(model)
    arch = architecture_of(model)
    device = next(model.parameters()).device
    n_cases = len(requests)
    sigma = requests[0].sigma
    rows_per_step = hp["noise_samples"] if sigma is not None else 1
    rows = case_rows(tok, requests, [[r.prompt] * rows_per_step for r in requests],
                     [r.target for r in requests], device)
    cached = layer_input(model, arch.layers, rows.rows.batch, min(layers)) if hp["upper_only"] and sigma is None else None

    updates: CaseUpdates = {}
    for layer in layers:
        module = model.get_submodule(arch.down_proj(layer))
        d_out, d_in = (module.weight.shape[::-1] if arch.down_proj_transposed else module.weight.shape)
        bias = getattr(module, "bias", None)
        dtype = torch.promote_types(module.weight.dtype, torch.float32)  # float32 for a bfloat16 copy
        updates[arch.down_proj(layer)] = Dense(
            torch.zeros(n_cases, d_out, d_in, device=device, dtype=dtype, requires_grad=True),
            None if bias is None else torch.zeros(n_cases, d_out, device=device, dtype=dtype, requires_grad=True))
    params = [t for u in updates.values() for t in (u.weight_delta, u.bias_delta) if t is not None]
    originals = _originals_in_update_layout(exact, updates, arch.down_proj_transposed)
    adam = _CaseAdam(params, n_cases, hp["lr"], hp.get("weight_decay", 0.0), originals)
    eps = hp["norm_constraint"]
    active = torch.ones(n_cases, dtype=torch.bool, device=device)
    calm = torch.zeros(n_cases, dtype=torch.long, device=device)
    minimize = requests[0].minimize
    noise = SubjectNoise(sigma, seed, fresh=True) if sigma is not None else None
    with frozen(model), noised_subjects(model, rows.rows.subject_ranges, noise, rows.case) as noised:
        for _ in range(hp["steps"]):
            if not active.any():
                break
            # only the rows of cases still training run (a stopped case neither computes nor draws noise)
            cases = active.nonzero()[:, 0]
            picked = active[rows.case].nonzero()[:, 0]
            local_case = torch.searchsorted(cases, rows.case[picked])
            batch = {k: v[picked] for k, v in rows.rows.batch.items()}
            if noised is not None:
                noised.only(picked)
            start = None if cached is None or cached.hidden is None else \
                LayerInput(cached.start, cached.hidden[picked], cached.returns_tuple)
            step_updates = {name: u.select(cases) for name, u in updates.items()}
            with run_from(model, arch.layers, start), rows_updated(model, step_updates, local_case):
                row_lp = gather_target_log_probs(model, batch, [rows.rows.encoded[i] for i in picked.tolist()])
            nll = -torch.zeros(len(cases), device=device).index_add(0, local_case, row_lp)
            loss = torch.full((n_cases,), torch.inf, device=device)
            loss = loss.index_put((cases,), torch.exp(-nll) if minimize else nll)
            stepping = active & (loss.detach() >= LOSS_FLOOR)
            if stepping.any():
                grads = torch.autograd.grad(loss[stepping].sum(), params)
                adam.step(grads, stepping)
            with torch.no_grad():
                for p in params:
                    p.clamp_(-eps, eps)
            calm = torch.where(loss.detach() < LOSS_FLOOR, calm + 1, 0)
            if not minimize:
                active &= calm < PATIENCE
    return {name: Dense(u.weight_delta.detach(), None if u.bias_delta is None else u.bias_delta.detach())
            for name, u in updates.items()}


def _originals_in_update_layout(model: nn.Module, updates: CaseUpdates, transposed: bool) -> list[torch.Tensor]:
    """The original weight (as [d_out, d_in]) and bias of each updated module, in ``params`` order."""
    out = []
    for name, update in updates.items():
        module = model.get_submodule(name)
        out.append(module.weight.detach().T if transposed else module.weight.detach())
        if update.bias_delta is not None:
            out.append(module.bias.detach())
    return out


class _CaseAdam:
    """Adam (torch's update rule) on tensors whose first axis is the case, with a step count per
    case: only the cases in ``stepping`` move their moments and parameters. ``weight_decay`` is
    Adam's L2 term on the full weight (original + delta), as ``torch.optim.Adam`` on the weight."""

    def __init__(self, params: list[torch.Tensor], n_cases: int, lr: float, weight_decay: float,
                 originals: list[torch.Tensor], betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.weight_decay, self.originals = params, lr, weight_decay, originals
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(n_cases, dtype=torch.long)

    @torch.no_grad()
    def step(self, grads: tuple[torch.Tensor, ...], stepping: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        for case in stepping.nonzero()[:, 0].tolist():
            self.steps[case] += 1
            t = int(self.steps[case])
            step_size = self.lr / (1 - beta1 ** t)
            for p, g, m, v, w0 in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self.originals):
                g = g[case] if not self.weight_decay else g[case] + self.weight_decay * (w0 + p[case])
                m[case].lerp_(g, 1 - beta1)
                v[case].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v[case].sqrt() / (1 - beta2 ** t) ** 0.5).add_(self.eps)
                p[case].addcdiv_(m[case], denom, value=-step_size)
