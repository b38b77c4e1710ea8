"""Editing hyperparameters, torch-free: each method's defaults, and the value one edit job uses
(defaults < ``editing.hparams[method]`` < ``editing.overrides[method][problem]``).

    >>> hparams_for({"hparams": {"ft1": {"lr": 1e-3}}, "overrides": {"ft1": {"fact_erasure": {"steps": 5}}}},
    ...             "ft1", "fact_erasure")["lr"], hparams_for({}, "rome", "error_injection")["v_steps"]
    (0.001, 20)
"""

from __future__ import annotations

from typing import Any

FT_DEFAULTS: dict[str, Any] = {
    "lr": 5e-4,
    "steps": 25,
    "norm_constraint": 5e-5,
    "noise_samples": 10,  # rows per step under fact forcing (each with fresh noise)
    "upper_only": True,
}
ROME_DEFAULTS: dict[str, Any] = {
    "v_steps": 20,
    "v_lr": 0.5,
    "v_weight_decay": 0.5,
    "clamp_norm_factor": 4.0,
    "kl_factor": 0.0625,
    "upper_only": True,
    "shared_prefix": True,
}
MEMIT_DEFAULTS: dict[str, Any] = {
    "v_steps": 25,
    "v_lr": 0.5,
    "v_weight_decay": 0.5,
    "clamp_norm_factor": 0.75,
    "kl_factor": 0.0625,
    "mom2_update_weight": 15000.0,
    "upper_only": True,
    "shared_prefix": True,
}

DEFAULTS: dict[str, dict[str, Any]] = {"ft1": FT_DEFAULTS, "ft5": FT_DEFAULTS, "rome": ROME_DEFAULTS, "memit": MEMIT_DEFAULTS}


def hparams_for(editing: dict, method: str, problem: str) -> dict:
    """Method defaults < ``editing.hparams[method]`` < ``editing.overrides[method][problem]``."""
    return {
        **DEFAULTS[method],
        **editing.get("hparams", {}).get(method, {}),
        **editing.get("overrides", {}).get(method, {}).get(problem, {}),
    }
