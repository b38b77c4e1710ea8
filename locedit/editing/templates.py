"""Context templates for ROME and MEMIT, sampled once per model with a fixed seed and stored.

    >>> templates = context_templates(model, tok, seed=0)           # doctest: +SKIP
    >>> templates["rome"][:2], len(templates["rome"])               # doctest: +SKIP
    (['{}', 'The first time I saw. {}'], 21)

ROME: ``"{}"`` plus 10 texts of 5 and 10 of 10 tokens sampled (top-k 5) after the BOS/EOS token,
each followed by ``". {}"``. MEMIT: ``[["{}"], 5 texts of 10 tokens after each of "The",
"Therefore", "Because", "I", "You"]``. Braces are removed from samples, newlines become spaces.
"""

from __future__ import annotations

import torch
from torch import nn

from locedit.plan import ROME_LENGTHS

MEMIT_PREFIXES = ("The", "Therefore", "Because", "I", "You")


def _clean(text: str, tok) -> str:
    """Drop braces, added/special token strings (Gemma samples ``<start_of_image>``) and extra spaces."""
    for added in tok.added_tokens_decoder.values():
        text = text.replace(str(added), " ")
    return " ".join(text.replace("{", " ").replace("}", " ").split())


@torch.no_grad()
def _sample(model: nn.Module, tok, prompt_ids: list[int], n: int, length: int) -> list[str]:
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids] * n, device=device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=5, top_p=None,
                         temperature=None, max_new_tokens=length, pad_token_id=tok.pad_token_id)
    return [_clean(tok.decode(row, skip_special_tokens=True), tok) for row in out]


def context_templates(model: nn.Module, tok, seed: int = 0, rome_lengths=ROME_LENGTHS,
                      memit_length: int = 10) -> dict[str, list]:
    """Both methods' templates, reproducible for a given model and seed.

    ``rome_lengths`` lists (tokens, count) pairs; the paper's ((5, 10), (10, 10)) gives 21 templates.
    Lengths count sampled tokens, as the ROME paper describes its templates; the reference code's
    ``max_out_len`` also counts the prompt's one token, so it samples one fewer (4 and 9; MEMIT 9):
    a deliberate deviation, measured by ``tools/measure_deviations.py`` (README "Deviations").
    """
    torch.manual_seed(seed)
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    rome = ["{}"]
    for length, count in rome_lengths:
        rome += [f"{text}. {{}}" for text in _sample(model, tok, [start], count, length)]
    memit_group = []
    for prefix in MEMIT_PREFIXES:
        memit_group += [f"{text}. {{}}" for text in _sample(model, tok, tok(prefix)["input_ids"], 1, memit_length)]
    return {"rome": rome, "memit": [["{}"], memit_group], "seed": seed}
