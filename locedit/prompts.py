"""Tokenization of prompt + target, subject token ranges, and whole-target probabilities.

The probability of a target is the product over all its tokens under teacher forcing, with the
target tokenized as ``" " + target`` and appended to the tokens of the prompt (paper-spec §4.1)::

    >>> target_log_probs(model, tok, ["The capital of Japan is"], ["Tokyo"]).exp()   # doctest: +SKIP
    tensor([0.2480])
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn


@dataclass(frozen=True)
class Encoded:
    """One prompt followed by one target, as token ids."""

    prompt_ids: list[int]
    target_ids: list[int]

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.target_ids

    @property
    def target_positions(self) -> range:
        """Positions whose logits predict the target tokens (teacher forcing)."""
        start = len(self.prompt_ids) - 1
        return range(start, start + len(self.target_ids))


@lru_cache(maxsize=1 << 16)
def encode(tok, prompt: str, target: str) -> Encoded:
    """Encode ``prompt`` (with the tokenizer's special tokens, e.g. Gemma's BOS) and ``" " + target``.
    Remembered per (tokenizer, prompt, target): a job tokenises each of its prompts once, however
    many passes (pre-edit, edit, evaluation) read it."""
    prompt_ids = tok(prompt)["input_ids"]
    target_ids = tok(" " + target.lstrip(" "), add_special_tokens=False)["input_ids"]
    if not target_ids:
        raise ValueError(f"target {target!r} encodes to no tokens")
    return Encoded(list(prompt_ids), list(target_ids))


def token_strings(tok, ids: list[int]) -> list[str]:
    return [tok.decode([i]) for i in ids]


def _folded(text: str) -> tuple[str, list[int]]:
    """ASCII-fold ``text`` and drop spaces before ``. , !`` (the reference's fallback match).

    Returns the folded string and, for each of its characters, the index it came from.
    """
    chars, origin = [], []
    for i, c in enumerate(text):
        for f in unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode():
            chars.append(f)
            origin.append(i)
    keep = [k for k in range(len(chars)) if not (chars[k] == " " and k + 1 < len(chars) and chars[k + 1] in ".,!")]
    return "".join(chars[k] for k in keep), [origin[k] for k in keep]


def subject_span(prompt: str, subject: str) -> tuple[int, int] | None:
    """Character span of the first occurrence of ``subject`` in ``prompt``, exact or ASCII-folded."""
    if subject and (start := prompt.find(subject)) >= 0:
        return start, start + len(subject)
    folded_prompt, origin = _folded(prompt)
    folded_subject, _ = _folded(subject)
    if folded_subject and (start := folded_prompt.find(folded_subject)) >= 0:
        return origin[start], origin[start + len(folded_subject) - 1] + 1
    return None


@lru_cache(maxsize=1 << 16)
def subject_range(tok, prompt: str, subject: str) -> tuple[int, int]:
    """Token range ``[start, end)`` of the first occurrence of ``subject`` in the encoded ``prompt``.

    ``start`` is the first token ending after the subject's first character and ``end`` follows
    the first token reaching its last one (the reference's rule), read from the tokenizer's
    character offsets, so special tokens (Gemma's BOS) shift the range as they should. Remembered
    like :func:`encode`.
    """
    span = subject_span(prompt, subject)
    if span is None:
        raise ValueError(f"subject {subject!r} not found in the tokens of prompt {prompt!r}")
    if not getattr(tok, "is_fast", False):
        raise TypeError("locedit needs a fast (Rust) tokenizer for character offsets; load it with use_fast=True")
    offsets = tok(prompt, return_offsets_mapping=True)["offset_mapping"]
    start = next(i for i, (_, stop) in enumerate(offsets) if stop > span[0])
    end = next(i for i, (_, stop) in enumerate(offsets) if stop >= span[1]) + 1
    return start, end


def pad_batch(sequences: list[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad token id lists into ``input_ids`` and ``attention_mask``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def logits_at(model: nn.Module, batch: dict[str, torch.Tensor], rows: torch.Tensor, positions: torch.Tensor):
    """Logits at the given (row, position) pairs only.

    Runs the body once and the unembedding on a contiguous 2-D slice: for Gemma's 262k vocabulary
    the full-sequence logits would dominate the cost (and ``logits_to_keep`` with frozen weights is
    100x slower, models.md). Logits are float32 whatever the model's dtype.
    """
    hidden = model.base_model(**{"use_cache": False, **batch}).last_hidden_state
    return unembed(model, hidden[rows, positions])


def unembed(model: nn.Module, hidden: torch.Tensor, token_ids: list[int] | None = None) -> torch.Tensor:
    """Float32 logits of final hidden states ``[n, d]`` (after the final norm), softcapped where the
    family caps them (Gemma); only the columns of ``token_ids`` when given (a 2-row matmul instead
    of the whole vocabulary's)."""
    head = model.get_output_embeddings()
    if token_ids is None:
        logits = head(hidden.contiguous()).float()
    else:
        ids = torch.tensor(token_ids, device=hidden.device)
        bias = head.bias[ids] if getattr(head, "bias", None) is not None else None
        logits = torch.nn.functional.linear(hidden.contiguous(), head.weight[ids], bias).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def gather_target_log_probs(
    model: nn.Module, batch: dict[str, torch.Tensor], encoded: list[Encoded], rows_per_item: int = 1
) -> torch.Tensor:
    """Sum of target-token log-probs for each row of ``batch``.

    Row ``r`` holds item ``encoded[r // rows_per_item]`` (so several noised copies of one prompt
    can share an :class:`Encoded`).
    """
    rows, positions, tokens, owner = [], [], [], []
    for r in range(batch["input_ids"].shape[0]):
        enc = encoded[r // rows_per_item]
        for pos, token in zip(enc.target_positions, enc.target_ids):
            rows.append(r)
            positions.append(pos)
            tokens.append(token)
            owner.append(r)
    device = batch["input_ids"].device
    rows_t = torch.tensor(rows, device=device)
    logits = logits_at(model, batch, rows_t, torch.tensor(positions, device=device))
    token_lp = torch.log_softmax(logits.float(), dim=-1).gather(1, torch.tensor(tokens, device=device)[:, None])[:, 0]
    out = torch.zeros(batch["input_ids"].shape[0], device=device)
    return out.index_add_(0, torch.tensor(owner, device=device), token_lp)


@torch.no_grad()
def target_log_probs(
    model: nn.Module, tok, prompts: list[str], targets: list[str], batch_size: int = 32
) -> torch.Tensor:
    """log P(target | prompt) over the whole target, for each (prompt, target) pair, batched."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        encoded = [encode(tok, p, t) for p, t in zip(prompts[i : i + batch_size], targets[i : i + batch_size])]
        batch = pad_batch([e.ids for e in encoded], tok.pad_token_id, device)
        out.append(gather_target_log_probs(model, batch, encoded).cpu())
    return torch.cat(out) if out else torch.zeros(0)
