"""Results folders: groups of runs merged for the analysis, refused when they overlap or disagree;
every committed model folder's analysis rebuilds to its committed r2.csv."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from locedit.results.build import analyse, load_groups

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (REPO / "docs" / "results").glob("*/groups"))


def group(folder: Path, run: str, case_ids: list[int], **info) -> None:
    path = folder / "groups" / run
    path.mkdir(parents=True)
    keys = pd.DataFrame([(m, "error_injection", c, layer) for m in ("rome",) for c in case_ids for layer in (0, 8)],
                        columns=["method", "problem", "case_id", "layer"])
    keys.assign(rewrite_score=0.5).to_parquet(path / "scores.parquet")
    pd.DataFrame({"case_id": case_ids}).to_parquet(path / "tracing_mlp_w5.parquet")
    settings = {"run": run, "model": "gemma-3-270m", "n_layers": 18, "effect_window": 5,
                "effect": "max_fraction_restored", "correlation_layer": None, "mlp_windows": [5], **info}
    (path / "run.json").write_text(json.dumps(settings))


def test_groups_are_merged(tmp_path):
    group(tmp_path, "g0", [13, 37])
    group(tmp_path, "g1", [253])
    scores, tables, runs = load_groups(tmp_path)
    assert sorted(scores.case_id.unique()) == [13, 37, 253] and list(tables) == [5]
    assert [r["run"] for r in runs] == ["g0", "g1"]


def test_overlapping_groups_are_refused(tmp_path):
    group(tmp_path, "g0", [13, 37])
    group(tmp_path, "g1", [37])
    with pytest.raises(ValueError, match=r"more than one group.*\[37\]"):
        load_groups(tmp_path)


def test_groups_of_different_protocols_are_refused(tmp_path):
    group(tmp_path, "g0", [13])
    group(tmp_path, "g1", [37], effect_window=3)
    with pytest.raises(ValueError, match="disagree on.*effect_window"):
        analyse(tmp_path)


def test_an_empty_folder_says_what_to_do(tmp_path):
    (tmp_path / "groups").mkdir()
    with pytest.raises(FileNotFoundError, match="run `collect` first"):
        load_groups(tmp_path)


def test_results_are_committed_for_both_embedded_models():
    assert {p.name for p in COMMITTED} >= {"gemma-3-270m", "smollm2-135m-instruct"}


@pytest.mark.parametrize("committed", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_analysis_rebuilds_exactly(tmp_path, committed):
    """The statistics a reader re-runs from docs/results/<model> alone equal the committed ones."""
    copy = tmp_path / committed.name
    shutil.copytree(committed / "groups", copy / "groups")
    analyse(copy)
    for name in ("r2.csv", "r2_concentrated.csv", "summary.md"):
        assert (copy / name).read_text() == (committed / name).read_text(), name
