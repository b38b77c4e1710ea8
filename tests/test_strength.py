"""The edit-strength sweep: the preset's size, one overlay per scale that scales the tuned value of
every problem, and the collected table labelling a condition at ceiling instead of giving it a
verdict (synthetic runs whose answer is known)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from locedit.analysis.plots import plot_strength_sweep
from locedit.config import load_config
from locedit.editing.hparams import hparams_for
from locedit.plan import PROBLEMS, central_layers, planned_num_layers
from locedit.results.strength import collect, main, overlay, strength_markdown

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "configs" / "strength-gemma.yaml"


def test_preset_sweeps_ft_radii_over_enough_cases_layers_and_problems():
    config = load_config(PRESET)
    sweep, editing = config["sweep"], config["editing"]
    assert config["model"]["name"] == "gemma-3-270m" and sweep["hparam"] == "norm_constraint"
    assert sweep["methods"] == ["ft1", "ft5"] and len(sweep["scales"]) >= 3
    assert set(editing["problems"]) == set(PROBLEMS) and editing["max_cases"] >= 20
    assert len(central_layers(editing["layers"], planned_num_layers(config["model"]))) >= 6


def test_overlays_scale_every_problems_tuned_value(tmp_path):
    """Scale 0.3 of the preset, as the workflow reads it (preset, then the overlay, then the tuning
    file under both): .3 × the tuned radius of each method × problem, the other settings unchanged."""
    base = load_config(PRESET)
    main(["overlays", str(PRESET), "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"x{s:g}.yaml" for s in base["sweep"]["scales"])
    scaled = load_config(PRESET, tmp_path / "x0.3.yaml")
    assert scaled["run"] == "strength-gemma-x0.3"
    for method in ("ft1", "ft5"):
        for problem in PROBLEMS:
            before, after = hparams_for(base["editing"], method, problem), hparams_for(scaled["editing"], method, problem)
            assert after["norm_constraint"] == pytest.approx(0.3 * before["norm_constraint"], rel=1e-12)
            assert {k: v for k, v in after.items() if k != "norm_constraint"} == \
                   {k: v for k, v in before.items() if k != "norm_constraint"}
    assert hparams_for(base["editing"], "ft1", "fact_erasure")["norm_constraint"] == 1e-4  # tuned, per problem
    with pytest.raises(ValueError, match="sweep.hparam 'v_lr' of ft1 / error_injection is None"):
        overlay({**base, "sweep": {**base["sweep"], "hparam": "v_lr"}}, 2.0)


def fake_run(results: Path, run: str, level: float, spread: float) -> None:
    """FT-1 error injection over 24 cases × 3 layers: score = level + spread·layer/8 + noise, the
    effect unrelated to it."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([(c, layer) for c in range(24) for layer in (0, 4, 8)], columns=["case_id", "layer"])
    rows["rewrite_score"] = (level + spread * rows.layer / 8 + rng.normal(scale=0.002, size=len(rows))).clip(0, 1)
    rows["max_fraction_restored"] = rng.uniform(size=len(rows))
    (results / run).mkdir(parents=True)
    rows.assign(method="ft1", problem="error_injection").to_parquet(results / run / "scores.parquet")
    (results / run / "benchmarks").mkdir()
    (results / run / "benchmarks" / "edit_ft1_error_injection_shard0.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")


def test_collect_labels_the_scale_at_ceiling_and_gives_the_others_their_verdict(tmp_path):
    config = {"run": "toy", "model": {"name": "toy"}, "analysis": {"bootstrap": 200},
              "sweep": {"hparam": "norm_constraint", "methods": ["ft1"], "scales": [0.1, 1, 3]},
              "editing": {"problems": ["error_injection"], "hparams": {"ft1": {"norm_constraint": 1e-3}}}}
    fake_run(tmp_path, "toy-x0.1", level=0.2, spread=0.5)    # weak: the layer explains the score
    fake_run(tmp_path, "toy-x1", level=0.9, spread=0.06)     # layer means .90-.96: not at ceiling
    fake_run(tmp_path, "toy-x3", level=0.985, spread=0.01)   # every layer mean ≥ .98, spread .01
    table, by_layer = collect(config, tmp_path)
    table = table.set_index("scale")
    assert table.value.tolist() == pytest.approx([1e-4, 1e-3, 3e-3]) and set(table.hparam) == {"norm_constraint"}
    assert table.loc[3, "verdict"] == "at ceiling" and table.loc[3, "ceiling_share"] > 0.9
    assert table.loc[0.1, "verdict"] == "holds" and table.loc[1, "verdict"] == "holds"
    assert table.loc[3, "layer_mean_min"] >= 0.98 and table.loc[0.1, "layer_mean_max"] == pytest.approx(0.7, abs=0.01)
    assert len(by_layer) == 9 and set(by_layer.columns) >= {"scale", "method", "problem", "layer", "mean_rewrite"}
    figure = plot_strength_sweep(by_layer, tmp_path / "strength.png", "norm_constraint", table.reset_index())
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="toy-x9/scores.parquet is missing: run scale 9 first"):
        collect({**config, "sweep": {**config["sweep"], "scales": [9]}}, tmp_path)


def test_collect_reads_each_run_at_the_configs_layers(tmp_path):
    """A run edited at more layers than the config names is read at the config's; one missing a
    configured layer is an error naming the layer."""
    config = {"run": "toy", "model": {"name": "toy"}, "analysis": {"bootstrap": 200},
              "sweep": {"hparam": "norm_constraint", "methods": ["ft1"], "scales": [1]},
              "editing": {"problems": ["error_injection"], "hparams": {"ft1": {"norm_constraint": 1e-3}},
                          "layers": [0, 4]}}
    fake_run(tmp_path, "toy-x1", level=0.2, spread=0.5)  # layers 0, 4, 8
    table, by_layer = collect(config, tmp_path)
    assert sorted(by_layer.layer) == [0, 4] and table.layer_mean_max.iloc[0] == pytest.approx(0.45, abs=0.01)
    with pytest.raises(ValueError, match=r"no edits at layer\(s\) \[12\] of editing.layers \[0, 4, 12\]"):
        collect({**config, "editing": {**config["editing"], "layers": [0, 4, 12]}}, tmp_path)


def test_markdown_reads_the_sweep_by_scale(tmp_path):
    config = {"run": "toy", "model": {"name": "toy"}, "analysis": {"bootstrap": 200},
              "sweep": {"hparam": "norm_constraint", "methods": ["ft1"], "scales": [0.1, 3]},
              "editing": {"problems": ["error_injection"], "hparams": {"ft1": {"norm_constraint": 1e-3}}}}
    fake_run(tmp_path, "toy-x0.1", level=0.2, spread=0.5)
    fake_run(tmp_path, "toy-x3", level=0.985, spread=0.01)
    lines = strength_markdown(*collect(config, tmp_path), "toy.yaml").splitlines()
    assert lines[0] == "# Edit strength: norm_constraint × 0.1, 3"
    assert "| × 0.1 | holds 1 | FT-1 .45 |" in lines  # layer 4 of 0, 4, 8: .2 + .5 · 4/8
    assert "| × 3 | at ceiling 1 | FT-1 .99 |" in lines
    assert lines[-1] == "| FT-1 | Error Injection | 0.0001: .20–.70, **holds** | 0.003: .98–1.00, **at ceiling** |"


def test_collect_keeps_the_runs_and_rebuilds_from_them(tmp_path, monkeypatch):
    """``collect`` keeps each run's scores and job seconds under runs/; collecting from runs/ gives
    the same tables again (the bootstrap is seeded per condition) and copies nothing onto itself."""
    monkeypatch.chdir(tmp_path)
    config = {"run": "toy", "analysis": {"bootstrap": 200},
              "sweep": {"hparam": "norm_constraint", "methods": ["ft1"], "scales": [0.1, 3]},
              "editing": {"problems": ["error_injection"], "layers": [0, 4, 8],
                          "hparams": {"ft1": {"norm_constraint": 1e-3}}}}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    fake_run(tmp_path / "results", "toy-x0.1", level=0.2, spread=0.5)
    fake_run(tmp_path / "results", "toy-x3", level=0.985, spread=0.01)
    main(["collect", "toy.yaml", "--results", "results", "--out", "page"])
    info = json.loads((tmp_path / "page" / "runs" / "toy-x3" / "run.json").read_text())
    assert info["values"]["ft1"]["error_injection"] == pytest.approx(3 * load_config("toy.yaml")["editing"]["hparams"]
                                                                    ["ft1"]["norm_constraint"])
    assert info["job_s"] == {"edit_ft1_error_injection_shard0": 12.5}
    first = (tmp_path / "page" / "strength.csv").read_text()
    assert len(pd.read_csv(tmp_path / "page" / "strength.csv")) == 2
    main(["collect", "toy.yaml", "--results", "page/runs", "--out", "page"])
    assert (tmp_path / "page" / "strength.csv").read_text() == first
    assert json.loads((tmp_path / "page" / "runs" / "toy-x3" / "run.json").read_text()) == info


@pytest.mark.parametrize("folder", sorted((REPO / "docs" / "results").glob("strength-*")), ids=lambda p: p.name)
def test_committed_strength_page_rebuilds_from_its_tables(folder):
    table, by_layer = pd.read_csv(folder / "strength.csv"), pd.read_csv(folder / "strength_by_layer.csv")
    source = f"configs/{folder.name}.yaml"
    assert strength_markdown(table, by_layer, source) == (folder / "strength.md").read_text()
    assert set(table.hparam) == {load_config(REPO / source)["sweep"]["hparam"]}


@pytest.mark.parametrize("folder", sorted((REPO / "docs" / "results").glob("strength-*")), ids=lambda p: p.name)
def test_committed_strength_tables_rebuild_from_the_kept_runs(folder):
    """strength.csv and strength_by_layer.csv are what ``collect`` gives from the kept runs/ (the
    page's scores, with its config)."""
    table, by_layer = collect(load_config(REPO / "configs" / f"{folder.name}.yaml"), folder / "runs")
    pd.testing.assert_frame_equal(table, pd.read_csv(folder / "strength.csv"), check_dtype=False, rtol=1e-5)
    pd.testing.assert_frame_equal(by_layer, pd.read_csv(folder / "strength_by_layer.csv"), check_dtype=False, rtol=1e-5)
