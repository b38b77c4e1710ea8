"""Two runs of the same edits compared (float32 vs mixed precision): closed-form differences and
flips, the decision rule on runs that should pass and fail, and the page from two results folders."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from locedit.results.run_agreement import agreement_markdown, decision, edit_agreement, main, regression_agreement

EFFECT = "max_fraction_restored"


def synthetic_scores(n_cases: int = 20, layers=(0, 2, 4, 6, 8, 10), seed: int = 0) -> pd.DataFrame:
    """ROME and FT-1 error injection: the rewrite score follows the layer, the tracing effect is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, peak in (("rome", 4), ("ft1", 10)):
        for case in range(n_cases):
            for layer in layers:
                score = float(np.clip(0.9 - 0.08 * abs(layer - peak) + rng.normal(0, 0.05), 0, 1))
                rows.append({"method": method, "problem": "error_injection", "case_id": case, "layer": layer,
                             "rewrite_score": score, "rewrite_success": float(score > 0.5),
                             "paraphrase_score": score, "neighborhood_score": 1 - score / 2,
                             "overall_score": score * 0.8, EFFECT: float(rng.uniform(0, 1))})
    return pd.DataFrame(rows)


def test_edit_differences_and_flips_are_counted_per_condition():
    ref = synthetic_scores(n_cases=3)
    cand = ref.copy()
    rome = cand.index[cand.method == "rome"]
    cand.loc[rome[0], "rewrite_score"] += 0.3
    cand.loc[rome[0], "rewrite_success"] = 1 - cand.loc[rome[0], "rewrite_success"]
    cand.loc[rome[1], "overall_score"] -= 0.1
    table = edit_agreement(ref, cand.sample(frac=1, random_state=1)).set_index("method")  # order does not matter
    assert table.loc["rome", "n"] == 18 and table.loc["rome", "flips"] == 1
    assert table.loc["rome", "rewrite_max"] == pytest.approx(0.3) and table.loc["rome", "rewrite_mean"] == pytest.approx(0.3 / 18)
    assert table.loc["rome", "overall_max"] == pytest.approx(0.1)
    assert table.loc["ft1", ["rewrite_max", "overall_max", "flips"]].tolist() == [0, 0, 0]


def test_a_candidate_edit_missing_from_the_reference_is_named():
    ref = synthetic_scores(n_cases=3)
    cand = synthetic_scores(n_cases=4)
    with pytest.raises(ValueError, match="not in the reference.*'case_id': 3"):
        edit_agreement(ref, cand)


def test_a_subset_of_layers_is_compared_on_the_reference_restricted_to_it():
    ref = synthetic_scores(layers=(0, 2, 4, 6, 8, 10, 12))
    cand = ref[ref.layer != 12]
    r2 = regression_agreement(ref, cand, EFFECT, "toy", n_boot=50)
    assert (r2.max_move == 0).all() and (r2.verdict_ref == r2.verdict_cand).all()


def test_rounding_sized_changes_pass_and_a_real_change_fails():
    ref = synthetic_scores()
    rng = np.random.default_rng(1)
    close = ref.assign(rewrite_score=ref.rewrite_score + rng.normal(0, 1e-4, len(ref)))
    r2 = regression_agreement(ref, close, EFFECT, "toy", n_boot=100)
    edits = edit_agreement(ref, close)
    assert decision(edits, r2, 20, 6).startswith("passes: 20 cases × 6 layers")
    assert decision(edits, r2, 12, 6).startswith("fails: too small to decide (12 cases × 6 layers")

    # ROME's rewrite score now follows the tracing effect instead of the layer: its R² cells move
    moved = ref.copy()
    rome = moved.method == "rome"
    moved.loc[rome, "rewrite_score"] = moved.loc[rome, EFFECT]
    r2 = regression_agreement(ref, moved, EFFECT, "toy", n_boot=100)
    row = r2.set_index(["method", "metric"]).loc[("rome", "rewrite")]
    assert row.r2_trace_cand == pytest.approx(1.0) and row.max_move > 0.5
    assert row.verdict_ref == "holds" and row.verdict_cand != "holds"
    verdict = decision(edit_agreement(ref, moved), r2, 20, 6)
    assert verdict.startswith("fails: ") and "verdicts change" in verdict and "largest R² move" in verdict


def results_folder(folder: Path, scores: pd.DataFrame) -> Path:
    group = folder / "groups" / "g0"
    group.mkdir(parents=True)
    scores.to_parquet(group / "scores.parquet")
    pd.DataFrame({"case_id": [0], "layer": [0], "restored": [0.5]}).to_parquet(group / "tracing_mlp_w5.parquet")
    (group / "run.json").write_text(json.dumps({"run": "g0", "model": "toy", "effect": EFFECT, "mlp_windows": [5]}))
    return folder


def test_the_page_from_two_results_folders(tmp_path, capsys):
    ref = synthetic_scores()
    reference = results_folder(tmp_path / "ref", ref)
    candidate = results_folder(tmp_path / "cand", ref[ref.layer <= 8].assign(rewrite_score=lambda s: s.rewrite_score + 1e-3))
    page = agreement_markdown(reference, candidate, n_boot=50)
    assert "200 shared edits, 20 cases × 5 layers (0, 2, 4, 6, 8); effect max_fraction_restored, max |Δ| between the runs 0 " in page
    assert "**Decision (issue 10's rule)**: fails: too small to decide (20 cases × 5 layers" in page
    assert "| rome | error_injection | 100 | 0.0010 | 0.0010 | 0.0000 | 0.0000 | 0 |" in page
    main([str(reference), str(candidate), "--out", str(tmp_path / "page.md"), "--bootstrap", "50"])
    assert (tmp_path / "page.md").read_text() == page and "Decision" in capsys.readouterr().out


def test_a_moved_tracing_effect_is_reported(tmp_path):
    ref = synthetic_scores()
    reference = results_folder(tmp_path / "ref", ref)
    candidate = results_folder(tmp_path / "cand", ref.assign(**{EFFECT: ref[EFFECT] + 0.25}))
    assert "max |Δ| between the runs 0.25 " in agreement_markdown(reference, candidate, n_boot=20)
    with pytest.raises(ValueError, match="n_boot=0"):
        regression_agreement(ref, ref, EFFECT, "toy", n_boot=0)


def test_committed_precision_page_rebuilds_exactly(monkeypatch):
    """docs/results/precision/gemma-3-270m.md is what the tool gives from the committed float32 and
    mixed-precision folders (the paths in its header are relative to the repository)."""
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    page = Path("docs/results/precision/gemma-3-270m.md")
    assert agreement_markdown(Path("docs/results/gemma-3-270m"),
                              Path("docs/results/precision/gemma-3-270m-mixed")) == page.read_text()
