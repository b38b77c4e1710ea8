"""Snakemake end to end on configs/smoke.yaml (the embedded model, 3 cases), in a fresh folder."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(REPO / "configs" / "smoke.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    # share the converted model with the repository's resources/ (converted once, ~45 s)
    (REPO / "resources" / "models").mkdir(parents=True, exist_ok=True)
    (workdir / "resources").mkdir()
    (workdir / "resources" / "models").symlink_to(REPO / "resources" / "models")
    done = snakemake(workdir, "--show-failed-logs")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return workdir / "results" / "smoke", done


@pytest.mark.workflow
def test_smoke_workflow_produces_every_table(smoke_run):
    results, done = smoke_run
    assert "locedit: results are in results/smoke/" in done.stdout + done.stderr
    cases = pd.read_parquet(results / "cases.parquet")
    assert list(cases.case_id) == [13, 18, 37]
    correctness = pd.read_parquet(results / "correctness.parquet")
    assert correctness.is_correct.any()
    traced = set(correctness.case_id[correctness.is_correct])
    for kind in ("hidden", "mlp", "attn"):
        table = pd.read_parquet(results / "tracing" / f"{kind}_w5.parquet")
        assert set(table.case_id) == traced
        assert (table.kind == kind).all() and (table.window == 5).all()
        assert table.restored_prob.between(0, 1).all()
        assert table.groupby("case_id").size().eq(table.groupby("case_id").token_idx.nunique() * 18).all()
        pngs = sorted((results / "tracing" / "heatmaps" / f"{kind}_w5").glob("*.png"))
        assert len(pngs) == min(2, len(traced))
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    noise = (results / "noise.json").read_text()
    assert '"rule": "s3"' in noise


@pytest.mark.workflow
def test_smoke_workflow_edits_every_method_and_problem(smoke_run):
    results, _ = smoke_run
    scores = pd.read_parquet(results / "scores.parquet")
    methods = {"ft1", "ft5", "rome", "memit"}
    problems = {"error_injection", "tracing_reversal", "fact_erasure", "fact_amplification", "fact_forcing"}
    assert set(scores.method) == methods and set(scores.problem) == problems
    per_combo = scores.groupby(["method", "problem"]).agg(cases=("case_id", "nunique"), layers=("layer", "nunique"))
    assert (per_combo.layers == 2).all()
    assert (per_combo.cases >= 1).all()  # fact erasure may drop a case with P(o_true) < 0.02
    assert per_combo.drop(index="fact_erasure", level="problem").cases.eq(2).all()
    for column in ("rewrite_score", "paraphrase_score", "neighborhood_score", "overall_score"):
        assert scores[column].notna().all() and scores[column].between(0, 1).all()
    assert scores.max_fraction_restored.notna().all()
    assert (scores.edit_s > 0).all()
    stats = list((results.parent.parent / "resources" / "stats").rglob("mom2_layer*.pt"))
    assert {p.name for p in stats} >= {f"mom2_layer{i}.pt" for i in (2, 3, 4, 5, 6, 10, 11, 12, 13, 14)}
    post = pd.read_parquet(results / "editing" / "rome" / "error_injection" / "shard0.parquet")
    assert set(post.prompt_type) == {"rewrite", "paraphrase", "neighborhood", "essence"}
    assert len(post) == 2 * 2 * (13 + 2)  # cases x layers x (prompts + essence texts)
    assert scores.essence_score.between(0, 1).all() and (scores.essence_ppl_pre > 1).all()


@pytest.mark.workflow
def test_smoke_workflow_analysis_and_report(smoke_run):
    results, done = smoke_run
    r2 = pd.read_csv(results / "analysis" / "r2.csv")
    assert set(r2.metric) == {"rewrite", "paraphrase", "neighborhood", "overall", "essence"}
    assert len(r2.groupby(["method", "problem"])) == 20
    assert r2.r2_layer.between(0, 1).all()
    summary = (results / "analysis" / "summary.md").read_text()
    assert "## Table 3 — rewrite score" in summary and "| Error Injection |" in summary
    assert ".947/.016/.948/.001" in summary  # the paper's cell beside ours
    assert "locedit: ROME error injection, rewrite score: R² layer" in done.stdout + done.stderr
    figures = sorted((results / "analysis" / "figures").glob("*.png"))
    assert len(figures) == 9
    for png in figures:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png.name
    report = results.parent.parent / "report.html"
    made = snakemake(results.parent.parent, "--report", str(report))
    assert made.returncode == 0, made.stderr[-3000:]
    assert report.stat().st_size > 10_000


@pytest.mark.workflow
def test_second_run_has_nothing_to_do(smoke_run):
    results, _ = smoke_run
    again = snakemake(results.parent.parent, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.workflow
def test_unknown_config_key_stops_the_workflow(tmp_path):
    done = snakemake(tmp_path, "-n", "--config", "tracng=1")
    assert done.returncode != 0
    assert "unknown key 'tracng' at top level (did you mean 'tracing'?)" in done.stdout + done.stderr
