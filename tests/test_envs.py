"""envs/locedit.yaml (for --sdm conda) lists exactly pyproject.toml's dependencies, and every rule uses it."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_conda_env_matches_pyproject():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "locedit.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    normalize = lambda spec: re.sub(r"\s+", "", spec).lower()  # noqa: E731
    assert sorted(map(normalize, pip)) == sorted(map(normalize, declared))


def test_every_rule_declares_the_conda_env():
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        rules = len(re.findall(r"^rule \w+:", text, flags=re.M))
        envs = len(re.findall(r'^    conda:\n        "\.\./\.\./envs/locedit\.yaml"', text, flags=re.M))
        assert envs == rules, f"{path.name}: {rules} rules, {envs} with conda: ../../envs/locedit.yaml"
