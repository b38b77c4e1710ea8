"""Does the finding depend on how localization is measured? The regressions of each configured
localization side by side, each rewrite-score condition with its bootstrap verdict (the rule of
the main table, :func:`locedit.analysis.regressions.interval_verdict`), and how well the localizations agree
on the effects themselves.

    >>> compared = compare(scores, {"exact-gaussian-prob": t1, "attribution-gaussian-prob": t2},
    ...                    model="gemma-3-270m", n_boot=1000)                     # doctest: +SKIP
    >>> agreement({"exact-gaussian-prob": t1, "attribution-gaussian-prob": t2})  # doctest: +SKIP
      localization  n  pearson  spearman  peak_agreement  mean_peak_layer

``scores`` is ``scores.parquet`` (its effect columns, from the main localization, are replaced by
each localization's); the tables are effect-window MLP tracing tables, keyed by localization id
(:mod:`locedit.localization`), the main one first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from locedit.analysis.regressions import EFFECT, regressions_with_verdicts, verdict_counts
from locedit.localization import Localization
from locedit.plan import EDIT_SITES, PROBLEMS
from locedit.tracing.effects import tracing_effects

EFFECT_COLUMNS = ("max_fraction_restored", "max_fraction_restored_high", "reference_fraction_restored",
                  "last_subject_fraction", "last_subject_effect")


def with_effects(scores: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with its per-(case, layer) effects replaced by those of tracing ``table``."""
    bare = scores.drop(columns=[c for c in EFFECT_COLUMNS if c in scores])
    return bare.merge(tracing_effects(table), on=["case_id", "layer"], how="left", validate="m:1")


def compare(scores: pd.DataFrame, tables: dict[str, pd.DataFrame], model: str, effect: str = EFFECT,
            n_boot: int = 1000) -> pd.DataFrame:
    """The regressions (every metric) under each localization, with a ``localization`` column; the
    rewrite-score conditions with bootstrap intervals and verdicts (``n_boot`` resamples; 0: none),
    the main localization's equal to ``r2.csv``'s (the same resamples)."""
    parts = [regressions_with_verdicts(with_effects(scores, table), model, effect, n_boot,
                                       verdict_metrics=("rewrite",)).assign(localization=loc)
             for loc, table in tables.items()]
    out = pd.concat(parts, ignore_index=True)
    return out[["localization", *[c for c in out.columns if c != "localization"]]]


def agreement(tables: dict[str, pd.DataFrame], effect: str = EFFECT) -> pd.DataFrame:
    """Per localization: Pearson and Spearman correlation of its per-(case, layer) effects with the
    main (first) localization's, the share of cases whose peak layer is the main's, and its mean
    peak layer."""
    effects = {loc: tracing_effects(t)[["case_id", "layer", effect]] for loc, t in tables.items()}
    main_id = next(iter(effects))
    main = effects[main_id]
    rows = []
    for loc, frame in effects.items():
        joined = main.merge(frame, on=["case_id", "layer"], suffixes=("_main", "")).dropna()
        x, y = joined[f"{effect}_main"], joined[effect]
        varied = len(joined) >= 3 and x.nunique() > 1 and y.nunique() > 1
        peaks = peak_layers(frame, effect)
        both = peak_layers(main, effect).to_frame("main").join(peaks.to_frame("this"), how="inner")
        rows.append({"localization": loc, "n": len(joined),
                     "pearson": float(scipy_stats.pearsonr(x, y)[0]) if varied else np.nan,
                     "spearman": float(scipy_stats.spearmanr(x, y)[0]) if varied else np.nan,
                     "peak_agreement": float((both.main == both.this).mean()) if len(both) else np.nan,
                     "mean_peak_layer": float(peaks.mean()) if len(peaks) else np.nan})
    return pd.DataFrame(rows)


def peak_layers(effects: pd.DataFrame, effect: str) -> pd.Series:
    """The layer of each case's largest effect."""
    rows = effects.dropna(subset=[effect])
    return rows.loc[rows.groupby("case_id")[effect].idxmax()].set_index("case_id").layer


def section(compared: pd.DataFrame, agreed: pd.DataFrame, metric: str = "rewrite") -> list[str]:
    """The summary's "Localizations" section: one table (R² layer / tracing / both / added and the
    bootstrap verdict per method × problem, a column per localization), the agreement, and per
    localization its verdicts counted and the conditions whose verdict differs from the main's."""
    locs = list(dict.fromkeys(compared.localization))
    labels = {loc: Localization.parse(loc).label for loc in locs}
    rows = compared[compared.metric == metric]
    verdicts = "verdict" in rows
    lines = ["## Localizations — does the finding depend on how tracing is measured?", "",
             f"{metric.capitalize()} score; each cell: R² of layer / tracing / both / added by tracing"
             + ("; then the bootstrap verdict (the rule of the main table above)" if verdicts else "")
             + ". The first column is the main analysis's localization.", "",
             "| problem | method | " + " | ".join(labels[loc] for loc in locs) + " |",
             "|---|---|" + "---|" * len(locs)]
    for problem in PROBLEMS:
        for method in EDIT_SITES:
            cells = []
            for loc in locs:
                row = rows[(rows.localization == loc) & (rows.method == method) & (rows.problem == problem)]
                if row.empty:
                    cells.append("—")
                    continue
                cell = " / ".join(f"{row.iloc[0][k]:.3f}".replace("0.", ".", 1)
                                  for k in ("r2_layer", "r2_trace", "r2_both", "r2_added"))
                cells.append(cell + (f"; {row.iloc[0].verdict or 'no verdict'}" if verdicts else ""))
            if any(c != "—" for c in cells):
                lines.append(f"| {PROBLEMS[problem].label} | {EDIT_SITES[method].label} | " + " | ".join(cells) + " |")
    lines += ["", "Agreement of the per-(case, layer) effects with the first column's (effect-window MLP traces):", "",
              "| localization | (case, layer) pairs | Pearson | Spearman | same peak layer | mean peak layer |",
              "|---|---|---|---|---|---|"]
    for row in agreed.itertuples():
        lines.append(f"| {labels[row.localization]} | {row.n} | {row.pearson:.3f} | {row.spearman:.3f} | "
                     f"{row.peak_agreement:.0%} | {row.mean_peak_layer:.1f} |")
    lines.append("")
    if not verdicts:
        return lines + ["No bootstrap intervals (analysis.bootstrap: 0), so no verdicts per localization.", ""]
    main = rows[rows.localization == locs[0]].set_index(["method", "problem"]).verdict
    for loc in locs:
        mine = rows[rows.localization == loc].set_index(["method", "problem"]).verdict
        counted = f"bootstrap verdicts over {len(mine)} conditions: {verdict_counts(mine.to_frame())}"
        if loc == locs[0]:
            lines += [f"**{labels[loc]}** (main analysis): {counted}.", ""]
            continue
        moves = [f"{PROBLEMS[p].label} {EDIT_SITES[m].label}: {main[(m, p)] or 'no verdict'} → {mine[(m, p)] or 'no verdict'}"
                 for p in PROBLEMS for m in EDIT_SITES
                 if (m, p) in main.index and (m, p) in mine.index and main[(m, p)] != mine[(m, p)]]
        differ = (f"**{len(moves)} differ** from the main analysis's ({'; '.join(moves)})" if moves
                  else "every condition's verdict is the main analysis's")
        lines += [f"**{labels[loc]}**: {counted}; {differ}.", ""]
    return lines
