"""``analysis/summary.md``: this run's bootstrap verdicts, the committed full-protocol verdicts of
the same model beside them, and this run's regressions beside the paper's Tables 1, 3 and 6.

    >>> text = summary_markdown(r2, paper_tables(), concentrated=r2_conc, correlation=fig4, run_info=info)  # doctest: +SKIP

The summary opens with what the bootstrap rule (:func:`locedit.analysis.regressions.interval_verdict`)
decides in this run, counted over the rewrite-score conditions (:func:`verdict_opening`): a small
run, like the default 3 cases, says plainly that it gives no verdict. Then the verdicts the full
protocol established for the same model, read from the repository's ``docs/results/<model>/r2.csv``
(:func:`committed_folder`, :func:`committed_verdicts`), where ``run_info["committed"]`` names that
folder (the workflow passes it; ``None`` says there is none). Each paper-table cell reads
``layer / trace / both / added`` R² (then the F-test p where the paper gives one); the paper's
cells come from ``locedit/bundled/paper_r2.csv`` (GPT-J, n = 652; see PROVENANCE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from locedit.analysis.regressions import CEILING, FLOOR, MAX_SPREAD, MIN_VERDICT_CASES, verdict_counts
from locedit.plan import METHOD_LABELS, PROBLEM_LABELS, model_slug

REPOSITORY = Path(__file__).resolve().parents[2]
COMMITTED_RESULTS = REPOSITORY / "docs" / "results"  # one folder per model (python -m locedit.results analyse)
DECIDED = ("holds", "undetermined", "reversed")  # the verdicts proper; the other labels decide nothing


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


def verdict_opening(ours: pd.DataFrame, n_cases: int | None = None) -> str:
    """The summary's first sentence: this run's bootstrap verdicts of the rewrite-score conditions
    counted (the column ``verdict`` of :func:`locedit.analysis.regressions.regressions_with_verdicts`),
    and plainly that there is no verdict where no condition gets one. Nothing is decided from means.

        >>> few = pd.DataFrame({"metric": "rewrite", "verdict": ["too few cases"] * 20, "n_cases": 3})
        >>> verdict_opening(few)
        '3 cases give no verdict: every one of the 20 rewrite-score conditions has too few cases for the bootstrap rule (it needs ≥ 10).'
        >>> verdict_opening(few.assign(verdict=["holds"] * 15 + ["undetermined"] * 2 + ["at ceiling"] * 3), n_cases=60)
        "This run's bootstrap verdicts on the paper's finding, 20 rewrite-score conditions of 60 cases: **holds 15, undetermined 2, at ceiling 3**."
    """
    rewrite = ours[ours.metric == "rewrite"]
    if n_cases is None and "n_cases" in rewrite and rewrite.n_cases.notna().any():
        n_cases = int(rewrite.n_cases.max())
    of = f" of {n_cases} case{'s' * (n_cases != 1)}" if n_cases is not None else ""
    who = f"{n_cases} case{'s give' if n_cases != 1 else ' gives'}" if n_cases is not None else "This run gives"
    if "verdict" not in rewrite:
        return (f"{who} no verdict: no bootstrap intervals (analysis.bootstrap: 0), so the bootstrap rule "
                "decides nothing.")
    if rewrite.empty:
        return f"{who} no verdict: no rewrite-score conditions."
    verdicts = rewrite.verdict.fillna("")
    if verdicts.isin(DECIDED).any():
        return (f"This run's bootstrap verdicts on the paper's finding, {len(rewrite)} rewrite-score conditions{of}: "
                f"**{verdict_counts(rewrite)}**.")
    if verdicts.isin(["too few cases", ""]).all():
        return (f"{who} no verdict: every one of the {len(rewrite)} rewrite-score conditions has too few cases for "
                f"the bootstrap rule (it needs ≥ {MIN_VERDICT_CASES}).")
    return (f"{who} no verdict: no rewrite-score condition gets one ({verdict_counts(rewrite)} of {len(rewrite)}; "
            f"the bootstrap rule needs ≥ {MIN_VERDICT_CASES} cases, and edits at ceiling or floor leave nothing to "
            "explain).")


@dataclass(frozen=True)
class Committed:
    """The rewrite-score rows of a committed full-protocol ``r2.csv`` (:func:`committed_verdicts`)."""

    folder: Path
    rows: pd.DataFrame

    @property
    def n_cases(self) -> int:
        return int(self.rows.n_cases.max()) if "n_cases" in self.rows and self.rows.n_cases.notna().any() else 0

    @property
    def source(self) -> str:
        """The table's path, relative to the repository where it lies inside it."""
        path = (self.folder / "r2.csv").resolve()
        return path.relative_to(REPOSITORY).as_posix() if path.is_relative_to(REPOSITORY) else str(path)

    @property
    def label(self) -> str:
        return f"committed full protocol ({self.n_cases} cases, {self.source})"


def committed_folder(model: str, root: Path | str = COMMITTED_RESULTS) -> Path | None:
    """The folder of ``model``'s committed full-protocol results, ``docs/results/<model slug>/`` of
    this repository (``root``), where it holds an ``r2.csv``; None for a model without committed
    results, or an installed package without the repository's ``docs/``.

        >>> committed_folder("gemma-3-270m").relative_to(REPOSITORY).as_posix()
        'docs/results/gemma-3-270m'
        >>> committed_folder("EleutherAI/gpt-j-6B") is None
        True
    """
    folder = Path(root) / model_slug(model)
    return folder if (folder / "r2.csv").is_file() else None


def committed_verdicts(folder: Path | str | None) -> Committed | None:
    """The committed verdicts in ``folder`` (:func:`committed_folder`): the rewrite-score rows of its
    ``r2.csv`` (method, problem, verdict or label, R² of layer / tracing / added with their
    intervals, n_cases); None where there is no such table.

        >>> committed = committed_verdicts(committed_folder("gemma-3-270m"))
        >>> committed.label  # doctest: +SKIP
        'committed full protocol (60 cases, docs/results/gemma-3-270m/r2.csv)'
        >>> set(committed.rows.verdict) <= {"holds", "undetermined", "reversed", "at ceiling", "at floor"}
        True
        >>> committed_verdicts(None) is None
        True
    """
    if folder is None or not (Path(folder) / "r2.csv").is_file():
        return None
    table = pd.read_csv(Path(folder) / "r2.csv", dtype={"verdict": str, "strength": str}, keep_default_na=False,
                        na_values=[""])
    rows = table[table.metric == "rewrite"].reset_index(drop=True)
    if "verdict" not in rows:
        rows = rows.assign(verdict="")
    return Committed(Path(folder), rows.assign(verdict=rows.verdict.fillna("")))


def committed_paragraph(model: str, committed: Committed | None) -> str:
    """The summary's second paragraph: the committed full protocol's verdicts counted, or one line
    saying there are none for ``model``."""
    if committed is None:
        return (f"**Committed full protocol.** None for {model}: no docs/results/{model_slug(model)}/r2.csv in "
                "this checkout (a model without committed results, or an installed package).")
    rows = committed.rows
    return (f"**Committed full protocol.** {committed.n_cases} cases of {model} ({committed.source}): "
            f"**{verdict_counts(rows)}** of {len(rows)} rewrite-score conditions — what this software has "
            "established for this model; each condition beside this run's table below.")


def committed_table(model: str, committed: Committed) -> str:
    """The committed verdicts per condition, a section to go beside this run's bootstrap table."""
    lines = [f"## Committed full protocol ({committed.n_cases} cases, {committed.source}) — rewrite score, {model}",
             "", f"The verdicts of the {committed.label}, by the same rule as this run's table above.", "",
             "| problem | method | R² layer | R² tracing | R² added by tracing | verdict |",
             "|---|---|---|---|---|---|"]
    lines += _condition_lines(committed.rows, lambda row: [
        *(_with_interval(row, k) for k in ("r2_layer", "r2_trace", "r2_added")), row["verdict"] or "no verdict"])
    return "\n".join(lines)


def _condition_lines(rows: pd.DataFrame, cells) -> list[str]:
    """One table line per (problem, method) of ``rows``, in the paper's order: its labels, then ``cells(row)``."""
    lines = []
    for problem in PROBLEM_LABELS:
        for method in METHOD_LABELS:
            row = _lookup(rows, method=method, problem=problem)
            if row is not None:
                lines.append(f"| {PROBLEM_LABELS[problem]} | {METHOD_LABELS[method]} | " + " | ".join(cells(row)) + " |")
    return lines


def _with_interval(row: dict, key: str) -> str:
    if pd.notna(row.get(key + "_lo")) and pd.notna(row.get(key + "_hi")):
        return f"{_num(row[key])} [{_num(row[key + '_lo'])}, {_num(row[key + '_hi'])}]"
    return _num(row[key])


def means_sentence(ours: pd.DataFrame, paper: pd.DataFrame) -> str:
    """The rewrite-score conditions' mean R², a description beside the paper's Table 3 over the
    same conditions; no verdict is decided from the means (:func:`verdict_opening` gives those).

    (The paper's §5.3 says layer R² averages 58.5% "across Fig. 6"; its Table 3 as transcribed in
    ``paper_r2.csv`` averages .615 over the 20 conditions and .571 without error injection, so
    this sentence reads the mean from the table rather than quoting 58.5%; PROVENANCE.md.)"""
    rewrite = ours[ours.metric == "rewrite"]
    fitted = rewrite[~rewrite.saturated]
    if fitted.empty:
        return "Every rewrite regression is saturated (as many parameters as rows); run more cases or layers."
    theirs = paper[(paper.table == 3) & (paper.metric == "rewrite")].merge(fitted[["method", "problem"]],
                                                                           on=["method", "problem"])
    described = (f"For reference, not a verdict: over the {len(fitted)} unsaturated conditions the mean R² is "
                 f"{fitted.r2_layer.mean():.3f} for layer and {fitted.r2_trace.mean():.3f} for tracing, and tracing adds "
                 f"{fitted.r2_added.mean():.3f} on top of layer (max {fitted.r2_added.max():.3f}; chance alone "
                 f"{fitted.r2_added_chance.mean():.3f} with {int(fitted.n.median())} rows per condition)")
    if theirs.empty:
        return described + "."
    return described + (f"; the paper's Table 3 over the same {len(theirs)} conditions (GPT-J, 652 cases): "
                        f"mean layer R² {theirs.r2_layer.mean():.3f}, max added {theirs.r2_added.max():.3f}.")


def headline(ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> str:
    """One line: ROME error-injection rewrite R², layer vs layer + tracing, beside the paper's Table 1
    (point estimates: no verdict)."""
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
    """The whole summary as markdown; ``sections``: more lines at the end (the localizations').
    ``run_info["committed"]``, where present, is the folder of the model's committed full-protocol
    results (:func:`committed_folder`) or None: their verdicts then open the summary beside this
    run's (absent key: nothing about them, as when ``docs/results`` itself is rebuilt)."""
    model = run_info["model"]
    committed = committed_verdicts(run_info["committed"]) if run_info.get("committed") else None
    parts = [
        f"# Localization vs editing: {run_info['run']} ({model})",
        "",
        f"**Verdict.** {verdict_opening(ours, run_info.get('n_cases'))}",
        "",
    ]
    if "committed" in run_info:
        parts += [committed_paragraph(model, committed), ""]
    parts += [
        f"{run_info['n_cases']} cases × {run_info['n_layers']} edit layers {run_info['layers']}; tracing effect: "
        f"{run_info['effect']} (MLP, window {run_info['window']}). The paper's finding, as the bootstrap rule "
        "tests it per condition: tracing adds less R² to edit success than the edit layer explains, at 95% "
        "(intervals and rule below). " + means_sentence(ours, paper),
        "",
        f"**Point estimates, not a verdict.** {headline(ours, paper)}.",
        "",
        *_intervals(ours),
    ]
    if committed is not None:
        parts += [committed_table(model, committed), ""]
    parts += [
        "## Table 1 — ROME, error injection, rewrite score",
        "",
        "Each cell: R² of layer / tracing / both (interacted) / added by tracing, then the F-test p of both vs "
        "layer. The paper's cells: GPT-J, n = 652. `sat.`: the interacted model has as many parameters as rows "
        "(R² 1 by construction).",
        "",
        side_by_side(ours[(ours.method == "rome") & (ours.problem == "error_injection")], paper, 1, "rewrite", True),
        "",
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
    lines = [f"## Bootstrap 95% intervals — {metric} score, this run", "",
             f"Cases resampled with all their layers ({int(rows.n_cases.max())} cases). Verdict per condition: "
             "**holds** when the upper bound of the R² tracing adds is below the lower bound of the layer's R²; "
             "**reversed** when the added R²'s lower bound is above the layer R²'s upper bound; **undetermined** "
             f"when they overlap; **at ceiling** / **at floor** instead of a verdict when every layer's mean score "
             f"is ≥ {CEILING} / ≤ {FLOOR} and the layer means spread by ≤ {MAX_SPREAD} (the edits leave nothing to "
             f"explain); no verdict for saturated fits or fewer than {MIN_VERDICT_CASES} cases. Here: "
             + verdict_counts(rows) + f" of {len(rows)}.", "",
             f"| problem | method | R² layer | R² tracing | R² added by tracing | edits ≥ {CEILING} / ≤ {FLOOR} | verdict |",
             "|---|---|---|---|---|---|---|"]
    lines += _condition_lines(rows, lambda row: [
        *(f"{_num(row[k])} [{_num(row[k + '_lo'])}, {_num(row[k + '_hi'])}]" for k in ("r2_layer", "r2_trace", "r2_added")),
        f"{row['ceiling_share']:.0%} / {row['floor_share']:.0%}", row["verdict"]])
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
    """The opening of a written summary.md, printed at the end of a workflow run: this run's
    verdict count (or that it gives none) and the committed full protocol's, without markdown
    emphasis; the headline line of a summary written before the verdict opening."""
    with open(path) as f:
        paragraphs = f.read().split("\n\n")
    found = [p.strip() for p in paragraphs if p.startswith(("**Verdict.**", "**Committed full protocol.**"))]
    if found:
        lines = [p.split(" — ")[0].rstrip(".") + "." for p in found]  # the committed one without its pointer below
        return " ".join(lines).replace("**Verdict.** ", "").replace("**Committed full protocol.**",
                                                                      "Committed full protocol:").replace("**", "")
    for line in paragraphs:
        if line.startswith("**Headline.**"):
            return line.removeprefix("**Headline.**").strip()
    return f"no verdict or headline in {path}"
