"""Planning the GPT-J sweep for SLURM loads no model and touches no network: every job gets its
resources from workflow/profiles/slurm, layer counts and shards come from configs/gpt-j-6b.yaml."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.workflow
def test_gpt_j_sweep_plans_offline_with_slurm_resources(tmp_path):
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "-n", "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
           "--configfile", str(REPO / "configs" / "gpt-j-6b.yaml")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # 4 methods x 5 problems x 8 shards edit jobs, each on one GPU with escalating memory
    assert "edit 160" in " ".join(out.split())
    assert "gpu=1" in out and "mem_mb=64000" in out and "runtime=120" in out
    # longest edit jobs first (locedit.plan.edit_priority): fact forcing, then ROME / MEMIT
    priorities = [int(line.split()[-1]) for line in out.splitlines() if line.strip().startswith("priority:")]
    assert sorted(priorities) == [1] * 2 * 4 * 8 + [2] * 2 * 8 + [3] * 2 * 8
    assert not (tmp_path / "resources" / "models").exists()  # nothing was prepared or loaded
