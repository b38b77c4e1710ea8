"""Prompt rows of many edit requests in one batch, each row tagged with its case, and the states
the batched methods read at each row's last subject token.

    >>> rows = case_rows(tok, requests, [[r.prompt] for r in requests], targets=None, device="cpu")  # doctest: +SKIP
    >>> states = states_at_subject(model, rows, inputs_of=[down], outputs_of=[down], sigma=None)    # doctest: +SKIP
    >>> states[down, "in"].shape          # one key per row (the down-projection's input)          # doctest: +SKIP
    torch.Size([4, 2048])

Noise (fact forcing) is :class:`locedit.noise.SubjectNoise` with every request a case: each draws
from its own generator in the order it would alone, so a case's result does not depend on which
cases share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from locedit.editing.case_updates import CaseUpdates, rows_updated
from locedit.editing.problems import EditRequest
from locedit.hooks import capture_inputs, capture_outputs, forward_until
from locedit.models import architecture_of
from locedit.noise import SubjectNoise, noised_subjects
from locedit.prompts import Encoded, encode, pad_batch, subject_range

NOISED_STATE_SAMPLES = 10  # noise draws averaged for keys and outputs under fact forcing


@dataclass
class PromptBatch:
    """Right-padded rows (prompt [+ target]) with the position of each row's last subject token."""

    batch: dict[str, torch.Tensor]
    encoded: list[Encoded]
    lookup: torch.Tensor
    subject_ranges: list[tuple[int, int]]


def prompt_batch(tok, texts: list[str], subject: str, target: str | None, device) -> PromptBatch:
    """Rows of ``texts`` (each containing ``subject``), followed by ``target`` when given."""
    encoded, ranges = [], []
    for text in texts:
        enc = encode(tok, text, target) if target is not None else Encoded(tok(text)["input_ids"], [])
        encoded.append(enc)
        ranges.append(subject_range(tok, text, subject))
    batch = pad_batch([e.ids for e in encoded], tok.pad_token_id, device)
    lookup = torch.tensor([end - 1 for _, end in ranges], device=device)
    return PromptBatch(batch, encoded, lookup, ranges)


@dataclass
class CaseRows:
    """A prompt batch whose row ``r`` belongs to request ``case[r]`` (rows grouped by case)."""

    rows: PromptBatch
    case: torch.Tensor

    @property
    def n_cases(self) -> int:
        return int(self.case.max()) + 1 if len(self.case) else 0


def stack_batches(parts: list[PromptBatch], pad_id: int) -> PromptBatch:
    """The rows of ``parts`` in order, right-padded into one batch."""
    encoded = [e for p in parts for e in p.encoded]
    device = parts[0].lookup.device
    return PromptBatch(pad_batch([e.ids for e in encoded], pad_id, device), encoded,
                       torch.cat([p.lookup for p in parts]), [r for p in parts for r in p.subject_ranges])


def one_case(rows: PromptBatch) -> CaseRows:
    """Every row of ``rows`` belongs to one request."""
    return CaseRows(rows, torch.zeros(len(rows.lookup), dtype=torch.long, device=rows.lookup.device))


def case_rows(tok, requests: list[EditRequest], texts: list[list[str]], targets: list[str | None] | None,
              device) -> CaseRows:
    """Rows ``texts[c]`` (followed by ``targets[c]`` when given) for every request ``c``."""
    targets = targets if targets is not None else [None] * len(requests)
    parts = [prompt_batch(tok, t, r.subject, target, device) for r, t, target in zip(requests, texts, targets)]
    case = torch.cat([torch.full((len(t),), c, dtype=torch.long) for c, t in enumerate(texts)]).to(device)
    return CaseRows(stack_batches(parts, tok.pad_token_id), case)


@torch.no_grad()
def states_at_subject(model: nn.Module, rows: CaseRows, inputs_of: list[str] = (), outputs_of: list[str] = (),
                      sigma: float | None = None, updates: CaseUpdates | None = None, seed: int = 1) -> dict:
    """Inputs / outputs of modules at each row's last subject token, ``{(name, "in"|"out"): [rows, d]}``.

    With ``sigma`` the mean over :data:`NOISED_STATE_SAMPLES` draws of subject noise at each row's
    own subject tokens (copies of the batch one after another, ``SubjectNoise(sigma, seed)`` with
    each request a case: it draws the same noise whatever shares its batch).
    ``updates`` (per-case, per-row) are in place during the pass, which stops at the deepest
    layer the named modules sit in.
    """
    copies = 1 if sigma is None else NOISED_STATE_SAMPLES
    batch = {k: v.repeat(copies, 1) for k, v in rows.rows.batch.items()}
    lookup = rows.rows.lookup.repeat(copies)
    row_case = rows.case.repeat(copies)
    noise = SubjectNoise(sigma, seed) if sigma is not None else None
    with rows_updated(model, updates or {}, row_case), capture_inputs(model, list(inputs_of)) as seen_in, \
            capture_outputs(model, list(outputs_of)) as seen_out, \
            noised_subjects(model, rows.rows.subject_ranges * copies, noise, row_case):
        forward_until(model, batch, architecture_of(model).last_layer_for([*inputs_of, *outputs_of]))
    picked = torch.arange(len(lookup), device=lookup.device)
    out = {}
    for kind, seen in (("in", seen_in), ("out", seen_out)):
        for name, states in seen.items():
            out[name, kind] = states[picked, lookup].float().view(copies, len(rows.case), -1).mean(0)
    return out


def case_means(values: torch.Tensor, case: torch.Tensor, n_cases: int) -> torch.Tensor:
    """Mean of the rows of each case, [n_cases, d]."""
    sums = torch.zeros(n_cases, values.shape[-1], device=values.device, dtype=values.dtype).index_add(0, case, values)
    counts = torch.bincount(case, minlength=n_cases).to(values.dtype)
    return sums / counts[:, None]
