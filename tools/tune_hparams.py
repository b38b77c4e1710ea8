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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from locedit.config import load_config
from locedit.editing.evaluation import evaluate
from locedit.editing.job import EditJob, case_batches, editable_cases
from locedit.editing.key_stats import KeyStats
from locedit.editing.methods import METHODS
from locedit.editing.metrics import edit_scores, prompt_scores
from locedit.editing.problems import PROBLEMS
from locedit.io import read_json
from locedit.models import load_model
from locedit.plan import model_slug, stats_folder_name

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


@dataclass
class Setting:
    """A finished run's artifacts for one method × problem at one central layer: the edit job (the
    model, the first cases' requests, key statistics, context templates), the run's ``editing``
    settings, the cases and their pre-edit table."""

    job: EditJob
    editing: dict
    central: int
    cases: pd.DataFrame
    pre: pd.DataFrame

    @classmethod
    def load(cls, configfiles: list[str], method: str, problem: str, n_cases: int, layer: int | None) -> "Setting":
        cfg = load_config(*configfiles)
        run = REPO / "results" / cfg["run"]
        opts = cfg["editing"]
        model, tok = load_model(REPO / "resources" / "models" / model_slug(cfg["model"]["name"]),
                                cfg["model"]["dtype"], cfg["model"]["device"])
        torch.set_num_threads(cfg["model"].get("threads") or 2)
        central = model.config.num_hidden_layers // 2 if layer is None else layer
        cases = editable_cases(pd.read_parquet(run / "cases.parquet"), pd.read_parquet(run / "correctness.parquet"),
                               problem, n_cases)
        spec = METHODS[method]
        stats = None
        if spec.needs_stats:
            stats = KeyStats(REPO / "resources" / "stats" / model_slug(cfg["model"]["name"]) / stats_folder_name(cfg["stats"]))
        job = EditJob.for_cases(
            model, tok, method, problem, cases, editing=opts, layers=[central], sigma=read_json(run / "noise.json")["sigma"],
            noised=pd.read_parquet(run / "editing" / "noised_targets.parquet"), stats=stats,
            templates=read_json(run / "editing" / "context_templates.json") if spec.templates else None)
        pre = pd.concat([evaluate(model, tok, r, opts["seed"]).assign(case_id=r.case_id, problem=problem)
                         for r in job.requests])
        return cls(job, opts, central, cases, pre)

    @property
    def model(self):
        return self.job.model

    @property
    def tok(self):
        return self.job.tok

    @property
    def requests(self) -> list:
        return self.job.requests

    @property
    def window(self) -> list[int]:
        return self.job.window(self.central)

    def hparams(self, **changed) -> dict:
        """The run's hyperparameters of this method × problem, with ``changed`` over them."""
        return {**self.job.hparams, **changed}

    def edit(self, hparams: dict, templates: Any = None) -> tuple[pd.DataFrame, pd.DataFrame, float]:
        """Edit every case (the run's batches) and score it: (scores, post-edit table, edit s per case)."""
        job = replace(self.job, hparams=hparams, templates=self.job.templates if templates is None else templates)
        post, edit_seconds = [], 0.0
        for batch in case_batches(list(range(len(job.requests))), job.batch_cases):
            batch_reqs = [job.requests[i] for i in batch]
            tables, edit_s, _ = job.edit(batch_reqs, self.window)
            edit_seconds += edit_s
            post += [t.assign(case_id=r.case_id, problem=job.problem, method=job.method, layer=self.central)
                     for r, t in zip(batch_reqs, tables)]
        post = pd.concat(post)
        scores = edit_scores(prompt_scores(self.pre, post, {job.problem: PROBLEMS[job.problem].minimize}))
        return scores, post, edit_seconds / len(job.requests)


SCORES = ["rewrite_score", "paraphrase_score", "neighborhood_score", "overall_score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays over config.yaml, as snakemake's")
    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--problem", required=True, choices=sorted(PROBLEMS))
    parser.add_argument("--grid", required=True, help="one hyperparameter: name=v1,v2,…")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--layer", type=int, default=None, help="central layer (default: the middle one)")
    args = parser.parse_args()
    name, values = parse_grid(args.grid)
    setting = Setting.load(args.configfile, args.method, args.problem, args.cases, args.layer)
    rows = []
    for value in values:
        scores, _, edit_s = setting.edit(setting.hparams(**{name: value}))
        rows.append({name: value, **scores[SCORES].mean().round(3).to_dict(), "edit_s": round(edit_s, 1)})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    print(f"\n{args.method} / {args.problem}, layers {setting.window}, first {len(setting.requests)} cases "
          f"({', '.join(map(str, setting.cases.case_id))}):")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
