"""Plain vs batched causal tracing on real CounterFact cases, side by side in one run.

    .venv/bin/python benchmarks/tracing.py [--cases 5] [--kind mlp] [--window 10] [--dtype float32]

Prints, for the first N correctly completed cases of the bundled CounterFact subset on the
embedded model, the wall time of the plain algorithm (one forward pass per (token, layer), full
logits, as in the paper's code) and of ``locedit.tracing.trace``, their ratio, and the max |Δ| of
the restored probabilities.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from plain_tracing import plain_trace  # noqa: E402

from locedit.correctness import check_correctness  # noqa: E402
from locedit.data import cases_frame, load_counterfact, select_cases  # noqa: E402
from locedit.models import load_model, prepare_model  # noqa: E402
from locedit.tracing import trace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--kind", default="mlp")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--noise", type=float, default=3.09, help="σ (3σ rule value for Gemma 3 270M)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = prepare_model(args.model, REPO / "resources" / "models" / args.model)
    model, tok = load_model(folder, args.dtype, "auto")
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=60))
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    cases = pool[correct.is_correct.to_numpy()].head(args.cases)

    rows = []
    for case in cases.itertuples():
        call = (model, tok, case.prompt, case.subject, case.target_true)
        opts = dict(kind=args.kind, window=args.window, samples=args.samples, noise=args.noise)
        start = time.perf_counter()
        plain, _, _ = plain_trace(*call, **opts)
        mid = time.perf_counter()
        fast = trace(*call, **opts)
        end = time.perf_counter()
        rows.append({"case_id": case.case_id, "tokens": len(fast.tokens), "traced": len(fast.tokens) - fast.first_traced,
                     "plain_s": mid - start, "batched_s": end - mid, "max_abs_diff": float(np.abs(plain - fast.scores).max())})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    device = next(model.parameters()).device
    print(f"\n{args.model} {args.dtype} on {device} ({args.threads} threads), kind={args.kind} window={args.window}, "
          f"samples={args.samples}, {len(table)} cases")
    print(f"plain {table.plain_s.sum():.1f} s, batched {table.batched_s.sum():.1f} s, "
          f"ratio {table.plain_s.sum() / table.batched_s.sum():.2f}x, max |Δ| {table.max_abs_diff.max():.2e}")


if __name__ == "__main__":
    main()
