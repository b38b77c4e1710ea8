"""locedit.plan: the DAG is built without torch, model shapes give the real parameter counts, and
the paper presets fit one 80 GB GPU and 64 GB of host memory per job, within the cluster's hours."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_CONFIGS, tiny_model
from locedit.config import load_config
from locedit.editing.methods import METHODS
from locedit.editing.problems import PROBLEMS
from locedit.plan import EDIT_SITES, NOISED_PROBLEMS, PROBLEM_NAMES, ModelShape, Plan, hf_config_of, uses_gpu

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["configs/gpt-j-6b.yaml", "configs/gpt2-xl.yaml"]


@pytest.mark.parametrize("overlays", [[], ["configs/smoke.yaml"], ["configs/gpt-j-6b.yaml"]])
def test_the_snakefile_builds_the_dag_without_importing_torch(tmp_path, overlays):
    script = ("import sys\nfrom snakemake.cli import main\n"
              "try:\n    main(['-s', sys.argv[1], '-n', '--cores', '1', '--quiet', *sys.argv[2:]])\n"
              "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    configfiles = ["--configfile", *(str(REPO / o) for o in overlays)] if overlays else []
    done = subprocess.run([sys.executable, "-c", script, str(REPO / "Snakefile"), *configfiles], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_importing_the_plan_loads_no_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, locedit.plan, locedit.config, locedit.localization; "
                           "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')])"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_model_shape_counts_every_weight_matrix(model_type):
    model = tiny_model(model_type)
    matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2)  # tied weights counted once
    assert ModelShape.from_hf_config(model.config.to_dict()).n_params == matrices


def test_embedded_shapes_are_the_converted_models_configs():
    gemma = ModelShape.from_hf_config(hf_config_of({"name": "gemma-3-270m"}))
    smollm2 = ModelShape.from_hf_config(hf_config_of({"name": "smollm2-135m-instruct"}))
    assert (gemma.n_layers, round(gemma.n_params / 1e6)) == (18, 268)  # Gemma 3 270M: 268M in its matrices
    assert (smollm2.n_layers, round(smollm2.n_params / 1e6)) == (30, 134)


def test_the_torch_registries_take_their_rows_from_the_plan():
    assert {m: (METHODS[m].window, METHODS[m].needs_stats, METHODS[m].templates) for m in METHODS} == {
        m: (s.window, s.needs_stats, s.templates) for m, s in EDIT_SITES.items()}
    assert tuple(PROBLEMS) == PROBLEM_NAMES
    assert {p for p in PROBLEMS if PROBLEMS[p].noised} == NOISED_PROBLEMS


@pytest.mark.parametrize("preset", PRESETS)
def test_every_paper_preset_job_fits_one_80_gb_gpu_64_gb_of_host_and_the_hours(preset):
    plan = Plan(load_config(REPO / preset))
    assert plan.gpu, "the presets say device: cuda"
    for cost in plan.costs():
        assert cost.host_gb <= 64, cost
        assert cost.fits(80), cost
        assert cost.hours <= plan.assume.max_job_hours, cost
    assert not plan.warnings()
    assert "| edit (memit) |" in plan.table()


def test_plan_command_prints_the_table_offline():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "locedit.plan", "--configfile", "configs/gpt-j-6b.yaml"], cwd=REPO,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "6.05B parameters" in done.stdout and "| key_stats_part |" in done.stdout


def test_a_model_without_a_known_shape_is_named_with_the_fix(tmp_path):
    overlay = tmp_path / "hub.yaml"
    overlay.write_text(yaml.safe_dump({"model": {"name": "someone/unknown-model", "num_layers": 12}}))
    with pytest.raises(ValueError, match="state model.shape"):
        Plan(load_config(overlay))


def test_gpu_resources_only_where_jobs_run_on_a_gpu():
    cuda = Plan(load_config(REPO / "configs/gpt-j-6b.yaml"))
    assert cuda.resources("edit", "memit", "fact_forcing")["gpu"] == 1
    assert cuda.resources("factor_stats")["gpu"] == 1
    for rule in ("select_cases", "key_stats", "trace_merge", "scores", "regressions", "figures", "prepare_model"):
        assert "gpu" not in cuda.resources(rule), rule
    cpu = Plan(load_config())  # config.yaml: device auto on a machine without a GPU
    if not uses_gpu(cpu.config["model"]):
        assert all("gpu" not in cpu.resources(c.rule) for c in cpu.costs() if not c.rule.startswith("edit ("))


def test_a_constant_noise_level_loads_no_model_and_takes_no_gpu():
    plan = Plan(load_config(REPO / "configs/gpt-j-6b.yaml"))
    assert plan.config["noise"]["rule"] == "constant" and "gpu" not in plan.resources("noise_level")
    assert plan.cost("noise_level").host_gb < 1


def test_device_decides_where_model_jobs_run(monkeypatch):
    assert uses_gpu({"device": "cuda"}) and uses_gpu({"device": "cuda:1"})
    assert not uses_gpu({"device": "cpu"})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not uses_gpu({"device": "auto"})


def test_key_statistics_jobs_hold_their_group_only():
    config = load_config(REPO / "configs/gpt-j-6b.yaml")
    whole = Plan({**config, "stats": {**config["stats"], "layers_per_job": None, "shards": 1}})
    split = Plan(config)
    assert split.cost("key_stats_part").jobs > whole.cost("key_stats_part").jobs
    assert split.cost("key_stats_part").gpu_gb < whole.cost("key_stats_part").gpu_gb
    assert split.cost("key_stats_part").hours < whole.cost("key_stats_part").hours
