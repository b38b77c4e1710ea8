"""The five editing problems of the paper (§5.1), as data: what is optimized, against what, how.

    >>> PROBLEMS["fact_erasure"].minimize, PROBLEMS["fact_forcing"].noised
    (True, True)
    >>> request_for(case, PROBLEMS["error_injection"], noised_targets=None, eos="<eos>").target  # doctest: +SKIP
    'Microsoft'

| problem | target (optimized) | baseline | objective |
|---|---|---|---|
| error_injection | o_false | o_true | maximize p(o_false | s, r) |
| tracing_reversal | o_noise (noised greedy output) | o_true | maximize p(o_noise | s, r) |
| fact_erasure | o_true | EOS | minimize p(o_true | s, r); P(o_true) >= 0.02 filter |
| fact_amplification | o_true | EOS | maximize p(o_true | s, r) |
| fact_forcing | o_true | o_noise token | maximize p(o_true | s_noise, r), noise in edit and eval |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from locedit.noise import SubjectNoise, noised_subjects
from locedit.plan import PROBLEMS, Problem
from locedit.prompts import logits_at, subject_range


@dataclass(frozen=True)
class EditRequest:
    """One edit: make ``target`` (un)likely after ``prompt`` (the subject filled in)."""

    case_id: int
    prompt: str
    subject: str
    target: str
    baseline: str
    minimize: bool = False
    sigma: float | None = None  # σ of subject noise during the edit and its evaluation (fact forcing)
    paraphrases: tuple[str, ...] = field(default_factory=tuple)
    neighborhood: tuple[str, ...] = field(default_factory=tuple)
    essence: tuple[str, ...] = field(default_factory=tuple)  # texts whose perplexity is tracked (App. B)


def request_for(case: Any, problem: Problem, noised_targets: Any, eos: str, sigma: float | None = None) -> EditRequest:
    """The request of ``problem`` for one case (a row of cases.parquet; ``noised_targets`` its row there)."""
    values = {"target_new": case.target_new, "target_true": case.target_true, "eos": eos}
    if noised_targets is not None:
        values.update(o_noise=noised_targets.o_noise, ff_baseline=noised_targets.ff_baseline)
    missing = [k for k in (problem.target, problem.baseline) if k not in values]
    if missing:
        raise ValueError(f"problem {problem.name} needs the noised_targets table for {missing}")
    return EditRequest(
        case_id=int(case.case_id),
        prompt=case.prompt,
        subject=case.subject,
        target=values[problem.target],
        baseline=values[problem.baseline],
        minimize=problem.minimize,
        sigma=sigma if problem.noised else None,
        paraphrases=tuple(case.paraphrase_prompts),
        neighborhood=tuple(case.neighborhood_prompts),
    )


def _cut(text: str) -> str:
    """A continuation up to its first line break or sentence punctuation, stripped."""
    for stop in ("\n", ".", ",", ";", ":", "!", "?"):
        text = text.split(stop)[0]
    return text.strip()


def noised_targets(model, tok, prompt: str, subject: str, sigma: float, new_tokens: int = 3, samples: int = 10,
                   seed: int = 1) -> dict[str, str]:
    """What the model says when the subject is noised, for tracing reversal and fact forcing.

    ``o_noise``: the greedy continuation (``new_tokens`` tokens, cut at the first punctuation or
    line break; the first token when that leaves nothing) of the prompt with σ-noise on the subject
    embeddings (``SubjectNoise(sigma, seed)``: one row, the same draw at every generated token).
    ``ff_baseline``: the argmax next token of the softmax averaged over ``samples`` noised rows
    (one case's rows, the first of them o_noise's draw; the reference's fact-forcing baseline).
    """
    device = next(model.parameters()).device
    noise = SubjectNoise(sigma, seed)
    span = subject_range(tok, prompt, subject)
    ids = tok(prompt)["input_ids"]
    generated: list[int] = []
    with torch.no_grad(), noised_subjects(model, [span], noise):
        for _ in range(new_tokens):  # no KV cache: every step re-noises the same prompt identically
            x = torch.tensor([ids + generated], device=device)
            batch = {"input_ids": x, "attention_mask": torch.ones_like(x)}
            logits = logits_at(model, batch, torch.tensor([0], device=device), torch.tensor([x.shape[1] - 1], device=device))
            generated.append(int(logits[0].argmax()))
    continuation = tok.decode(generated, skip_special_tokens=True)
    o_noise = _cut(continuation) or tok.decode(generated[:1]).strip() or continuation
    x = torch.tensor([ids] * samples, device=device)
    batch = {"input_ids": x, "attention_mask": torch.ones_like(x)}
    last = torch.full((samples,), len(ids) - 1, device=device)
    with torch.no_grad(), noised_subjects(model, [span] * samples, noise):
        probs = torch.softmax(logits_at(model, batch, torch.arange(samples, device=device), last).float(), -1)
    ff_token = int(probs.mean(0).argmax())
    return {"o_noise": o_noise, "o_noise_tokens": continuation, "ff_baseline": tok.decode([ff_token]).strip(),
            "ff_baseline_token": ff_token}
