"""ROME's v* and MEMIT's z for many edits at once: one free vector δ_c per case, added at its own
rows' last subject token, optimised in shared forward/backward passes.

    >>> v0, delta = optimize_site_deltas(model, tok, requests, texts, site="model.layers.5.mlp.down_proj",
    ...                                  site_layer=5, hparams=ROME_DEFAULTS)          # doctest: +SKIP
    >>> delta.shape                       # [cases, d_model]                              # doctest: +SKIP

Each case's loss (its rewrite rows' mean per-token NLL, or the mean target probability when
minimising, + ``kl_factor``·KL at its ``"{subject} is a"`` row + ``v_weight_decay``·‖δ_c‖/‖v₀_c‖²)
depends on its own δ_c only, and the losses are summed, so every δ_c gets exactly its own gradient;
Adam is per coordinate and the norm clamp per case, so each case follows the trajectory it would
follow alone, up to float rounding (one request is the plain path).

Speed: while δ at layer ℓ is optimised, the layers below ℓ see the same inputs at every step, so
their output is computed once (``upper_only``, :func:`locedit.hooks.layer_input`); the positions
before the last subject token do not change either (δ is added there and attention is causal):
with ``shared_prefix`` their keys and values are computed once (:class:`SharedPrefix`, shared by
every row of every case) and each step runs only the columns from the first edited position on.
Under fact forcing the subject noise changes every step (``SubjectNoise(σ, seed, fresh=True)``,
each case drawing from its own generator), so every layer runs, over the columns from the subject's
first token on. Both off is the plain loop they are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from locedit.editing.apply import frozen
from locedit.editing.precision import optimisation_model
from locedit.editing.problems import EditRequest
from locedit.editing.rows import PromptBatch, case_rows, prompt_batch, stack_batches, states_at_subject
from locedit.hooks import edit_outputs, layer_input, run_from
from locedit.models import architecture_of
from locedit.noise import SubjectNoise, noised_subjects
from locedit.prompts import logits_at


@dataclass
class SharedPrefix:
    """The rows of a batch left-padded, with the attention keys and values of every column before
    the first column an edit touches (``start``) computed once; :meth:`inputs` feeds only the
    columns from ``start`` on, over a fresh copy of that cache.

    ``first_changed[r]`` is the first position of row ``r`` whose state the edit changes (the
    lookup where δ is added; the subject start under fact-forcing noise). Row ``r``'s own
    position ``p`` sits in column ``p + offsets[r]`` of the fed columns.

        >>> prefix = SharedPrefix.build(model, rows, tok.pad_token_id, rows.lookup)  # doctest: +SKIP
        >>> model.base_model(**prefix.inputs(model))                               # doctest: +SKIP
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    start: int
    kv: list[tuple]
    offsets: torch.Tensor

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, rows: PromptBatch, pad_id: int, first_changed: torch.Tensor) -> "SharedPrefix":
        device = rows.lookup.device
        lengths = torch.tensor([len(e.ids) for e in rows.encoded], device=device)
        pads = int(lengths.max()) - lengths
        ids = torch.full((len(lengths), int(lengths.max())), pad_id, dtype=torch.long, device=device)
        for r, enc in enumerate(rows.encoded):
            ids[r, int(pads[r]):] = torch.tensor(enc.ids, device=device)
        mask = (torch.arange(ids.shape[1], device=device)[None, :] >= pads[:, None]).long()
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        start = int((first_changed + pads).min())
        kv: list[tuple] = []
        if start > 0:
            cache = DynamicCache(config=model.config)
            model.base_model(input_ids=ids[:, :start], attention_mask=mask[:, :start],
                             position_ids=positions[:, :start], cache=cache, use_cache=True)
            kv = list(cache)
        return cls(ids, mask, positions, start, kv, pads - start)

    def inputs(self, model: nn.Module) -> dict:
        """Keyword arguments of ``model.base_model`` for the columns from ``start`` on."""
        cache = DynamicCache(self.kv or None, config=model.config)
        return {"input_ids": self.input_ids[:, self.start:], "attention_mask": self.attention_mask,
                "position_ids": self.position_ids[:, self.start:], "cache": cache, "use_cache": True}


def optimize_site_deltas(
    model: nn.Module,
    tok,
    requests: list[EditRequest],
    texts: list[list[str]],
    site: str,
    site_layer: int,
    hparams: dict[str, Any],
    seed: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(v₀, δ), each [cases, d]: v₀_c is the site's unedited output at case c's first row.

    ``hparams`` holds ``v_steps``, ``v_lr``, ``kl_factor``, ``v_weight_decay``,
    ``clamp_norm_factor``, ``upper_only``, ``shared_prefix`` (ROME's and MEMIT's names).

    Inside :func:`locedit.editing.precision.bfloat16_optimisation` the steps run through the model's
    bfloat16 copy and v₀ is read from the float32 model (the update is anchored to exact states).
    """
    exact, model = model, optimisation_model(model)
    arch = architecture_of(model)
    device = next(model.parameters()).device
    sigma = _one_noise_level(requests)
    parts, case_of_row, kl_rows, first_rows = [], [], [], []
    for c, (req, rewrite_texts) in enumerate(zip(requests, texts)):
        first_rows.append(len(case_of_row))
        parts.append(prompt_batch(tok, rewrite_texts, req.subject, req.target, device))
        parts.append(prompt_batch(tok, [f"{req.subject} is a"], req.subject, None, device))
        case_of_row += [c] * (len(rewrite_texts) + 1)
        kl_rows.append(len(case_of_row) - 1)
    rows = stack_batches(parts, tok.pad_token_id)
    row_case = torch.tensor(case_of_row, device=device)
    n_cases = len(requests)

    prefix = None
    if hparams["shared_prefix"]:  # under noise the subject's states change every step; before it nothing does
        first_changed = rows.lookup if sigma is None else torch.tensor([b for b, _ in rows.subject_ranges])
        prefix = SharedPrefix.build(model, rows, tok.pad_token_id, first_changed.to(device))
    offsets = prefix.offsets if prefix is not None else torch.zeros_like(rows.lookup)
    columns = rows.lookup + offsets
    noise = SubjectNoise(sigma, seed, fresh=True) if sigma is not None else None
    shifted = [(b + o, e + o) for (b, e), o in zip(rows.subject_ranges, offsets.tolist())]

    def inputs() -> dict:
        return prefix.inputs(model) if prefix is not None else rows.batch

    cached = layer_input(model, arch.layers, inputs(), site_layer) if hparams["upper_only"] and noise is None else None
    targets = _TargetPositions(rows, kl_rows, offsets, row_case)

    delta = torch.zeros(n_cases, model.config.hidden_size, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=hparams["v_lr"])
    all_rows = torch.arange(len(case_of_row), device=device)
    first = torch.tensor(first_rows, device=device)
    seen: dict[str, torch.Tensor] = {}

    def add_delta(_name: str, hidden: torch.Tensor) -> torch.Tensor:
        if "v0" not in seen:
            seen["v0"] = hidden[first, columns[first]].detach().float().clone()
        hidden = hidden.clone()
        hidden[all_rows, columns] += delta[row_case].to(hidden.dtype)
        return hidden

    minimize = requests[0].minimize
    kl_init = None
    with frozen(model), noised_subjects(model, shifted, noise, row_case):  # new noise every step
        for step in range(hparams["v_steps"]):
            with run_from(model, arch.layers, cached), edit_outputs(model, {site: add_delta}):
                nll, kl_logits = targets.nll_and_kl_logits(model, inputs())
            kl_logp = torch.log_softmax(kl_logits.float(), dim=-1)
            if kl_init is None:
                kl_init = kl_logp.detach().clone()
            kl = torch.nn.functional.kl_div(kl_init, kl_logp, log_target=True, reduction="none").sum(-1)
            fit = torch.exp(-nll) if minimize else nll
            decay = hparams["v_weight_decay"] * delta.norm(dim=1) / seen["v0"].norm(dim=1) ** 2
            loss = (fit + hparams["kl_factor"] * kl + decay).sum()
            if step == hparams["v_steps"] - 1 and not minimize:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                limit = hparams["clamp_norm_factor"] * seen["v0"].norm(dim=1)
                norms = delta.norm(dim=1)
                delta.mul_(torch.where(norms > limit, limit / norms, torch.ones_like(norms))[:, None])
    v0 = seen["v0"] if model is exact else _first_row_outputs(exact, tok, requests, texts, site, device)
    return v0, delta.detach()


def _first_row_outputs(model: nn.Module, tok, requests: list[EditRequest], texts: list[list[str]], site: str,
                       device) -> torch.Tensor:
    """The site's output at each case's last subject token of its first text (v₀ without δ), [cases, d]."""
    rows = case_rows(tok, requests, [t[:1] for t in texts], None, device)
    return states_at_subject(model, rows, outputs_of=[site])[site, "out"]


def _one_noise_level(requests: list[EditRequest]) -> float | None:
    levels = {r.sigma for r in requests}
    minimize = {r.minimize for r in requests}
    if len(levels) > 1 or len(minimize) > 1:
        raise ValueError(f"a batch of edits shares one problem; got noise levels {levels}, minimize {minimize}")
    return levels.pop()


class _TargetPositions:
    """Where each case's rewrite rows predict their target tokens and where its KL row is read, in
    the fed columns (row ``r``'s position ``p`` is column ``p + offsets[r]``)."""

    def __init__(self, rows, kl_rows: list[int], offsets: torch.Tensor, row_case: torch.Tensor):
        device = rows.lookup.device
        kl_set = set(kl_rows)
        row_idx, pos_idx, tokens = [], [], []
        for r, enc in enumerate(rows.encoded):
            if r in kl_set:
                continue
            for pos, t in zip(enc.target_positions, enc.target_ids):
                row_idx.append(r)
                pos_idx.append(pos + int(offsets[r]))
                tokens.append(t)
        n_tokens = torch.bincount(torch.tensor(row_idx, dtype=torch.long), minlength=len(rows.encoded)).float().to(device)
        rewrite_rows = torch.tensor([r for r in range(len(rows.encoded)) if r not in kl_set], device=device)
        self.n_cases = len(kl_rows)
        self.rows = torch.tensor(row_idx + kl_rows, device=device)
        self.positions = torch.tensor(pos_idx + [int(rows.lookup[r] + offsets[r]) for r in kl_rows], device=device)
        self.tokens = torch.tensor(tokens, device=device)
        self.rewrite_rows = rewrite_rows
        self.rewrite_case = row_case[rewrite_rows]
        self.per_row_tokens = n_tokens[rewrite_rows]
        self.rows_per_case = torch.bincount(self.rewrite_case, minlength=self.n_cases).float()
        self.n_rows = len(rows.encoded)

    def nll_and_kl_logits(self, model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Each case's mean per-token NLL over its rewrite rows [cases], and its KL row's logits [cases, V]."""
        logits = logits_at(model, inputs, self.rows, self.positions)
        n_target = len(self.tokens)
        target_logits, kl_logits = logits[:n_target], logits[n_target:]
        token_lp = torch.log_softmax(target_logits.float(), -1).gather(1, self.tokens[:, None])[:, 0]
        row_lp = torch.zeros(self.n_rows, device=token_lp.device).index_add(0, self.rows[:n_target], token_lp)
        per_row = row_lp[self.rewrite_rows] / self.per_row_tokens
        nll = -torch.zeros(self.n_cases, device=token_lp.device).index_add(0, self.rewrite_case, per_row)
        return nll / self.rows_per_case, kl_logits
