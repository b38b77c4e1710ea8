"""One edit job's loop (a batch of cases edited and evaluated at several central layers), timed
three ways side by side on the same cases:

* ``full``: float32, every evaluation pass from the embeddings (the engine before LowerLayers);
* ``lower``: float32, evaluation from the lowest edited layer up, the batch's unedited layer
  inputs kept across its layers (:class:`locedit.editing.evaluation.LowerLayers`, what jobs do);
* ``mixed``: as ``lower``, the edit's optimisation through a bfloat16 copy of the model.

    .venv/bin/python benchmarks/edit_job.py [--cases 4] [--layers 0 4 8 12 17] [--methods ft1 rome] \\
        [--problem error_injection] [--threads 1]

Prints, per method, seconds per edit (edit / evaluation / total) for each way, the speed-ups over
``full``, and max |ΔP| of any post-edit probability against ``full`` (``lower`` must be ~0).
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from editing import bench_setup
from locedit.editing.evaluation import LowerLayers
from locedit.editing.hparams import hparams_for
from locedit.editing.job import EditJob
from locedit.editing.methods import METHODS
from locedit.editing.problems import PROBLEMS, request_for

WAYS = {"full": dict(mixed=False, lower=False), "lower": dict(mixed=False, lower=True),
        "mixed": dict(mixed=True, lower=True)}


def run_job(model, tok, method, reqs, layers, hp, stats, templates, mixed: bool, lower: bool):
    """(tables per layer, edit seconds, evaluation seconds) of one batch over ``layers``."""
    job = EditJob(model, tok, method, "benchmark", reqs, layers, hp, stats, templates, mixed_precision=mixed)
    cache = LowerLayers() if lower else None
    tables, edit_s, eval_s = [], 0.0, 0.0
    for central in layers:
        out, e, v = job.edit(reqs, job.window(central), lower=cache)
        tables.append(out)
        edit_s, eval_s = edit_s + e, eval_s + v
    return tables, edit_s, eval_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 4, 8, 12, 17])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--problem", default="error_injection", choices=sorted(PROBLEMS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg, model, tok, cases, stats, templates, sigma, noised = bench_setup(args.model, args.cases, args.layers)
    reqs = [request_for(c, PROBLEMS[args.problem], noised[c.case_id], tok.eos_token, sigma) for c in cases.itertuples()]
    rows = []
    for method in args.methods:
        hp = hparams_for(cfg["editing"], method, args.problem)
        tpl = templates.get(METHODS[method].templates)
        runs = {way: run_job(model, tok, method, reqs, args.layers, hp, stats, tpl, **flags)
                for way, flags in WAYS.items()}
        n = len(reqs) * len(args.layers)
        row = {"method": method, "edits": n}
        for way, (tables, edit_s, eval_s) in runs.items():
            row |= {f"{way}_edit_s": edit_s / n, f"{way}_eval_s": eval_s / n, f"{way}_s": (edit_s + eval_s) / n}
            if way != "full":
                row[f"{way}_x"] = row["full_s"] / row[f"{way}_s"]
                row[f"{way}_max_dP"] = max(
                    float((t[["p_target", "p_baseline"]] - r[["p_target", "p_baseline"]]).abs().max().max())
                    for layer_t, layer_r in zip(tables, runs["full"][0]) for t, r in zip(layer_t, layer_r))
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda x: f"{x:.3g}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.model}, {args.problem}, {len(reqs)} cases in one batch, central layers {args.layers}, "
          f"{args.threads} thread(s)")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    total = {way: (table[f"{way}_s"] * table.edits).sum() / table.edits.sum() for way in WAYS}
    print("mean s/edit over methods: " + ", ".join(f"{w} {s:.2f}" for w, s in total.items())
          + f"; lower {total['full'] / total['lower']:.2f}x, mixed {total['full'] / total['mixed']:.2f}x")


if __name__ == "__main__":
    main()
