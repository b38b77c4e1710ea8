"""Regressions on synthetic data whose R² is known in closed form, the App. B subset, Fig. 4's test."""

import numpy as np
import pandas as pd
import pytest

from locedit.analysis.regressions import (bootstrap_r2, concentrated_cases, edit_strength, fit_three, interval_verdict,
                                          layer_correlation, r2_three, regressions, regressions_with_verdicts)
from locedit.analysis.summary import _intervals, verdict_opening


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


def case_scores(n_cases: int, slope: float, seed: int = 0) -> pd.DataFrame:
    """ROME error-injection rows of ``n_cases`` cases × 4 layers: score = layer/8 + slope·effect + noise."""
    rng = np.random.default_rng(seed)
    layer = np.tile([0, 2, 4, 8], n_cases)
    effect = rng.uniform(size=len(layer))
    return pd.DataFrame({"method": "rome", "problem": "error_injection", "case_id": np.repeat(range(n_cases), 4),
                         "layer": layer, "max_fraction_restored": effect,
                         "rewrite_score": layer / 8 + slope * effect + rng.normal(scale=0.1, size=len(layer))})


@pytest.mark.parametrize("d", [0.5, 0.1])
def test_least_squares_r2_equals_the_statsmodels_fits(d):
    data = case_scores(12, slope=d).rename(columns={"max_fraction_restored": "effect", "rewrite_score": "score"})
    fit = fit_three(data)
    assert r2_three(data.layer.to_numpy(), data.effect.to_numpy(), data.score.to_numpy()) == pytest.approx(
        (fit["r2_layer"], fit["r2_trace"], fit["r2_both"]), abs=1e-9)
    closed = synthetic(d)
    assert r2_three(*(closed[c].to_numpy(float) for c in ("layer", "effect", "score"))) == pytest.approx(
        (1.5 / (1.5 + 4 * d**2), 4 * d**2 / (1.5 + 4 * d**2), 1.0))


def test_bootstrap_intervals_cover_the_estimate_narrow_with_more_cases_and_give_the_verdict():
    widths = []
    for n_cases in (10, 80):
        scores = case_scores(n_cases, slope=0.0)
        point = regressions(scores, "tiny").set_index("metric").loc["rewrite"]
        boot = bootstrap_r2(scores, n_boot=300, seed=1).iloc[0]
        for name in ("r2_layer", "r2_trace", "r2_added"):
            assert boot[f"{name}_lo"] <= point[name] + 0.02 and point[name] - 0.02 <= boot[f"{name}_hi"], name
        assert boot.n_cases == n_cases
        widths.append(boot.r2_layer_hi - boot.r2_layer_lo)
        assert interval_verdict(boot) == "holds"  # layer explains ~.9, tracing adds ~0
    assert widths[1] < widths[0] / 2  # ~1/sqrt(8)
    assert bootstrap_r2(case_scores(10, 0.0), n_boot=50, seed=3).equals(bootstrap_r2(case_scores(10, 0.0), n_boot=50, seed=3))


def test_a_conditions_interval_does_not_depend_on_the_conditions_beside_it():
    """A shared generator would give the second condition other draws when the first is left out."""
    first = case_scores(12, slope=0.0, seed=1).assign(paraphrase_score=lambda d: d.rewrite_score + 0.1)
    second = case_scores(12, slope=0.3, seed=2).assign(method="ft_1", paraphrase_score=0.0)
    both = bootstrap_r2(pd.concat([first, second]), metrics=("rewrite", "paraphrase"), n_boot=100)
    alone = bootstrap_r2(first, metrics=("paraphrase", "rewrite"), n_boot=100)
    key = ["method", "problem", "metric"]
    assert both.set_index(key).loc[alone.set_index(key).index].equals(alone.set_index(key))
    # the metrics of one condition resample the same cases: a shifted score has the same R² draws
    rewrite, paraphrase = (alone.set_index("metric").loc[m] for m in ("rewrite", "paraphrase"))
    assert rewrite.r2_layer_lo == pytest.approx(paraphrase.r2_layer_lo)
    assert rewrite.r2_added_hi == pytest.approx(paraphrase.r2_added_hi)


def test_verdict_is_undetermined_or_reversed_when_tracing_carries_the_score():
    rng = np.random.default_rng(0)
    scores = case_scores(40, slope=0.0)
    scores["rewrite_score"] = 2 * scores.max_fraction_restored + rng.normal(0, 0.05, len(scores))
    boot = bootstrap_r2(scores, n_boot=200).iloc[0]
    assert interval_verdict(boot) == "reversed"
    few = bootstrap_r2(scores.assign(rewrite_score=scores.rewrite_score + 0.5 * scores.layer / 8)[scores.case_id < 3],
                       n_boot=200).iloc[0]
    assert interval_verdict(few) == "too few cases"
    assert interval_verdict({**boot.to_dict(), "saturated": True}) == "saturated"


def test_a_condition_at_ceiling_is_labelled_not_given_a_verdict():
    """Every layer's mean rewrite score within [.985, .995] (≥ .98, spread .01 ≤ .02): the layer
    explains most of what little varies, so the intervals alone would say "holds"; the condition
    is labelled "at ceiling" instead, in r2's verdict, the summary's interval table and its
    opening count. Its copy moved to .5 + layer/80 is not at ceiling and gets the verdict."""
    rng = np.random.default_rng(0)
    top = case_scores(30, slope=0.0).assign(
        rewrite_score=lambda d: 0.985 + d.layer / 800 + rng.normal(scale=0.001, size=len(d)))
    middle = top.assign(method="ft1", rewrite_score=lambda d: 0.5 + d.layer / 80 + rng.normal(scale=0.01, size=len(d)))
    r2 = regressions_with_verdicts(pd.concat([top, middle]), "tiny", n_boot=200).set_index("method")
    assert r2.loc["rome", "strength"] == "at ceiling" and r2.loc["rome", "verdict"] == "at ceiling"
    assert r2.loc["rome", "ceiling_share"] == 1.0 and r2.loc["rome", "floor_share"] == 0.0
    assert interval_verdict({**r2.loc["rome"].to_dict(), "strength": ""}) == "holds"  # what it would have got
    assert r2.loc["ft1", "strength"] == "" and r2.loc["ft1", "verdict"] == "holds"
    table = "\n".join(_intervals(r2.reset_index()))
    assert "Here: holds 1, at ceiling 1 of 2." in table
    assert "| Error Injection | ROME |" in table and "| 100% / 0% | at ceiling |" in table
    assert "conditions of 30 cases: **holds 1, at ceiling 1**." in verdict_opening(r2.reset_index())


def test_edit_strength_rule():
    at = pd.DataFrame({"layer": [0, 0, 4, 4], "score": [0.0, 0.03, 0.01, 0.0]})
    assert edit_strength(at) == {"ceiling_share": 0.0, "floor_share": 0.75, "strength": "at floor"}
    spread = pd.DataFrame({"layer": [0, 4], "score": [0.98, 1.0]})  # spread .02: still ceiling
    assert edit_strength(spread)["strength"] == "at ceiling"
    one_low_layer = pd.DataFrame({"layer": [0, 4, 8], "score": [0.99, 1.0, 0.97]})
    assert edit_strength(one_low_layer)["strength"] == ""
