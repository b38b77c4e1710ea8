"""Sensitivity of the verdicts: each variant is the analysis it names (the denominator's column, the
cases it leaves out), checked on synthetic scores with a closed form; every committed sensitivity.csv
agrees with its folder's r2.csv, and SmolLM2's rebuilds exactly."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from locedit.analysis import regressions_with_verdicts
from locedit.results import load_groups
from locedit.sensitivity import counts, sensitivity, variants

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
    return rows.assign(method="rome", problem="error_injection")


def test_variants_leave_out_the_cases_they_name():
    found = variants(synthetic_scores())
    assert list(found) == ["paper", "reference_denominator", "without_case_7", "without_fraction_above_1"]
    assert found["reference_denominator"][1] == "max_fraction_restored_high"
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
    assert counts(table.reset_index()).loc["reference_denominator", "reversed"] == 1


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: p.name)
def test_committed_sensitivity_is_current_with_r2(folder):
    """Its paper block is r2.csv's rewrite rows: fails when a group is collected and analysed
    without rerunning `python -m locedit.sensitivity` on the folder."""
    committed = pd.read_csv(folder / "sensitivity.csv")
    r2 = pd.read_csv(folder / "r2.csv")
    r2 = r2[r2.metric == "rewrite"].set_index(["method", "problem"])
    paper = committed[committed.variant == "paper"].set_index(["method", "problem"])
    assert (paper.n_cases == r2.n_cases).all() and (paper.verdict == r2.verdict).all()
    for column in ("r2_added", "r2_layer_lo", "r2_added_hi"):  # the bounds too: the same resamples
        assert np.allclose(paper[column], r2.loc[paper.index, column], rtol=1e-5), column


def test_committed_sensitivity_is_what_the_folder_gives():
    committed = pd.read_csv(SMOLLM2 / "sensitivity.csv")
    scores, _, runs = load_groups(SMOLLM2)
    rebuilt = sensitivity(scores, runs[0]["model"], n_boot=1000, effect=runs[0]["effect"])
    pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), committed, check_dtype=False, rtol=1e-5)


def test_sensitivity_is_committed_for_both_embedded_models():
    assert {p.name for p in COMMITTED} >= {"gemma-3-270m", "smollm2-135m-instruct"}
