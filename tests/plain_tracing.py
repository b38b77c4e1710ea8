"""The plain causal-tracing algorithm, as in the paper's code: one forward pass per (token, layer).

Row 0 of each pass is clean, rows 1..samples get subject noise; the traced module's output at the
token is copied from row 0 into the noised rows for every layer of the window. Full logits are
computed at every position. This is the oracle the batched ``locedit.tracing.trace`` must equal.
"""

from __future__ import annotations

import numpy as np
import torch

from locedit.hooks import edit_outputs
from locedit.models import architecture_of, num_layers
from locedit.noise import subject_noise
from locedit.prompts import encode, subject_range
from locedit.tracing import layer_window


@torch.no_grad()
def plain_trace(model, tok, prompt, subject, target, kind, window, samples, noise, seed=1):
    arch = architecture_of(model)
    n_layers = num_layers(model)
    enc = encode(tok, prompt, target)
    b, e = subject_range(tok, prompt, subject)
    device = next(model.parameters()).device
    ids = torch.tensor([enc.ids] * (samples + 1), device=device)
    draw = torch.from_numpy(subject_noise(samples, e - b, model.config.hidden_size, noise, seed))

    def add_noise(_name, h):
        h = h.clone()
        h[1:, b:e] += draw.to(h.dtype)
        return h

    def probs(extra_edits):
        with edit_outputs(model, {arch.embedding: add_noise, **extra_edits}):
            logits = model(input_ids=ids).logits.float()
        lp = torch.log_softmax(logits, -1)
        total = sum(lp[:, pos, tokid] for pos, tokid in zip(enc.target_positions, enc.target_ids))
        return total.exp()

    base = probs({})
    clean, low = base[0].item(), base[1:].mean().item()
    scores = np.full((len(enc.prompt_ids), n_layers), low)
    for t in range(b, len(enc.prompt_ids)):
        for layer in range(n_layers):

            def restore(_name, h, t=t):
                h = h.clone()
                h[1:, t] = h[0, t]
                return h

            edits = {arch.module_for(kind, j): restore for j in layer_window(layer, window, n_layers)}
            scores[t, layer] = probs(edits)[1:].mean().item()
    return scores, low, clean
