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

from locedit.models import architecture_of


def subject_noise(samples: int, n_tokens: int, d_model: int, sigma: float, seed: int = 1) -> np.ndarray:
    """``RandomState(seed).randn(samples, n_tokens, d_model) * sigma``, fresh for every call."""
    return np.random.RandomState(seed).randn(samples, n_tokens, d_model) * sigma


def add_noise(hidden: torch.Tensor, start: int, noise: torch.Tensor) -> torch.Tensor:
    """``hidden`` plus ``noise`` [rows, n, d] at positions ``[start, start + n)``, as a new tensor.

    ``hidden`` may hold several copies of the noised rows (copy-major, as a batch of restorations
    does): the noise is broadcast over the copies, not repeated. It is cast to ``hidden``'s dtype
    and added there, as ``hidden[:, start:start + n] += noise.to(hidden.dtype)`` per copy would.
    """
    rows, n, d = noise.shape
    hidden = hidden.clone(memory_format=torch.contiguous_format)
    hidden[:, start : start + n].view(-1, rows, n, d).add_(noise.to(hidden.dtype))
    return hidden


def add_noise_hook(start: int, noise: torch.Tensor):
    """An edit function (for :func:`locedit.hooks.edit_outputs`) applying :func:`add_noise`."""
    return lambda _name, hidden: add_noise(hidden, start, noise)


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

    The values are those of one ``randn(e - b, d) * σ`` per row, in row order; what reaches the
    device is cheaper: fresh draws go in one copy per forward pass, and the ``RandomState(seed)``
    draw of a span length is made and copied once for every row and pass of the hook.
    """
    seeded: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def add(_name: str, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        spans = [(row, *span) for row, span in enumerate(ranges) if span is not None]
        d = hidden.shape[-1]
        if rng is None:
            for row, b, e in spans:
                key = (e - b, hidden.dtype, hidden.device)
                if key not in seeded:
                    draw = np.random.RandomState(seed).randn(e - b, d) * sigma
                    seeded[key] = torch.from_numpy(draw).to(hidden.device, hidden.dtype)
                hidden[row, b:e] += seeded[key]
            return hidden
        if not spans:
            return hidden
        sources = rng if isinstance(rng, list) else [rng] * len(ranges)
        draws = np.concatenate([sources[row].randn(e - b, d) * sigma for row, b, e in spans])
        block = torch.from_numpy(draws).to(hidden.device, hidden.dtype)
        offset = 0
        for row, b, e in spans:
            hidden[row, b:e] += block[offset : offset + e - b]
            offset += e - b
        return hidden

    return add
