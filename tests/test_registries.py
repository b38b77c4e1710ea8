"""The registries are the single source: the config schema's enums and hyperparameter keys are
exactly the methods, problems, trace kinds and method defaults the code defines."""

import pytest
import yaml

from locedit.config import SCHEMA
from locedit.editing.methods import METHODS
from locedit.editing.problems import PROBLEMS
from locedit.tracing.trace import KINDS

schema = yaml.safe_load(SCHEMA.read_text())
props = schema["properties"]


def test_schema_enums_are_the_registries():
    editing = props["editing"]["properties"]
    assert editing["methods"]["items"]["enum"] == list(METHODS)
    assert editing["problems"]["items"]["enum"] == list(PROBLEMS)
    assert props["tracing"]["properties"]["kinds"]["items"]["enum"] == list(KINDS)
    assert set(editing["hparams"]["properties"]) == set(METHODS) == set(editing["overrides"]["properties"])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_schema_hyperparameters_are_the_method_defaults(method):
    """Every default key can be set in a config, and nothing else can (weight_decay: FT's optional L2)."""
    editing = props["editing"]["properties"]
    ref = editing["hparams"]["properties"][method]["$ref"].rsplit("/", 1)[1]
    keys = set(schema["$defs"][ref]["properties"])
    assert keys - {"weight_decay"} == set(METHODS[method].defaults)
    by_problem = editing["overrides"]["properties"][method]["$ref"].rsplit("/", 1)[1]
    assert set(schema["$defs"][by_problem]["properties"]) == set(PROBLEMS)
