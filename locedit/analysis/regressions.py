"""Does the tracing effect predict edit success beyond the edit layer? (paper §5, paper-spec §9)

For every method × problem × metric, over all (case, layer) rows of ``scores.parquet``:

    >>> table = regressions(scores, model="gemma-3-270m")                          # doctest: +SKIP
    >>> table.query("method == 'rome' and problem == 'error_injection' and metric == 'rewrite'")  # doctest: +SKIP
      r2_layer  r2_trace  r2_both  r2_added  f_pvalue  ...

- ``r2_layer``: R² of ``score ~ C(layer)``; ``r2_trace``: of ``score ~ effect``;
  ``r2_both``: of ``score ~ C(layer) * effect`` (interacted, as the paper);
  ``r2_added`` = both − layer; ``f_pvalue``: F-test of the nested models (both vs layer);
  ``r2_added_chance``: the added R² expected from a predictor unrelated to the score (large when
  there are few rows per parameter, as in small runs);
- RMSE and MAE of the layer-only and tracing-only fits (paper Table 7);
- ``n`` rows and ``saturated`` when the interacted model has as many parameters as rows (its
  R² is then 1 by construction and the F-test undefined);
- ``strength``: ``at ceiling`` / ``at floor`` when the edits leave nothing for layer or tracing
  to explain (:func:`edit_strength`), with the share of edits at either end.

The effect is ``max_fraction_restored`` (max over tokens of the fraction of P(o_true) restored
by MLP states in a window around the layer). :func:`concentrated_cases` is the paper's App. B
subset; :func:`layer_correlation` the Pearson test of Fig. 4.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats
from statsmodels.stats.anova import anova_lm

METRICS = ("rewrite", "paraphrase", "neighborhood", "overall", "essence")
EFFECT = "max_fraction_restored"


def fit_three(data: pd.DataFrame) -> dict[str, float]:
    """The layer / tracing / both regressions of ``score`` on one (method, problem, metric) table.

    ``data`` has columns ``score``, ``layer`` and ``effect``.

        >>> d = pd.DataFrame({"layer": [0, 0, 1, 1], "effect": [.1, .3, .2, .4], "score": [0., 0., 1., 1.]})
        >>> round(fit_three(d)["r2_layer"], 6)
        1.0
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # perfect fits and 0/0 R² on constant scores are reported, not warned
        layer = smf.ols("score ~ C(layer)", data).fit()
        trace = smf.ols("score ~ effect", data).fit()
        both = smf.ols("score ~ C(layer) * effect", data).fit()
        saturated = both.df_resid < 1
        p = np.nan if saturated or both.df_model <= layer.df_model else anova_lm(layer, both)["Pr(>F)"].iloc[1]
    r2_layer, r2_trace, r2_both = (_r2(fit, data.score) for fit in (layer, trace, both))
    return {
        "n": len(data),
        "n_layers": data.layer.nunique(),
        "r2_layer": r2_layer,
        "r2_trace": r2_trace,
        "r2_both": r2_both,
        "r2_added": r2_both - r2_layer,
        # what tracing would add by chance alone (a predictor unrelated to the score takes, on
        # average, its share of the parameters of the unexplained variance)
        "r2_added_chance": _chance_added(r2_layer, both.df_model - layer.df_model, layer.df_resid),
        "f_pvalue": float(p),
        "rmse_layer": float(np.sqrt(np.mean(layer.resid**2))),
        "rmse_trace": float(np.sqrt(np.mean(trace.resid**2))),
        "mae_layer": float(np.mean(np.abs(layer.resid))),
        "mae_trace": float(np.mean(np.abs(trace.resid))),
        "saturated": bool(saturated),
    }


CEILING, FLOOR, MAX_SPREAD = 0.98, 0.02, 0.02


def edit_strength(data: pd.DataFrame) -> dict[str, float | str]:
    """Whether a condition's edits are at ceiling or floor (``data``: columns ``layer``, ``score``).

    Rule: **at ceiling** when every layer's mean score is ≥ :data:`CEILING` (.98) and the spread
    of the layer means (max − min) is ≤ :data:`MAX_SPREAD` (.02); **at floor** when every layer's
    mean is ≤ :data:`FLOOR` (.02) with the same spread; else "". Such a condition gets this label
    instead of a verdict (:func:`interval_verdict`): an edit that succeeds (or fails) at every
    layer says nothing about where to edit, however the R² come out. ``ceiling_share`` /
    ``floor_share``: the share of its edits scoring ≥ .98 / ≤ .02.

        >>> edit_strength(pd.DataFrame({"layer": [0, 0, 4, 4], "score": [.99, 1., .97, 1.]}))
        {'ceiling_share': 0.75, 'floor_share': 0.0, 'strength': 'at ceiling'}
    """
    means = data.groupby("layer").score.mean().round(12)  # so that .98 and a spread of .02 count as at the bound
    flat = round(means.max() - means.min(), 12) <= MAX_SPREAD
    label = "at ceiling" if flat and (means >= CEILING).all() else "at floor" if flat and (means <= FLOOR).all() else ""
    return {"ceiling_share": float((data.score >= CEILING).mean()), "floor_share": float((data.score <= FLOOR).mean()),
            "strength": label}


def _chance_added(r2_layer: float, extra_params: float, layer_df_resid: float) -> float:
    """E[added R²] when the added predictors are noise: (1 − R²_layer) · extra / residual df."""
    if layer_df_resid <= 0 or np.isnan(r2_layer):
        return np.nan
    return float((1 - r2_layer) * min(1.0, extra_params / layer_df_resid))


def _r2(result, y: pd.Series) -> float:
    """R²; 0 (not NaN) when every score is the same and the fit is exact, NaN when undefined."""
    total = float(((y - y.mean()) ** 2).sum())
    residual = float((result.resid**2).sum())
    if total == 0:
        return 0.0 if residual < 1e-20 else np.nan
    return 1 - residual / total


def regressions(scores: pd.DataFrame, model: str, effect: str = EFFECT,
                metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One tidy row per method × problem × metric (rows missing a score or an effect are left out
    and counted in ``n_dropped``)."""
    rows = []
    for method, problem, metric, column, group in _conditions(scores, metrics):
        data = group[["layer", effect, column]].rename(columns={effect: "effect", column: "score"})
        clean = data.dropna()
        if len(clean) < 2:
            continue
        rows.append({"model": model, "method": method, "problem": problem, "metric": metric,
                     "effect": effect, "n_dropped": len(data) - len(clean), **fit_three(clean),
                     **edit_strength(clean)})
    return pd.DataFrame(rows)


def _conditions(scores: pd.DataFrame, metrics):
    """(method, problem, metric, score column, rows) of every method × problem × metric scored."""
    for (method, problem), group in scores.groupby(["method", "problem"], sort=True):
        for metric in metrics:
            column = f"{metric}_score"
            if column in group:
                yield method, problem, metric, column, group


def concentrated_cases(effects: pd.DataFrame, threshold: float = 0.5, max_other_layers: int = 3,
                       effect: str = EFFECT) -> list[int]:
    """Cases whose tracing curve is concentrated (paper App. B): at most ``max_other_layers`` layers
    besides the argmax reach ``threshold`` × the max of the per-layer effect."""
    keep = []
    for case_id, curve in effects.groupby("case_id")[effect]:
        peak = curve.max()
        if peak > 0 and (curve >= threshold * peak).sum() - 1 <= max_other_layers:
            keep.append(int(case_id))
    return keep


def layer_correlation(scores: pd.DataFrame, method: str, problem: str, layer: int,
                      metric: str = "rewrite", effect: str = EFFECT) -> dict[str, float]:
    """Pearson r (and p) of ``metric`` vs the tracing effect at one edit layer (paper Fig. 4)."""
    rows = scores[(scores.method == method) & (scores.problem == problem) & (scores.layer == layer)]
    rows = rows[[f"{metric}_score", effect]].dropna()
    if len(rows) < 3 or rows.nunique().min() < 2:
        return {"layer": layer, "n": len(rows), "r": np.nan, "p": np.nan}
    r, p = scipy_stats.pearsonr(rows[effect], rows[f"{metric}_score"])
    return {"layer": layer, "n": len(rows), "r": float(r), "p": float(p)}


def r2_three(layer: np.ndarray, effect: np.ndarray, score: np.ndarray) -> tuple[float, float, float]:
    """R² of the layer / tracing / both (interacted) fits by least squares, as :func:`fit_three`
    (the same column spaces: a mean per layer; intercept + effect; intercept and slope per layer)
    without statsmodels, for resampling.

        >>> r2_three(np.array([0, 0, 1, 1]), np.array([.1, .3, .2, .4]), np.array([0., 0., 1., 1.]))
        (1.0, 0.2, 1.0)
    """
    levels = np.unique(layer)
    dummies = (layer[:, None] == levels[None, :]).astype(float)
    designs = (dummies, np.column_stack([np.ones_like(effect), effect]),
               np.column_stack([dummies, dummies * effect[:, None]]))
    total = float(((score - score.mean()) ** 2).sum())
    out = []
    for design in designs:
        coef = np.linalg.lstsq(design, score, rcond=None)[0]
        residual = float(((score - design @ coef) ** 2).sum())
        out.append(round(1 - residual / total, 12) if total > 0 else (0.0 if residual < 1e-20 else np.nan))
    return tuple(out)


def condition_rng(seed: int, method: str, problem: str) -> np.random.Generator:
    """The resampling generator of one method × problem: seeded from ``seed`` and the condition's
    name (a stable CRC-32, not Python's salted ``hash``), the same in every process and run.

        >>> draw = lambda: int(condition_rng(0, "rome", "error_injection").integers(10**6))
        >>> draw() == draw()
        True
    """
    return np.random.default_rng([seed, zlib.crc32(f"{method}/{problem}".encode())])


def bootstrap_r2(scores: pd.DataFrame, effect: str = EFFECT, metrics: tuple[str, ...] = ("rewrite",),
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Percentile intervals of R² layer / tracing / added per method × problem × metric,
    resampling cases with all their layers (the unit the paper samples), ``n_boot`` times.

    Columns ``{r2_layer,r2_trace,r2_added}_{lo,hi}`` and ``n_cases``; one row per condition.
    Each method × problem draws from its own generator (:func:`condition_rng`), so a condition's
    interval does not depend on which other conditions or metrics are computed beside it, and the
    metrics of one method × problem resample the same cases.
    """
    tail = (1 - level) / 2 * 100
    rows = []
    for method, problem, metric, column, group in _conditions(scores, metrics):
        rng = condition_rng(seed, method, problem)
        data = group[["case_id", "layer", effect, column]].dropna()
        cases = data.case_id.unique()
        if len(cases) < 2:
            continue
        by_case = {c: part[["layer", effect, column]].to_numpy(float) for c, part in data.groupby("case_id")}
        draws = []
        for _ in range(n_boot):
            sample = np.concatenate([by_case[c] for c in rng.choice(cases, size=len(cases), replace=True)])
            layer_r2, trace_r2, both_r2 = r2_three(sample[:, 0], sample[:, 1], sample[:, 2])
            draws.append((layer_r2, trace_r2, both_r2 - layer_r2))
        draws = np.array(draws)
        row = {"method": method, "problem": problem, "metric": metric, "n_cases": len(cases)}
        for i, name in enumerate(("r2_layer", "r2_trace", "r2_added")):
            lo, hi = np.nanpercentile(draws[:, i], [tail, 100 - tail])
            row |= {f"{name}_lo": float(lo), f"{name}_hi": float(hi)}
        rows.append(row)
    return pd.DataFrame(rows)


MIN_VERDICT_CASES = 10  # fewer cases give too few distinct resamples for a percentile interval
VERDICTS = ("holds", "undetermined", "reversed", "at ceiling", "at floor", "saturated", "too few cases")


def interval_verdict(row) -> str:
    """Whether the paper's finding holds for one condition, from its bootstrap intervals: ``holds``
    when the upper bound of tracing's added R² is below the lower bound of the layer's R² (layer
    explains more than tracing adds, at the interval's level); ``reversed`` when the added R²'s
    lower bound is above the layer R²'s upper bound; else ``undetermined`` (the intervals overlap).
    Conditions at ceiling or floor (:func:`edit_strength`) get that label, ``saturated`` fits and
    fewer than :data:`MIN_VERDICT_CASES` cases no verdict.

        >>> interval_verdict({"r2_added_hi": .05, "r2_layer_lo": .6, "r2_added_lo": 0., "r2_layer_hi": .9,
        ...                   "n_cases": 40, "saturated": False})
        'holds'
    """
    if row.get("strength"):
        return row["strength"]
    if row.get("saturated"):
        return "saturated"
    if row["n_cases"] < MIN_VERDICT_CASES:
        return "too few cases"
    if row["r2_added_hi"] < row["r2_layer_lo"]:
        return "holds"
    if row["r2_added_lo"] > row["r2_layer_hi"]:
        return "reversed"
    return "undetermined"


def regressions_with_verdicts(scores: pd.DataFrame, model: str, effect: str = EFFECT,
                              n_boot: int = 1000, metrics: tuple[str, ...] = METRICS,
                              verdict_metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
    """:func:`regressions` of ``metrics`` with each condition's bootstrap intervals
    (:func:`bootstrap_r2`, of ``verdict_metrics``, by default all of ``metrics``) and
    :func:`interval_verdict` in ``verdict`` ("" where there is no interval and no ceiling or floor
    label); ``n_boot`` 0 gives the regressions alone."""
    r2 = regressions(scores, model, effect, metrics)
    if not n_boot or r2.empty:
        return r2
    boot = bootstrap_r2(scores, effect, metrics=metrics if verdict_metrics is None else verdict_metrics, n_boot=n_boot)
    r2 = r2.merge(boot, on=["method", "problem", "metric"], how="left", validate="1:1")
    r2["verdict"] = [interval_verdict(row) if pd.notna(row["r2_layer_lo"]) else "" for row in r2.to_dict("records")]
    return r2


def verdict_order(found) -> list[str]:
    """The verdicts ``found`` in :data:`VERDICTS` order, then any other sorted (columns and counts).

        >>> verdict_order({"no verdict", "holds", "at ceiling"})
        ['holds', 'at ceiling', 'no verdict']
    """
    found = set(found)
    return [v for v in VERDICTS if v in found] + sorted(found - set(VERDICTS))


def verdict_label(verdict) -> str:
    """A condition's verdict as shown: the label, or "no verdict" for "" or a missing value.

        >>> verdict_label("holds"), verdict_label(""), verdict_label(float("nan"))
        ('holds', 'no verdict', 'no verdict')
    """
    return verdict if isinstance(verdict, str) and verdict else "no verdict"


def verdict_counts(rows: pd.DataFrame) -> str:
    """The verdicts of ``rows`` (a ``verdict`` column) counted, in :data:`VERDICTS` order then any
    other ("" and missing read "no verdict").

        >>> verdict_counts(pd.DataFrame({"verdict": ["undetermined", "holds", "holds", "at ceiling", ""]}))
        'holds 2, undetermined 1, at ceiling 1, no verdict 1'
    """
    found = rows.verdict.fillna("").replace("", "no verdict").value_counts()
    order = verdict_order(found.index)
    return ", ".join(f"{name} {int(found[name])}" for name in order)
