"""Causal tracing (Meng et al. 2022, as used by Hase et al. 2023), batched.

Noise is added to the embedding-layer output at the subject tokens of ``samples`` copies of the
prompt; then, for every token from the subject start and every layer, the clean output of the
traced module (``hidden`` = the decoder layer, ``mlp`` or ``attn``) is restored at that token in a
window of layers around the layer, and P(target) is measured over the whole target::

    >>> r = trace(model, tok, "Michael Jordan plays the sport of", "Michael Jordan", "basketball",
    ...           kind="mlp", window=10, samples=10, noise=3.09, seed=1)          # doctest: +SKIP
    >>> r.scores.shape, r.low, r.clean                                             # doctest: +SKIP
    ((8, 18), 0.045, 0.761)

Batching: the corrupted run is computed once; every restoration whose window starts at layer
``a`` reuses its hidden state at the input of layer ``a`` and runs only layers ``a..L-1``, and all
(token, layer) restorations sharing ``a`` go through one forward pass, ``samples`` rows each.
The plain algorithm (one forward pass per (token, layer), as in the paper's code) is the oracle
in ``tests/test_tracing.py``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from .hooks import capture_outputs, edit_outputs, start_at_layer
from .models import architecture_of, num_layers
from .noise import add_noise_hook, subject_noise
from .prompts import Encoded, encode, gather_target_log_probs, subject_range, token_strings

KINDS = ("hidden", "mlp", "attn")


def layer_window(layer: int, window: int, n_layers: int) -> range:
    """Layers restored around ``layer``: ``[layer - w//2, layer + ceil(w/2))`` clipped at the edges.

    >>> list(layer_window(0, 5, 18)), list(layer_window(9, 10, 18)), list(layer_window(17, 5, 18))
    ([0, 1, 2], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [15, 16, 17])
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} is outside the model's layers 0..{n_layers - 1}")
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def check_windows(windows: list[int], n_layers: int) -> None:
    """Stop a config whose tracing windows exceed the model's layers (every window would be clipped
    to the whole model, silently).

    >>> check_windows([10, 5], 18)
    >>> check_windows([30], 18)
    Traceback (most recent call last):
    ...
    ValueError: tracing.windows [30] are larger than the model's 18 layers; use windows of at most 18
    """
    too_big = [w for w in windows if w > n_layers]
    if too_big:
        raise ValueError(f"tracing.windows {too_big} are larger than the model's {n_layers} layers; "
                         f"use windows of at most {n_layers}")


@dataclass
class TraceResult:
    """Restored probabilities of one (prompt, kind, window).

    ``scores[t, l]`` is the mean over noised rows of P(target) with the traced module's clean
    output restored at token ``t`` in the window around layer ``l``. Tokens before
    ``first_traced`` are not traced: restoring there changes nothing, so they hold ``low``.
    """

    scores: np.ndarray
    low: float
    clean: float
    tokens: list[str]
    subject_range: tuple[int, int]
    first_traced: int
    kind: str
    window: int
    target_tokens: list[str] = field(default_factory=list)

    @property
    def high(self) -> float:
        """max(clean, max restored), the reference code's ``orig_pred_prob``."""
        return float(max(self.clean, self.scores.max()))

    def to_frame(self, case_id: int, **columns) -> pd.DataFrame:
        """Long table, one row per (token, layer); extra ``columns`` are added as constants."""
        n_tokens, n_layers = self.scores.shape
        frame = pd.DataFrame(
            {
                "case_id": case_id,
                "token_idx": np.repeat(np.arange(n_tokens), n_layers),
                "token": np.repeat(self.tokens, n_layers),
                "layer": np.tile(np.arange(n_layers), n_tokens),
                "restored_prob": self.scores.reshape(-1),
                "low": self.low,
                "clean": self.clean,
                "high": self.high,
                "subject_start": self.subject_range[0],
                "subject_end": self.subject_range[1],
                "first_traced": self.first_traced,
                "kind": self.kind,
                "window": self.window,
            }
        )
        for key, value in columns.items():
            frame[key] = value
        return frame


@dataclass
class _Runs:
    """What the clean and the corrupted runs leave behind for the restorations."""

    encoded: Encoded
    clean_states: list[torch.Tensor]  # per layer: traced module's clean output, [T, d]
    corrupted_layer_out: list[torch.Tensor]  # per layer: decoder layer output of the noised rows
    noise: torch.Tensor  # [samples, subject tokens, d]
    clean: float
    low: float
    layer_returns_tuple: bool


@torch.no_grad()
def trace(
    model: nn.Module,
    tok,
    prompt: str,
    subject: str,
    target: str,
    kind: str = "mlp",
    window: int = 10,
    samples: int = 10,
    noise: float = 0.1,
    seed: int = 1,
    all_tokens: bool = False,
    max_rows: int = 512,
) -> TraceResult:
    """Trace one prompt (subject filled in) for P(target); see the module docstring."""
    arch = architecture_of(model)
    n_layers = num_layers(model)
    encoded = encode(tok, prompt, target)
    b, e = subject_range(tok, prompt, subject)
    runs = _clean_and_corrupted(model, encoded, (b, e), kind, samples, noise, seed)

    n_prompt = len(encoded.prompt_ids)
    first = 0 if all_tokens else b
    scores = np.full((n_prompt, n_layers), runs.low)
    by_start: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for t in range(first, n_prompt):
        for layer in range(n_layers):
            by_start[layer_window(layer, window, n_layers).start].append((t, layer))

    per_pass = max(1, max_rows // samples)
    for start, configs in by_start.items():
        for i in range(0, len(configs), per_pass):
            chunk = configs[i : i + per_pass]
            probs = _restore(model, arch, runs, chunk, start, kind, window, n_layers, (b, e))
            for (t, layer), p in zip(chunk, probs):
                scores[t, layer] = p
    return TraceResult(
        scores=scores,
        low=runs.low,
        clean=runs.clean,
        tokens=token_strings(tok, encoded.prompt_ids),
        subject_range=(b, e),
        first_traced=first,
        kind=kind,
        window=window,
        target_tokens=token_strings(tok, encoded.target_ids),
    )


def _clean_and_corrupted(model, encoded: Encoded, subject: tuple[int, int], kind, samples, sigma, seed) -> _Runs:
    arch = architecture_of(model)
    n_layers = num_layers(model)
    device = next(model.parameters()).device
    ids = torch.tensor([encoded.ids], device=device)
    one = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    traced = [arch.module_for(kind, i) for i in range(n_layers)]
    with capture_outputs(model, traced) as seen:
        clean = gather_target_log_probs(model, one, [encoded]).exp().item()
    clean_states = [seen[name][0] for name in traced]

    b, e = subject
    noise = torch.from_numpy(subject_noise(samples, e - b, model.config.hidden_size, sigma, seed)).to(device)
    noised = {k: v.repeat(samples, 1) for k, v in one.items()}
    layers = [arch.layer(i) for i in range(n_layers)]
    returns_tuple = []
    handle = model.get_submodule(layers[0]).register_forward_hook(
        lambda _m, _i, out: returns_tuple.append(isinstance(out, tuple))
    )
    try:
        with edit_outputs(model, {arch.embedding: add_noise_hook(slice(None), b, e, noise)}):
            with capture_outputs(model, layers) as seen:
                low = gather_target_log_probs(model, noised, [encoded], rows_per_item=samples).exp().mean().item()
    finally:
        handle.remove()
    return _Runs(encoded, clean_states, [seen[n] for n in layers], noise, clean, low, returns_tuple[0])


def _restore(model, arch, runs: _Runs, configs, start, kind, window, n_layers, subject) -> list[float]:
    """One forward pass restoring each (token, layer) config in ``configs`` on its own noised rows."""
    samples = runs.noise.shape[0]
    n_rows = len(configs) * samples
    device = runs.noise.device
    ids = torch.tensor([runs.encoded.ids], device=device).repeat(n_rows, 1)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    rows_at: dict[int, list[int]] = defaultdict(list)
    tokens_at: dict[int, list[int]] = defaultdict(list)
    for c, (t, layer) in enumerate(configs):
        for j in layer_window(layer, window, n_layers):
            rows_at[j].extend(range(c * samples, (c + 1) * samples))
            tokens_at[j].extend([t] * samples)

    def restorer(j: int):
        rows = torch.tensor(rows_at[j], device=device)
        toks = torch.tensor(tokens_at[j], device=device)
        clean = runs.clean_states[j]

        def restore(_name: str, hidden: torch.Tensor) -> torch.Tensor:
            hidden[rows, toks] = clean[toks].to(hidden.dtype)
            return hidden

        return restore

    edits = {arch.module_for(kind, j): restorer(j) for j in rows_at}
    if start == 0:
        b, e = subject
        edits[arch.embedding] = add_noise_hook(slice(None), b, e, runs.noise.repeat(len(configs), 1, 1))
        hidden_in = None
    else:
        hidden_in = runs.corrupted_layer_out[start - 1].repeat(len(configs), 1, 1)
    layers = model.get_submodule(arch.layers)
    with start_at_layer(layers, start, hidden_in, runs.layer_returns_tuple), edit_outputs(model, edits):
        probs = gather_target_log_probs(model, batch, [runs.encoded], rows_per_item=n_rows).exp()
    return probs.view(len(configs), samples).mean(dim=1).tolist()


def tracing_effects(table: pd.DataFrame) -> pd.DataFrame:
    """Per (case_id, layer) tracing effects from a long tracing table (paper §4.1, spec §5).

    - ``max_fraction_restored``: max over traced tokens of max(0, (restored − low) / |clean − low|),
      the paper's effect (denominator: the clean probability);
    - ``max_fraction_restored_high``: the same with the reference code's denominator |high − low|;
    - ``last_subject_fraction``: (restored − low) / |clean − low| at the last subject token, unclamped;
    - ``last_subject_effect``: restored − low at the last subject token.
    """
    t = table[table.token_idx >= table.first_traced].copy()
    effect = t.restored_prob - t.low
    t["fraction"] = (effect / (t.clean - t.low).abs()).clip(lower=0)
    t["fraction_high"] = (effect / (t.high - t.low).abs()).clip(lower=0)
    t["effect"] = effect
    t["signed_fraction"] = effect / (t.clean - t.low).abs()
    keys = ["case_id", "layer"]
    out = t.groupby(keys).agg(max_fraction_restored=("fraction", "max"),
                              max_fraction_restored_high=("fraction_high", "max")).reset_index()
    last = t[t.token_idx == t.subject_end - 1][keys + ["signed_fraction", "effect"]]
    last = last.rename(columns={"signed_fraction": "last_subject_fraction", "effect": "last_subject_effect"})
    return out.merge(last, on=keys, how="left", validate="1:1")
