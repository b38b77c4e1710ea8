"""Validation of the workflow configuration against ``workflow/schemas/config.schema.yaml``.

Every error names the offending key by its full path and says what would fix it; unknown keys
are matched against the allowed ones so a typo gets a suggestion::

    >>> validate_config({"run": "x", "modle": {}}, "workflow/schemas/config.schema.yaml")  # doctest: +SKIP
    ConfigError: invalid config:
      - unknown key 'modle' at top level (did you mean 'model'?); allowed: ...
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from locedit.plan import ROME_LENGTHS, model_slug


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
    problems += _cross_checks(config)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config


def _cross_checks(config: dict[str, Any]) -> list[str]:
    """Rules between keys that a schema cannot state."""
    tracing, editing = config.get("tracing"), config.get("editing")
    if not isinstance(tracing, dict) or not isinstance(editing, dict):
        return []
    window, windows, kinds = editing.get("effect_window"), tracing.get("windows", []), tracing.get("kinds", [])
    if window is not None and ("mlp" not in kinds or window not in windows):
        return [f"editing/effect_window {window}: the scores join the MLP tracing effect of that window; "
                f"add mlp to tracing/kinds (now {kinds}) and {window} to tracing/windows (now {windows})"]
    return []


SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = SCHEMA.parents[2] / "config.yaml"
TUNED = DEFAULT_CONFIG.parent / "configs" / "tuned"
TUNABLE = ("rome_template_lengths", "hparams", "overrides")


def tuning_file(editing: dict[str, Any], model_name: str, tuned_dir: Path = TUNED) -> Path | None:
    """The tuning file ``editing.tuning`` names: ``auto`` → ``configs/tuned/{model}.yaml`` when it
    exists, ``none`` → none, else the path given (which must exist)."""
    choice = editing.get("tuning", "auto")
    if choice == "none":
        return None
    if choice == "auto":
        path = Path(tuned_dir) / f"{model_slug(model_name)}.yaml"
        return path if path.exists() else None
    if not Path(choice).exists():
        raise ConfigError(f"editing/tuning: {choice!r} does not exist; give a YAML path, auto or none")
    return Path(choice)


def with_tuning(config: dict[str, Any], tuned_dir: Path = TUNED) -> dict[str, Any]:
    """``config`` with its editing section over the model's tuning file (see :func:`tuning_file`):
    method defaults < tuning file < config files, so the paper presets, whose models have no
    tuning file, state their protocol completely. The file's path goes to ``editing.tuned_from``.

        >>> with_tuning({"model": {"name": "EleutherAI/gpt-j-6B"}, "editing": {}})["editing"]
        {'tuned_from': None, 'rome_template_lengths': [[5, 10], [10, 10]]}
    """
    editing = config["editing"]
    path = tuning_file(editing, config["model"]["name"], tuned_dir)
    tuned = yaml.safe_load(path.read_text()) or {} if path else {}
    unknown = set(tuned) - set(TUNABLE)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; a tuning file sets {', '.join(TUNABLE)}")
    merged = {"tuned_from": _shown(path) if path else None,
              "rome_template_lengths": [list(pair) for pair in ROME_LENGTHS], **copy.deepcopy(tuned)}
    _deep_merge(merged, copy.deepcopy(editing))
    return {**config, "editing": merged}


def _shown(path: Path) -> str:
    """A repository file relative to the repository (so a rule's params do not depend on the checkout's place)."""
    try:
        return str(Path(path).resolve().relative_to(DEFAULT_CONFIG.parent))
    except ValueError:
        return str(path)


def load_config(*overlays: str | Path) -> dict[str, Any]:
    """config.yaml with each overlay deep-merged over it in turn (as ``--configfile`` does), validated.

        >>> load_config("configs/smoke.yaml")["run"]                                  # doctest: +SKIP
        'smoke'
    """
    config: dict[str, Any] = {}
    for path in (DEFAULT_CONFIG, *overlays):
        _deep_merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return with_tuning(validate_config(config, SCHEMA))


def _deep_merge(base: dict, overlay: dict) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
