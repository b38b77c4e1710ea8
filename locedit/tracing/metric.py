"""What a causal trace measures in each row: P(target) (the paper) or a logit difference.

``tracing.metric``:

- ``prob``: the probability of the whole target, teacher-forced (Meng et al. 2022; Hase et al.);
- ``logit_diff``: logit(first token of o_true) − logit(first token of the corrupted prompt's
  answer) at the last prompt position. The corrupted prompt's answer is the partner's
  ``target_true`` under token replacement (the prompt names the partner's subject, same
  relation) and CounterFact's ``target_new`` under Gaussian noise (the paper's counterfactual).
  Zhang & Nanda (ICLR 2024) recommend logit difference over probability: probability saturates
  and hides negative components.

Both are computed from final hidden states, so one forward pass serves any metric::

    >>> m = Measure("prob", target_positions=[4, 5], target_ids=[1, 2])
    >>> logits = torch.log(torch.tensor([[[.2, .5, .3], [.1, .1, .8]]]))       # one row, vocabulary 3
    >>> round(m.prob_from_logits(logits).item(), 6)                             # P = .5 × .8
    0.4
    >>> Measure("logit_diff", target_positions=[4, 5], target_ids=[1, 2], contrast_id=1)
    Traceback (most recent call last):
    ...
    ValueError: the contrast answer starts with the target's first token (id 1): the logit difference is 0 by construction; choose another contrast answer

How a trace's values become an effect (fraction restored, signed for the logit difference) is
:func:`locedit.tracing.effects.tracing_effects`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from locedit.localization import METRICS
from locedit.prompts import Encoded, encode, unembed


def answer_token(tok, answer: str) -> int:
    """The first token of ``" " + answer``, as an answer is appended to a prompt (:func:`locedit.prompts.encode`)."""
    return encode(tok, "", answer).target_ids[0]


@dataclass(frozen=True)
class Measure:
    """The metric of one traced prompt; ``target_positions`` are those of the full sequence;
    ``contrast_id`` (``logit_diff`` only): the first token of the corrupted prompt's answer."""

    metric: str
    target_positions: list[int]
    target_ids: list[int]
    contrast_id: int | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"tracing.metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.metric == "logit_diff":
            if self.contrast_id is None:
                raise ValueError("metric logit_diff needs the corrupted prompt's answer (trace(..., contrast=...))")
            if self.contrast_id == self.target_ids[0]:
                raise ValueError(f"the contrast answer starts with the target's first token (id {self.contrast_id}): "
                                 "the logit difference is 0 by construction; choose another contrast answer")

    @classmethod
    def of(cls, tok, metric: str, encoded: Encoded, contrast: str | None = None) -> "Measure":
        """The measure of ``encoded``; ``contrast``: the corrupted prompt's answer (``logit_diff``)."""
        contrast_id = answer_token(tok, contrast) if metric == "logit_diff" and contrast is not None else None
        return cls(metric, list(encoded.target_positions), list(encoded.target_ids), contrast_id)

    @property
    def positions(self) -> list[int]:
        """Positions whose logits the metric reads: every target token's for ``prob``, the first's otherwise."""
        return list(self.target_positions) if self.metric == "prob" else [self.target_positions[0]]

    def prob_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-row P(target) from float32 logits ``[rows, len(target_positions), V]``."""
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(2, torch.tensor(self.target_ids, device=logits.device).expand(len(logits), -1)[..., None])
        return picked[..., 0].sum(dim=1).exp()

    def of_hidden(self, model: nn.Module, hidden: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Per-row values from final hidden states ``[rows, T - offset, d]`` of a pass whose first
        position is ``offset`` (a pass that reuses a cached prefix)."""
        return self.of_read(model, self.read(hidden, offset))

    def read(self, hidden: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """The final hidden states the metric reads, ``[rows, len(positions), d]``: keep these from
        many passes and unembed them together (:meth:`of_read`), the vocabulary's matmul once."""
        return hidden[:, [p - offset for p in self.positions]]

    def of_read(self, model: nn.Module, read: torch.Tensor) -> torch.Tensor:
        """Per-row values from :meth:`read` states; ``logit_diff`` unembeds its two tokens only."""
        rows, k, d = read.shape
        tokens = None if self.metric == "prob" else [self.target_ids[0], self.contrast_id]
        logits = unembed(model, read.reshape(rows * k, d), tokens).view(rows, k, -1)
        if tokens is not None:
            return logits[:, 0, 0] - logits[:, 0, 1]
        return self.prob_from_logits(logits)
