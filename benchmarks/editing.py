"""Edits per hour: the plain path (one case at a time, weights edited in place) vs the batched
engine (many cases per pass, per-row updates) in float32 and with mixed precision (the edit's
optimisation through a bfloat16 copy of the model, evaluation float32), side by side on the same cases.

    .venv/bin/python benchmarks/editing.py [--cases 16] [--layer 8] [--batch 16] \\
        [--problems error_injection fact_forcing] [--methods ft1 ft5 rome memit] [--threads 2]

For the first N correctly completed cases of the bundled CounterFact subset (embedded model, the
hyperparameters of config.yaml), every method edits every case at one central layer and evaluates
it (rewrite, paraphrase, neighborhood prompts) all three ways. It prints, per method and problem,
edits per hour, the speed-ups over the plain path, the largest difference of any post-edit
probability from the plain path's, and for mixed precision the max / mean |Δ| of the rewrite and
overall scores and how many rewrite-success verdicts flip.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from locedit.cases.correctness import check_correctness
from locedit.cases.counterfact import cases_frame, load_counterfact, load_knowns, select_cases
from locedit.config import load_config
from locedit.editing.apply import applied
from locedit.editing.evaluation import evaluate
from locedit.editing.hparams import hparams_for
from locedit.editing.job import EditJob, case_batches
from locedit.editing.key_stats import KeyStats, collect_second_moments, corpus_texts, save_factor, save_layer_moments
from locedit.editing.methods import METHODS
from locedit.editing.metrics import edit_scores, prompt_scores
from locedit.editing.problems import PROBLEMS, noised_targets, request_for
from locedit.editing.templates import context_templates
from locedit.models import load_model, prepare_model
from locedit.noise import embedding_std
from locedit.plan import edited_layers

REPO = Path(__file__).resolve().parents[1]
PROBS = ["p_target", "p_baseline"]


def plain_path(model, tok, method, reqs, window, hp, stats, templates) -> list[pd.DataFrame]:
    """One case at a time: deltas, written into the weights, evaluated, restored."""
    tables = []
    for req in reqs:
        with applied(model, METHODS[method].edit(model, tok, req, window, hp, stats, templates)):
            tables.append(evaluate(model, tok, req))
    return tables


def batched_path(model, tok, method, reqs, window, hp, stats, templates, batch: int,
                 mixed: bool = False) -> list[pd.DataFrame]:
    job = EditJob(model, tok, method, "benchmark", reqs, [], hp, stats, templates, mixed_precision=mixed)
    tables = []
    for ids in case_batches(list(range(len(reqs))), batch):
        tables += job.edit([reqs[i] for i in ids], window)[0]
    return tables


def scores(pre: list[pd.DataFrame], post: list[pd.DataFrame], reqs, problem: str) -> pd.DataFrame:
    """Rewrite / overall score and rewrite success per case."""
    tag = [dict(case_id=r.case_id, problem=problem) for r in reqs]
    before = pd.concat([t.assign(**k) for t, k in zip(pre, tag)])
    after = pd.concat([t.assign(**k, method="m", layer=0) for t, k in zip(post, tag)])
    table = edit_scores(prompt_scores(before, after, {problem: PROBLEMS[problem].minimize}))
    return table.set_index("case_id")[["rewrite_score", "overall_score", "rewrite_success"]]


def max_dprob(tables: list[pd.DataFrame], reference: list[pd.DataFrame]) -> float:
    return max(float((t[PROBS] - r[PROBS]).abs().max().max()) for t, r in zip(tables, reference))


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def bench_setup(model_name: str, n_cases: int, layer: int | list[int]):
    """The embedded model, its first ``n_cases`` correctly completed cases, key statistics for the
    layers around ``layer`` (or each of a list of central layers), context templates, σ and each
    case's noised targets."""
    cfg = load_config()
    model, tok = load_model(prepare_model(model_name, REPO / "resources" / "models" / model_name), "float32", "auto")
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=12 * n_cases))
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    cases = pool[correct.is_correct.to_numpy()].head(n_cases)
    folder = Path(tempfile.mkdtemp())
    centrals = layer if isinstance(layer, list) else [layer]
    layers = sorted({i for c in centrals for i in edited_layers(c, 5, model.config.num_hidden_layers)})
    save_layer_moments(collect_second_moments(model, tok, corpus_texts("bundled-wiki", n_samples=200), layers=layers,
                                              max_tokens=128), folder)
    for stats_layer in layers:
        save_factor(folder, stats_layer)
    templates = context_templates(model, tok, seed=0, rome_lengths=cfg["editing"]["rome_template_lengths"])
    sigma = 3 * embedding_std(model, tok, [k["subject"] for k in load_knowns()])  # the noise_level rule's s3
    noised = {c.case_id: pd.Series(noised_targets(model, tok, c.prompt, c.subject, sigma)) for c in cases.itertuples()}
    return cfg, model, tok, cases, KeyStats(folder), templates, sigma, noised


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
    cfg, model, tok, cases, stats, templates, sigma, noised = bench_setup(args.model, args.cases, args.layer)
    n_layers = model.config.num_hidden_layers
    rows = []
    for problem in args.problems:
        reqs = [request_for(c, PROBLEMS[problem], noised[c.case_id], tok.eos_token, sigma) for c in cases.itertuples()]
        pre = [evaluate(model, tok, r) for r in reqs]
        for method in args.methods:
            spec = METHODS[method]
            window = edited_layers(args.layer, spec.window, n_layers)
            hp = hparams_for(cfg["editing"], method, problem)
            inputs = (model, tok, method, reqs, window, hp, stats, templates.get(spec.templates))
            plain, plain_s = timed(plain_path, *inputs)
            batched, batched_s = timed(batched_path, *inputs, args.batch)
            mixed, mixed_s = timed(batched_path, *inputs, args.batch, True)
            exact, low = scores(pre, plain, reqs, problem), scores(pre, mixed, reqs, problem)
            n = len(reqs)
            rows.append({"problem": PROBLEMS[problem].short, "method": method, "cases": n,
                         "plain_per_h": 3600 * n / plain_s, "batched_per_h": 3600 * n / batched_s,
                         "mixed_per_h": 3600 * n / mixed_s,
                         "batched_x": plain_s / batched_s, "mixed_x": plain_s / mixed_s,
                         "batched_max_dP": max_dprob(batched, plain), "mixed_max_dP": max_dprob(mixed, plain),
                         "mixed_max_drewrite": (low.rewrite_score - exact.rewrite_score).abs().max(),
                         "mixed_mean_drewrite": (low.rewrite_score - exact.rewrite_score).abs().mean(),
                         "mixed_max_doverall": (low.overall_score - exact.overall_score).abs().max(),
                         "mixed_flips": int(((low.rewrite_success > 0.5) != (exact.rewrite_success > 0.5)).sum()),
                         "plain_s": plain_s, "batched_s": batched_s, "mixed_s": mixed_s})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda x: f"{x:.3g}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.model} float32, central layer {args.layer} of {n_layers}, {len(cases)} cases "
          f"({', '.join(map(str, cases.case_id))}), batch {args.batch}, {args.threads} threads, "
          f"{len(templates['rome'])} ROME templates")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    edits = table.cases.sum()
    plain_s, batched_s, mixed_s = table.plain_s.sum(), table.batched_s.sum(), table.mixed_s.sum()
    print(f"overall: plain {plain_s / edits:.2f} s/edit, batched {batched_s / edits:.2f} s/edit "
          f"({plain_s / batched_s:.2f}x, max |dP| {table.batched_max_dP.max():.1e}), mixed {mixed_s / edits:.2f} s/edit "
          f"({plain_s / mixed_s:.2f}x, max |dP| {table.mixed_max_dP.max():.1e})")


if __name__ == "__main__":
    main()
