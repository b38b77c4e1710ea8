"""Normalized scores from raw probabilities (paper-spec §8.2) and the tracing effect."""

import numpy as np
import pandas as pd
import pytest

from locedit.editing.metrics import edit_scores, erased, neighborhood, prompt_scores, recovered
from locedit.tracing.effects import tracing_effects


def test_score_formulas():
    assert recovered(0.2, 0.6) == pytest.approx(0.5)
    assert recovered(0.5, 0.1) == pytest.approx(2e-8)  # floored
    assert erased(0.4, 0.1) == pytest.approx(0.75)
    assert erased(0.4, 0.6) == 0
    assert neighborhood(0.3, 0.3) == 1 and neighborhood(0.5, 1.0) == pytest.approx(0.0)


def frames():
    keys = dict(problem="error_injection", case_id=1)
    rows = [("rewrite", 0, 0.1, 0.6), ("paraphrase", 0, 0.2, 0.6), ("paraphrase", 1, 0.2, 1.0),
            ("neighborhood", 0, 0.3, 0.3), ("neighborhood", 1, 0.5, 1.0)]
    pre = pd.DataFrame([{**keys, "prompt_type": t, "prompt_idx": i, "p_target": a, "p_baseline": 0.5}
                        for t, i, a, _ in rows])
    post = pd.DataFrame([{**keys, "method": "rome", "layer": 3, "prompt_type": t, "prompt_idx": i,
                          "p_target": b, "p_baseline": 0.4} for t, i, _, b in rows])
    return pre, post


def test_scores_average_over_prompts_or_take_the_first():
    pre, post = frames()
    prompts = prompt_scores(pre, post, {"error_injection": False})
    mean = edit_scores(prompts).iloc[0]
    assert mean.rewrite_score == pytest.approx(5 / 9)
    assert mean.paraphrase_score == pytest.approx((0.5 + 1.0) / 2)
    assert mean.neighborhood_score == pytest.approx((1.0 + 0.0) / 2)
    assert mean.overall_score == pytest.approx((5 / 9 + 0.75 + 0.5) / 3)
    first = edit_scores(prompts, first_prompt_only=True).iloc[0]
    assert first.paraphrase_score == pytest.approx(0.5) and first.neighborhood_score == pytest.approx(1.0)
    assert mean.rewrite_success == 1.0 and mean.neighborhood_success == 0.5


def test_missing_pre_rows_are_an_error():
    pre, post = frames()
    with pytest.raises(ValueError, match="rerun the pre_edit rule"):
        prompt_scores(pre.iloc[1:], post, {"error_injection": False})


def test_tracing_effect_is_max_fraction_over_traced_tokens():
    rows = []
    for token, probs in enumerate([[0.1, 0.1], [0.1, 0.5], [0.3, 0.2]]):
        for layer, p in enumerate(probs):
            rows.append(dict(case_id=1, token_idx=token, layer=layer, restored=p, low=0.1, clean=0.5,
                             high=0.5, first_traced=1, subject_start=1, subject_end=2))
    eff = tracing_effects(pd.DataFrame(rows)).set_index("layer")
    np.testing.assert_allclose(eff.max_fraction_restored, [0.5, 1.0])
    np.testing.assert_allclose(eff.last_subject_fraction, [0.0, 1.0])
    np.testing.assert_allclose(eff.last_subject_effect, [0.0, 0.4])


def test_essence_score_from_perplexity_rise():
    pre, post = frames()
    essence = [("essence", 0, 10.0, 12.0), ("essence", 1, 20.0, 30.0)]  # mean rise (2 + 10) / 2 = 6 > cap
    keys = dict(problem="error_injection", case_id=1)
    pre = pd.concat([pre, pd.DataFrame([{**keys, "prompt_type": t, "prompt_idx": i, "ppl": a} for t, i, a, _ in essence])])
    post = pd.concat([post, pd.DataFrame([{**keys, "method": "rome", "layer": 3, "prompt_type": t, "prompt_idx": i,
                                           "ppl": b} for t, i, _, b in essence])])
    row = edit_scores(prompt_scores(pre, post, {"error_injection": False})).iloc[0]
    assert row.essence_ppl_diff == pytest.approx(6.0) and row.essence_score == 0.0
    assert row.rewrite_score == pytest.approx(5 / 9)  # essence rows do not leak into the other scores
    post.loc[post.prompt_type == "essence", "ppl"] = [11.0, 20.0]  # mean rise 0.5
    assert edit_scores(prompt_scores(pre, post, {"error_injection": False})).iloc[0].essence_score == pytest.approx(0.9)
