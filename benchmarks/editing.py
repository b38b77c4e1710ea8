"""Per-edit time of ROME, MEMIT and FT with the fast loops vs the full-model loop, side by side.

    .venv/bin/python benchmarks/editing.py [--cases 3] [--layer 6] [--dtype float32] [--problem error_injection]

While v* (ROME), z (MEMIT) or the down-projection weights (FT) at layer ℓ are optimised, the
layers below ℓ see the same inputs at every step (``upper_only``); for v* and z the columns before
the last subject token do not change either (``shared_prefix``, their keys and values cached).
For the first N correctly completed cases of the bundled CounterFact subset (embedded model), it
prints the time of each variant: full (both off), upper-only, and upper-only + shared prefix
(ROME, MEMIT), their ratios to full and the max relative difference of each variant's weight
deltas from the full loop's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from locedit.correctness import check_correctness
from locedit.data import cases_frame, load_counterfact, load_knowns, select_cases
from locedit.editing import METHODS
from locedit.editing.templates import context_templates
from locedit.models import load_model, prepare_model
from locedit.noise import embedding_std
from locedit.problems import PROBLEMS, noised_targets, request_for
from locedit.sweep import edited_layers
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
    parser.add_argument("--problem", default="error_injection", choices=sorted(PROBLEMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(prepare_model(args.model, REPO / "resources" / "models" / args.model), args.dtype, "auto")
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=40))
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    cases = pool[correct.is_correct.to_numpy()].head(args.cases)
    folder = Path(tempfile.mkdtemp())
    save_layer_moments(collect_second_moments(model, tok, corpus_texts("bundled-wiki", n_samples=200),
                                              layers=edited_layers(args.layer, 5, model.config.num_hidden_layers), max_tokens=128), folder)
    stats = KeyStats(folder)
    templates = context_templates(model, tok, seed=0)
    sigma = 3 * embedding_std(model, tok, [k["subject"] for k in load_knowns()])  # the noise_level rule's s3
    variants = {"full": {"upper_only": False, "shared_prefix": False}, "upper_only": {"upper_only": True, "shared_prefix": False},
                "upper_shared": {"upper_only": True, "shared_prefix": True}}
    rows = []
    for case in cases.itertuples():
        noised = pd.Series(noised_targets(model, tok, case.prompt, case.subject, sigma))
        req = request_for(case, PROBLEMS[args.problem], noised, tok.eos_token, sigma)
        for method, hp in (("rome", {}), ("memit", {}), ("ft1", {"norm_constraint": 1e-4})):
            spec = METHODS[method]
            layers = edited_layers(args.layer, spec.window, model.config.num_hidden_layers)
            runs = {}
            for name, flags in variants.items():
                if method == "ft1" and name == "upper_shared":
                    continue  # FT changes weights that every column passes through: no shared prefix
                start = time.perf_counter()
                deltas = spec.edit(model, tok, req, layers, {**hp, **flags}, stats, templates.get(spec.templates))
                runs[name] = (time.perf_counter() - start, deltas)
            row = {"case_id": case.case_id, "method": method}
            for name, (seconds, deltas) in runs.items():
                row[f"{name}_s"] = seconds
                if name != "full":
                    row[f"{name}_rel_diff"] = rel_diff(deltas, runs["full"][1])
            rows.append(row)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"\n{args.model} {args.dtype}, {args.problem}, central layer {args.layer} of {model.config.num_hidden_layers}, "
          f"{len(templates['rome'])} ROME templates, {args.threads} threads")
    for method, group in table.groupby("method", sort=False):
        line = f"{method}: full {group.full_s.mean():.2f} s/edit"
        for name in ("upper_only", "upper_shared"):
            if f"{name}_s" in group and group[f"{name}_s"].notna().all():
                line += (f", {name} {group[f'{name}_s'].mean():.2f} s/edit ({group.full_s.sum() / group[f'{name}_s'].sum():.2f}x,"
                         f" max rel diff {group[f'{name}_rel_diff'].max():.1e})")
        print(line)


if __name__ == "__main__":
    main()
