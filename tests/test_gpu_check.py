"""benchmarks/gpu.py without a GPU: its comparisons on two hand-made run folders, and its exit."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu.py")
gpu = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)


def make_run(folder: Path, restored: list[float], correct: list[bool], seconds: float, extra: bool = False) -> Path:
    """A run folder as the workflow leaves it: a trace, scores, R², key statistics, a checkpoint, a
    log and a benchmark file."""
    results = folder / "results" / gpu.RUN
    (results / "tracing").mkdir(parents=True)
    (results / "analysis").mkdir()
    (results / "logs").mkdir()
    (results / "benchmarks").mkdir()
    (results / ".partial").mkdir()
    trace = pd.DataFrame({"case_id": [13, 13, 37], "layer": [0, 1, 0], "restored": restored,
                          "token": ["F", "F", "Prydz"], "high": [math.nan, 0.5, 0.25]})
    trace.to_parquet(results / "tracing" / "mlp_w5.parquet")
    trace.to_parquet(results / ".partial" / "mlp_w5.parquet")  # a checkpoint, not a table
    pd.DataFrame({"case_id": [13, 37], "is_correct": correct, "paraphrases": [["a", "b"], ["c"]],
                  "edit_s": [seconds, seconds]}).to_parquet(results / "scores.parquet")
    pd.DataFrame({"method": ["rome"], "r2_layer": [0.4]}).to_csv(results / "analysis" / "r2.csv", index=False)
    if extra:
        pd.DataFrame({"case_id": [13]}).to_parquet(results / "noised_targets.parquet")
    stats = folder / "resources" / "stats" / "tiny" / "setting"
    stats.mkdir(parents=True)
    torch.save(torch.eye(3), stats / "mom2_layer1.pt")
    (results / "logs" / "trace_mlp_w5.log").write_text(
        "2026-12-05 10:00:00,000 done in 2.0 s\n2026-12-05 10:00:00,001 trace: peak GPU memory 123 MiB\n")
    for name, rule in (("trace_mlp_w5", "trace"), ("trace_attn_w5", "trace"), ("scores", "scores")):
        pd.DataFrame({"s": [seconds], "h:m:s": ["0:00:01"], "jobid": [1], "rule_name": [rule]}).to_csv(
            results / "benchmarks" / f"{name}.tsv", sep="\t", index=False)
    return folder


def test_two_runs_are_compared_table_by_table(tmp_path):
    a = make_run(tmp_path / "a", [0.5, 0.25, 0.125], [True, False], 1.0)
    b = make_run(tmp_path / "b", [0.5, 0.25 + 3e-7, 0.125], [True, True], 2.0, extra=True)
    tables_a, tables_b = gpu.read_tables(a), gpu.read_tables(b)
    assert sorted(tables_a) == ["analysis/r2.csv", "scores.parquet", "stats/tiny/setting/mom2_layer1.pt",
                                "tracing/mlp_w5.parquet"]
    assert "edit_s" not in tables_a["scores.parquet"]  # wall time is not compared
    by_table = {c.table: c for c in gpu.compare_runs(tables_a, tables_b)}
    trace = by_table["tracing/mlp_w5.parquet"]
    assert trace.rows == 3 and trace.column == "restored" and trace.max_abs == pytest.approx(3e-7, rel=1e-3)
    assert not trace.identical and not trace.mismatch  # NaN against NaN is equal
    assert by_table["analysis/r2.csv"].identical and by_table["analysis/r2.csv"].max_abs == 0
    assert by_table["stats/tiny/setting/mom2_layer1.pt"].identical
    assert by_table["scores.parquet"].mismatch == "values differ in is_correct"  # list columns compare equal
    assert by_table["noised_targets.parquet"].mismatch == "only in the second run"
    assert all(c.identical and not c.mismatch for c in gpu.compare_runs(tables_a, gpu.read_tables(a)))


def test_rule_seconds_and_peak_gpu_memory_come_from_the_benchmarks_and_logs(tmp_path):
    run = make_run(tmp_path / "a", [0.5, 0.25, 0.125], [True, False], 1.5)
    assert gpu.rule_seconds(run) == {"scores": (1, 1.5), "trace": (2, 3.0)}
    assert gpu.peak_gpu_mib(run) == {"trace": 123}
    tables = gpu.read_tables(run)
    text = gpu.report("setup", {"cpu": 10.0, "cuda": 5.0}, gpu.compare_runs(tables, tables),
                      gpu.compare_runs(tables, tables), {"cpu": gpu.rule_seconds(run), "cuda": {}},
                      gpu.peak_gpu_mib(run))
    assert "| tracing/mlp_w5.parquet | 3 | 0 |  | yes |  |" in text  # no column named when nothing differs
    assert "Bit-identical: 4 of 4 tables." in text
    assert "| trace | 2 | 3.0 | – | 123 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the check would run")
def test_without_cuda_it_stops_at_once_saying_so(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--out", str(tmp_path / "r.md"),
                           "--workdir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "gpu-check: no CUDA device here" in done.stderr
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "runs").exists()
