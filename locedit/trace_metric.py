"""What a causal trace measures in each row: P(target) (the paper) or a logit difference.

``tracing.metric``:

- ``prob``: the probability of the whole target, teacher-forced (Meng et al. 2022; Hase et al.);
- ``logit_diff``: logit(first target token) − logit(contrast token) at the last prompt position,
  the contrast being the corrupted run's answer: the first token the corrupted rows, averaged,
  rank highest other than the target's (Zhang & Nanda, ICLR 2024, recommend logit difference
  over probability because probability saturates and hides negative components).

Both are computed from final hidden states, so one forward pass serves any metric::

    >>> m = Measure("prob", target_positions=[4, 5], target_ids=[1, 2])
    >>> logits = torch.log(torch.tensor([[[.2, .5, .3], [.1, .1, .8]]]))       # one row, vocabulary 3
    >>> round(m.prob_from_logits(logits).item(), 6)                             # P = .5 × .8
    0.4
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .localization import METRICS
from .prompts import Encoded, unembed



@dataclass(frozen=True)
class Measure:
    """The metric of one traced prompt; ``target_positions`` are those of the full sequence."""

    metric: str
    target_positions: list[int]
    target_ids: list[int]
    contrast_id: int | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"tracing.metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.metric == "logit_diff" and self.contrast_id is None:
            raise ValueError("metric logit_diff needs a contrast token (Measure.contrasted)")

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

    @classmethod
    def contrasted(cls, metric: str, encoded: Encoded, corrupted_logits: torch.Tensor) -> "Measure":
        """The measure of ``encoded``; for ``logit_diff`` its contrast is the corrupted rows' answer
        (``corrupted_logits``: ``[rows, V]`` at the last prompt position)."""
        positions, ids = list(encoded.target_positions), list(encoded.target_ids)
        if metric != "logit_diff":
            return cls(metric, positions, ids)
        probs = torch.softmax(corrupted_logits.float(), dim=-1).mean(dim=0)
        probs[ids[0]] = -1.0
        return cls(metric, positions, ids, int(probs.argmax()))
