"""The edit-strength sweep: the preset's size, one overlay per scale that scales the tuned value of
every problem, and the collected table labelling a condition at ceiling instead of giving it a
verdict (synthetic runs whose answer is known)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
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


def toy_config(scales, layers=(0, 4, 8), methods=("ft1",)) -> dict:
    """A sweep of FT's radius (tuned 1e-3) over error injection on a 9-layer model."""
    return {"run": "toy", "model": {"name": "toy", "num_layers": 9}, "analysis": {"bootstrap": 200},
            "sweep": {"hparam": "norm_constraint", "methods": list(methods), "scales": list(scales)},
            "editing": {"problems": ["error_injection"], "layers": list(layers),
                        "hparams": {m: {"norm_constraint": 1e-3} for m in methods}}}


def fake_run(results: Path, run: str, level: float, spread: float, recorded: float | None = None) -> None:
    """FT-1 error injection over 24 cases × 3 layers: score = level + spread·layer/8 + noise, the
    effect unrelated to it; with ``recorded``, provenance saying the edits used that radius."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([(c, layer) for c in range(24) for layer in (0, 4, 8)], columns=["case_id", "layer"])
    rows["rewrite_score"] = (level + spread * rows.layer / 8 + rng.normal(scale=0.002, size=len(rows))).clip(0, 1)
    rows["max_fraction_restored"] = rng.uniform(size=len(rows))
    table = pa.Table.from_pandas(rows.assign(method="ft1", problem="error_injection"))
    if recorded is not None:
        edits = {"ft1/error_injection": {"editing": {"hparams": {"ft1": {"norm_constraint": recorded}}},
                                         "code": {"commit": "abc123", "dirty": False}}}
        table = table.replace_schema_metadata({**table.schema.metadata, b"locedit": json.dumps({"edits": edits})})
    (results / run / "benchmarks").mkdir(parents=True)
    pq.write_table(table, results / run / "scores.parquet")
    (results / run / "benchmarks" / "edit_ft1_error_injection_shard0.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")


def test_collect_labels_the_scale_at_ceiling_and_gives_the_others_their_verdict(tmp_path):
    config = toy_config([0.1, 1, 3])
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
    with pytest.raises(FileNotFoundError, match="toy-x9/scores.parquet is missing \\(scale 9\\): run it first"):
        collect(toy_config([9]), tmp_path)
    with pytest.raises(FileNotFoundError, match="collect once from the results folder that holds the run"):
        collect(toy_config([9]), tmp_path / "page" / "runs")


def test_collect_reads_each_run_at_the_configs_layers(tmp_path):
    """A run edited at more layers than the config names is read at the config's; a condition
    missing a configured layer, or missing altogether, is an error naming it."""
    fake_run(tmp_path, "toy-x1", level=0.2, spread=0.5)  # FT-1 only, layers 0, 4, 8
    table, by_layer = collect(toy_config([1], layers=[0, 4]), tmp_path)
    assert sorted(by_layer.layer) == [0, 4] and table.layer_mean_max.iloc[0] == pytest.approx(0.45, abs=0.01)
    with pytest.raises(ValueError, match=r"no ft1 / error_injection edits at layer\(s\) \[6\] of editing.layers \[0, 4, 6\]"):
        collect(toy_config([1], layers=[0, 4, 6]), tmp_path)
    with pytest.raises(ValueError, match=r"no ft5 / error_injection edits at layer\(s\) \[0, 4, 8\]"):
        collect(toy_config([1], methods=["ft1", "ft5"]), tmp_path)


def test_collect_checks_the_value_against_the_runs_provenance(tmp_path):
    """The table's value is the one the run's edit jobs recorded; a config (or tuning file) changed
    since the run is an error naming both values."""
    fake_run(tmp_path, "toy-x0.5", level=0.5, spread=0.3, recorded=5e-4)
    assert collect(toy_config([0.5]), tmp_path)[0].value.tolist() == [5e-4]
    config = toy_config([0.5])
    config["editing"]["hparams"]["ft1"]["norm_constraint"] = 2e-3
    with pytest.raises(ValueError, match="ft1 / error_injection was edited with norm_constraint 0.0005, but the config "
                                         "gives 0.001 at scale 0.5"):
        collect(config, tmp_path)


def test_markdown_reads_the_sweep_by_scale(tmp_path):
    fake_run(tmp_path, "toy-x0.1", level=0.2, spread=0.5)
    fake_run(tmp_path, "toy-x3", level=0.985, spread=0.01)
    lines = strength_markdown(*collect(toy_config([0.1, 3]), tmp_path), "toy.yaml").splitlines()
    assert lines[0] == "# Edit strength: norm_constraint × 0.1, 3"
    assert "| × 0.1 | holds 1 | FT-1 .45 |" in lines  # layer 4 of 0, 4, 8: .2 + .5 · 4/8
    assert "| × 3 | at ceiling 1 | FT-1 .99 |" in lines
    assert lines[-1] == "| FT-1 | Error Injection | 0.0001: .20–.70, **holds** | 0.003: .98–1.00, **at ceiling** |"


def test_collect_keeps_the_runs_and_rebuilds_from_them(tmp_path, monkeypatch):
    """``collect`` keeps each run's scores (with its provenance), values, commits and job seconds
    under runs/; collecting from runs/ gives the same files again (the bootstrap is seeded per
    condition) and copies nothing onto itself."""
    monkeypatch.chdir(tmp_path)
    config = toy_config([0.1, 3])
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    radius = hparams_for(load_config("toy.yaml")["editing"], "ft1", "error_injection")["norm_constraint"]
    fake_run(tmp_path / "results", "toy-x0.1", level=0.2, spread=0.5, recorded=0.1 * radius)
    fake_run(tmp_path / "results", "toy-x3", level=0.985, spread=0.01, recorded=3 * radius)
    main(["collect", "toy.yaml", "--results", "results", "--out", "page"])
    info = json.loads((tmp_path / "page" / "runs" / "toy-x3" / "run.json").read_text())
    assert info["values"] == {"ft1/error_injection": pytest.approx(3 * radius)} and info["commits"] == ["abc123"]
    assert info["job_s"] == {"edit_ft1_error_injection_shard0": 12.5} and info["layers_edited"] == [0, 4, 8]
    assert pd.read_parquet("page/runs/toy-x3/scores.parquet").equals(pd.read_parquet("results/toy-x3/scores.parquet"))
    names = ["strength.csv", "strength_by_layer.csv", "strength.md", "runs/toy-x3/run.json"]
    first = {name: (tmp_path / "page" / name).read_text() for name in names}
    assert len(pd.read_csv(tmp_path / "page" / "strength.csv")) == 2
    main(["collect", "toy.yaml", "--results", "page/runs", "--out", "page"])
    assert {name: (tmp_path / "page" / name).read_text() for name in names} == first


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
    committed = pd.read_csv(folder / "strength.csv", dtype={"verdict": str}).fillna({"verdict": ""})
    pd.testing.assert_frame_equal(table, committed, check_dtype=False, rtol=1e-5)  # the CSV keeps 6 digits
    pd.testing.assert_frame_equal(by_layer, pd.read_csv(folder / "strength_by_layer.csv"), check_dtype=False, rtol=1e-5)
