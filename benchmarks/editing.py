"""Edits per hour: the plain path (one case at a time, weights edited in place) vs the batched
engine (many cases per pass, per-row updates), side by side on the same cases.

    .venv/bin/python benchmarks/editing.py [--cases 16] [--layer 8] [--batch 16] \\
        [--problems error_injection fact_forcing] [--methods ft1 ft5 rome memit] [--threads 2]

For the first N correctly completed cases of the bundled CounterFact subset (embedded model, the
hyperparameters of config.yaml), every method edits every case at one central layer and evaluates
it (rewrite, paraphrase, neighborhood prompts) both ways. It prints, per method and problem, the
wall time, edits per hour, the speed-up, and the largest difference of any post-edit probability
between the two paths.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from locedit.config import load_config
from locedit.correctness import check_correctness
from locedit.data import cases_frame, load_counterfact, load_knowns, select_cases
from locedit.editing import METHODS
from locedit.editing.apply import applied
from locedit.editing.templates import context_templates
from locedit.evaluation import evaluate
from locedit.models import load_model, prepare_model
from locedit.noise import embedding_std
from locedit.problems import PROBLEMS, noised_targets, request_for
from locedit.stats import KeyStats, collect_second_moments, corpus_texts, save_layer_moments
from locedit.sweep import case_batches, edit_and_evaluate, edited_layers, hparams_for

REPO = Path(__file__).resolve().parents[1]
PROBS = ["p_target", "p_baseline"]


def plain_path(model, tok, method, reqs, window, hp, stats, templates) -> list[pd.DataFrame]:
    """One case at a time: deltas, written into the weights, evaluated, restored."""
    tables = []
    for req in reqs:
        with applied(model, METHODS[method].edit(model, tok, req, window, hp, stats, templates)):
            tables.append(evaluate(model, tok, req))
    return tables


def batched_path(model, tok, method, reqs, window, hp, stats, templates, batch: int) -> list[pd.DataFrame]:
    tables = []
    for ids in case_batches(list(range(len(reqs))), batch):
        tables += edit_and_evaluate(model, tok, method, [reqs[i] for i in ids], window, hp, stats, templates)[0]
    return tables


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--problems", nargs="+", default=["error_injection", "fact_forcing"], choices=sorted(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    model, tok = load_model(prepare_model(args.model, REPO / "resources" / "models" / args.model), "float32", "auto")
    n_layers = model.config.num_hidden_layers
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=12 * args.cases))
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    cases = pool[correct.is_correct.to_numpy()].head(args.cases)
    folder = Path(tempfile.mkdtemp())
    save_layer_moments(collect_second_moments(model, tok, corpus_texts("bundled-wiki", n_samples=200),
                                              layers=edited_layers(args.layer, 5, n_layers), max_tokens=128), folder)
    stats = KeyStats(folder)
    templates = context_templates(model, tok, seed=0, rome_lengths=cfg["editing"]["rome_template_lengths"])
    sigma = 3 * embedding_std(model, tok, [k["subject"] for k in load_knowns()])  # the noise_level rule's s3
    noised = {c.case_id: pd.Series(noised_targets(model, tok, c.prompt, c.subject, sigma)) for c in cases.itertuples()}

    rows = []
    for problem in args.problems:
        reqs = [request_for(c, PROBLEMS[problem], noised[c.case_id], tok.eos_token, sigma) for c in cases.itertuples()]
        for method in args.methods:
            spec = METHODS[method]
            window = edited_layers(args.layer, spec.window, n_layers)
            hp = hparams_for(cfg["editing"], method, problem)
            inputs = (model, tok, method, reqs, window, hp, stats, templates.get(spec.templates))
            plain, plain_s = timed(plain_path, *inputs)
            batched, batched_s = timed(batched_path, *inputs, args.batch)
            diff = max(float((b[PROBS] - p[PROBS]).abs().max().max()) for b, p in zip(batched, plain))
            rows.append({"problem": PROBLEMS[problem].short, "method": method, "cases": len(reqs),
                         "plain_s_per_edit": plain_s / len(reqs), "batched_s_per_edit": batched_s / len(reqs),
                         "plain_edits_per_h": 3600 * len(reqs) / plain_s,
                         "batched_edits_per_h": 3600 * len(reqs) / batched_s,
                         "speedup": plain_s / batched_s, "max_abs_dprob": diff})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda x: f"{x:.3g}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.model} float32, central layer {args.layer} of {n_layers}, {len(cases)} cases "
          f"({', '.join(map(str, cases.case_id))}), batch {args.batch}, {args.threads} threads, "
          f"{len(templates['rome'])} ROME templates")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    total_plain = (table.plain_s_per_edit * table.cases).sum()
    total_batched = (table.batched_s_per_edit * table.cases).sum()
    print(f"overall: plain {total_plain / table.cases.sum():.2f} s/edit, batched "
          f"{total_batched / table.cases.sum():.2f} s/edit ({total_plain / total_batched:.2f}x), "
          f"max |dP| {table.max_abs_dprob.max():.1e}")


if __name__ == "__main__":
    main()
