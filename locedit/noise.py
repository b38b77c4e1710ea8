"""Subject noise: the draw used to corrupt subject embeddings, and the noise level σ.

The draw is exactly the ROME reference's, so traces are comparable number for number::

    >>> subject_noise(samples=10, n_tokens=3, d_model=640, sigma=0.1, seed=1).shape
    (10, 3, 640)

and σ is either a constant or ``factor × std`` of the embedding-layer outputs of the knowns'
subjects (the paper's 3σ rule, paper-spec §4.4).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .models import architecture_of


def subject_noise(samples: int, n_tokens: int, d_model: int, sigma: float, seed: int = 1) -> np.ndarray:
    """``RandomState(seed).randn(samples, n_tokens, d_model) * sigma``, fresh for every call."""
    return np.random.RandomState(seed).randn(samples, n_tokens, d_model) * sigma


def add_noise_hook(rows: slice | torch.Tensor, start: int, end: int, noise: torch.Tensor):
    """An edit function (for :func:`locedit.hooks.edit_outputs`) adding ``noise`` at ``rows × [start, end)``."""

    def add(_name: str, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        hidden[rows, start:end] += noise.to(hidden.dtype)
        return hidden

    return add


@torch.no_grad()
def embedding_std(model: nn.Module, tok, subjects: list[str]) -> float:
    """Scalar std over all entries of the embedding-layer outputs of each subject run alone.

    Subjects are encoded without special tokens, so Gemma's BOS embedding does not enter the std.
    """
    embed = model.get_submodule(architecture_of(model).embedding)
    device = next(model.parameters()).device
    chunks = []
    for subject in tqdm(subjects, desc="noise level: subject embeddings", unit="subject", mininterval=5):
        ids = tok(subject, add_special_tokens=False)["input_ids"]
        chunks.append(embed(torch.tensor([ids], device=device))[0].float().cpu())
    return float(torch.cat(chunks).std())


def row_noise_hook(
    ranges: list[tuple[int, int] | None],
    sigma: float,
    rng: np.random.RandomState | list[np.random.RandomState] | None = None,
    seed: int = 1,
):
    """An edit function adding ``σ·N(0,1)`` at each row's own subject token range.

    Rows whose range is None (prompts without the subject) get none. With a persistent ``rng``
    every forward pass draws fresh noise (during an edit); a list gives each row its own
    generator (a batch of edits: each case draws from its own, in row order, as if alone).
    Without one, each row's noise is ``RandomState(seed)`` drawn afresh, so the same prompt sees
    the same noise before and after an edit (evaluation).
    """

    def add(_name: str, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        for row, span in enumerate(ranges):
            if span is None:
                continue
            b, e = span
            if isinstance(rng, list):
                source = rng[row]
            else:
                source = rng if rng is not None else np.random.RandomState(seed)
            draw = torch.from_numpy(source.randn(e - b, hidden.shape[-1]) * sigma)
            hidden[row, b:e] += draw.to(hidden.device, hidden.dtype)
        return hidden

    return add
