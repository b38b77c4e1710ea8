"""Regressions on synthetic data whose R² is known in closed form, the App. B subset, Fig. 4's test."""

import numpy as np
import pandas as pd
import pytest

from locedit.analysis import concentrated_cases, fit_three, layer_correlation, regressions


def synthetic(d: float) -> pd.DataFrame:
    """Two layers (mean score 0 and 1), within each layer score = mean + d·effect, effect ∈ {−1, 0, 1}.

    SST = 1.5 + 4d²; layer-only SSE = 4d²; tracing-only fit = ½ + d·effect, SSE = 1.5; both: exact.
    """
    effect = [-1.0, 0.0, 1.0] * 2
    layer = [0, 0, 0, 5, 5, 5]
    score = [(l > 0) + d * e for l, e in zip(layer, effect)]
    return pd.DataFrame({"layer": layer, "effect": effect, "score": score})


@pytest.mark.parametrize("d", [0.5, 0.1])
def test_r2_matches_closed_form(d):
    sst = 1.5 + 4 * d**2
    fit = fit_three(synthetic(d))
    assert fit["r2_layer"] == pytest.approx(1.5 / sst)
    assert fit["r2_trace"] == pytest.approx(4 * d**2 / sst)
    assert fit["r2_both"] == pytest.approx(1.0)
    assert fit["r2_added"] == pytest.approx(4 * d**2 / sst)
    assert fit["rmse_layer"] == pytest.approx(np.sqrt(4 * d**2 / 6)) and fit["mae_layer"] == pytest.approx(4 * d / 6)
    assert fit["rmse_trace"] == pytest.approx(0.5) and fit["mae_trace"] == pytest.approx(0.5)
    assert fit["f_pvalue"] < 1e-6 and not fit["saturated"]


def test_tracing_that_adds_nothing_has_a_large_p_value():
    rng = np.random.default_rng(0)
    layer = np.repeat([0, 4, 8], 40)
    data = pd.DataFrame({"layer": layer, "effect": rng.uniform(size=120)})
    data["score"] = layer / 8 + rng.normal(scale=0.1, size=120)
    fit = fit_three(data)
    assert fit["r2_layer"] > 0.9 and fit["r2_trace"] < 0.05 and fit["r2_added"] < 0.05
    assert fit["f_pvalue"] > 0.01


def test_saturated_fit_is_flagged():
    data = synthetic(0.5).iloc[[0, 2, 3, 5]]  # 4 rows, 4 parameters in the interacted model
    fit = fit_three(data)
    assert fit["saturated"] and np.isnan(fit["f_pvalue"])


def test_regressions_table_is_tidy_and_counts_dropped_rows():
    base = synthetic(0.5).rename(columns={"effect": "max_fraction_restored"})
    scores = pd.concat([base.assign(method=m, problem="error_injection", case_id=range(6)) for m in ("rome", "ft1")])
    scores["rewrite_score"] = scores.score
    scores["overall_score"] = scores.score
    scores.loc[scores.index[0], "overall_score"] = np.nan
    table = regressions(scores, model="tiny")
    assert set(zip(table.method, table.metric)) == {(m, k) for m in ("rome", "ft1") for k in ("rewrite", "overall")}
    assert (table.model == "tiny").all()
    assert table.set_index(["method", "metric"]).loc[("ft1", "overall"), "n_dropped"] == 1


def test_concentrated_cases():
    effects = pd.DataFrame({"case_id": [1] * 6 + [2] * 6, "layer": list(range(6)) * 2,
                            "max_fraction_restored": [0, .1, .9, .2, 0, 0] + [.5, .6, .7, .8, .9, .6]})
    assert concentrated_cases(effects) == [1]


def test_layer_correlation():
    scores = pd.DataFrame({"method": "rome", "problem": "error_injection", "layer": 6,
                           "rewrite_score": [1, 2, 3, 4.0], "max_fraction_restored": [4, 3, 2, 1.0]})
    out = layer_correlation(scores, "rome", "error_injection", 6)
    assert out["r"] == pytest.approx(-1.0) and out["n"] == 4
    assert np.isnan(layer_correlation(scores, "rome", "error_injection", 3)["r"])


def test_chance_level_of_added_r2_matches_simulation():
    """Pure-noise 'tracing' adds about (1 − R²_layer) · extra / residual df on average."""
    rng = np.random.default_rng(1)
    layer = np.repeat([0, 8, 17], 3)
    added, chance = [], []
    for _ in range(300):
        data = pd.DataFrame({"layer": layer, "effect": rng.uniform(size=9), "score": rng.uniform(size=9)})
        fit = fit_three(data)
        added.append(fit["r2_added"])
        chance.append(fit["r2_added_chance"])
    assert np.mean(added) == pytest.approx(np.mean(chance), abs=0.05)
