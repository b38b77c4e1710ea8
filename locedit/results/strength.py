"""Edit strength: one run per scale of an editing hyperparameter (FT-1 / FT-5's norm radius),
collected into one table and one figure, each condition of each scale labelled at ceiling or
floor or given its bootstrap verdict (:func:`locedit.analysis.regressions.interval_verdict`).

    python -m locedit.results.strength overlays configs/strength-gemma.yaml --out results/strength-gemma-overlays
    # writes one overlay per scale and prints its command, e.g.
    #   snakemake --cores 2 --configfile configs/strength-gemma.yaml results/strength-gemma-overlays/x0.3.yaml
    python -m locedit.results.strength collect configs/strength-gemma.yaml --out docs/results/strength-gemma
    python -m locedit.results.strength render configs/strength-gemma.yaml docs/results/strength-gemma  # .md again, from the tables
    python -m locedit.results.strength collect configs/strength-gemma.yaml \
        --results docs/results/strength-gemma/runs --out docs/results/strength-gemma   # all again, from the kept scores

The config's ``sweep`` section (``hparam``, ``methods``, ``scales``) defines the sweep. The run of
scale ``s`` is ``{run}-x{s}``: the config with ``hparam`` of each swept method multiplied by ``s``
in every problem, from the values the config and the model's tuning file give per problem (so
their per-problem differences stay). The workflow needs nothing new: each scale is an ordinary run
of its own results folder; ``collect`` reads their ``scores.parquet`` at the config's edit layers and
writes ``strength.csv`` (one row per scale × method × problem: ``hparam`` names the swept
hyperparameter, ``value`` its scaled value), ``strength_by_layer.csv`` (mean rewrite score per
layer), ``strength.png`` (rewrite by layer per scale, each panel naming its verdict per scale) and
``strength.md`` (the table read by scale; :func:`strength_markdown`, rebuilt from the two tables alone),
and keeps each run's ``scores.parquet`` (its provenance inside) with a ``run.json`` of its scaled
values and job seconds under ``runs/<run>/`` (:func:`keep_runs`), from which ``collect`` rebuilds it all.

    >>> cfg = {"run": "s", "sweep": {"hparam": "norm_constraint", "methods": ["ft1"], "scales": [0.5]},
    ...        "editing": {"problems": ["fact_erasure"], "hparams": {"ft1": {"norm_constraint": 1e-4}}}}
    >>> overlay(cfg, 0.5)
    {'run': 's-x0.5', 'editing': {'overrides': {'ft1': {'fact_erasure': {'norm_constraint': 5e-05}}}}}
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml

from locedit.analysis.plots import plot_strength_sweep
from locedit import provenance
from locedit.analysis.regressions import (CEILING, EFFECT, FLOOR, MAX_SPREAD, regressions_with_verdicts, verdict_counts,
                                          verdict_label)
from locedit.config import load_config
from locedit.editing.hparams import hparams_for
from locedit.plan import METHOD_LABELS, PROBLEM_LABELS, central_layers, planned_num_layers
from locedit.results.build import job_seconds


COLUMNS = ["scale", "method", "problem", "hparam", "value", "n_cases", "layer_mean_min", "layer_mean_max",
           "ceiling_share", "floor_share", "r2_layer", "r2_trace", "r2_added", "r2_layer_lo", "r2_added_hi", "verdict"]


def run_name(config: dict, scale: float) -> str:
    return f"{config['run']}-x{scale:g}"


def overlay(config: dict, scale: float) -> dict:
    """The config overlay of one scale: its run name and the scaled hyperparameter per method × problem."""
    sweep, editing = config["sweep"], config["editing"]
    scaled = {}
    for method in sweep["methods"]:
        scaled[method] = {}
        for problem in editing["problems"]:
            value = hparams_for(editing, method, problem).get(sweep["hparam"])
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"sweep.hparam {sweep['hparam']!r} of {method} / {problem} is {value!r}, not a "
                                 "number; sweep a numeric hyperparameter of the swept methods")
            scaled[method][problem] = {sweep["hparam"]: float(f"{scale * value:.12g}")}  # 3e-05, not 3.0000000000000004e-05
    return {"run": run_name(config, scale), "editing": {"overrides": scaled}}


def write_overlays(config_file: Path, out: Path) -> list[Path]:
    """One overlay file per scale under ``out`` (``x{scale}.yaml``); prints the command of each."""
    config = load_config(config_file)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for scale in config["sweep"]["scales"]:
        path = out / f"x{scale:g}.yaml"
        path.write_text(f"# scale {scale:g} of {config_file}'s sweep (python -m locedit.results.strength overlays)\n"
                        + yaml.safe_dump(overlay(config, scale), sort_keys=False))
        print(f"snakemake --cores 2 --configfile {config_file} {path}")
        paths.append(path)
    return paths


def collect(config: dict, results: Path = Path("results")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per scale × method × problem: the scaled value, the layer means' range, the shares
    of edits at ceiling / floor, R² and the verdict or label; the mean rewrite score per scale ×
    method × problem × layer) of the sweep's finished runs under ``results``, each read at the
    config's edit layers."""
    sweep = config["sweep"]
    analysis = config.get("analysis") or {}
    effect, n_boot = analysis.get("effect") or EFFECT, analysis.get("bootstrap", 1000)
    rows, layers = [], []
    for scale in sweep["scales"]:
        path = _scores_path(config, scale, results)
        scores = read_run(config, path)
        values = used_values(config, scale, path)
        r2 = regressions_with_verdicts(scores, config["model"]["name"], effect, n_boot, metrics=("rewrite",))
        r2["hparam"] = sweep["hparam"]
        r2["value"] = [values[m, p] for m, p in zip(r2.method, r2.problem)]
        means = scores.groupby(["method", "problem", "layer"]).rewrite_score.mean().rename("mean_rewrite").reset_index()
        spread = means.groupby(["method", "problem"]).mean_rewrite.agg(layer_mean_min="min", layer_mean_max="max")
        rows.append(r2.merge(spread.reset_index(), on=["method", "problem"]).assign(scale=scale))
        layers.append(means.assign(scale=scale))
    table = pd.concat(rows, ignore_index=True)
    return table.reindex(columns=[c for c in COLUMNS if c in table]), pd.concat(layers, ignore_index=True)


def _scores_path(config: dict, scale: float, results: Path) -> Path:
    path = results / run_name(config, scale) / "scores.parquet"
    if not path.exists():
        how = ("collect once from the results folder that holds the run (--results results) to keep it here"
               if results.name == "runs" else
               "run it first (python -m locedit.results.strength overlays …, then the snakemake command it prints)")
        raise FileNotFoundError(f"{path} is missing (scale {scale:g}): {how}")
    return path


def edit_layers(config: dict) -> list[int]:
    """The central layers the config edits (:func:`locedit.plan.central_layers`): a sweep is read at
    these, so a run edited at more layers adds nothing to the table.

        >>> edit_layers({"model": {"name": "m", "num_layers": 18}, "editing": {"layers": {"every": 8}}})
        [0, 8, 16, 17]
    """
    return central_layers(config["editing"]["layers"], planned_num_layers(config["model"]))


def read_run(config: dict, path: Path) -> pd.DataFrame:
    """A run's scores of the swept methods × the config's problems at the config's edit layers; an
    error names a condition the run lacks or a layer it was not edited at."""
    methods, problems, layers = config["sweep"]["methods"], config["editing"]["problems"], edit_layers(config)
    scores = pd.read_parquet(path)
    scores = scores[scores.method.isin(methods) & scores.problem.isin(problems) & scores.layer.isin(layers)]
    found = scores.groupby(["method", "problem"]).layer.agg(set)
    for method in methods:
        for problem in problems:
            missing = sorted(set(layers) - found.get((method, problem), set()))
            if missing:
                raise ValueError(f"{path} has no {method} / {problem} edits at layer(s) {missing} of editing.layers "
                                 f"{layers}: rerun that scale with this config")
    return scores


def used_values(config: dict, scale: float, path: Path) -> dict[tuple[str, str], float]:
    """The swept hyperparameter's value per (method, problem) at ``scale``: the config's (tuned value
    × scale), checked against the value the run's edit jobs recorded in the table's provenance (an
    error names both when the config or its tuning file changed since the run)."""
    hparam = config["sweep"]["hparam"]
    scaled = overlay(config, scale)["editing"]["overrides"]
    recorded = provenance.read(path).get("edits") or {}
    values = {}
    for method, problems in scaled.items():
        for problem, setting in problems.items():
            value, job = setting[hparam], recorded.get(f"{method}/{problem}")
            used = hparams_for(job["editing"], method, problem).get(hparam) if job else value
            if not math.isclose(used, value, rel_tol=1e-9):
                raise ValueError(f"{path}: {method} / {problem} was edited with {hparam} {used:g}, but the config "
                                 f"gives {value:g} at scale {scale:g}: rerun the scale, or collect with the config "
                                 "(and tuning file) the run used")
            values[method, problem] = value
    return values


def keep_runs(config: dict, results: Path, out: Path) -> None:
    """Copy each scale's ``scores.parquet`` (its provenance inside) to ``out/runs/<run>/`` beside a
    ``run.json``: the run, its scale, the swept value per method × problem, the layers it was edited
    at, the commit(s) its edit jobs ran and the seconds of each job that left a benchmark file (a job
    resumed from its checkpoints counts its last attempt). Nothing is copied when ``results`` is
    ``out/runs``."""
    sweep = config["sweep"]
    for scale in sweep["scales"]:
        path = _scores_path(config, scale, results)
        target = out / "runs" / path.parent.name
        if path.parent.resolve() == target.resolve():
            continue
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / "scores.parquet")
        edits = provenance.read(path).get("edits") or {}
        jobs = job_seconds(path.parent)
        info = {"run": path.parent.name, "scale": scale, "hparam": sweep["hparam"],
                "values": {f"{m}/{p}": v for (m, p), v in used_values(config, scale, path).items()},
                "layers_edited": sorted(int(x) for x in pd.read_parquet(path, columns=["layer"]).layer.unique()),
                "commits": sorted({f"{e['code']['commit']}{' (dirty)' if e['code'].get('dirty') else ''}"
                                   for e in edits.values() if (e.get("code") or {}).get("commit")}),
                "job_s": jobs, "job_s_total": round(sum(jobs.values()), 1)}
        (target / "run.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def _score(x: float) -> str:
    """A score in [0, 1] to two places without the leading zero (``.45``, ``1.00``)."""
    return f"{x:.2f}".removeprefix("0")


def strength_markdown(table: pd.DataFrame, by_layer: pd.DataFrame, source: str) -> str:
    """The sweep read by scale, from :func:`collect`'s two tables: per scale the verdict counts and
    the mean rewrite score at the median edited layer; per method × problem and scale the scaled
    value, the range of the layer means and the verdict (or ceiling / floor label).

        >>> t = pd.DataFrame({"scale": [1.0], "method": ["ft1"], "problem": ["error_injection"],
        ...                   "hparam": ["norm_constraint"], "value": [1e-3],
        ...                   "n_cases": [20], "layer_mean_min": [.99], "layer_mean_max": [1.0], "verdict": ["at ceiling"]})
        >>> by_layer = pd.DataFrame({"scale": 1.0, "method": "ft1", "problem": "error_injection", "layer": [0, 9, 17],
        ...                          "mean_rewrite": [.99, .995, 1.0]})
        >>> print(strength_markdown(t, by_layer, "configs/x.yaml").splitlines()[-1])
        | FT-1 | Error Injection | 0.001: .99–1.00, **at ceiling** |
    """
    hparam = table.hparam.iloc[0]
    scales = sorted(table.scale.unique())
    layers = sorted(by_layer.layer.unique())
    median = layers[(len(layers) - 1) // 2]
    lines = [f"# Edit strength: {hparam} × {', '.join(f'{s:g}' for s in scales)}", "",
             f"Generated by `python -m locedit.results.strength collect {source}` (this page again from the tables: "
             f"`python -m locedit.results.strength render {source} <this folder>`); do not edit by hand. One run per scale of "
             f"{hparam} (the tuned value per method × problem times the scale), {int(table.n_cases.max())} cases × "
             f"{len(layers)} layers ({', '.join(str(int(x)) for x in layers)}); figure: [strength.png](strength.png).", "",
             f"Verdicts: the bootstrap rule of the main analysis; **at ceiling** / **at floor** instead when every "
             f"layer's mean rewrite score is ≥ {CEILING} / ≤ {FLOOR} with the layer means within {MAX_SPREAD}.", "",
             f"| scale | verdicts | mean rewrite at layer {int(median)} (the median edited layer), per method |",
             "|---|---|---|"]
    for scale in scales:
        rows = table[table.scale == scale]
        at = by_layer[(by_layer.scale == scale) & (by_layer.layer == median)]
        means = at.groupby("method").mean_rewrite.mean()
        lines.append(f"| × {scale:g} | {verdict_counts(rows)} | "
                     + ", ".join(f"{METHOD_LABELS[m]} {_score(means[m])}" for m in METHOD_LABELS if m in means) + " |")
    lines += ["", f"Per condition: {hparam}: the range of its layers' mean rewrite scores, verdict.", "",
              "| method | problem | " + " | ".join(f"× {s:g}" for s in scales) + " |", "|---|---|" + "---|" * len(scales)]
    for method in (m for m in METHOD_LABELS if m in set(table.method)):
        for problem in (p for p in PROBLEM_LABELS if p in set(table.problem)):
            cells = []
            for scale in scales:
                hit = table[(table.method == method) & (table.problem == problem) & (table.scale == scale)]
                row = hit.iloc[0] if not hit.empty else None
                cells.append("–" if row is None else
                             f"{row.value:g}: {_score(row.layer_mean_min)}–{_score(row.layer_mean_max)}, "
                             f"**{verdict_label(row.verdict)}**")
            lines.append(f"| {METHOD_LABELS[method]} | {PROBLEM_LABELS[problem]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(folder: Path, source: str) -> Path:
    """Write ``strength.md`` in ``folder`` from its ``strength.csv`` and ``strength_by_layer.csv``."""
    table = pd.read_csv(folder / "strength.csv")
    by_layer = pd.read_csv(folder / "strength_by_layer.csv")
    path = folder / "strength.md"
    path.write_text(strength_markdown(table, by_layer, source))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m locedit.results.strength", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("overlays", help="write one config overlay per scale and print its command")
    make.add_argument("config", type=Path, help="the sweep's config (configs/strength-gemma.yaml)")
    make.add_argument("--out", type=Path, required=True, help="folder for the overlays")
    gather = commands.add_parser("collect", help="one table and figure from the finished runs")
    gather.add_argument("config", type=Path)
    gather.add_argument("--results", type=Path, default=Path("results"), help="where the runs' folders are")
    gather.add_argument("--out", type=Path, required=True,
                        help="folder for strength.csv, strength.png, strength.md and runs/ (the runs' scores)")
    again = commands.add_parser("render", help="strength.md again from a collected folder's tables")
    again.add_argument("config", type=Path, help="the sweep's config (named on the page as its source)")
    again.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "overlays":
        write_overlays(args.config, args.out)
        return
    if args.command == "render":
        print(f"wrote {render(args.folder, str(args.config))}")
        return
    config = load_config(args.config)
    table, by_layer = collect(config, args.results)
    args.out.mkdir(parents=True, exist_ok=True)
    keep_runs(config, args.results, args.out)
    table.to_csv(args.out / "strength.csv", index=False, float_format="%.6g")
    by_layer.to_csv(args.out / "strength_by_layer.csv", index=False, float_format="%.6g")
    plot_strength_sweep(by_layer, args.out / "strength.png", config["sweep"]["hparam"], table)
    render(args.out, str(args.config))
    for scale, rows in table.groupby("scale"):
        print(f"× {scale:g}: {verdict_counts(rows)}")
    print(f"wrote {args.out / 'strength.csv'}, strength_by_layer.csv, strength.png, strength.md and runs/")


if __name__ == "__main__":
    main(sys.argv[1:])
