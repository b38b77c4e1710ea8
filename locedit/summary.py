"""``analysis/summary.md``: this run's regressions beside the paper's Tables 1, 3 and 6, cell for cell.

    >>> text = summary_markdown(r2, paper_tables(), concentrated=r2_conc, correlation=fig4, run_info=info)  # doctest: +SKIP

Each cell reads ``layer / trace / both / added`` R² (then the F-test p where the paper gives one);
the paper's cells come from ``locedit/bundled/paper_r2.csv`` (GPT-J, n = 652; see PROVENANCE.md).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from .editing import METHODS
from .problems import PROBLEMS

METHOD_LABELS = {name: m.label for name, m in METHODS.items()}
PROBLEM_LABELS = {name: p.label for name, p in PROBLEMS.items()}
PAPER = {"layer_mean": 0.585, "added_max": 0.032}  # paper §5.3: mean layer R² over Fig. 6, max added R²


def paper_tables() -> pd.DataFrame:
    """The paper's regression cells (Tables 1, 3, 6), one row per table × method × problem × metric."""
    with resources.files("locedit.bundled").joinpath("paper_r2.csv").open() as f:
        return pd.read_csv(f, dtype={"f_pvalue": str})


def _cell(row, with_p: bool = True) -> str:
    if row is None:
        return "–"
    values = "/".join(_num(row[k]) for k in ("r2_layer", "r2_trace", "r2_both", "r2_added"))
    p = row.get("f_pvalue")
    if not with_p or p is None or (isinstance(p, float) and np.isnan(p)):
        return values + (" (sat.)" if row.get("saturated") is True else "")
    return f"{values}, p {_pvalue(p)}"


def _num(x) -> str:
    """Three decimals without the leading zero, as the paper prints them (``.947``)."""
    if pd.isna(x):
        return "nan"
    x = float(x)
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}".replace("0.", ".", 1)


def _pvalue(p) -> str:
    if isinstance(p, str):
        return p
    return "<1e-4" if p < 1e-4 else f"{p:.3f}"


def _lookup(frame: pd.DataFrame, **keys):
    hit = frame
    for k, v in keys.items():
        hit = hit[hit[k] == v]
    return None if hit.empty else hit.iloc[0].to_dict()


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, table: int, metric: str, with_p: bool) -> str:
    """A markdown table: one row per problem, for each method this run's cell then the paper's."""
    methods = [m for m in METHOD_LABELS if m in set(ours.method)]
    head = "| problem | " + " | ".join(f"{METHOD_LABELS[m]} (this run) | {METHOD_LABELS[m]} (paper)" for m in methods)
    lines = [head + " |", "|---" * (1 + 2 * len(methods)) + "|"]
    for problem in PROBLEM_LABELS:
        if problem not in set(ours.problem):
            continue
        cells = []
        for m in methods:
            cells.append(_cell(_lookup(ours, method=m, problem=problem, metric=metric), with_p))
            cells.append(_cell(_lookup(paper, table=table, method=m, problem=problem, metric=metric), with_p))
        lines.append(f"| {PROBLEM_LABELS[problem]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finding(ours: pd.DataFrame) -> tuple[bool, str]:
    """Whether the paper's qualitative finding holds: layer explains far more of the rewrite score
    than tracing does, and tracing adds little on top of layer. Rule (stated in the sentence):
    mean R² of layer ≥ 2 × mean R² of tracing, and the mean added R² beyond what chance alone adds
    with this many rows ≤ ⅓ of the mean layer R²."""
    rewrite = ours[(ours.metric == "rewrite") & ~ours.saturated]
    if rewrite.empty:
        return False, ("The finding cannot be judged: every rewrite regression is saturated (as many parameters "
                       "as rows); run more cases or layers.")
    layer, trace, added = rewrite.r2_layer.mean(), rewrite.r2_trace.mean(), rewrite.r2_added.mean()
    chance = rewrite.r2_added_chance.mean()
    holds = layer >= 2 * trace and added - chance <= layer / 3
    verdict = "holds" if holds else "does not hold"
    return holds, (
        f"The paper's finding (edit layer explains far more of the rewrite score than tracing, which adds "
        f"little) **{verdict}** in this run: over {len(rewrite)} method × problem conditions the mean R² is "
        f"{layer:.3f} for layer, {trace:.3f} for tracing, and tracing adds {added:.3f} on top of layer "
        f"(max {rewrite.r2_added.max():.3f}), where chance alone would add {chance:.3f} with "
        f"{int(rewrite.n.median())} rows per condition; the paper reports a mean layer R² of {PAPER['layer_mean']} "
        f"and a max added R² of {PAPER['added_max']} with 652 cases (rule: layer ≥ 2 × tracing, and added − "
        f"chance ≤ layer / 3)."
    )


def headline(ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> str:
    """One line: ROME error-injection rewrite R², layer vs layer + tracing, beside the paper's Table 1."""
    row = _lookup(ours, method="rome", problem="error_injection", metric="rewrite")
    if row is None:
        return "no ROME error-injection rows in this run"
    theirs = _lookup(paper_tables() if paper is None else paper, table=1, method="rome", problem="error_injection",
                     metric="rewrite")
    return (f"ROME error injection, rewrite score: R² layer {row['r2_layer']:.3f}, tracing {row['r2_trace']:.3f}, "
            f"both {row['r2_both']:.3f} (tracing adds {row['r2_added']:.3f}; paper "
            + " / ".join(_num(theirs[k]) for k in ("r2_layer", "r2_trace", "r2_both", "r2_added"))
            + f"), n = {row['n']}")


def summary_markdown(ours: pd.DataFrame, paper: pd.DataFrame, concentrated: pd.DataFrame,
                     correlation: dict, run_info: dict, sections: list[str] = ()) -> str:
    """The whole summary as markdown; ``sections``: more lines at the end (the localizations')."""
    _, sentence = finding(ours)
    parts = [
        f"# Localization vs editing: {run_info['run']} ({run_info['model']})",
        "",
        f"{run_info['n_cases']} cases × {run_info['n_layers']} edit layers {run_info['layers']}; tracing effect: "
        f"{run_info['effect']} (MLP, window {run_info['window']}). Each cell: R² of layer / tracing / both "
        "(interacted) / added by tracing, then the F-test p of both vs layer. The paper's cells: GPT-J, n = 652. "
        "`sat.`: the interacted model has as many parameters as rows (R² 1 by construction).",
        "",
        sentence,
        "",
        f"**Headline.** {headline(ours, paper)}.",
        "",
        "## Table 1 — ROME, error injection, rewrite score",
        "",
        side_by_side(ours[(ours.method == "rome") & (ours.problem == "error_injection")], paper, 1, "rewrite", True),
        "",
        *_intervals(ours),
        "## Table 3 — rewrite score",
        "",
        side_by_side(ours, paper, 3, "rewrite", True),
        "",
        "## Table 6 — overall score",
        "",
        side_by_side(ours, paper, 6, "overall", False),
        "",
    ]
    for metric, title in (("paraphrase", "Table 4 — paraphrase score"), ("neighborhood", "Table 5 — neighborhood score"),
                          ("essence", "Essence score (App. B)")):
        if metric in set(ours.metric):
            parts += [f"## {title} (this run only)", "", _ours_only(ours, metric), ""]
    parts += _table7(ours, paper)
    parts += [
        "## Fig. 4 — rewrite score vs tracing effect at one layer",
        "",
        f"ROME, error injection, layer {correlation['layer']}: Pearson r = {_num(correlation['r'])}, "
        f"p = {_num(correlation['p'])}, n = {correlation['n']} (paper, layer 6: ρ = −0.13, p < 1e-3).",
        "",
        "## Table 2 — concentrated tracing subset (App. B)",
        "",
    ]
    if concentrated.empty:
        parts.append("Too few concentrated cases to fit (paper: 74 of 652 cases; .927 / .02 / .929).")
    else:
        parts += [f"{concentrated.n_cases.iloc[0]} cases qualify. Paper: ROME error injection .927 / .02 / .929.", "",
                  _ours_only(concentrated, "rewrite")]
    if sections:
        parts += ["", *sections]
    return "\n".join(parts) + "\n"


def _intervals(ours: pd.DataFrame, metric: str = "rewrite") -> list[str]:
    """Bootstrap 95% intervals (cases resampled with all their layers) and each condition's verdict."""
    if "r2_layer_lo" not in ours:
        return []
    rows = ours[ours.metric == metric]
    counts = rows.verdict.value_counts()
    lines = [f"## Bootstrap 95% intervals — {metric} score", "",
             f"Cases resampled with all their layers ({int(rows.n_cases.max())} cases). Verdict per condition: "
             "**holds** when the upper bound of the R² tracing adds is below the lower bound of the layer's R²; "
             "**reversed** when the added R²'s lower bound is above the layer R²'s upper bound; **undetermined** "
             "when they overlap (no verdict for saturated fits or fewer than 10 cases). Here: "
             + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" of {len(rows)}.", "",
             "| problem | method | R² layer | R² tracing | R² added by tracing | verdict |", "|---|---|---|---|---|---|"]
    for problem in PROBLEM_LABELS:
        for method in METHOD_LABELS:
            row = _lookup(rows, method=method, problem=problem)
            if row is None:
                continue
            cells = [f"{_num(row[k])} [{_num(row[k + '_lo'])}, {_num(row[k + '_hi'])}]"
                     for k in ("r2_layer", "r2_trace", "r2_added")]
            lines.append(f"| {PROBLEM_LABELS[problem]} | {METHOD_LABELS[method]} | " + " | ".join(cells)
                         + f" | {row['verdict']} |")
    return lines + [""]


def _ours_only(ours: pd.DataFrame, metric: str) -> str:
    methods = [m for m in METHOD_LABELS if m in set(ours.method)]
    lines = ["| problem | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |", "|---" * (1 + len(methods)) + "|"]
    for problem in PROBLEM_LABELS:
        if problem in set(ours.problem):
            cells = [_cell(_lookup(ours, method=m, problem=problem, metric=metric)) for m in methods]
            lines.append(f"| {PROBLEM_LABELS[problem]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fit_errors(row: dict) -> list[str]:
    """``layer vs tracing`` for R², RMSE and MAE of one regression row (ours or the paper's Table 7)."""
    return [f"{_num(row[a])} vs {_num(row[b])}" for a, b in
            (("r2_layer", "r2_trace"), ("rmse_layer", "rmse_trace"), ("mae_layer", "mae_trace"))]


def _table7(ours: pd.DataFrame, paper: pd.DataFrame) -> list[str]:
    lines = ["## Table 7 — ROME, error injection: layer vs tracing", "",
             "| metric | R² (this run) | RMSE | MAE | paper R² | paper RMSE | paper MAE |", "|---|---|---|---|---|---|---|"]
    for metric in ("rewrite", "overall"):
        row = _lookup(ours, method="rome", problem="error_injection", metric=metric)
        if row is None:
            continue
        theirs = _lookup(paper, table=7, method="rome", problem="error_injection", metric=metric)
        lines.append(f"| {metric} | " + " | ".join(fit_errors(row) + (fit_errors(theirs) if theirs else ["–"] * 3)) + " |")
    return lines + [""]


def headline_from_summary(path: str) -> str:
    """The headline line of a written summary.md (printed at the end of a workflow run)."""
    with open(path) as f:
        for line in f:
            if line.startswith("**Headline.**"):
                return line.removeprefix("**Headline.**").strip()
    return f"no headline in {path}"
