"""Subject noise: σ-scaled Gaussian noise added to the embedding-layer output at subject tokens,
as one value (:class:`SubjectNoise`) with one random-generator policy, and the noise level σ.

Every site that noises subjects (tracing's corrupted samples, noised targets, an edit's
optimisation under fact forcing, its evaluation, essence perplexities) follows the policy of
:class:`SubjectNoise`; all but tracing install it with :func:`noised_subjects`::

    >>> noise = SubjectNoise(sigma=0.1, seed=1)            # fresh=False: the same noise every pass
    >>> with noised_subjects(model, [(1, 3), None, (0, 2)], noise):     # doctest: +SKIP
    ...     model(**batch)           # rows 0 and 2 noised at their subject tokens, row 1 not
    >>> noise.draw(samples=10, n_tokens=3, d_model=640).shape           # tracing's sample set
    (10, 3, 640)

The draw is exactly the ROME reference's, so traces are comparable number for number, and σ is
either a constant or ``factor × std`` of the embedding-layer outputs of the knowns' subjects
(the paper's 3σ rule, paper-spec §4.4; :func:`embedding_std`).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from locedit.hooks import edit_outputs
from locedit.models import architecture_of

Span = tuple[int, int]


@dataclass(frozen=True)
class SubjectNoise:
    """``σ·N(0, 1)`` at subject tokens, by one policy: every case owns a generator
    ``RandomState(seed)``, and its rows draw from it in row order, ``randn(e - b, d) * σ`` for a
    row whose subject is tokens ``[b, e)`` (a row without one draws nothing).

    ``fresh=False`` re-seeds every case's generator at every forward pass: a prompt sees the same
    noise in every pass, before and after an edit (evaluation, noised targets, tracing).
    ``fresh=True`` seeds it once, when the noise is installed, and lets it advance: every pass of an
    optimisation draws new noise. A batch of edits gives each case its own generator, so a case
    draws as if it were alone; each prompt row of an evaluation is a case of its own.

    numpy's legacy stream does not depend on how it is cut: ``randn(samples, n, d)`` in one call
    equals ``samples`` rows of ``randn(n, d)`` drawn one after another (:meth:`draw`).
    """

    sigma: float
    seed: int = 1
    fresh: bool = False

    def draw(self, samples: int, n_tokens: int, d_model: int) -> np.ndarray:
        """The noise of one case's ``samples`` rows with an ``n_tokens``-token subject (tracing's
        sample set), ``RandomState(seed).randn(samples, n_tokens, d_model) * σ``, [samples, n, d]."""
        return np.random.RandomState(self.seed).randn(samples, n_tokens, d_model) * self.sigma


class _NoiseHook:
    """The edit function (:func:`locedit.hooks.edit_outputs`) of :func:`noised_subjects`.

    The values are those of one ``randn(e - b, d) * σ`` per row; what reaches the device is
    cheaper: a pass's draws go in one copy, and under ``fresh=False`` (the same noise every pass)
    they are drawn and copied once per dtype and device.
    """

    def __init__(self, rows: Sequence[Span | None], noise: SubjectNoise, cases: Sequence[int]):
        self.noise = noise
        self.all_rows, self.all_cases = list(rows), list(cases)
        if len(self.all_cases) != len(self.all_rows):
            raise ValueError(f"{len(self.all_rows)} rows but {len(self.all_cases)} cases")
        self.generators = self._seeded()  # fresh=True: one per case for the hook's life
        self.only(range(len(self.all_rows)))

    def only(self, picked: Sequence[int] | torch.Tensor) -> None:
        """From the next pass on, the batch holds only rows ``picked`` (indices into the rows, in
        order): a case whose rows are left out draws nothing (a stopped case in an optimisation)."""
        picked = picked.tolist() if isinstance(picked, torch.Tensor) else list(picked)
        self.spans = [(row, *self.all_rows[i], self.all_cases[i]) for row, i in enumerate(picked)
                      if self.all_rows[i] is not None]
        self.fixed: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def _seeded(self) -> defaultdict[int, np.random.RandomState]:
        return defaultdict(lambda: np.random.RandomState(self.noise.seed))

    def _block(self, d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if not self.noise.fresh and (dtype, device) in self.fixed:
            return self.fixed[dtype, device]
        generators = self.generators if self.noise.fresh else self._seeded()
        draws = np.concatenate([generators[case].randn(e - b, d) * self.noise.sigma for _, b, e, case in self.spans])
        block = torch.from_numpy(draws).to(device, dtype)
        if not self.noise.fresh:
            self.fixed[dtype, device] = block
        return block

    def __call__(self, _name: str, hidden: torch.Tensor) -> torch.Tensor:
        if not self.spans:
            return hidden
        block = self._block(hidden.shape[-1], hidden.dtype, hidden.device)
        hidden = hidden.clone()
        offset = 0
        for row, b, e, _ in self.spans:
            hidden[row, b:e] += block[offset : offset + e - b]
            offset += e - b
        return hidden


@contextmanager
def noised_subjects(model: nn.Module, rows: Sequence[Span | None], noise: SubjectNoise | None,
                    cases: Sequence[int] | torch.Tensor | None = None) -> Iterator[_NoiseHook | None]:
    """During the block, ``noise`` is added to the embedding-layer output of each batch row ``r``
    at its subject tokens ``rows[r]`` (None: no subject, no noise); ``cases[r]`` is the case whose
    generator row ``r`` draws from (default: one case, every row drawing in row order).

    Yields the installed hook (None without ``noise``: nothing is added); ``hook.only(picked)``
    says that the next passes run only rows ``picked`` of ``rows``::

        >>> with noised_subjects(model, ranges, SubjectNoise(0.5, fresh=True), cases) as hook:  # doctest: +SKIP
        ...     for step in range(steps):   # a new draw every step, each case from its own generator
        ...         hook.only(active_rows)
        ...         loss = ...
    """
    if noise is None:
        yield None
        return
    cases = [0] * len(rows) if cases is None else cases.tolist() if isinstance(cases, torch.Tensor) else list(cases)
    hook = _NoiseHook(rows, noise, cases)
    with edit_outputs(model, {architecture_of(model).embedding: hook}):
        yield hook


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
