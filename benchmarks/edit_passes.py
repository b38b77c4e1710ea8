"""The edit's read-only passes: full passes with a row-by-row Jacobian (before 2026-11-30) vs passes
that stop at the deepest layer they read (``hooks.forward_until``) with the post-MLP norm's Jacobian
in one batched backward, side by side on the same cases; the updates must be bit-identical.

    PYTHONPATH=. .venv/bin/python benchmarks/edit_passes.py [--cases 2] [--layers 4 12] \\
        [--problems error_injection fact_forcing] [--methods rome memit] [--threads 1]

Every method edits the first N correctly completed cases together (one batch) at each central
layer, with config.yaml's hyperparameters; the "full" arm runs every key / state pass through all
layers and builds the Jacobian one output row at a time, as the code did before. Prints seconds
per (method, problem, layer) both ways, the speed-up, and whether every update tensor is equal.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from unittest import mock

import pandas as pd
import torch

from editing import bench_setup
from locedit import hooks
from locedit.editing.hparams import hparams_for
from locedit.editing.methods import METHODS
from locedit.editing.problems import PROBLEMS, request_for
from locedit.plan import edited_layers


@contextlib.contextmanager
def full_passes():
    """The arm before the change: passes never stop early, Jacobians row by row."""
    jacobian = torch.autograd.functional.jacobian

    def to_the_end(model, batch, last):
        hooks.forward_until(model, batch, None)

    with mock.patch("locedit.editing.rows.forward_until", to_the_end), \
            mock.patch("torch.autograd.functional.jacobian", lambda f, x, **_: jacobian(f, x)):
        yield


def tensors(updates) -> list[torch.Tensor]:
    return [t for name in sorted(updates) for t in vars(updates[name]).values() if torch.is_tensor(t)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--problems", nargs="+", default=["error_injection", "fact_forcing"], choices=sorted(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=["rome", "memit"], choices=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg, model, tok, cases, stats, templates, sigma, noised = bench_setup(args.model, args.cases, args.layers)
    n_layers = model.config.num_hidden_layers
    rows = []
    for problem in args.problems:
        reqs = [request_for(c, PROBLEMS[problem], noised[c.case_id], tok.eos_token, sigma) for c in cases.itertuples()]
        for method in args.methods:
            spec = METHODS[method]
            hp = hparams_for(cfg["editing"], method, problem)
            for layer in args.layers:
                inputs = (model, tok, reqs, edited_layers(layer, spec.window, n_layers), hp, stats,
                          templates.get(spec.templates))
                start = time.perf_counter()
                with full_passes():
                    before = spec.edit_cases(*inputs)
                full_s = time.perf_counter() - start
                start = time.perf_counter()
                after = spec.edit_cases(*inputs)
                stopped_s = time.perf_counter() - start
                equal = all(torch.equal(a, b) for a, b in zip(tensors(before), tensors(after)))
                rows.append({"problem": PROBLEMS[problem].short, "method": method, "layer": layer,
                             "full_s": full_s, "stopped_s": stopped_s, "x": full_s / stopped_s, "identical": equal})
                print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda x: f"{x:.3g}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.model} float32, {len(cases)} cases ({', '.join(map(str, cases.case_id))}) in one batch, "
          f"{args.threads} threads")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    for method, part in table.groupby("method", sort=False):
        print(f"{method}: full {part.full_s.sum():.1f} s, stopped {part.stopped_s.sum():.1f} s "
              f"({part.full_s.sum() / part.stopped_s.sum():.2f}x), all identical: {bool(part.identical.all())}")


if __name__ == "__main__":
    main()
