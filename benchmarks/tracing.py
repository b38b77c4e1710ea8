"""Causal tracing four ways, and attribution patching, side by side in one run on real cases.

    .venv/bin/python benchmarks/tracing.py [--cases 5] [--kind mlp] [--window 10] [--threads 2]

For the first N correctly completed cases of the bundled CounterFact subset on the embedded
model, per case and in this order: **plain** (the paper's code: one full forward pass per
(token, layer), full logits), **batched** (``trace(..., reuse_prefix=False)``: restorations
sharing a start layer in one pass from the cached corrupted state, the engine before 2026-11-29),
**cached** (``trace``: also positions before the restored token from the corrupted run's
key/value cache), **mixed** (cached, on a bfloat16 copy of the model, logits float32) and
**attribution** (``attribution_trace``: the window's joint first-order term, exact tracing's
passes plus a backward pass each; window by window: ``benchmarks/attribution.py``). Prints wall times,
ratios against plain, max |Δ| of the restored probabilities and of the per-(case, layer) effect
against plain, and attribution's agreement with exact tracing (Pearson / Spearman over (case,
layer) effects, share of cases with the same peak layer).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from plain_tracing import plain_trace  # noqa: E402

from locedit.tracing.attribution import attribution_trace  # noqa: E402
from locedit.cases.correctness import check_correctness  # noqa: E402
from locedit.tracing.corruption import GaussianNoise  # noqa: E402
from locedit.cases.counterfact import cases_frame, load_counterfact, select_cases  # noqa: E402
from locedit.models import load_model, prepare_model  # noqa: E402
from locedit.editing.precision import bfloat16_copy  # noqa: E402
from locedit.tracing.trace import TraceResult, trace  # noqa: E402
from locedit.tracing.effects import tracing_effects  # noqa: E402


def effects_of(result: TraceResult, case_id: int) -> pd.Series:
    return tracing_effects(result.to_frame(case_id)).set_index(["case_id", "layer"]).max_fraction_restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--kind", default="mlp")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=3.09, help="σ (3σ rule value for Gemma 3 270M)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = prepare_model(args.model, REPO / "resources" / "models" / args.model)
    model, tok = load_model(folder, "float32", "auto")
    twin = bfloat16_copy(model)
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=60))
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    cases = pool[correct.is_correct.to_numpy()].head(args.cases)
    corruption = GaussianNoise(args.sigma, samples=args.samples)
    opts = dict(kind=args.kind, window=args.window)

    rows, effects = [], {name: [] for name in ("plain", "cached", "mixed", "attribution")}
    for case in cases.itertuples():
        call = (case.prompt, case.subject, case.target_true)
        times, results = {}, {}
        start = time.perf_counter()
        plain, low, clean = plain_trace(model, tok, *call, samples=args.samples, sigma=args.sigma, **opts)
        times["plain"] = time.perf_counter() - start
        runs = {"batched": (model, dict(reuse_prefix=False)), "cached": (model, {}), "mixed": (twin, {})}
        for name, (net, extra) in runs.items():
            start = time.perf_counter()
            results[name] = trace(net, tok, *call, corruption, **opts, **extra)
            times[name] = time.perf_counter() - start
        start = time.perf_counter()
        results["attribution"] = attribution_trace(model, tok, *call, corruption, **opts)
        times["attribution"] = time.perf_counter() - start
        oracle = TraceResult(plain, low, clean, results["cached"].tokens, results["cached"].subject_range,
                             results["cached"].first_traced, args.kind, args.window)
        effects["plain"].append(effects_of(oracle, case.case_id))
        for name in ("cached", "mixed", "attribution"):
            effects[name].append(effects_of(results[name], case.case_id))
        row = {"case_id": case.case_id, "tokens": len(oracle.tokens), "traced": len(oracle.tokens) - oracle.first_traced}
        row.update({f"{name}_s": t for name, t in times.items()})
        for name in ("batched", "cached", "mixed"):
            row[f"{name}_max_dp"] = float(np.abs(results[name].scores - plain).max())
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda x: f"{x:.3g}"), flush=True)

    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"\n{args.model} on {next(model.parameters()).device} ({args.threads} threads), kind={args.kind} "
          f"window={args.window}, samples={args.samples}, {len(table)} cases")
    plain_s = table.plain_s.sum()
    base = pd.concat(effects["plain"])
    for name in ("batched", "cached", "mixed", "attribution"):
        line = f"{name:12s} {table[f'{name}_s'].sum():7.1f} s  {plain_s / table[f'{name}_s'].sum():6.2f}x plain"
        if f"{name}_max_dp" in table:
            line += f"  max |ΔP| {table[f'{name}_max_dp'].max():.2e}"
        if name in effects:
            other = pd.concat(effects[name]).reindex(base.index)
            line += f"  max |Δ effect| {np.abs(other - base).max():.2e}"
        print(line)
    exact, approx = pd.concat(effects["cached"]), pd.concat(effects["attribution"]).reindex(pd.concat(effects["cached"]).index)
    peaks = lambda s: s.groupby(level="case_id").idxmax().map(lambda k: k[1])  # noqa: E731
    print(f"attribution vs exact effects over {len(exact)} (case, layer) pairs: Pearson "
          f"{stats.pearsonr(exact, approx)[0]:.3f}, Spearman {stats.spearmanr(exact, approx)[0]:.3f}, "
          f"same peak layer in {(peaks(exact) == peaks(approx)).mean():.0%} of cases")


if __name__ == "__main__":
    main()
