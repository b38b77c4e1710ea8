"""Raw probabilities of an edit request's prompts: rewrite, paraphrases and neighborhood.

For every prompt, P(target) and P(baseline) over the whole target are recorded, raw, so any
score can be derived downstream. Under fact forcing every prompt that contains the subject gets
subject noise at its own subject tokens, drawn afresh from ``RandomState(seed)`` per prompt, so a
prompt sees the same noise before and after an edit::

    >>> evaluate(model, tok, request).columns.tolist()                 # doctest: +SKIP
    ['prompt_type', 'prompt_idx', 'prompt', 'p_target', 'p_baseline', 'ppl']

A request with essence texts adds one row per text (``prompt_type`` ``essence``) whose ``ppl``
is the text's perplexity (:mod:`locedit.essence`); ``ppl`` is NaN on the other rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from .essence import perplexities
from .hooks import edit_outputs
from .models import architecture_of
from .noise import row_noise_hook
from .problems import EditRequest
from .prompts import encode, gather_target_log_probs, pad_batch, subject_range, subject_span


def evaluation_prompts(request: EditRequest) -> list[tuple[str, int, str]]:
    rows = [("rewrite", 0, request.prompt)]
    rows += [("paraphrase", i, p) for i, p in enumerate(request.paraphrases)]
    rows += [("neighborhood", i, p) for i, p in enumerate(request.neighborhood)]
    return rows


@torch.no_grad()
def evaluate(model: nn.Module, tok, request: EditRequest, seed: int = 1) -> pd.DataFrame:
    """One row per evaluated prompt: P(target), P(baseline) in one batched pass."""
    device = next(model.parameters()).device
    prompts = evaluation_prompts(request)
    encoded = [encode(tok, text, t) for _, _, text in prompts for t in (request.target, request.baseline)]
    batch = pad_batch([e.ids for e in encoded], tok.pad_token_id, device)
    edits = {}
    if request.noise is not None:
        ranges = [subject_range(tok, text, request.subject) if subject_span(text, request.subject) else None
                  for _, _, text in prompts for _ in range(2)]
        edits[architecture_of(model).embedding] = row_noise_hook(ranges, request.noise, seed=seed)
    with edit_outputs(model, edits):
        probs = gather_target_log_probs(model, batch, encoded).exp().view(-1, 2).cpu().numpy()
    table = pd.DataFrame(
        {
            "prompt_type": [t for t, _, _ in prompts],
            "prompt_idx": [i for _, i, _ in prompts],
            "prompt": [p for _, _, p in prompts],
            "p_target": probs[:, 0],
            "p_baseline": probs[:, 1],
            "ppl": np.nan,
        }
    )
    if not request.essence:
        return table
    ppl = perplexities(model, tok, list(request.essence), request.subject, request.noise, seed)
    essence = pd.DataFrame({"prompt_type": "essence", "prompt_idx": range(len(ppl)), "prompt": list(request.essence),
                            "p_target": np.nan, "p_baseline": np.nan, "ppl": ppl})
    return pd.concat([table, essence], ignore_index=True)
