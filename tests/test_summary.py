"""summary.md's opening: this run's bootstrap verdicts counted (no verdict from 3 cases, never a
mean-based "holds"), the committed full-protocol verdicts of the same model beside them, read from
docs/results/<model>/r2.csv, and one line where there are none."""

import itertools

import pandas as pd
import pytest

from locedit.analysis.summary import (COMMITTED_RESULTS, committed_folder, committed_verdicts, headline_from_summary,
                                      paper_tables, summary_markdown, verdict_opening)
from locedit.plan import EDIT_SITES, PROBLEMS

CONDITIONS = list(itertools.product(PROBLEMS, EDIT_SITES))  # 5 problems x 4 methods


def fake_r2(verdicts: list[str], n_cases: int, metrics=("rewrite", "overall")) -> pd.DataFrame:
    """An r2.csv-like table, one row per condition and metric, the rewrite rows with ``verdicts``;
    the means are those of a run the old mean-based rule would have called "holds"."""
    rows = []
    for metric in metrics:
        for (problem, method), verdict in zip(CONDITIONS, verdicts):
            rows.append({"model": "gemma-3-270m", "method": method, "problem": problem, "metric": metric,
                         "n": 3 * n_cases, "r2_layer": .6, "r2_trace": .02, "r2_both": .62, "r2_added": .02,
                         "r2_added_chance": .01, "f_pvalue": .5, "rmse_layer": .1, "rmse_trace": .2, "mae_layer": .1,
                         "mae_trace": .2, "saturated": False, "ceiling_share": 0., "floor_share": 0., "strength": "",
                         "n_cases": n_cases, "r2_layer_lo": .4, "r2_layer_hi": .8, "r2_trace_lo": 0.,
                         "r2_trace_hi": .1, "r2_added_lo": 0., "r2_added_hi": .1, "verdict": verdict})
    return pd.DataFrame(rows)


def committed_copy(folder, verdicts, n_cases=60):
    folder.mkdir(parents=True)
    fake_r2(verdicts, n_cases).to_csv(folder / "r2.csv", index=False)
    return folder


def summary(r2: pd.DataFrame, **info) -> str:
    run_info = {"run": "gemma-3-270m", "model": "gemma-3-270m", "n_cases": int(r2.n_cases.max()), "n_layers": 3,
                "layers": [0, 8, 17], "effect": "max_fraction_restored", "window": 5, **info}
    return summary_markdown(r2, paper_tables(), pd.DataFrame(), {"layer": 8, "r": .1, "p": .5, "n": 9}, run_info)


FEW = ["too few cases"] * 20
DECIDED = ["holds"] * 15 + ["undetermined"] * 2 + ["at ceiling"] * 3


def test_three_cases_open_with_no_verdict_and_never_holds(tmp_path):
    text = summary(fake_r2(FEW, 3), committed=None)
    first = text.split("\n\n")[1]
    assert first == ("**Verdict.** 3 cases give no verdict: every one of the 20 rewrite-score conditions has too "
                     "few cases for the bootstrap rule (it needs ≥ 10).")
    opening = text.split("## ")[0]  # everything before the first table
    assert "holds" not in opening
    assert "For reference, not a verdict" in opening


def test_labels_without_verdicts_are_counted_as_no_verdict():
    r2 = fake_r2(["too few cases"] * 17 + ["at ceiling"] * 3, 2)
    assert verdict_opening(r2) == (
        "2 cases give no verdict: no rewrite-score condition gets one (at ceiling 3, too few cases 17 of 20; the "
        "bootstrap rule needs ≥ 10 cases, and edits at ceiling or floor leave nothing to explain).")
    assert verdict_opening(r2.drop(columns="verdict")).startswith("2 cases give no verdict: no bootstrap intervals")


def test_a_run_with_verdicts_opens_with_its_counts():
    text = summary(fake_r2(DECIDED, 60))
    assert text.split("\n\n")[1] == ("**Verdict.** This run's bootstrap verdicts on the paper's finding, 20 "
                                     "rewrite-score conditions of 60 cases: **holds 15, undetermined 2, at ceiling 3**.")
    assert "Committed full protocol" not in text  # no "committed" in run_info: nothing about it (docs/results rebuilt)


def test_committed_verdicts_are_read_from_the_models_folder(tmp_path):
    folder = committed_copy(tmp_path / "results" / "gemma-3-270m", DECIDED)
    assert committed_folder("gemma-3-270m", tmp_path / "results") == folder
    assert committed_folder("EleutherAI/gpt-j-6B", tmp_path / "results") is None
    committed = committed_verdicts(folder)
    assert len(committed.rows) == 20 and set(committed.rows.metric) == {"rewrite"}
    assert committed.label == f"committed full protocol (60 cases, {(folder / 'r2.csv').resolve()})"

    text = summary(fake_r2(FEW, 3), committed=str(folder))
    paragraphs = text.split("\n\n")
    assert paragraphs[1].startswith("**Verdict.** 3 cases give no verdict")
    assert paragraphs[2] == (f"**Committed full protocol.** 60 cases of gemma-3-270m ({(folder / 'r2.csv').resolve()}): "
                             "**holds 15, undetermined 2, at ceiling 3** of 20 rewrite-score conditions — what this "
                             "software has established for this model; each condition beside this run's table below.")
    ours, theirs = text.index("## Bootstrap 95% intervals — rewrite score, this run"), text.index(
        f"## Committed full protocol (60 cases, {(folder / 'r2.csv').resolve()}) — rewrite score, gemma-3-270m")
    assert ours < theirs < text.index("## Table 1")
    table = text[theirs:].split("\n\n")[2].splitlines()
    assert table[0] == "| problem | method | R² layer | R² tracing | R² added by tracing | verdict |"
    assert table[2] == "| Error Injection | FT-1 | .600 [.400, .800] | .020 [.000, .100] | .020 [.000, .100] | holds |"
    assert len(table) == 2 + 20

    printed = headline_from_summary(_written(tmp_path, text))
    assert printed.startswith("3 cases give no verdict: every one of the 20 rewrite-score conditions")
    assert printed.endswith("Committed full protocol: 60 cases of gemma-3-270m "
                            f"({(folder / 'r2.csv').resolve()}): holds 15, undetermined 2, at ceiling 3 of 20 "
                            "rewrite-score conditions.")


def test_absent_committed_folder_is_one_line(tmp_path):
    assert committed_verdicts(tmp_path / "nowhere") is None and committed_verdicts(None) is None
    text = summary(fake_r2(FEW, 3), committed=None)
    line = [p for p in text.split("\n\n") if "Committed full protocol" in p]
    assert line == ["**Committed full protocol.** None for gemma-3-270m: no docs/results/gemma-3-270m/r2.csv in this "
                    "checkout (a model without committed results, or an installed package)."]
    assert "## Committed full protocol" not in text


@pytest.mark.skipif(not (COMMITTED_RESULTS / "gemma-3-270m" / "r2.csv").exists(), reason="no docs/results here")
def test_the_repositorys_committed_results_are_found_and_labelled():
    committed = committed_verdicts(committed_folder("gemma-3-270m"))
    assert committed.label.startswith("committed full protocol (") and committed.source == \
        "docs/results/gemma-3-270m/r2.csv"
    assert len(committed.rows) == 20 and committed.rows.verdict.ne("").all()


def _written(tmp_path, text):
    path = tmp_path / "summary.md"
    path.write_text(text)
    return str(path)
