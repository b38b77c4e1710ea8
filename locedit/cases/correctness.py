"""Which CounterFact prompts the model completes correctly (paper-spec §4.3).

A prompt is correct iff ``o_true`` (lower-cased, stripped) is a substring of the model's greedy
continuation (36 new tokens by default, lower-cased, stripped)::

    >>> is_correct(" French. She is a French-Canadian", "French")
    True
    >>> is_correct("the official language of", "Portuguese")
    False
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from locedit.prompts import target_log_probs


def is_correct(generation: str, target: str) -> bool:
    return target.strip().lower() in generation.strip().lower()


@torch.no_grad()
def greedy_continuations(
    model: nn.Module, tok, prompts: list[str], max_new_tokens: int = 36, batch_size: int = 16
) -> list[str]:
    """Greedy continuations (new text only, without pad/EOS), batched with left padding."""
    device = next(model.parameters()).device
    side = tok.padding_side
    tok.padding_side = "left"
    out: list[str] = []
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc="greedy generation", unit="batch", mininterval=5):
            batch = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(device)
            generated = model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
                top_p=None,
                top_k=None,
                temperature=None,
            )
            new = generated[:, batch["input_ids"].shape[1] :]
            out.extend(tok.decode(row, skip_special_tokens=True).strip() for row in new)
    finally:
        tok.padding_side = side
    return out


def check_correctness(
    model: nn.Module, tok, cases: pd.DataFrame, max_new_tokens: int = 36, batch_size: int = 16
) -> pd.DataFrame:
    """One row per case: the generation, ``is_correct``, and whole-target P(o_true), P(o_new)."""
    prompts = cases["prompt"].tolist()
    generations = greedy_continuations(model, tok, prompts, max_new_tokens, batch_size)
    p_true = target_log_probs(model, tok, prompts, cases["target_true"].tolist(), batch_size).exp()
    p_new = target_log_probs(model, tok, prompts, cases["target_new"].tolist(), batch_size).exp()
    return pd.DataFrame(
        {
            "case_id": cases["case_id"].to_numpy(),
            "prompt": prompts,
            "target_true": cases["target_true"].to_numpy(),
            "generation": generations,
            "is_correct": [is_correct(g, t) for g, t in zip(generations, cases["target_true"])],
            "p_true": p_true.numpy(),
            "p_new": p_new.numpy(),
        }
    )
