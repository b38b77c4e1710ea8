"""Validation of the workflow configuration against ``workflow/schemas/config.schema.yaml``.

Every error names the offending key by its full path and says what would fix it; unknown keys
are matched against the allowed ones so a typo gets a suggestion::

    >>> validate_config({"run": "x", "modle": {}}, "workflow/schemas/config.schema.yaml")  # doctest: +SKIP
    ConfigError: invalid config:
      - unknown key 'modle' at top level (did you mean 'model'?); allowed: ...
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The configuration does not match the schema; the message lists every problem."""


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "top level"


def _describe(error: jsonschema.ValidationError) -> list[str]:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        out = []
        for key in sorted(set(error.instance) - set(allowed)):
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(f"unknown key {key!r} at {where}{hint}; allowed keys there: {', '.join(allowed)}")
        return out
    if error.validator == "required":
        return [f"{where}: {error.message}; add it (see config.yaml for the default)"]
    return [f"{where}: {error.message}"]


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Raise :class:`ConfigError` listing every problem of ``config``; return it unchanged when valid."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [line for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
                for line in _describe(err)]
    noise = config.get("noise", {}) if isinstance(config, dict) else {}
    if isinstance(noise, dict) and noise.get("rule") == "constant" and not noise.get("value"):
        problems.append("noise: rule 'constant' needs noise.value (the σ to use)")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config
