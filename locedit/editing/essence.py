"""Essence (paper App. B, paper-spec §8.4): does the edit change what the model says about the subject?

Before any edit, sample a few texts from the unedited model after ``"{subject} is a"``; after each
edit, their perplexity is measured again. ``essence_score = 1 − clamp(ppl_post − ppl_pre, 0, 5)/5``.

    >>> texts = essence_texts(model, tok, "Danielle Darrieux", n_texts=5, max_new_tokens=100)  # doctest: +SKIP
    >>> perplexities(model, tok, texts)                                                      # doctest: +SKIP
    tensor([ 7.1,  9.4, ...])

The released reference code samples the texts but never scores them (its generation tests are
forced off); here it is a real option (``editing.essence``). Perplexity is the usual
exp(mean NLL over the predicted tokens); the reference divides the sum by the token count
including the first, unpredicted token (a ≤1% difference at 100 tokens).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from locedit.noise import SubjectNoise, noised_subjects
from locedit.prompts import Encoded, gather_target_log_probs, pad_batch, subject_range, subject_span

ESSENCE_PROMPT = "{} is a"


@torch.no_grad()
def essence_texts(model: nn.Module, tok, subject: str, n_texts: int = 5, max_new_tokens: int = 100, top_k: int = 5,
                  seed: int = 0) -> list[str]:
    """``n_texts`` top-k samples of the unedited model after ``"{subject} is a"`` (prompt included)."""
    device = next(model.parameters()).device
    prompt = tok(ESSENCE_PROMPT.format(subject), return_tensors="pt").to(device)
    torch.manual_seed(seed)
    out = model.generate(**prompt, do_sample=True, top_k=top_k, top_p=1.0, temperature=1.0,
                         max_new_tokens=max_new_tokens, num_return_sequences=n_texts,
                         pad_token_id=tok.pad_token_id)
    return tok.batch_decode(out, skip_special_tokens=True)


@torch.no_grad()
def perplexities(model: nn.Module, tok, texts: list[str], subject: str | None = None, sigma: float | None = None,
                 seed: int = 1) -> np.ndarray:
    """Perplexity of each text; with ``sigma``, subject noise at the subject's tokens (fact forcing):
    ``SubjectNoise(sigma, seed)``, each text drawing as if alone, the same before and after an edit.

    One text per pass: unembedding every position of a 100-token text against a 262k vocabulary
    is ~100 MB of logits per row.
    """
    device = next(model.parameters()).device
    out = []
    for text in texts:
        ids = tok(text)["input_ids"]
        if len(ids) < 2:  # nothing to predict
            out.append(1.0)
            continue
        encoded = Encoded(ids[:1], ids[1:])
        noised = sigma is not None and subject_span(text, subject)
        span = subject_range(tok, text, subject) if noised else None
        with noised_subjects(model, [span], SubjectNoise(sigma, seed) if noised else None):
            logp = gather_target_log_probs(model, pad_batch([ids], tok.pad_token_id, device), [encoded])
        out.append(float(torch.exp(-logp[0] / (len(ids) - 1))))
    return np.array(out)
