"""Planning the GPT-J sweep for SLURM loads no model and touches no network: every job gets its
resources from locedit.plan (GPU only where the model runs, memory and runtime from the model's
shape), tracing and key statistics come in shards within the cluster's hours, and the slurm
profile's partitions file sends GPU jobs to the GPU partition and the rest to the CPU one."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

from locedit.config import load_config
from locedit.plan import Plan

REPO = Path(__file__).resolve().parents[1]
MODEL_RULES = {"check_correctness", "noise_level", "trace", "key_stats_part", "factor_stats", "context_templates",
               "noised_targets", "pre_edit", "edit"}


def dry_run_jobs(out: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run prints."""
    jobs, rule = [], None
    for line in out.splitlines():
        head = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if head:
            rule = head.group(1)
        elif line.strip().startswith("resources:") and rule:
            jobs.append((rule, dict(item.split("=", 1) for item in line.split(":", 1)[1].split(", "))))
            rule = None
    return jobs


@pytest.mark.workflow
def test_gpt_j_sweep_plans_offline_with_planned_resources(tmp_path):
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "-n", "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
           "--configfile", str(REPO / "configs" / "gpt-j-6b.yaml")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    plan = Plan(load_config(REPO / "configs" / "gpt-j-6b.yaml"))
    jobs = dry_run_jobs(out)
    assert jobs, out[-3000:]
    for rule, res in jobs:
        base = rule.removesuffix("_localization")
        if rule == "all":
            continue
        assert "mem_mb" in res and "runtime" in res, (rule, res)
        assert ("gpu" in res) == (base in MODEL_RULES), (rule, res)
        assert int(res["mem_mb"]) <= 64 * 1024 * 1.25, (rule, res)
        if base != "edit":
            assert int(res["mem_mb"]) == plan.resources(base)["mem_mb"], (rule, res)
    counts = {rule: sum(r == rule for r, _ in jobs) for rule, _ in jobs}
    # 4 methods x 5 problems x 16 shards; MLP windows 10/5/3/1 x 8 tracing shards; 2 groups x 8 corpus shards
    assert counts["edit"] == 320 and counts["trace"] == 32 and counts["key_stats_part"] == 16
    assert counts["factor_stats"] == len(plan.stats_layers)
    # longest edit jobs first (locedit.plan.edit_priority): fact forcing, then ROME / MEMIT
    priorities = [int(line.split()[-1]) for line in out.splitlines() if line.strip().startswith("priority:")]
    assert sorted(priorities) == [1] * 2 * 4 * 16 + [2] * 2 * 16 + [3] * 2 * 16
    assert not (tmp_path / "resources" / "models").exists()  # nothing was prepared or loaded


class _Job:
    """What the SLURM plugin's partition choice reads of a job."""

    def __init__(self, resources: dict):
        self.resources, self.threads, self.name = resources, 2, "job"

    def __str__(self) -> str:
        return self.name


def test_slurm_partitions_send_gpu_jobs_to_the_gpu_partition():
    partitions = read_partition_file(REPO / "workflow" / "profiles" / "slurm" / "partitions.yaml")
    plan = Plan(load_config(REPO / "configs" / "gpt-j-6b.yaml"))

    class Log:
        def info(self, *_):
            pass

        debug = warning = info

    for rule in ("edit", "trace", "factor_stats", "select_cases", "scores", "key_stats"):
        res = {**plan.resources(rule), "cpus_per_task": 2}
        chosen = get_best_partition(partitions, _Job(res), Log())
        assert chosen == ("gpu" if "gpu" in res else "cpu"), (rule, res, chosen)
