"""What made a table: its job's settings, the model (id, revision, dtype, device) and the code version.

Inside a workflow job (:func:`locedit.jobs.job`) every Parquet table written with
:func:`locedit.io.write_parquet` carries its job's provenance as JSON in the file's key-value
metadata (key ``locedit``), so a table found on disk says what made it::

    python -m locedit.provenance results/default/editing/rome/error_injection/shard0.parquet

    >>> record = {"rule": "edit", "params": {"editing": {"hparams": {"rome": {"v_lr": 0.5}}}}}
    >>> token = start(record)
    >>> current()["params"]["editing"]["hparams"]["rome"]["v_lr"]
    0.5
    >>> stop(token); current() is None
    True
"""

from __future__ import annotations

import contextvars
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

KEY = b"locedit"
_CURRENT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("locedit_provenance", default=None)


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """locedit's version and git commit (``dirty`` when the checkout has uncommitted changes), torch's
    and transformers' versions."""
    import torch
    import transformers

    from locedit import __version__

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"locedit": __version__, "commit": commit, "dirty": bool(status) if status is not None else None,
            "torch": torch.__version__, "transformers": transformers.__version__}


def job_record(smk: Any, device=None) -> dict[str, Any]:
    """A job's rule, wildcards and params (not its checkpoint folder), the code version, and for a
    model job the device it resolved (:func:`locedit.device.describe`: with the GPU's name)."""
    params = {k: v for k, v in smk.params.items() if k != "partial"}
    record = {"rule": smk.rule, "wildcards": dict(smk.wildcards.items()), "params": params, "code": code_version()}
    if device is not None:
        from locedit.device import describe

        record["device"] = describe(device)
    return record


def start(record: dict[str, Any]) -> contextvars.Token:
    return _CURRENT.set(json.loads(json.dumps(record, default=str)))


def stop(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


def current() -> dict[str, Any] | None:
    """The running job's provenance (None outside a job)."""
    return _CURRENT.get()


def note(key: str, value: Any) -> None:
    """Add ``key`` to the running job's provenance (the loaded model, the edits a table was built from)."""
    record = _CURRENT.get()
    if record is not None:
        record[key] = json.loads(json.dumps(value, default=str))


def model_record(model, name: str, dtype: str) -> dict[str, Any]:
    """The model's id, where its weights came from and their revision, dtype and device (with the
    GPU's name and memory on CUDA)."""
    from locedit.device import describe
    from locedit.models import EMBEDDED_MODELS

    embedded = EMBEDDED_MODELS.get(name)
    return {"name": name, "dtype": dtype, "device": describe(next(model.parameters()).device),
            "revision": (f"PyPI {embedded.pypi}" if embedded else getattr(model.config, "_commit_hash", None)),
            "model_type": model.config.model_type}


def markdown(records: list[dict[str, Any]]) -> list[str]:
    """Markdown lines for a summary: per ``scores.parquet`` record (one per run / group), the code,
    the model and the hyperparameters each method's edit jobs ran with."""
    lines = ["## Provenance", ""]
    if not any(records):
        return lines + ["No provenance recorded (tables written outside a workflow job, or before 2026-11-29).", ""]
    for record in records:
        if not record:
            continue
        code, model = record.get("code", {}), (record.get("tracing") or {}).get("model", {})
        dirty = " (uncommitted changes)" if code.get("dirty") else ""
        made = (f"model {model.get('name')} ({model.get('model_type')}, {model.get('revision')}), {model.get('dtype')} "
                f"on {model.get('device')}" if model else "the model not recorded (its tracing table predates the stamp)")
        lines.append(f"- **{record.get('params', {}).get('run', '?')}**: locedit {code.get('locedit')} at commit "
                     f"`{(code.get('commit') or 'unknown')[:12]}`{dirty}, torch {code.get('torch')}, transformers "
                     f"{code.get('transformers')}; {made}")
        by_method: dict[str, set[str]] = {}
        for key, edit in sorted((record.get("edits") or {}).items()):
            method = key.split("/")[0]
            editing = edit.get("editing") or {}
            text = json.dumps({"hparams": (editing.get("hparams") or {}).get(method, {}),
                               "overrides": (editing.get("overrides") or {}).get(method, {}),
                               "tuned_from": editing.get("tuned_from")}, sort_keys=True)
            by_method.setdefault(method, set()).add(text)
        for method, texts in by_method.items():
            lines.append(f"  - {method}: " + " · ".join(f"`{t}`" for t in sorted(texts)))
    return lines + [""]


def read(path: str | Path) -> dict[str, Any]:
    """The provenance stored in a Parquet table ({} when it has none)."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[KEY]) if KEY in metadata else {}


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(json.dumps(read(path), indent=1, sort_keys=True))
