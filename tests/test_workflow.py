"""Snakemake end to end on configs/smoke.yaml (the embedded model, 3 cases), in a fresh folder.

The real-model path (every table, score, figure and the report) runs once on the embedded Gemma;
the workflow mechanics that need a whole second run (every job as its own submitted process, equal
tables) run on a tiny Llama trained to know the smoke cases' facts (:func:`conftest.trained_tiny_model`).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import trained_tiny_model
from locedit import provenance
from locedit.cases.counterfact import load_counterfact

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake_command(workdir: Path, *args: str, configfiles: tuple[str, ...] = ()) -> list[str]:
    """The smoke run's command line (configs/smoke.yaml, then ``configfiles`` over it) in ``workdir``."""
    return [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(REPO / "configs" / "smoke.yaml"), *configfiles, "--cores", "2", *args]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def snakemake(workdir: Path, *args: str, configfiles: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, *args, configfiles=configfiles), capture_output=True, text=True,
                          env=ENV)


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


TINY_KNOWS = [13, 37]  # the smoke cases the tiny model is trained on (case 18 stays unknown)


TINY_PROBLEMS = ["error_injection", "tracing_reversal", "fact_forcing"]  # each draws noise its own way


def tiny_overlay(workdir: Path) -> str:
    """An overlay of configs/smoke.yaml that runs the tiny model kept in ``workdir/models``: every
    rule; every trace kind (the Gemma smoke run traces the MLP only) and the problems that draw
    noise (the Gemma run edits every method x problem)."""
    overlay = workdir / "tiny.yaml"
    overlay.write_text("model: {name: models/tiny-llama, num_layers: 6}\ntracing: {kinds: [hidden, mlp, attn]}\n"
                       f"editing: {{layers: [1, 4], problems: [{', '.join(TINY_PROBLEMS)}]}}\n")
    return str(overlay)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """configs/smoke.yaml on the tiny trained Llama: (results folder, its model folder)."""
    workdir = tmp_path_factory.mktemp("tiny")
    records = {r["case_id"]: r["requested_rewrite"] for r in load_counterfact("bundled")}
    facts = [f"{r['prompt'].format(r['subject'])} {r['target_true']['str']}" for r in map(records.get, TINY_KNOWS)]
    model = trained_tiny_model(workdir / "models" / "tiny-llama", facts)
    done = snakemake(workdir, "--show-failed-logs", configfiles=(tiny_overlay(workdir),))
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return workdir / "results" / "smoke", model


@pytest.mark.workflow
def test_smoke_workflow_produces_every_table(smoke_run):
    results, done = smoke_run
    assert "locedit: results are in results/smoke/" in done.stdout + done.stderr
    cases = pd.read_parquet(results / "cases.parquet")
    assert list(cases.case_id) == [13, 18, 37]
    correctness = pd.read_parquet(results / "correctness.parquet")
    assert correctness.is_correct.any()
    traced = set(correctness.case_id[correctness.is_correct])
    # MLP only (hidden and attn: test_jobs_as_separate_submitted_processes_reproduce_the_tables)
    table = pd.read_parquet(results / "tracing" / "mlp_w5.parquet")
    assert set(table.case_id) == traced
    assert (table.kind == "mlp").all() and (table.window == 5).all()
    assert table.restored.between(0, 1).all()
    assert table.groupby("case_id").size().eq(table.groupby("case_id").token_idx.nunique() * 18).all()
    pngs = sorted((results / "tracing" / "heatmaps" / "mlp_w5").glob("*.png"))
    assert len(pngs) == min(2, len(traced))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    noise = (results / "noise.json").read_text()
    assert '"rule": "s3"' in noise
    # the localization variants of configs/smoke.yaml: token replacement + logit difference, attribution
    partners = pd.read_parquet(results / "tracing" / "str_partners.parquet")
    assert list(partners.case_id) == [13, 18, 37] and partners.partner_case_id.notna().all()
    str_table = pd.read_parquet(results / "tracing" / "exact-str-logit_diff" / "mlp_w5.parquet")
    assert set(str_table.case_id) == traced and (str_table.metric == "logit_diff").all()
    assert (str_table.corruption == "str").all() and str_table.contrast_token.notna().all()
    assert set(str_table.partner_case_id) <= set(partners.partner_case_id)
    attribution = pd.read_parquet(results / "tracing" / "attribution-gaussian-prob" / "mlp_w5.parquet")
    assert set(attribution.case_id) == traced and (attribution.method == "attribution").all()
    main = pd.read_parquet(results / "tracing" / "mlp_w5.parquet")
    np.testing.assert_allclose(attribution.groupby("case_id").low.first(), main.groupby("case_id").low.first(), rtol=1e-5)


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
    # the opening: 2 cases decide nothing; the committed full protocol of gemma-3-270m beside, as printed at the end
    opening = summary.split("## ")[0]
    verdict = opening.split("\n\n")[1]
    assert verdict.startswith("**Verdict.** 2 cases give no verdict: ") and "holds" not in verdict
    assert "**Committed full protocol.** " in opening and "(docs/results/gemma-3-270m/r2.csv): **holds " in opening
    assert "\n## Committed full protocol (" in summary and "cases, docs/results/gemma-3-270m/r2.csv) — " in summary
    assert "locedit: 2 cases give no verdict: " in done.stdout + done.stderr
    assert "Committed full protocol: " in done.stdout + done.stderr
    assert "## Localizations — does the finding depend on how tracing is measured?" in summary
    assert "## Provenance" in summary and "model gemma-3-270m (gemma3_text, PyPI gemma3-270m" in summary
    made = provenance.read(results / "scores.parquet")
    assert len(made["edits"]) == 20 and made["tracing"]["model"]["dtype"] == "float32"
    assert made["edits"]["rome/error_injection"]["editing"]["hparams"]["rome"]["v_steps"] == 3
    localizations = pd.read_csv(results / "analysis" / "localizations.csv")
    assert list(dict.fromkeys(localizations.localization)) == [
        "exact-gaussian-prob", "exact-str-logit_diff", "attribution-gaussian-prob"]
    agreement = pd.read_csv(results / "analysis" / "localization_agreement.csv")
    assert agreement.pearson.iloc[0] == pytest.approx(1.0) and agreement.n.gt(0).all()
    figures = sorted((results / "analysis" / "figures").glob("*.png"))
    assert len(figures) == 9
    assert len(list((results / "analysis" / "figures" / "localizations").glob("*.png"))) == 6
    for png in figures:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png.name
    report = results.parent.parent / "report.html"
    made = snakemake(results.parent.parent, "--report", str(report))
    assert made.returncode == 0, made.stderr[-3000:]
    assert report.stat().st_size > 10_000


@pytest.mark.workflow
def test_analysis_rebuilt_from_a_results_folder_equals_the_run(smoke_run, tmp_path):
    """`python -m locedit.results collect` + `analyse`, without the model, give the run's r2.csv."""
    results, _ = smoke_run
    folder = tmp_path / "gemma-3-270m"
    for command in (["collect", str(results), str(folder), "--config", str(REPO / "config.yaml"),
                     "--config", str(REPO / "configs" / "smoke.yaml")], ["analyse", str(folder)]):
        done = subprocess.run([sys.executable, "-m", "locedit.results", *command], capture_output=True, text=True,
                              env=ENV, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (folder / "r2.csv").read_text() == (results / "analysis" / "r2.csv").read_text()
    # the run's summary also has the committed full protocol's verdicts (the workflow's input); the rebuild not
    assert (folder / "summary.md").read_text() == without_committed((results / "analysis" / "summary.md").read_text())
    assert (folder / "localizations.csv").read_text() == (results / "analysis" / "localizations.csv").read_text()
    assert len(list((folder / "figures").glob("*.png"))) == 9
    assert len(list((folder / "figures" / "localizations").glob("*.png"))) == 6
    r2 = pd.read_csv(folder / "r2.csv")
    assert r2.r2_layer_lo.le(r2.r2_layer_hi).all()  # 2 cases: no verdict, or the edit-strength label instead
    assert set(r2.verdict) <= {"saturated", "too few cases", "at ceiling", "at floor"}


def without_committed(summary: str) -> str:
    """A summary.md without the committed full protocol's paragraph and section (what a rebuild
    from a results folder, which is given no committed folder, writes)."""
    sections = summary.split("\n## ")
    kept = [part for part in sections if not part.startswith("Committed full protocol (")]
    return "\n\n".join(p for p in "\n## ".join(kept).split("\n\n") if not p.startswith("**Committed full protocol.**"))


@pytest.mark.workflow
def test_second_run_has_nothing_to_do(smoke_run):
    results, _ = smoke_run
    again = snakemake(results.parent.parent, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def planned(workdir: Path, override: str, folder: Path) -> dict[str, int]:
    """Jobs per rule a dry run plans in ``workdir`` with ``override`` (YAML) as one more config file
    (``--config`` would pass nested values as strings)."""
    overlay = folder / "override.yaml"
    overlay.write_text(override + "\n")
    done = snakemake(workdir, "-n", configfiles=(str(overlay),))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout + done.stderr
    if "Nothing to be done" in text:
        return {}
    stats = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if line.strip()}


MODEL_JOBS = {"check_correctness", "noise_level", "trace", "key_stats_part", "key_stats", "context_templates",
              "noised_targets", "essence_texts", "pre_edit", "edit"}


@pytest.mark.workflow
@pytest.mark.parametrize("override,expected", [
    # Fig. 2-style heatmaps only: tracing itself does not read heatmap_cases
    ("tracing: {heatmap_cases: 1}", {"trace_heatmaps": 1, "all": 1}),
    # a new window: its trace and heatmaps, and Fig. 10 (which plots every MLP window); window 5 stays
    ("tracing: {windows: [5, 3]}", {"trace": 1, "trace_merge": 1, "trace_heatmaps": 1, "figures": 1, "all": 1}),
    # one method's hyperparameter: that method's edit jobs and the tables built from all of them
    ("editing: {hparams: {rome: {v_steps: 4}}}",
     {"edit": 5, "scores": 1, "regressions": 1, "figures": 1, "localization_figures": 1, "all": 1}),
    # one more localization: its trace and the analysis that compares localizations (figures read
    # r2.csv, which the regressions job rewrites)
    ("analysis: {effects: [exact-str-logit_diff, attribution-gaussian-prob, exact-gaussian-logit_diff]}",
     {"trace_localization": 1, "trace_merge_localization": 1, "regressions": 1, "localization_figures": 1,
      "figures": 1, "all": 1}),
])
def test_a_changed_setting_reruns_only_the_jobs_that_read_it(smoke_run, override, expected, tmp_path):
    results, _ = smoke_run
    assert planned(results.parent.parent, override, tmp_path) == expected


@pytest.mark.workflow
def test_a_changed_model_dtype_reruns_every_model_running_job(smoke_run, tmp_path):
    results, _ = smoke_run
    jobs = planned(results.parent.parent, "model: {dtype: bfloat16}", tmp_path)
    assert MODEL_JOBS <= set(jobs) and jobs["edit"] == 20 and jobs["trace"] == 1 and jobs["pre_edit"] == 5
    assert "select_cases" not in jobs and "prepare_model" not in jobs


@pytest.mark.workflow
def test_unknown_config_key_stops_the_workflow(tmp_path):
    done = snakemake(tmp_path, "-n", "--config", "tracng=1")
    assert done.returncode != 0
    assert "unknown key 'tracng' at top level (did you mean 'tracing'?)" in done.stdout + done.stderr


TIMING = ["edit_s", "eval_s"]


def tables(results: Path) -> dict[str, pd.DataFrame]:
    """Every tracing and editing table of a run, without wall-time columns."""
    paths = sorted(results.glob("tracing/*.parquet")) + sorted(results.glob("tracing/*/*.parquet"))
    paths += sorted(results.glob("editing/**/*.parquet")) + sorted(results.glob("scores.parquet"))
    return {str(p.relative_to(results)): pd.read_parquet(p).drop(columns=TIMING, errors="ignore") for p in paths}


ISOLATED_PROBLEM = "fact_forcing"  # draws noise per noised target: the problem most exposed to process state


@pytest.mark.workflow
def test_jobs_as_separate_submitted_processes_reproduce_the_tables(tiny_run, tmp_path):
    """Process isolation and determinism at once: every job is submitted as its own process (the
    cluster-generic executor with a local submit command) and its table equals the first run's.
    The second run makes every trace and one problem's edits (each job costs a process start and
    a Snakefile parse; the other problems run the same scripts)."""
    results, model = tiny_run
    correctness = pd.read_parquet(results / "correctness.parquet")
    assert list(correctness.case_id[correctness.is_correct]) == TINY_KNOWS  # the tiny model knows its facts
    first = tables(results)
    # 3 kinds + STR partners + 2 localizations; 4 methods' edits and the pre-edit table per problem;
    # noised targets, essence texts; scores
    assert len(first) == 6 + 4 * len(TINY_PROBLEMS) + len(TINY_PROBLEMS) + 2 + 1
    assert {f"tracing/{kind}_w5.parquet" for kind in ("hidden", "mlp", "attn")} <= set(first)
    scores = pd.read_parquet(results / "scores.parquet")
    assert len(scores.groupby(["method", "problem"])) == 4 * len(TINY_PROBLEMS) and set(scores.layer) == {1, 4}

    rerun = [name for name in first if name.startswith("tracing/") or f"/{ISOLATED_PROBLEM}" in name]
    workdir = tmp_path / "isolated"
    (workdir / "models").mkdir(parents=True)
    (workdir / "models" / "tiny-llama").symlink_to(model)
    done = snakemake(workdir, "--executor", "cluster-generic", "--cluster-generic-submit-cmd",
                     str(REPO / "tests" / "local_submit.sh"), "--jobs", "2", "--seconds-between-status-checks", "1",
                     "--", *(f"results/smoke/{name}" for name in rerun),
                     configfiles=(tiny_overlay(workdir),))  # the default 10 s poll dominated this test
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cluster-generic" in done.stdout + done.stderr
    second = tables(workdir / "results" / "smoke")
    assert len(rerun) == 6 + 4 + 1  # the traces, the problem's 4 edits and its pre-edit table
    assert set(second) == {*rerun, "editing/noised_targets.parquet", "editing/essence_texts.parquet"}  # + what they read
    for name in second:  # bit-identical (the Snakefile sets MKL's strict reproducible mode)
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)


def kill_when(workdir: Path, target: str, started) -> bool:
    """Run the workflow for ``target`` and SIGKILL it (job and all) as soon as ``started()``."""
    proc = subprocess.Popen(snakemake_command(workdir, "--", target), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        if started():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    return False


@pytest.fixture
def copied_run(smoke_run, tmp_path):
    """A copy of the finished smoke run (results, statistics, Snakemake metadata)."""
    results, _ = smoke_run
    workdir = tmp_path / "copy"
    shutil.copytree(results.parent.parent, workdir, symlinks=True, ignore=shutil.ignore_patterns("report.html"))
    return workdir


@pytest.mark.workflow
@pytest.mark.parametrize("target,partial", [
    ("results/smoke/tracing/mlp_w5.parquet", "results/smoke/.partial/trace_mlp_w5_shard0/case_*.parquet"),
    ("results/smoke/editing/ft1/error_injection/shard0.parquet",
     "results/smoke/.partial/edit_ft1_error_injection_shard0/case_*.parquet"),
], ids=["trace", "edit"])
def test_killed_job_resumes_to_the_same_table(copied_run, smoke_run, target, partial):
    reference = pd.read_parquet(smoke_run[0].parent.parent / target).drop(columns=TIMING, errors="ignore")
    (copied_run / target).unlink()
    assert kill_when(copied_run, target, lambda: any(copied_run.glob(partial))), "job finished before the kill"
    assert not (copied_run / target).exists()  # nothing left as if complete
    assert snakemake(copied_run, "--unlock").returncode == 0  # what a user does after a kill
    done = snakemake(copied_run, "--rerun-incomplete", "--", target)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = pd.read_parquet(copied_run / target).drop(columns=TIMING, errors="ignore")
    keys = ["case_id", "layer", "prompt_type", "prompt_idx"] if "editing" in target else ["case_id", "token_idx", "layer"]
    assert not resumed.duplicated(keys).any()
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)


@pytest.mark.workflow
def test_killed_key_statistics_resume_to_the_same_moments(copied_run, smoke_run):
    stats_dir = next((copied_run / "resources" / "stats").glob("gemma-3-270m/*"))
    reference = {p.name: torch.load(p) for p in stats_dir.glob("mom2_layer*.pt")}
    shutil.rmtree(stats_dir)
    target = str((stats_dir / "meta.json").relative_to(copied_run))

    def checkpoints() -> bool:  # a key_stats_part job's running sums
        return any((stats_dir / "parts").glob(".*.checkpoint.pt"))

    assert kill_when(copied_run, target, checkpoints), "finished before the kill"
    assert not (stats_dir / "meta.json").exists()
    assert snakemake(copied_run, "--unlock").returncode == 0
    done = snakemake(copied_run, "--rerun-incomplete", "--", target)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(p.read_text() for p in (stats_dir / "logs").glob("key_stats_part_*.log"))
    assert "resuming" in logs.lower() and not checkpoints()  # a finished part's checkpoint is removed
    for name, moment in reference.items():
        assert torch.equal(torch.load(stats_dir / name), moment), name


@pytest.mark.workflow
def test_an_unfinished_run_restored_elsewhere_reruns_only_what_is_missing(tiny_run, tmp_path):
    """`python -m locedit.results stash` → fresh folder → model and statistics → restore: the
    workflow plans only the jobs whose outputs were not stashed (here one edit job and what follows)."""
    results, model = tiny_run
    unfinished = tmp_path / "unfinished-run"
    shutil.copytree(results, unfinished)
    for dropped in ("scores.parquet", "editing/rome/fact_forcing/shard0.parquet"):
        (unfinished / dropped).unlink()
    stash = tmp_path / "stash"
    python = [sys.executable, "-m", "locedit.results"]
    done = subprocess.run([*python, "stash", str(unfinished), str(stash), "--model", "models/tiny-llama"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (stash / "analysis").exists() and (stash / "editing" / "rome" / "error_injection" / "shard0.parquet").exists()

    workdir = tmp_path / "elsewhere"
    (workdir / "models").mkdir(parents=True)
    (workdir / "models" / "tiny-llama").symlink_to(model)
    overlay = tiny_overlay(workdir)
    restore = [*python, "restore", str(stash), str(workdir / "results" / "smoke")]
    refused = subprocess.run(restore, capture_output=True, text=True, cwd=workdir)
    assert refused.returncode != 0 and "--until factor_stats" in refused.stderr  # model first, then restore
    built = snakemake(workdir, "--until", "factor_stats", configfiles=(overlay,))
    assert built.returncode == 0, built.stderr[-3000:]
    restored = subprocess.run(restore, capture_output=True, text=True, cwd=workdir)
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert planned(workdir, Path(overlay).read_text(), tmp_path) == {"edit": 1, "scores": 1, "regressions": 1, "figures": 1,
                                                  "localization_figures": 1, "all": 1}
