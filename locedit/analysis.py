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
  R² is then 1 by construction and the F-test undefined).

The effect is ``max_fraction_restored`` (max over tokens of the fraction of P(o_true) restored
by MLP states in a window around the layer). :func:`concentrated_cases` is the paper's App. B
subset; :func:`layer_correlation` the Pearson test of Fig. 4.
"""

from __future__ import annotations

import warnings

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


def regressions(scores: pd.DataFrame, model: str, effect: str = EFFECT) -> pd.DataFrame:
    """One tidy row per method × problem × metric (rows missing a score or an effect are left out
    and counted in ``n_dropped``)."""
    rows = []
    for (method, problem), group in scores.groupby(["method", "problem"], sort=True):
        for metric in METRICS:
            column = f"{metric}_score"
            if column not in group:
                continue
            data = group[["layer", effect, column]].rename(columns={effect: "effect", column: "score"})
            clean = data.dropna()
            if len(clean) < 2:
                continue
            rows.append({"model": model, "method": method, "problem": problem, "metric": metric,
                         "effect": effect, "n_dropped": len(data) - len(clean), **fit_three(clean)})
    return pd.DataFrame(rows)


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
