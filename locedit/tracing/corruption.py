"""Corruptions for causal tracing: how the corrupted run differs from the clean prompt.

Two are implemented (``tracing.corruption``):

- ``gaussian`` (the paper, Meng et al. 2022): ``samples`` rows, each with σ-scaled Gaussian noise
  added to the embedding-layer output at the subject tokens: the rows of one case of
  :class:`locedit.noise.SubjectNoise` (``RandomState(seed)``, rows in order; the reference code's
  draw), the same in every pass of a trace;
- ``str``, symmetric token replacement (Zhang & Nanda, ICLR 2024): one row whose subject tokens
  are those of another CounterFact subject of the same relation with as many tokens and another
  answer, so the corrupted run is an in-distribution prompt whose answer is the partner's.

::

    >>> g = GaussianNoise(sigma=0.1, samples=10, seed=1)
    >>> run = g.corrupt(ids=[2, 7, 8, 9, 4], subject=(1, 3), d_model=16)
    >>> run.rows, tuple(run.ids.shape), tuple(run.noise.shape)
    (10, (10, 5), (10, 2, 16))
    >>> s = TokenReplacement(prompt_ids=(2, 5, 6, 9), partner_case_id=7)
    >>> s.corrupt(ids=[2, 7, 8, 9, 4], subject=(1, 3), d_model=16).ids.tolist()
    [[2, 5, 6, 9, 4]]

Partners for ``str`` are chosen once per run, deterministically, from the CounterFact records of
the case's relation (:func:`find_replacement`; rule ``replacement_subjects``), and recorded per
case with their answer (``target_true`` and its first token, the logit difference's contrast,
:mod:`locedit.tracing.metric`). A case whose relation offers no partner is reported, never paired
across relations: the corrupted prompt would then ask about another relation, and its answer
would not be the partner's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from locedit.noise import SubjectNoise
from locedit.prompts import subject_range
from locedit.tracing.metric import answer_token



@dataclass
class Corrupted:
    """The corrupted rows of one prompt: their input ids and the noise added to their subject embeddings."""

    ids: torch.Tensor  # [rows, T]
    subject: tuple[int, int]
    noise: torch.Tensor | None = None  # [rows, subject tokens, d], added at the embedding output
    _cast: dict[torch.dtype, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    def input_ids(self, copies: int, start: int = 0) -> torch.Tensor:
        """The corrupted ids from position ``start`` on, ``copies`` times over (copy-major rows)."""
        return self.ids[:, start:].repeat(copies, 1)

    def embedding_edit(self, start: int = 0, end: int | None = None):
        """An edit function for the embedding output of positions ``[start, end)`` of the rows, or
        of any number of copies of them (copy-major), or None when no noise falls there.

        The noise stays where :meth:`GaussianNoise.corrupt` put it, on the model's device: every
        pass of a trace adds the same tensor (cast once per dtype), broadcast over its copies. This
        is tracing's own hook, not :func:`locedit.noise.noised_subjects`: the noise is the same
        (``fresh=False``), but a trace's passes cover a window of positions, and many copies of
        the samples (restorations) share one draw."""
        if self.noise is None:
            return None
        b, e = self.subject
        end = self.ids.shape[1] if end is None else end
        lo, hi = max(b, start), min(e, end)
        if lo >= hi:
            return None

        def add(_name: str, hidden: torch.Tensor) -> torch.Tensor:
            if hidden.dtype not in self._cast:
                self._cast[hidden.dtype] = self.noise.to(hidden.dtype)
            return _add_noise(hidden, lo - start, self._cast[hidden.dtype][:, lo - b : hi - b])

        return add


def _add_noise(hidden: torch.Tensor, start: int, noise: torch.Tensor) -> torch.Tensor:
    """``hidden`` plus ``noise`` [rows, n, d] at positions ``[start, start + n)``, as a new tensor.

    ``hidden`` may hold several copies of the noised rows (copy-major, as a batch of restorations
    does): the noise is broadcast over the copies, not repeated. It is cast to ``hidden``'s dtype
    and added there, as ``hidden[:, start:start + n] += noise.to(hidden.dtype)`` per copy would.
    """
    rows, n, d = noise.shape
    hidden = hidden.clone(memory_format=torch.contiguous_format)
    hidden[:, start : start + n].view(-1, rows, n, d).add_(noise.to(hidden.dtype))
    return hidden


@dataclass(frozen=True)
class GaussianNoise:
    """The paper's corruption: ``samples`` rows of ``N(0, σ²)`` noise on the subject embeddings,
    ``SubjectNoise(sigma, seed).draw(samples, ...)`` (one case's rows, the same in every pass)."""

    sigma: float
    samples: int = 10
    seed: int = 1
    name = "gaussian"

    def corrupt(self, ids: list[int], subject: tuple[int, int], d_model: int,
                device: torch.device | str = "cpu") -> Corrupted:
        b, e = subject
        noise = torch.from_numpy(SubjectNoise(self.sigma, self.seed).draw(self.samples, e - b, d_model)).to(device)
        return Corrupted(torch.tensor([ids], device=device).repeat(self.samples, 1), subject, noise)


@dataclass(frozen=True)
class TokenReplacement:
    """Symmetric token replacement: the prompt with another subject's tokens (same count) in place."""

    prompt_ids: tuple[int, ...]
    partner_case_id: int
    name = "str"

    def corrupt(self, ids: list[int], subject: tuple[int, int], d_model: int,
                device: torch.device | str = "cpu") -> Corrupted:
        n = len(self.prompt_ids)
        if len(ids) < n or any(a != b for i, (a, b) in enumerate(zip(ids, self.prompt_ids))
                               if not subject[0] <= i < subject[1]):
            raise ValueError(f"the replacement prompt of partner case_id {self.partner_case_id} differs from the "
                             "prompt outside the subject tokens; choose partners with find_replacement")
        return Corrupted(torch.tensor([list(self.prompt_ids) + list(ids[n:])], device=device), subject)


@dataclass(frozen=True)
class Replacement:
    """The subject that replaces a case's subject under ``str``, and the prompt and answer it makes."""

    case_id: int
    partner_case_id: int
    partner_subject: str
    partner_target: str
    partner_target_id: int  # first token of " " + partner_target: the corrupted prompt's answer
    prompt_ids: tuple[int, ...]


def find_replacement(tok, case_id: int, template: str, subject: str, target_true: str, relation_id: str,
                     pool: pd.DataFrame, seed: int = 1) -> Replacement | None:
    """The first record of ``pool`` (columns case_id, relation_id, subject, target_true) of the same
    relation, in an order drawn from ``RandomState(seed + case_id)``, whose subject put into
    ``template`` changes exactly the subject's tokens (same count, same place, all other tokens
    equal) and whose answer starts with another token than ``target_true`` (a shared first token
    would make the logit difference zero by construction).

    None when no record qualifies (the caller reports the case_id).
    """
    prompt = template.format(subject)
    ids = tok(prompt)["input_ids"]
    b, e = subject_range(tok, prompt, subject)
    first_true = answer_token(tok, target_true)
    same = pool[pool.relation_id == relation_id]
    order = np.random.RandomState(seed + case_id).permutation(len(same))
    for i in order:
        other = same.iloc[int(i)]
        if int(other.case_id) == case_id or other.subject == subject:
            continue
        answer_id = answer_token(tok, other.target_true)
        if answer_id == first_true:
            continue
        replaced = template.format(other.subject)
        other_ids = tok(replaced)["input_ids"]
        if len(other_ids) != len(ids) or other_ids[:b] != ids[:b] or other_ids[e:] != ids[e:]:
            continue
        if other_ids[b:e] == ids[b:e] or subject_range(tok, replaced, other.subject) != (b, e):
            continue
        return Replacement(case_id, int(other.case_id), other.subject, other.target_true, answer_id,
                           tuple(other_ids))
    return None


def replacements(tok, cases: pd.DataFrame, pool: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """One row per case of ``cases`` (case_id, relation_id, prompt_template, subject, target_true):
    its partner from the records of ``pool`` of the same relation, or nulls with ``reason`` when
    none qualifies; ``candidates`` counts the other records of the relation that were tried.

        >>> table = replacements(tok, cases, cases_frame(load_counterfact("bundled")))   # doctest: +SKIP
        >>> table[["case_id", "partner_case_id", "partner_target", "candidates", "reason"]]  # doctest: +SKIP
    """
    rows = []
    for case in tqdm(cases.itertuples(), total=len(cases), desc="str partners", unit="case", mininterval=10):
        candidates = int(((pool.relation_id == case.relation_id) & (pool.case_id != case.case_id)).sum())
        found = find_replacement(tok, int(case.case_id), case.prompt_template, case.subject, case.target_true,
                                 case.relation_id, pool, seed)
        if found is None:
            rows.append({"case_id": int(case.case_id), "relation_id": case.relation_id, "partner_case_id": None,
                         "partner_subject": None, "partner_target": None, "partner_target_id": None,
                         "prompt_ids": None, "candidates": candidates,
                         "reason": f"none of the {candidates} other records of relation {case.relation_id} has a "
                                   "subject of as many tokens in this template and an answer with another first "
                                   "token; add records of the relation (data.counterfact) or trace this case "
                                   "under gaussian"})
        else:
            rows.append({**found.__dict__, "relation_id": case.relation_id, "prompt_ids": list(found.prompt_ids),
                         "candidates": candidates, "reason": None})
    frame = pd.DataFrame(rows)
    for column in ("partner_case_id", "partner_target_id"):
        frame[column] = frame[column].astype("Int64")
    return frame
