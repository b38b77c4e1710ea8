"""Per (case, layer) tracing effects from a long tracing table, torch-free (the analysis reads it).

    >>> t = pd.DataFrame({"case_id": 1, "layer": [0, 0, 1, 1], "token_idx": [1, 2, 1, 2], "first_traced": 1,
    ...                   "subject_end": 2, "restored": [.3, .1, .05, .2], "low": .1, "clean": .5, "high": .5})
    >>> tracing_effects(t).max_fraction_restored.round(3).tolist()
    [0.5, 0.25]
"""

from __future__ import annotations

import pandas as pd

REFERENCE_MIN_CLEAN = 0.02  # the reference code skips a case whose clean P(o_true) is below this


def tracing_effects(table: pd.DataFrame) -> pd.DataFrame:
    """Per (case_id, layer) tracing effects from a long tracing table (paper §4.1, spec §5).

    The fraction restored at a (token, layer) is (restored − low) / (clean − low): 0 is the
    corrupted run, 1 the clean one. Under ``prob`` (the paper) it is divided by |clean − low| and
    clamped at 0; under ``logit_diff`` it keeps its sign (Zhang & Nanda 2024's normalised logit
    difference: a restoration that moves the metric away from the clean run is negative), and
    the regressions use it as is. Per (case, layer):

    - ``max_fraction_restored``: max over traced tokens of the fraction, the paper's effect
      (denominator: the clean value);
    - ``max_fraction_restored_high``: the same with the reference code's denominator |high − low|
      (high = max(clean, max restored), ≤ 1 under ``prob``);
    - ``reference_fraction_restored``: the reference code's effect (belief-localization
      ``experiments/tracing.py``): ``max_fraction_restored_high`` for cases whose clean
      P(o_true) ≥ :data:`REFERENCE_MIN_CLEAN`, NaN for the others (it skips them) and under
      ``logit_diff`` (it measures P only);
    - ``last_subject_fraction``: the fraction at the last subject token, unclamped;
    - ``last_subject_effect``: restored − low at the last subject token.

    A table without a ``metric`` column is read as ``prob``.

        >>> t = pd.DataFrame({"case_id": 1, "layer": [0, 0, 1, 1], "token_idx": [1, 2, 1, 2], "first_traced": 1,
        ...                   "subject_end": 2, "restored": [.3, .1, .05, .2], "low": .1, "clean": .5, "high": .5})
        >>> tracing_effects(t)[["layer", "max_fraction_restored", "last_subject_fraction"]].round(3).values.tolist()
        [[0.0, 0.5, 0.5], [1.0, 0.25, -0.125]]
    """
    t = table[table.token_idx >= table.first_traced].copy()
    signed = t.metric.eq("logit_diff") if "metric" in t else pd.Series(False, index=t.index)
    effect = t.restored - t.low

    def fraction(gap: pd.Series) -> pd.Series:
        return (effect / gap).where(signed, (effect / gap.abs()).clip(lower=0))

    t["fraction"] = fraction(t.clean - t.low)
    t["fraction_high"] = fraction(t.high - t.low)
    t["reference"] = t.fraction_high.where((t.clean >= REFERENCE_MIN_CLEAN) & ~signed)
    t["effect"] = effect
    t["signed_fraction"] = (effect / (t.clean - t.low)).where(signed, effect / (t.clean - t.low).abs())
    keys = ["case_id", "layer"]
    out = t.groupby(keys).agg(max_fraction_restored=("fraction", "max"),
                              max_fraction_restored_high=("fraction_high", "max"),
                              reference_fraction_restored=("reference", "max")).reset_index()
    last = t[t.token_idx == t.subject_end - 1][keys + ["signed_fraction", "effect"]]
    last = last.rename(columns={"signed_fraction": "last_subject_fraction", "effect": "last_subject_effect"})
    return out.merge(last, on=keys, how="left", validate="1:1")
