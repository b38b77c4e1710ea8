"""The models-side-by-side page: peaks and best layers from synthetic results with a known answer,
and the committed page rebuilt from the committed folders."""

import json
from pathlib import Path

import pandas as pd

from locedit.results.comparison import (ModelResults, comparison_markdown, peak_table, ceiling_floor_lines, variant_table,
                                       verdict_lines)

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent.relative_to(REPO) for p in (REPO / "docs" / "results").glob("*/groups"))


def synthetic_folder(folder: Path, peak_of_case: dict[int, int], best_rome_layer: int) -> Path:
    """A results folder whose cases' tracing peaks and ROME's best layer are known."""
    group = folder / "groups" / "g0"
    group.mkdir(parents=True)
    layers = [0, 4, 8, 12]
    scores = pd.DataFrame([{"method": "rome", "problem": "error_injection", "case_id": c, "layer": layer,
                            "rewrite_score": 0.9 if layer == best_rome_layer else 0.5}
                           for c in peak_of_case for layer in layers])
    scores.to_parquet(group / "scores.parquet")
    trace = pd.DataFrame([{"case_id": c, "token_idx": 1, "first_traced": 0, "subject_end": 2, "layer": layer,
                           "restored": 0.8 if layer == peak else 0.2, "low": 0.1, "clean": 0.9, "high": 0.9}
                          for c, peak in peak_of_case.items() for layer in range(16)])
    trace.to_parquet(group / "tracing_mlp_w5.parquet")
    (group / "run.json").write_text(json.dumps({"run": "g0", "model": "toy", "n_layers": 16, "effect_window": 5,
                                                "mlp_windows": [5]}))
    pd.DataFrame([{"method": "rome", "problem": "error_injection", "metric": "rewrite", "n_cases": len(peak_of_case),
                   "verdict": "holds"}]).to_csv(folder / "r2.csv", index=False)
    return folder


def test_peaks_and_best_layers_are_read_from_the_folder(tmp_path):
    model = ModelResults.load(synthetic_folder(tmp_path, {1: 3, 2: 3, 3: 9}, best_rome_layer=8))
    assert model.peaks.to_dict() == {1: 3, 2: 3, 3: 9} and model.layers == [0, 4, 8, 12]
    row = next(line for line in peak_table([model]) if line.startswith("| toy"))
    assert "| 3 (0.20) | 3 (67% of cases) |" in row  # median 3 of 15, the mode in 2 of 3 cases
    assert "8 (0.53; .900)" in row and row.count("–") == 3  # ROME's best layer; no FT / MEMIT rows


def test_verdicts_are_stated_per_problem_with_their_n(tmp_path):
    model = ModelResults.load(synthetic_folder(tmp_path, {1: 3, 2: 3}, best_rome_layer=0))
    lines = verdict_lines([model])
    assert lines[0] == "- **toy** (2 cases; holds 1 of 1):"
    assert "  - Error Injection (2 cases): holds for ROME." in lines


def test_committed_comparison_rebuilds_exactly(monkeypatch):
    monkeypatch.chdir(REPO)
    assert comparison_markdown(COMMITTED) == (REPO / "docs" / "results" / "comparison.md").read_text()


def test_verdicts_are_counted_per_localization_and_effect_with_their_changes(tmp_path):
    folder = synthetic_folder(tmp_path, {1: 3, 2: 3}, best_rome_layer=0)
    conditions = [("ft1", "error_injection"), ("rome", "error_injection"), ("rome", "fact_forcing")]
    rewrite = pd.DataFrame([{"method": m, "problem": p, "metric": "rewrite", "n_cases": 12} for m, p in conditions])
    rewrite.assign(verdict=["at ceiling", "holds", "holds"], ceiling_share=[.99, .1, .2],
                   floor_share=0.0).to_csv(folder / "r2.csv", index=False)
    pd.concat([rewrite.assign(localization="exact-gaussian-prob", verdict=["at ceiling", "holds", "holds"]),
               rewrite.assign(localization="exact-str-logit_diff", verdict=["at ceiling", "holds", "undetermined"]),
               rewrite.assign(localization="exact-str-logit_diff", metric="paraphrase", verdict="reversed")]
              ).to_csv(folder / "localizations.csv", index=False)
    pd.concat([rewrite.assign(variant="paper", verdict=["at ceiling", "holds", "holds"]),
               rewrite.assign(variant="reference_fraction_restored", n_cases=9, verdict=["at ceiling", "", "holds"])]
              ).drop(columns="metric").to_csv(folder / "sensitivity.csv", index=False)
    model = ModelResults.load(folder)
    lines = variant_table([model])
    assert lines[0] == ("| model | localization | effect | cases | holds | undetermined | at ceiling | no verdict | "
                        "verdicts that differ from the main analysis's |")
    assert lines[2:] == [
        "| toy | activation patching, Gaussian noise, P(target) | project's | 12 | 2 | 0 | 1 | 0 | (main analysis) |",
        "| toy | activation patching, token replacement, logit difference | project's | 12 | 1 | 1 | 1 | 0 | "
        "Fact Forcing ROME: holds → undetermined |",  # the paraphrase rows do not count
        "| toy | activation patching, Gaussian noise, P(target) | reference code's | 9 | 1 | 0 | 1 | 1 | "
        "Error Injection ROME: holds → no verdict |"]
    assert ceiling_floor_lines([model]) == ["- **toy**: at ceiling Error Injection FT-1 (99% of its edits ≥ 0.98)."]
