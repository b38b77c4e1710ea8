"""A results folder: what a finished run leaves for readers (committed under ``docs/results/``),
and the analysis rebuilt from it alone, in seconds, without any model.

    python -m locedit.results collect results/paper-gemma-g0 docs/results/gemma-3-270m \\
        --config configs/paper-gemma.yaml            # adds the run as groups/paper-gemma-g0/
    python -m locedit.results analyse docs/results/gemma-3-270m

A folder holds ``groups/<run>/`` (``scores.parquet``, ``tracing_mlp_w{W}.parquet`` per MLP window,
``run.json``: config, commit, wall time per stage) for every run of records committed so far; the
analysis of their union (cases are disjoint) goes beside them: ``r2.csv`` (with bootstrap 95%
intervals and a verdict per condition), ``r2_concentrated.csv``, ``summary.md`` and ``figures/``.
The workflow's ``regressions`` and ``figures`` rules call :func:`regression_tables` and
:func:`draw_figures` too, so a rebuilt analysis equals the run's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from locedit import provenance
from locedit.analysis.localizations import agreement, compare, section, with_effects
from locedit.analysis.plots import (plot_argmax_layer_histogram, plot_effect_by_layer, plot_r2_bars,
                                    plot_score_vs_effect, plot_scores_by_layer, plot_trace_heatmap)
from locedit.analysis.regressions import concentrated_cases, layer_correlation, regressions, regressions_with_verdicts
from locedit.analysis.summary import headline_from_summary, paper_tables, summary_markdown
from locedit.localization import PAPER, Localization, configured
from locedit.plan import EDIT_SITES, edited_layers, planned_num_layers
from locedit.results import unfinished
from locedit.tracing.effects import tracing_effects

FIGURES = {"fig1": "fig1_peak_layer.png", "fig2": "fig2_heatmap.png", "fig4": "fig4_rewrite_vs_tracing.png",
           "fig6": "fig6_r2_bars.png", "by_layer_rewrite": "fig7_rewrite_by_layer.png",
           "by_layer_paraphrase": "fig8_paraphrase_by_layer.png",
           "by_layer_neighborhood": "fig9_neighborhood_by_layer.png",
           "by_layer_overall": "fig9b_overall_by_layer.png", "fig10": "fig10_tracing_by_layer.png"}


def regression_tables(scores: pd.DataFrame, trace: pd.DataFrame, model: str, effect: str, correlation_layer: int,
                      info: dict, n_boot: int = 1000, sections: list[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(r2, r2_concentrated, summary markdown) of a run's scores and its effect-window MLP tracing
    table; r2 carries bootstrap intervals over cases (``*_lo``/``*_hi``) and ``verdict``;
    ``sections`` end the summary (:func:`localization_tables`)."""
    r2 = regressions_with_verdicts(scores, model, effect, n_boot)
    chosen = concentrated_cases(tracing_effects(trace), effect=effect)
    subset = scores[scores.case_id.isin(chosen)]
    concentrated = (regressions(subset, model, effect).assign(n_cases=subset.case_id.nunique()) if len(subset)
                    else pd.DataFrame())
    correlation = layer_correlation(scores, "rome", "error_injection", correlation_layer, effect=effect)
    info = {**info, "n_cases": scores.case_id.nunique(), "n_layers": scores.layer.nunique(),
            "layers": sorted(scores.layer.unique().tolist()), "effect": effect}
    return r2, concentrated, summary_markdown(r2, paper_tables(), concentrated, correlation, info, sections)


def localization_tables(scores: pd.DataFrame, tables: dict[str, pd.DataFrame], model: str,
                        effect: str, n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(regressions per localization with the rewrite conditions' bootstrap verdicts, their
    agreement with the first, summary section); the section is empty with one localization."""
    compared, agreed = compare(scores, tables, model, effect, n_boot), agreement(tables, effect)
    return compared, agreed, section(compared, agreed) if len(tables) > 1 else []


def draw_figures(scores: pd.DataFrame, r2: pd.DataFrame, tables: dict[int, pd.DataFrame], paths: dict[str, Path],
                 n_layers: int, effect_window: int, correlation_layer: int, effect: str,
                 heatmap_case: int | None = None) -> None:
    """The paper's figures that apply (names as :data:`FIGURES`) from scores, r2 and the MLP
    tracing tables by window."""
    effects = {w: tracing_effects(t) for w, t in tables.items()}
    fig1_layers = {EDIT_SITES[m].label: edited_layers(correlation_layer, EDIT_SITES[m].window, n_layers)
                   for m in ("rome", "memit") if m in set(scores.method)}
    plot_argmax_layer_histogram(effects[effect_window], n_layers, fig1_layers, paths["fig1"], effect_window, effect)
    widest = tables[max(tables)]
    case = heatmap_case if heatmap_case is not None else int(widest.case_id.iloc[0])
    plot_trace_heatmap(widest[widest.case_id == case], paths["fig2"])
    plot_score_vs_effect(scores, "rome", "error_injection", correlation_layer, paths["fig4"], effect=effect)
    plot_r2_bars(r2, paths["fig6"])
    for metric in ("rewrite", "paraphrase", "neighborhood", "overall"):
        plot_scores_by_layer(scores, metric, paths[f"by_layer_{metric}"])
    plot_effect_by_layer(effects, paths["fig10"], effect)


def draw_localization_figures(scores: pd.DataFrame, tables: dict[str, pd.DataFrame], folder: Path, n_layers: int,
                              effect_window: int, correlation_layer: int, effect: str) -> None:
    """Fig. 1 and Fig. 4 under each localization (effect-window MLP tables by id) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig1_layers = {EDIT_SITES[m].label: edited_layers(correlation_layer, EDIT_SITES[m].window, n_layers)
                   for m in ("rome", "memit") if m in set(scores.method)}
    for loc, table in tables.items():
        label = Localization.parse(loc).label
        plot_argmax_layer_histogram(tracing_effects(table), n_layers, fig1_layers, folder / f"{loc}_fig1_peak_layer.png",
                                    effect_window, effect, note=label)
        plot_score_vs_effect(with_effects(scores, table), "rome", "error_injection", correlation_layer,
                             folder / f"{loc}_fig4_rewrite_vs_tracing.png", effect=effect, note=label)


def collect(run_dir: Path, folder: Path, config_files: list[Path], overrides: list[str], wall_s: float | None,
            commit: str | None = None) -> Path:
    """Copy a finished run's scores and tracing tables (MLP per window; hidden and attention where
    the run traced them) into ``folder/groups/<run>/`` with its config, commit and per-stage wall
    times (from the run's benchmark files)."""
    run_dir = Path(run_dir)
    group = Path(folder) / "groups" / run_dir.name
    group.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "scores.parquet", group / "scores.parquet")  # with its provenance metadata
    config: dict = {}
    for path in config_files:
        config = _merged(config, yaml.safe_load(Path(path).read_text()))
    main, *others = configured(config)
    windows = []
    for table in sorted(Path(main.folder(str(run_dir))).glob("*_w*.parquet")):  # mlp; hidden, attn where traced
        shutil.copyfile(table, group / f"tracing_{table.name}")
        if table.stem.startswith("mlp_w"):
            windows.append(int(table.stem.removeprefix("mlp_w")))
    window = config["editing"]["effect_window"]
    for loc in others:
        shutil.copyfile(loc.table(str(run_dir), "mlp", window), group / f"tracing_{loc.id}_mlp_w{window}.parquet")
    stages = job_seconds(run_dir)
    analysis = config.get("analysis") or {}
    commit = commit or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    info = {"run": run_dir.name, "commit": commit, "config_files": [str(p) for p in config_files],
            "overrides": overrides, "model": config["model"]["name"], "n_layers": planned_num_layers(config["model"]),
            "effect_window": config["editing"]["effect_window"],
            "effect": analysis.get("effect") or "max_fraction_restored",
            "correlation_layer": analysis.get("correlation_layer"), "mlp_windows": sorted(windows),
            "localizations": [loc.id for loc in (main, *others)],
            "wall_s": wall_s, "job_s": stages, "job_s_total": round(sum(stages.values()), 1), "config": config}
    (group / "run.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return group


def job_seconds(run_dir: Path) -> dict[str, float]:
    """Seconds of each job of a run that left a Snakemake benchmark file (``benchmarks/<job>.tsv``)."""
    return {tsv.stem: round(float(pd.read_csv(tsv, sep="\t")["s"].iloc[0]), 1)
            for tsv in sorted((Path(run_dir) / "benchmarks").glob("*.tsv"))}


def _merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key, recursively (as Snakemake merges --configfile)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_groups(folder: Path) -> tuple[pd.DataFrame, dict[int, pd.DataFrame], list[dict]]:
    """(scores, MLP tracing tables by window, run infos) of every group under ``folder``."""
    groups = sorted(p for p in (Path(folder) / "groups").iterdir() if (p / "scores.parquet").exists())
    if not groups:
        raise FileNotFoundError(f"no groups/<run>/scores.parquet under {folder}: run `collect` first")
    scores = pd.concat([pd.read_parquet(g / "scores.parquet") for g in groups], ignore_index=True)
    overlap = scores.groupby(["method", "problem", "case_id", "layer"]).size()
    if (overlap > 1).any():
        raise ValueError(f"cases appear in more than one group under {folder}: "
                         f"{sorted(int(c) for c in overlap[overlap > 1].reset_index().case_id.unique())[:10]}")
    windows = set.intersection(*(set(json.loads((g / "run.json").read_text())["mlp_windows"]) for g in groups))
    tables = {w: pd.concat([pd.read_parquet(g / f"tracing_mlp_w{w}.parquet") for g in groups], ignore_index=True)
              for w in sorted(windows)}
    return scores, tables, [json.loads((g / "run.json").read_text()) for g in groups]


def analyse(folder: Path, n_boot: int | None = None) -> None:
    """r2.csv, r2_concentrated.csv, summary.md and figures/ of the union of ``folder``'s groups
    (model, layer count, effect and windows from the groups' ``run.json``, which must agree;
    ``n_boot`` bootstrap resamples, by default the runs' own ``analysis.bootstrap``, else 1000)."""
    folder = Path(folder)
    scores, tables, runs = load_groups(folder)
    if n_boot is None:
        n_boot = max((r.get("config", {}).get("analysis") or {}).get("bootstrap", 1000) for r in runs)
    keys = ("model", "n_layers", "effect_window", "effect", "correlation_layer")
    settings = {k: {json.dumps(r[k]) for r in runs} for k in keys}
    differing = {k: v for k, v in settings.items() if len(v) > 1}
    if differing:
        raise ValueError(f"groups under {folder} disagree on {differing}: analyse runs of one protocol only")
    model, n_layers, effect_window, effect, correlation_layer = (runs[0][k] for k in keys)
    layers = sorted(scores.layer.unique().tolist())
    if correlation_layer is None:
        correlation_layer = min(layers, key=lambda layer: abs(layer - (n_layers - 1) / 2))
    info = {"run": " + ".join(r["run"] for r in runs), "model": model, "window": effect_window}
    localized = _localization_tables(folder, runs, tables[effect_window], effect_window)
    compared, agreed, section = localization_tables(scores, localized, model, effect, n_boot)
    section = section + provenance.markdown([provenance.read(folder / "groups" / r["run"] / "scores.parquet")
                                             for r in runs])
    r2, concentrated, summary = regression_tables(scores, tables[effect_window], model, effect, correlation_layer,
                                                  info, n_boot, section)
    r2.to_csv(folder / "r2.csv", index=False, float_format="%.6g")
    concentrated.to_csv(folder / "r2_concentrated.csv", index=False, float_format="%.6g")
    compared.to_csv(folder / "localizations.csv", index=False, float_format="%.6g")
    agreed.to_csv(folder / "localization_agreement.csv", index=False, float_format="%.6g")
    (folder / "summary.md").write_text(summary)
    (folder / "figures").mkdir(exist_ok=True)
    draw_figures(scores, r2, tables, {k: folder / "figures" / v for k, v in FIGURES.items()}, n_layers,
                 effect_window, correlation_layer, effect)
    if len(localized) > 1:
        draw_localization_figures(scores, localized, folder / "figures" / "localizations", n_layers, effect_window,
                                  correlation_layer, effect)


def _localization_tables(folder: Path, runs: list[dict], main: pd.DataFrame, window: int) -> dict[str, pd.DataFrame]:
    """The effect-window MLP tables of the localizations every group has (main first)."""
    ids = [r.get("localizations", [PAPER.id]) for r in runs]
    shared = [loc for loc in ids[0] if all(loc in other for other in ids)]
    tables = {shared[0]: main}
    for loc in shared[1:]:
        tables[loc] = pd.concat([pd.read_parquet(folder / "groups" / r["run"] / f"tracing_{loc}_mlp_w{window}.parquet")
                                 for r in runs], ignore_index=True)
    return tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m locedit.results", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("collect", help="copy a finished run into a results folder as one group")
    add.add_argument("run_dir", type=Path)
    add.add_argument("folder", type=Path)
    add.add_argument("--config", type=Path, action="append", default=[], help="the config file(s) of the run")
    add.add_argument("--override", action="append", default=[], help="a --config override the run was given")
    add.add_argument("--wall-s", type=float, default=None, help="the run's wall time")
    add.add_argument("--commit", default=None, help="the commit that ran it (default: this checkout's HEAD)")
    rebuild = commands.add_parser("analyse", help="regressions, summary and figures from a results folder")
    rebuild.add_argument("folder", type=Path)
    rebuild.add_argument("--bootstrap", type=int, default=None,
                         help="resamples of cases for the 95%% intervals (default: the runs' analysis.bootstrap, 1000)")
    put = commands.add_parser("stash", help="copy an unfinished run into a folder to commit (locedit.results.unfinished)")
    put.add_argument("run_dir", type=Path)
    put.add_argument("folder", type=Path)
    put.add_argument("--model", required=True, help="model.name of the run (the restore checks its folder exists)")
    back = commands.add_parser("restore", help="copy a stash back into results/<run>")
    back.add_argument("folder", type=Path)
    back.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "collect":
        print(collect(args.run_dir, args.folder, args.config, args.override, args.wall_s, args.commit))
    elif args.command == "analyse":
        analyse(args.folder, args.bootstrap)
        print(headline_from_summary(args.folder / "summary.md"))
    elif args.command == "stash":
        print(f"stashed {len(unfinished.stash(args.run_dir, args.folder, args.model))} files in {args.folder}")
    else:
        print(f"restored {len(unfinished.restore(args.folder, args.run_dir))} files into {args.run_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
