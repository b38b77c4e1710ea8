"""Choose an editing hyperparameter the paper's way: first cases, one middle layer, a grid of values.

    .venv/bin/python tools/tune_hparams.py --method ft1 --problem error_injection \\
        --grid norm_constraint=1e-4,5e-4,1e-3 [--cases 5] [--layer 8] [--configfile configs/x.yaml]

The paper (App. A) tuned each method × problem on a few cases at a middle layer so the rewrite
score lands near, but not above, 99%. This reads a finished run's artifacts (``results/{run}/``:
cases, correctness, noise level, noised targets, context templates; the key statistics under
``resources/stats/``), so run ``make reproduce`` (or the workflow up to ``edit``) first. For each
grid value it prints the mean rewrite / paraphrase / neighborhood / overall score and edit time.
The chosen values go to ``editing.hparams`` / ``editing.overrides`` in the config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
import yaml

from locedit.config import load_config
from locedit.editing import METHODS
from locedit.evaluation import evaluate
from locedit.io import read_json
from locedit.metrics import edit_scores, prompt_scores
from locedit.models import load_model, model_slug
from locedit.problems import PROBLEMS
from locedit.stats import KeyStats, stats_folder_name
from locedit.sweep import case_batches, edit_and_evaluate, editable_cases, edited_layers, hparams_for, requests

REPO = Path(__file__).resolve().parents[1]


def parse_grid(text: str) -> tuple[str, list]:
    """``"name=v1,v2"`` → (name, [v1, v2]) with YAML scalars (1e-4 → float, true → bool)."""
    name, _, values = text.partition("=")
    if not values:
        raise SystemExit(f"--grid {text!r}: write name=value1,value2,…")
    return name, [_scalar(v) for v in values.split(",")]


def _scalar(text: str):
    """A number when it reads as one (YAML takes ``5e-4`` for a string), else YAML's reading."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return yaml.safe_load(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays over config.yaml, as snakemake's")
    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--problem", required=True, choices=sorted(PROBLEMS))
    parser.add_argument("--grid", required=True, help="one hyperparameter: name=v1,v2,…")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--layer", type=int, default=None, help="central layer (default: the middle one)")
    args = parser.parse_args()
    cfg = load_config(*args.configfile)
    run = REPO / "results" / cfg["run"]
    opts = cfg["editing"]
    name, values = parse_grid(args.grid)

    model, tok = load_model(REPO / "resources" / "models" / model_slug(cfg["model"]["name"]),
                            cfg["model"]["dtype"], cfg["model"]["device"])
    torch.set_num_threads(cfg["model"].get("threads") or 2)
    n_layers = model.config.num_hidden_layers
    central = n_layers // 2 if args.layer is None else args.layer
    sigma = read_json(run / "noise.json")["sigma"]
    cases = editable_cases(pd.read_parquet(run / "cases.parquet"), pd.read_parquet(run / "correctness.parquet"),
                           args.problem, args.cases)
    noised = pd.read_parquet(run / "editing" / "noised_targets.parquet")
    spec = METHODS[args.method]
    templates = read_json(run / "editing" / "context_templates.json")[spec.templates] if spec.templates else None
    stats = None
    if spec.needs_stats:
        stats = KeyStats(REPO / "resources" / "stats" / model_slug(cfg["model"]["name"]) / stats_folder_name(cfg["stats"]))
    window = edited_layers(central, spec.window, n_layers)
    reqs = list(requests(cases, args.problem, noised, tok.eos_token, sigma))
    pre = pd.concat([evaluate(model, tok, r, opts["seed"]).assign(case_id=r.case_id, problem=args.problem) for r in reqs])

    rows = []
    for value in values:
        hp = {**hparams_for(opts, args.method, args.problem), name: value}
        post, edit_seconds = [], 0.0
        for batch in case_batches(list(range(len(reqs))), opts["batch_cases"]):
            batch_reqs = [reqs[i] for i in batch]
            tables, edit_s, _ = edit_and_evaluate(model, tok, args.method, batch_reqs, window, hp, stats, templates,
                                                  opts["seed"], opts["mixed_precision"])
            edit_seconds += edit_s
            post += [t.assign(case_id=r.case_id, problem=args.problem, method=args.method, layer=central)
                     for r, t in zip(batch_reqs, tables)]
        scores = edit_scores(prompt_scores(pre, pd.concat(post), {args.problem: PROBLEMS[args.problem].minimize}))
        means = scores[["rewrite_score", "paraphrase_score", "neighborhood_score", "overall_score"]].mean()
        rows.append({name: value, **means.round(3).to_dict(), "edit_s": round(edit_seconds / len(reqs), 1)})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    print(f"\n{args.method} / {args.problem}, layers {window}, first {len(reqs)} cases "
          f"({', '.join(map(str, cases.case_id))}):")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
