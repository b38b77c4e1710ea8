"""The workflow passes `snakemake --lint` and its rules are snakefmt-formatted."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_snakemake_lint_is_clean():
    done = subprocess.run([str(BIN / "snakemake"), "--lint", "--cores", "1"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr


def test_rules_are_snakefmt_formatted():
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    done = subprocess.run([str(BIN / "snakefmt"), "--check", *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr + "\nrun: .venv/bin/snakefmt Snakefile workflow/rules"
