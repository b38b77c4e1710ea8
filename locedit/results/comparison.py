"""Models side by side: the paper's question answered on every committed results folder, beside
the paper's GPT-J numbers (``locedit/bundled/paper_r2.csv``), in one Markdown page.

    python -m locedit.results.comparison docs/results/gemma-3-270m docs/results/smollm2-135m-instruct \\
        --out docs/results/comparison.md

It reads only what :mod:`locedit.results.build` committed (``r2.csv`` and the groups' scores and MLP
tracing tables), so it runs in seconds without a model. Per model: the rewrite-score regressions of
every method × problem (R² layer / tracing / both / added, the added R² chance alone gives, the
F-test p, the bootstrap verdict and its n), where tracing peaks against where editing works best
(Fig. 1), ROME error injection's fit errors (Table 7), and how the bootstrap verdicts move with the
localization (``localizations.csv``) and the effect's definition (``sensitivity.csv``), with the
conditions labelled at ceiling or floor.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from locedit.analysis.localizations import peak_layers
from locedit.analysis.regressions import CEILING, FLOOR, MAX_SPREAD, verdict_counts, verdict_order
from locedit.analysis.summary import _lookup, _num, _pvalue, fit_errors, paper_tables
from locedit.localization import PAPER, Localization
from locedit.plan import EDIT_SITES, METHOD_LABELS, PROBLEM_LABELS, PROBLEMS
from locedit.results.build import load_groups
from locedit.results.sensitivity import REFERENCE
from locedit.tracing.effects import tracing_effects

PAPER_GPT2_XL = ("GPT-2 XL (the paper's Fig. 13: error injection and fact forcing, 14 layers, window 10): "
                 "the largest added R² is about .02 (fact forcing, FT).")


@dataclass
class ModelResults:
    """One committed results folder: its regressions, per-case tracing peaks and mean scores by layer."""

    name: str
    n_layers: int
    r2: pd.DataFrame
    peaks: pd.Series  # case_id → layer of the largest effect-window MLP effect
    rewrite_by_layer: pd.DataFrame  # (method, problem, layer) → mean rewrite score
    variants: pd.DataFrame  # rewrite-score verdicts per localization × effect (verdict_variants)

    @classmethod
    def load(cls, folder: Path) -> "ModelResults":
        scores, tables, runs = load_groups(folder)
        window = runs[0]["effect_window"]
        peaks = peak_layers(tracing_effects(tables[window]), "max_fraction_restored")
        by_layer = scores.groupby(["method", "problem", "layer"]).rewrite_score.mean().reset_index()
        r2 = pd.read_csv(Path(folder) / "r2.csv")
        return cls(runs[0]["model"], runs[0]["n_layers"], r2, peaks, by_layer, verdict_variants(Path(folder), r2))

    @property
    def n_cases(self) -> int:
        return int(self.r2.n_cases.max())

    @property
    def layers(self) -> list[int]:
        return sorted(self.rewrite_by_layer.layer.unique().tolist())


PROJECT_EFFECT, REFERENCE_EFFECT = "project's", "reference code's"


def verdict_variants(folder: Path, r2: pd.DataFrame) -> pd.DataFrame:
    """The rewrite-score verdicts of every localization and effect definition a results folder holds:
    ``r2.csv`` (the main analysis: the paper's localization, the project's effect), the other
    localizations of ``localizations.csv`` (the project's effect) and ``sensitivity.csv``'s
    :data:`locedit.results.sensitivity.REFERENCE` variant (the paper's localization, the reference
    code's effect); a file the folder lacks (or one from before the bootstrap verdicts) adds no rows.
    Columns: method, problem, n_cases, verdict ("" for none), variant (``main`` for the main analysis),
    localization (its label), effect (:data:`PROJECT_EFFECT` or :data:`REFERENCE_EFFECT`); rows by
    variant, then problem and method in the paper's order."""
    columns = ["method", "problem", "n_cases", "verdict"]
    blocks = [r2[r2.metric == "rewrite"][columns].assign(variant="main", localization=PAPER.label,
                                                          effect=PROJECT_EFFECT)]
    if (folder / "localizations.csv").exists() and set(columns) <= set(table := pd.read_csv(folder / "localizations.csv")):
        for name, rows in table[table.metric == "rewrite"].groupby("localization", sort=False):
            if not Localization.parse(name).is_paper:
                blocks.append(rows[columns].assign(variant=name, localization=Localization.parse(name).label,
                                                   effect=PROJECT_EFFECT))
    if (folder / "sensitivity.csv").exists() and set(columns) <= set(table := pd.read_csv(folder / "sensitivity.csv")):
        blocks.append(table[table.variant == REFERENCE][columns].assign(variant=REFERENCE, localization=PAPER.label,
                                                                         effect=REFERENCE_EFFECT))
    order = {(p, m): i for i, (p, m) in enumerate((p, m) for p in PROBLEMS for m in EDIT_SITES)}
    table = pd.concat(blocks, ignore_index=True).assign(verdict=lambda t: t.verdict.fillna(""))
    table["_block"] = table.variant.map({name: i for i, name in enumerate(table.variant.unique())})
    table["_order"] = [order.get(key, len(order)) for key in zip(table.problem, table.method)]
    return table.sort_values(["_block", "_order"]).drop(columns=["_block", "_order"]).reset_index(drop=True)


def regression_cell(row: dict | None) -> str:
    """``layer / tracing / both / +added (chance c), p; verdict (n cases)`` of one r2.csv row.

    >>> regression_cell({"r2_layer": .748, "r2_trace": .004, "r2_both": .785, "r2_added": .037,
    ...                  "r2_added_chance": .041, "f_pvalue": .004, "verdict": "holds", "n_cases": 18})
    '.748 / .004 / .785 / +.037 (chance .041), p 0.004; **holds** (18)'
    """
    if row is None:
        return "–"
    values = " / ".join(_num(row[k]) for k in ("r2_layer", "r2_trace", "r2_both"))
    verdict = row.get("verdict")
    verdict = f"**{verdict}**" if isinstance(verdict, str) and verdict else "no verdict"
    return (f"{values} / +{_num(row['r2_added'])} (chance {_num(row['r2_added_chance'])}), "
            f"p {_pvalue(row['f_pvalue'])}; {verdict} ({int(row['n_cases'])})")


def paper_cell(row: dict | None) -> str:
    if row is None:
        return "–"
    return " / ".join(_num(row[k]) for k in ("r2_layer", "r2_trace", "r2_both")) + \
        f" / +{_num(row['r2_added'])}, p {_pvalue(row['f_pvalue'])}"


def regressions_table(models: list[ModelResults], paper: pd.DataFrame) -> list[str]:
    header = "| problem | method | " + " | ".join(
        f"{m.name} ({m.n_cases} cases × {len(m.layers)} layers)" for m in models) + " | GPT-J, paper (652 cases × 9) |"
    lines = [header, "|---|---|" + "---|" * (len(models) + 1)]
    for problem, spec in PROBLEMS.items():
        for method, mspec in EDIT_SITES.items():
            ours = [regression_cell(_lookup(m.r2, method=method, problem=problem, metric="rewrite")) for m in models]
            theirs = paper_cell(_lookup(paper, table=3, method=method, problem=problem, metric="rewrite"))
            lines.append(f"| {spec.label} | {mspec.label} | " + " | ".join(ours) + f" | {theirs} |")
    return lines


def verdict_lines(models: list[ModelResults]) -> list[str]:
    """One sentence per model and problem: which methods' verdicts say what."""
    lines = []
    for m in models:
        rewrite = m.r2[m.r2.metric == "rewrite"]
        lines.append(f"- **{m.name}** ({m.n_cases} cases; {verdict_counts(rewrite)} of {len(rewrite)}):")
        for problem, spec in PROBLEMS.items():
            rows = rewrite[rewrite.problem == problem]
            by_verdict: dict[str, list[str]] = {}
            for method, mspec in EDIT_SITES.items():
                hit = rows[rows.method == method]
                if not hit.empty:
                    verdict = hit.verdict.iloc[0] if isinstance(hit.verdict.iloc[0], str) else "no verdict"
                    by_verdict.setdefault(verdict, []).append(mspec.label)
            parts = [f"{verdict} for {', '.join(labels)}" for verdict, labels in by_verdict.items()]
            n = int(rows.n_cases.max()) if not rows.empty else 0
            lines.append(f"  - {spec.label} ({n} cases): " + "; ".join(parts) + ".")
    return lines


def peak_table(models: list[ModelResults]) -> list[str]:
    """Fig. 1 in numbers: where tracing peaks (per case) against the layer with the best mean
    rewrite score per method under error injection; layers also as a fraction of the depth."""
    lines = ["| model | layers | tracing peak: median (depth) | most common peak | best layer, error injection: "
             + ", ".join(m.label for m in EDIT_SITES.values()) + " |", "|---|---|---|---|---|"]
    for m in models:
        depth = max(m.n_layers - 1, 1)
        median = float(m.peaks.median())
        mode = int(m.peaks.mode().iloc[0])
        best = []
        for method in EDIT_SITES:
            rows = m.rewrite_by_layer[(m.rewrite_by_layer.method == method)
                                      & (m.rewrite_by_layer.problem == "error_injection")]
            if rows.empty:
                best.append("–")
            else:
                top = rows.loc[rows.rewrite_score.idxmax()]
                best.append(f"{int(top.layer)} ({top.layer / depth:.2f}; {_num(top.rewrite_score)})")
        lines.append(f"| {m.name} | {m.n_layers} | {median:g} ({median / depth:.2f}) | {mode} "
                     f"({(m.peaks == mode).mean():.0%} of cases) | " + ", ".join(best) + " |")
    lines.append("| GPT-J, paper | 28 | (Fig. 1: a histogram, no summary number) | – | ROME: 99% at layer 6 "
                 "(code 5), > 96% at every layer but the last |")
    return lines


def table7(models: list[ModelResults], paper: pd.DataFrame) -> list[str]:
    lines = ["| model | metric | R² layer vs tracing | RMSE | MAE |", "|---|---|---|---|---|"]
    rows = [(m.name, metric, _lookup(m.r2, method="rome", problem="error_injection", metric=metric))
            for m in models for metric in ("rewrite", "overall")]
    rows += [("GPT-J, paper", metric, _lookup(paper, table=7, method="rome", problem="error_injection", metric=metric))
             for metric in ("rewrite", "overall")]
    return lines + [f"| {name} | {metric} | " + " | ".join(fit_errors(row)) + " |" for name, metric, row in rows
                    if row is not None]


def variant_table(models: list[ModelResults]) -> list[str]:
    """Verdict counts per model × localization × effect definition, and which conditions' verdicts
    differ from the main analysis's (``Problem Method: main → this``)."""
    found = set().union(*(set(m.variants.verdict.replace("", "no verdict")) for m in models))
    shown = verdict_order(found)
    lines = ["| model | localization | effect | cases | " + " | ".join(shown) + " | verdicts that differ from the "
             "main analysis's |", "|---|---|---|---|" + "---|" * len(shown) + "---|"]
    for m in models:
        main = m.variants[m.variants.variant == "main"].set_index(["problem", "method"]).verdict
        for variant, rows in m.variants.groupby("variant", sort=False):
            counts = rows.verdict.replace("", "no verdict").value_counts()
            if variant == "main":
                differ = "(main analysis)"
            else:
                differ = "; ".join(f"{PROBLEM_LABELS[p]} {METHOD_LABELS[k]}: {main.get((p, k), '–') or 'no verdict'} → "
                                   f"{v or 'no verdict'}" for p, k, v in rows[["problem", "method", "verdict"]].itertuples(
                                       index=False) if main.get((p, k)) != v) or "none"
            low, high = int(rows.n_cases.min()), int(rows.n_cases.max())
            lines.append(f"| {m.name} | {rows.localization.iloc[0]} | {rows.effect.iloc[0]} | "
                         f"{low if low == high else f'{low}–{high}'} | "
                         + " | ".join(str(int(counts.get(v, 0))) for v in shown) + f" | {differ} |")
    return lines


def ceiling_floor_lines(models: list[ModelResults]) -> list[str]:
    """Per model, the conditions the main analysis labels at ceiling or floor, with the share of
    their edits at that end (``r2.csv``'s ``ceiling_share`` / ``floor_share``)."""
    lines = []
    for m in models:
        rewrite = m.r2[m.r2.metric == "rewrite"]
        named = [f"{r.verdict} {PROBLEM_LABELS[r.problem]} {METHOD_LABELS[r.method]} ("
                 + (f"{r.ceiling_share:.0%} of its edits ≥ {CEILING}" if r.verdict == "at ceiling"
                    else f"{r.floor_share:.0%} of its edits ≤ {FLOOR}") + ")"
                 for r in rewrite.itertuples() if r.verdict in ("at ceiling", "at floor")]
        lines.append(f"- **{m.name}**: " + ("; ".join(named) if named else "none at ceiling or floor") + ".")
    return lines


def comparison_markdown(folders: list[Path]) -> str:
    """The comparison page of the results ``folders`` (each analysed by ``locedit.results.build``)."""
    models = [ModelResults.load(Path(f)) for f in folders]
    paper = paper_tables()
    lines = ["# The paper's question on every committed model", "",
             "Generated by `python -m locedit.results.comparison " + " ".join(str(f) for f in folders) +
             " --out …` from the committed results folders alone (no model); do not edit by hand.", "",
             "## Rewrite score: does tracing add to the edit layer?", "",
             "Each cell: R² of layer / tracing / both (interacted) / + added by tracing (what chance alone adds "
             "with as many rows), the F-test p of both vs layer; then the bootstrap verdict (95% intervals over "
             "cases resampled with their layers: **holds** when the added R²'s upper bound is below the layer "
             "R²'s lower bound, **undetermined** when they overlap, **reversed** when the added R²'s lower bound "
             f"is above the layer R²'s upper bound; **at ceiling** / **at floor** instead of a verdict when every "
             f"layer's mean rewrite score is ≥ {CEILING} / ≤ {FLOOR} with the layer means within {MAX_SPREAD}; none "
             "under 10 cases) and the cases it rests on.", "",
             *regressions_table(models, paper), "", PAPER_GPT2_XL, "",
             "## Verdict per model and problem", "", *verdict_lines(models), "",
             "## Fig. 1 in numbers: where tracing peaks, where editing works best", "",
             "Tracing peak: the layer of each case's largest MLP effect at the effect window; best layer: the "
             "central layer with the highest mean rewrite score (depth = layer / (layers − 1); mean score).", "",
             *peak_table(models), "",
             "## Does the verdict depend on the localization or the effect's definition?", "",
             "Bootstrap verdicts (the rule of the first table) of each model's rewrite-score conditions, counted per "
             "localization and tracing-effect definition, from the effect window's MLP traces of the same cases "
             "(the edits are the same in every row). Localizations: the paper's (activation patching of "
             "Gaussian-noised subjects, P(target)); token replacement by a subject of the same relation with as many "
             "tokens and a different answer, scored by the logit difference against the partner's answer; attribution "
             "patching (the first-order term of restoring a window jointly). Effects: the **project's**, the paper's "
             "text (restored − low over clean − low, its largest over the subject tokens; clamped at 0 for P(target), "
             "signed for the logit difference); the **reference code's** (divided by high − low, high the largest of "
             "clean and every restoration; cases with a clean P(o_true) under .02 skipped, hence fewer cases). Cases: "
             "the range over the conditions (fact erasure edits only cases with P(o_true) ≥ .02).", "",
             *variant_table(models), "",
             "Conditions at ceiling or floor (every layer's mean rewrite score ≥ "
             f"{CEILING} / ≤ {FLOOR} with the layer means within {MAX_SPREAD}) get that label, not a verdict: the edit "
             "succeeds or fails wherever it is made, so the layer has nothing to explain. Main analysis:", "",
             *ceiling_floor_lines(models), "",
             "## Table 7: ROME error injection, layer vs tracing", "", *table7(models, paper), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m locedit.results.comparison", description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="results folders (docs/results/<model>)")
    parser.add_argument("--out", type=Path, default=None, help="write here (default: print)")
    args = parser.parse_args(argv)
    text = comparison_markdown(args.folders)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
