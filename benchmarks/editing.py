"""Per-edit time of ROME and FT with the upper-layers-only loop vs the full-model loop, side by side.

    .venv/bin/python benchmarks/editing.py [--cases 3] [--layer 6] [--dtype float32]

While v* (ROME) or the down-projection weights (FT) at layer ℓ are optimised, the layers below ℓ
see the same inputs at every step; the fast path computes them once. For the first N correctly
completed cases of the bundled CounterFact subset (error injection, embedded model), it prints
both times, their ratio and the max relative difference of the resulting weight deltas.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from locedit.correctness import check_correctness
from locedit.data import cases_frame, load_counterfact, select_cases
from locedit.editing import METHODS
from locedit.editing.templates import context_templates
from locedit.models import load_model, prepare_model
from locedit.problems import PROBLEMS, request_for
from locedit.stats import KeyStats, collect_second_moments, corpus_texts, save_layer_moments

REPO = Path(__file__).resolve().parents[1]


def rel_diff(a: dict, b: dict) -> float:
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(prepare_model(args.model, REPO / "resources" / "models" / args.model), args.dtype, "auto")
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=40))
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    cases = pool[correct.is_correct.to_numpy()].head(args.cases)
    folder = Path(tempfile.mkdtemp())
    save_layer_moments(collect_second_moments(model, tok, corpus_texts("bundled-wiki", n_samples=200),
                                              layers=[args.layer], max_tokens=128), folder)
    stats = KeyStats(folder)
    templates = context_templates(model, tok, seed=0)
    rows = []
    for case in cases.itertuples():
        req = request_for(case, PROBLEMS["error_injection"], None, tok.eos_token)
        for method, hp in (("rome", {}), ("ft1", {"norm_constraint": 1e-4})):
            spec = METHODS[method]
            runs = {}
            for upper in (False, True):
                start = time.perf_counter()
                deltas = spec.edit(model, tok, req, [args.layer], {**hp, "upper_only": upper}, stats,
                                   templates.get(spec.templates))
                runs[upper] = (time.perf_counter() - start, deltas)
            rows.append({"case_id": case.case_id, "method": method, "full_s": runs[False][0],
                         "upper_only_s": runs[True][0], "max_rel_diff": rel_diff(runs[True][1], runs[False][1])})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"\n{args.model} {args.dtype}, layer {args.layer} of {model.config.num_hidden_layers}, "
          f"{len(templates['rome'])} ROME templates, {args.threads} threads")
    for method, group in table.groupby("method"):
        print(f"{method}: full {group.full_s.mean():.2f} s/edit, upper-only {group.upper_only_s.mean():.2f} s/edit, "
              f"ratio {group.full_s.sum() / group.upper_only_s.sum():.2f}x, max rel diff {group.max_rel_diff.max():.1e}")


if __name__ == "__main__":
    main()
