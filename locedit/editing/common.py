"""Pieces ROME, MEMIT and FT share: teacher-forced batches with subject lookups, keys, and the
optimisation of a free vector added at one site (ROME's v*, MEMIT's z).

Speed: while a vector or a weight at layer ℓ is optimised, the layers below ℓ see the same
inputs at every step, so their output is computed once (:func:`locedit.hooks.layer_input`) and
each step runs only the layers from ℓ up. For ROME's v* and MEMIT's z the positions before the
last subject token do not change either (δ is added there and attention is causal): with
``shared_prefix`` their keys and values are computed once (:class:`SharedPrefix`) and each step
runs only the columns from the first edited position on. Under fact forcing the subject noise
changes every step, so every layer runs, over the columns from the subject's first token on.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache

from ..hooks import capture_inputs, capture_outputs, edit_outputs, layer_input, run_from
from ..models import architecture_of
from ..noise import row_noise_hook
from ..prompts import Encoded, encode, logits_at, pad_batch, subject_range
from ..problems import EditRequest


@dataclass
class PromptBatch:
    """Right-padded rows (prompt [+ target]) with the position of each row's last subject token."""

    batch: dict[str, torch.Tensor]
    encoded: list[Encoded]
    lookup: torch.Tensor
    subject_ranges: list[tuple[int, int]]


def prompt_batch(tok, texts: list[str], subject: str, target: str | None, device) -> PromptBatch:
    """Rows of ``texts`` (each containing ``subject``), followed by ``target`` when given."""
    encoded, ranges = [], []
    for text in texts:
        enc = encode(tok, text, target) if target is not None else Encoded(tok(text)["input_ids"], [])
        encoded.append(enc)
        ranges.append(subject_range(tok, text, subject))
    batch = pad_batch([e.ids for e in encoded], tok.pad_token_id, device)
    lookup = torch.tensor([end - 1 for _, end in ranges], device=device)
    return PromptBatch(batch, encoded, lookup, ranges)


def cat_batches(a: PromptBatch, b: PromptBatch, pad_id: int) -> PromptBatch:
    """Stack two prompt batches into one (re-padded)."""
    device = a.lookup.device
    encoded = a.encoded + b.encoded
    batch = pad_batch([e.ids for e in encoded], pad_id, device)
    return PromptBatch(batch, encoded, torch.cat([a.lookup, b.lookup]), a.subject_ranges + b.subject_ranges)


def noise_for(request: EditRequest, rows: PromptBatch, rng: np.random.RandomState | None, embedding: str,
              offsets: torch.Tensor | None = None) -> dict:
    """The embedding edit adding subject noise to every row (fact forcing), or nothing; with
    ``offsets``, row ``r``'s subject sits ``offsets[r]`` columns to the right of its own position."""
    if request.noise is None:
        return {}
    shifts = offsets.tolist() if offsets is not None else [0] * len(rows.subject_ranges)
    ranges = [(b + o, e + o) for (b, e), o in zip(rows.subject_ranges, shifts)]
    return {embedding: row_noise_hook(ranges, request.noise, rng=rng)}


NOISED_STATE_SAMPLES = 10  # noise draws averaged for keys and outputs under fact forcing


@torch.no_grad()
def keys_at_subject(model: nn.Module, rows: PromptBatch, layer: int, noise: float | None = None) -> torch.Tensor:
    """Input of the down-projection of ``layer`` at each row's last subject token, [rows, d_k].

    With ``noise`` (fact forcing), the mean over :data:`NOISED_STATE_SAMPLES` draws of subject
    noise at each row's own subject tokens: the edit must act on the keys the noised prompt has.
    """
    name = architecture_of(model).down_proj(layer)
    return _at_subject(model, rows, name, capture_inputs, noise)


@torch.no_grad()
def output_at_subject(model: nn.Module, rows: PromptBatch, module: str, noise: float | None = None) -> torch.Tensor:
    """Output of ``module`` at each row's last subject token, [rows, d] (noise: as :func:`keys_at_subject`)."""
    return _at_subject(model, rows, module, capture_outputs, noise)


def _at_subject(model: nn.Module, rows: PromptBatch, module: str, capture, noise: float | None) -> torch.Tensor:
    copies = 1 if noise is None else NOISED_STATE_SAMPLES
    batch = {k: v.repeat(copies, 1) for k, v in rows.batch.items()}
    lookup = rows.lookup.repeat(copies)
    edits = {}
    if noise is not None:
        edits[architecture_of(model).embedding] = row_noise_hook(rows.subject_ranges * copies, noise,
                                                                 rng=np.random.RandomState(1))
    with capture(model, [module]) as seen, edit_outputs(model, edits):
        model.base_model(**batch, use_cache=False)
    states = seen[module][torch.arange(len(lookup)), lookup].float()
    return states.view(copies, len(rows.lookup), -1).mean(0)


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


def optimize_site_delta(
    model: nn.Module,
    tok,
    request: EditRequest,
    texts: list[str],
    site: str,
    site_layer: int,
    steps: int,
    lr: float,
    kl_factor: float,
    weight_decay: float,
    clamp_norm_factor: float,
    upper_only: bool = True,
    shared_prefix: bool = True,
    seed: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise δ added to the output of ``site`` at the last subject token of every row.

    Rows are ``texts + target`` (teacher forced) and one KL row ``"{subject} is a"``. The loss is
    the mean per-token NLL of the target (or, when minimising, the mean target probability
    exp(−NLL)) + ``kl_factor``·KL(p_δ ‖ p_0) at the KL row's last subject token +
    ``weight_decay``·‖δ‖/‖v₀‖²; after each Adam step ‖δ‖ is clamped to ``clamp_norm_factor``·‖v₀‖.
    As in the reference, the last iteration stops before its update when maximising.
    Returns (v₀, δ), v₀ being the site's unedited output at the first row's lookup.
    ``upper_only`` and ``shared_prefix`` skip work whose result cannot change (module docstring);
    both off is the plain loop they are tested against.
    """
    arch = architecture_of(model)
    device = next(model.parameters()).device
    rewrite = prompt_batch(tok, texts, request.subject, request.target, device)
    kl = prompt_batch(tok, [f"{request.subject} is a"], request.subject, None, device)
    rows = cat_batches(rewrite, kl, tok.pad_token_id)
    n_rewrite = len(texts)
    rng = np.random.RandomState(seed)
    prefix = None
    if shared_prefix:  # under noise the subject's states change every step; before it nothing does
        first_changed = rows.lookup if request.noise is None else torch.tensor([b for b, _ in rows.subject_ranges])
        prefix = SharedPrefix.build(model, rows, tok.pad_token_id, first_changed.to(device))
    offsets = prefix.offsets if prefix is not None else torch.zeros_like(rows.lookup)
    columns = rows.lookup + offsets
    noise = noise_for(request, rows, rng, arch.embedding, offsets)

    def inputs() -> dict:
        return prefix.inputs(model) if prefix is not None else rows.batch

    cached = layer_input(model, arch.layers, inputs(), site_layer) if upper_only and not noise else None

    delta = torch.zeros(model.config.hidden_size, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr)
    with frozen(model):
        all_rows = torch.arange(len(rows.lookup), device=device)
        seen: dict[str, torch.Tensor] = {}

        def add_delta(_name: str, hidden: torch.Tensor) -> torch.Tensor:
            if "v0" not in seen:
                seen["v0"] = hidden[0, columns[0]].detach().float().clone()
            hidden = hidden.clone()
            hidden[all_rows, columns] += delta.to(hidden.dtype)
            return hidden

        kl_init = None
        n_target = torch.tensor([len(e.target_ids) for e in rewrite.encoded], device=device, dtype=torch.float32)
        for step in range(steps):
            with run_from(model, arch.layers, cached), edit_outputs(model, {**noise, site: add_delta}):
                logp, kl_logits = _rewrite_and_kl(model, rows, n_rewrite, inputs(), offsets)
            nll = -(logp / n_target).mean()
            kl_logp = torch.log_softmax(kl_logits.float(), dim=-1)
            if kl_init is None:
                kl_init = kl_logp.detach().clone()
            kl_term = torch.nn.functional.kl_div(kl_init, kl_logp, log_target=True, reduction="batchmean")
            fit = torch.exp(-nll) if request.minimize else nll
            loss = fit + kl_factor * kl_term + weight_decay * delta.norm() / seen["v0"].norm() ** 2
            if step == steps - 1 and not request.minimize:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                limit = clamp_norm_factor * seen["v0"].norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
        return seen["v0"], delta.detach()


def _rewrite_and_kl(model: nn.Module, rows: PromptBatch, n_rewrite: int, inputs: dict, offsets: torch.Tensor):
    """Target log-probs of the rewrite rows and next-token logits at the KL row's lookup, one pass
    over ``inputs``, where row ``r``'s position ``p`` is column ``p + offsets[r]``."""
    device = rows.lookup.device
    row_idx, pos_idx, tok_idx, owner = [], [], [], []
    for r, enc in enumerate(rows.encoded[:n_rewrite]):
        for pos, t in zip(enc.target_positions, enc.target_ids):
            row_idx.append(r)
            pos_idx.append(pos + int(offsets[r]))
            tok_idx.append(t)
            owner.append(r)
    kl_row = n_rewrite
    row_idx.append(kl_row)
    pos_idx.append(int(rows.lookup[kl_row] + offsets[kl_row]))
    logits = logits_at(model, inputs, torch.tensor(row_idx, device=device), torch.tensor(pos_idx, device=device))
    target_logits, kl_logits = logits[:-1], logits[-1:]
    token_lp = torch.log_softmax(target_logits.float(), -1).gather(1, torch.tensor(tok_idx, device=device)[:, None])[:, 0]
    logp = torch.zeros(n_rewrite, device=device).index_add(0, torch.tensor(owner, device=device), token_lp)
    return logp, kl_logits


def transposed_if_needed(model: nn.Module, update: torch.Tensor) -> torch.Tensor:
    """A [d_out, d_in] update in the layout of the down-projection weight (GPT-2 stores [in, out])."""
    return update.T.contiguous() if architecture_of(model).down_proj_transposed else update
