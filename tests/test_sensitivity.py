"""Sensitivity of the verdicts: each variant is the analysis it names (the denominator's column, the
cases it leaves out), checked on synthetic scores with a closed form; the reference code's effect
on a hand-made trace table; every committed sensitivity.csv agrees with its folder's r2.csv, and
SmolLM2's rebuilds exactly."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from locedit.analysis.regressions import regressions_with_verdicts
from locedit.results.sensitivity import counts, folder_scores, sensitivity, variants
from locedit.tracing.effects import tracing_effects

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = REPO / "docs" / "results" / "smollm2-135m-instruct"
COMMITTED = sorted(p.parent for p in (REPO / "docs" / "results").glob("*/sensitivity.csv"))


def synthetic_scores(n_cases: int = 30) -> pd.DataFrame:
    """ROME error injection over 3 layers: score = layer mean + noise; the paper's effect is unrelated
    noise in [0, 0.5] but for cases 7 (effect 10) and 11 (effect 3); the reference denominator's
    column is the score's within-layer residual itself, so with it the interacted fit is exact."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([(c, layer) for c in range(n_cases) for layer in (0, 4, 8)], columns=["case_id", "layer"])
    rows["rewrite_score"] = rows.layer / 80 + rng.normal(scale=0.1, size=len(rows))
    rows["max_fraction_restored"] = rng.uniform(0, 0.5, size=len(rows))
    rows.loc[rows.case_id == 7, "max_fraction_restored"] = 10.0
    rows.loc[rows.case_id == 11, "max_fraction_restored"] = 3.0
    rows["max_fraction_restored_high"] = rows.rewrite_score - rows.groupby("layer").rewrite_score.transform("mean")
    # the reference code's effect: that column, but cases 3 and 5 fall under its clean P(o_true) filter
    rows["reference_fraction_restored"] = rows.max_fraction_restored_high.where(~rows.case_id.isin([3, 5]))
    return rows.assign(method="rome", problem="error_injection")


def test_reference_effect_is_the_high_denominator_and_the_clean_filter():
    """Two cases, one traced token each side of the subject's end, two layers. Case 1: clean .5,
    low .1, restored .3/.7 at layer 0 and .05/.2 at layer 1, so high = max(.5, .7) = .7: the paper's
    effect at layer 0 is max(.2, .6)/.4 = 1.5, the reference's max(.2, .6)/.6 = 1; at layer 1 the
    paper's .1/.4 = .25, the reference's .1/.6 (the negative .05 − .1 clamps to 0). Case 2: clean
    .015 < .02, so the reference code skips it: NaN, while the paper's effect is defined."""
    rows = []
    for case, clean, low, restored in ((1, .5, .1, {0: (.3, .7), 1: (.05, .2)}), (2, .015, .005, {0: (.01, .012),
                                                                                                  1: (.006, .02)})):
        high = max(clean, max(max(v) for v in restored.values()))
        for layer, values in restored.items():
            for token, value in zip((1, 2), values):
                rows.append({"case_id": case, "layer": layer, "token_idx": token, "restored": value, "low": low,
                             "clean": clean, "high": high, "first_traced": 1, "subject_end": 2, "metric": "prob"})
    effects = tracing_effects(pd.DataFrame(rows)).set_index(["case_id", "layer"])
    np.testing.assert_allclose(effects.loc[1].max_fraction_restored, [1.5, 0.25])
    np.testing.assert_allclose(effects.loc[1].reference_fraction_restored, [1.0, 0.1 / 0.6])
    np.testing.assert_allclose(effects.loc[2].max_fraction_restored, [0.007 / 0.01, 0.015 / 0.01])
    assert effects.loc[2].reference_fraction_restored.isna().all()
    logit = pd.DataFrame(rows).assign(metric="logit_diff")  # the reference code measured P(o_true) only
    assert tracing_effects(logit).reference_fraction_restored.isna().all()


def test_variants_leave_out_the_cases_they_name():
    found = variants(synthetic_scores())
    assert list(found) == ["paper", "reference_denominator", "reference_fraction_restored", "without_case_7",
                           "without_fraction_above_1"]
    assert found["reference_denominator"][1] == "max_fraction_restored_high"
    assert found["reference_fraction_restored"][1] == "reference_fraction_restored"
    assert sorted(set(range(30)) - set(found["without_case_7"][0].case_id)) == [7]
    assert sorted(set(range(30)) - set(found["without_fraction_above_1"][0].case_id)) == [7, 11]


def test_each_variant_is_its_own_analysis():
    scores = synthetic_scores()
    table = sensitivity(scores, "tiny", n_boot=200).set_index("variant")
    paper = regressions_with_verdicts(scores, "tiny", n_boot=200)
    paper = paper[paper.metric == "rewrite"].iloc[0]
    assert table.loc["paper", "r2_added"] == pytest.approx(paper.r2_added)
    assert table.loc["paper", "verdict"] == paper.verdict
    # the reference column is the residual: layer × effect fits exactly, tracing adds 1 − R² layer
    reference = table.loc["reference_denominator"]
    assert reference.r2_added == pytest.approx(1 - reference.r2_layer)
    assert reference.verdict == "reversed" and table.loc["paper", "verdict"] != "reversed"
    assert table.loc["without_case_7", "n_cases"] == 29 and table.loc["without_fraction_above_1", "n_cases"] == 28
    assert table.loc["reference_fraction_restored", "n_cases"] == 28  # cases 3 and 5 filtered out
    assert counts(table.reset_index()).loc["reference_denominator", "reversed"] == 1


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: p.name)
def test_committed_sensitivity_is_current_with_r2(folder):
    """Its paper block is r2.csv's rewrite rows: fails when a group is collected and analysed
    without rerunning `python -m locedit.results.sensitivity` on the folder."""
    committed = pd.read_csv(folder / "sensitivity.csv")
    r2 = pd.read_csv(folder / "r2.csv")
    r2 = r2[r2.metric == "rewrite"].set_index(["method", "problem"])
    paper = committed[committed.variant == "paper"].set_index(["method", "problem"])
    assert (paper.n_cases == r2.n_cases).all() and (paper.verdict == r2.verdict).all()
    for column in ("r2_added", "r2_layer_lo", "r2_added_hi"):  # the bounds too: the same resamples
        assert np.allclose(paper[column], r2.loc[paper.index, column], rtol=1e-5), column


def test_committed_sensitivity_is_what_the_folder_gives():
    committed = pd.read_csv(SMOLLM2 / "sensitivity.csv")
    scores, model, effect = folder_scores(SMOLLM2)
    rebuilt = sensitivity(scores, model, n_boot=1000, effect=effect)
    pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), committed, check_dtype=False, rtol=1e-5)


def test_sensitivity_is_committed_for_both_embedded_models():
    assert {p.name for p in COMMITTED} >= {"gemma-3-270m", "smollm2-135m-instruct"}
