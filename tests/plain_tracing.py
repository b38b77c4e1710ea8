"""The plain causal-tracing algorithm, as in the paper's code: one forward pass per (token, layer).

Row 0 of each pass is clean, the other rows are corrupted: ``samples`` rows with subject noise
(``gaussian``) or one row whose prompt ids are ``replacement_ids`` (``str``); the traced module's
output at the token is copied from row 0 into the corrupted rows for every layer of the window.
Full logits are computed at every position; ``logit_diff`` contrasts the target's first token
with ``contrast``'s. This is the oracle the batched, prefix-cached
``locedit.tracing.trace.trace`` must equal, for both metrics.
"""

from __future__ import annotations

import numpy as np
import torch

from locedit.hooks import edit_outputs
from locedit.models import architecture_of, num_layers
from locedit.plan import layer_window
from locedit.prompts import encode, subject_range


@torch.no_grad()
def plain_trace(model, tok, prompt, subject, target, kind, window, samples=10, sigma=0.1, seed=1,
                metric="prob", replacement_ids=None, contrast=None):
    arch = architecture_of(model)
    n_layers = num_layers(model)
    enc = encode(tok, prompt, target)
    b, e = subject_range(tok, prompt, subject)
    device = next(model.parameters()).device
    if replacement_ids is None:
        rows = [enc.ids] * (samples + 1)
        draw = torch.from_numpy(np.random.RandomState(seed).randn(samples, e - b, model.config.hidden_size) * sigma)
    else:
        rows = [enc.ids, list(replacement_ids) + enc.target_ids]
        draw = None
    ids = torch.tensor(rows, device=device)

    def add_noise(_name, h):
        if draw is None:
            return h
        h = h.clone()
        h[1:, b:e] += draw.to(h.dtype)
        return h

    def logits_of(extra_edits):
        with edit_outputs(model, {arch.embedding: add_noise, **extra_edits}):
            return model(input_ids=ids).logits.float()

    first = enc.target_positions[0]
    base_logits = logits_of({})
    contrast_id = encode(tok, "", contrast).target_ids[0] if metric == "logit_diff" else None

    def values(logits):
        if metric == "logit_diff":
            return logits[:, first, enc.target_ids[0]] - logits[:, first, contrast_id]
        lp = torch.log_softmax(logits, -1)
        return sum(lp[:, pos, tokid] for pos, tokid in zip(enc.target_positions, enc.target_ids)).exp()

    base = values(base_logits)
    clean, low = base[0].item(), base[1:].mean().item()
    scores = np.full((len(enc.prompt_ids), n_layers), low)
    for t in range(b, len(enc.prompt_ids)):
        for layer in range(n_layers):

            def restore(_name, h, t=t):
                h = h.clone()
                h[1:, t] = h[0, t]
                return h

            edits = {arch.module_for(kind, j): restore for j in layer_window(layer, window, n_layers)}
            scores[t, layer] = values(logits_of(edits))[1:].mean().item()
    return scores, low, clean
