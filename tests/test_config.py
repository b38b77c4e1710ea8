"""The config schema rejects unknown keys and bad values with messages that name them."""

from pathlib import Path

import pytest
import yaml

from locedit.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def merged(base: dict, extra: dict) -> dict:
    """Snakemake's deep merge of a --configfile over config.yaml."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


@pytest.mark.parametrize("name", ["config.yaml", "configs/smoke.yaml", "configs/gpt-j-6b.yaml", "configs/gpt2-xl.yaml",
                                  "configs/strength-gemma.yaml"])
def test_shipped_configs_are_valid(name):
    validate_config(merged(default_config(), yaml.safe_load((REPO / name).read_text())), SCHEMA)


def test_unknown_top_level_key_is_named_with_a_suggestion():
    config = default_config()
    config["tracng"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'tracng' at top level \(did you mean 'tracing'\?\)"):
        validate_config(config, SCHEMA)


def test_unknown_nested_key_is_named_with_its_path():
    config = default_config()
    config["tracing"]["window"] = [5]
    with pytest.raises(ConfigError, match=r"unknown key 'window' at tracing \(did you mean 'windows'\?\)"):
        validate_config(config, SCHEMA)


def test_bad_values_are_named_with_their_path():
    config = default_config()
    config["tracing"]["kinds"] = ["mlp", "residual"]
    config["model"]["dtype"] = "float8"
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert "tracing/kinds/1: 'residual' is not one of ['hidden', 'mlp', 'attn']" in str(err.value)
    assert "model/dtype: 'float8' is not one of" in str(err.value)


def test_constant_noise_needs_a_value():
    config = default_config()
    config["noise"]["rule"] = "constant"
    with pytest.raises(ConfigError, match="noise: rule 'constant' needs noise.value"):
        validate_config(config, SCHEMA)
