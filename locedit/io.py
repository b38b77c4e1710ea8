"""Atomic writes of Parquet and JSON, with provenance columns.

A reader never sees a half-written file: data goes to a temporary file in the same folder,
which is then renamed over the target::

    >>> write_parquet(df, "results/x/cases.parquet", provenance={"model": "gemma-3-270m"})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from locedit import provenance as job_provenance


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_parquet(df: pd.DataFrame, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``df`` atomically; each ``provenance`` item becomes a constant column, and inside a
    workflow job the job's full provenance goes into the file's metadata (:mod:`locedit.provenance`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df.copy()
    for key, value in (provenance or {}).items():
        df[key] = value
    table = pa.Table.from_pandas(df, preserve_index=False)
    record = job_provenance.current()
    if record is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               job_provenance.KEY: json.dumps(record, sort_keys=True).encode()})
    tmp = _tmp_for(path)
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


class CaseCheckpoint:
    """Per-case results of one job, kept outside the job's declared output so a killed job resumes.

    Snakemake deletes the outputs of a failed job, so finished cases go to ``folder`` (one Parquet
    per case) and are merged into the real output at the end::

        >>> ckpt = CaseCheckpoint("results/run/.partial/trace_mlp_w5", params={"window": 5})  # doctest: +SKIP
        >>> for case_id in ckpt.todo(all_case_ids):                                           # doctest: +SKIP
        ...     ckpt.save(case_id, table_for(case_id))
        >>> ckpt.merge("results/run/tracing/mlp_w5.parquet")                                  # doctest: +SKIP

    A job whose unit of work is long (an edit batch: its cases at every central layer) also keeps
    each finished layer of the cases in progress (:meth:`save_layer`), so it resumes at the next
    layer; :meth:`save` of the whole case replaces them.

    A checkpoint made with other ``params`` is discarded, so a changed setting never mixes in.
    """

    def __init__(self, folder: str | Path, params: dict[str, Any]):
        self.folder = Path(folder)
        stamp = self.folder / "params.json"
        wanted = json.dumps(params, sort_keys=True, default=str)
        if stamp.exists() and stamp.read_text() != wanted:
            for old in self.folder.glob("*.parquet"):
                old.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(wanted)

    def _path(self, case_id: int) -> Path:
        return self.folder / f"case_{case_id}.parquet"

    def done(self) -> set[int]:
        return {int(p.stem.removeprefix("case_")) for p in self.folder.glob("case_*.parquet")}

    def todo(self, case_ids: list[int]) -> list[int]:
        finished = self.done()
        return [c for c in case_ids if c not in finished]

    def save(self, case_id: int, table: pd.DataFrame) -> None:
        write_parquet(table, self._path(case_id))
        for part in self._layer_paths(case_id):
            part.unlink()

    def _layer_path(self, case_id: int, layer: int) -> Path:
        return self.folder / f"layer_{layer}_case_{case_id}.parquet"

    def _layer_paths(self, case_id: int) -> list[Path]:
        return list(self.folder.glob(f"layer_*_case_{case_id}.parquet"))

    def save_layer(self, case_id: int, layer: int, table: pd.DataFrame) -> None:
        """One finished layer of a case still in progress."""
        write_parquet(table, self._layer_path(case_id, layer))

    def layers_done(self, case_ids: Iterable[int]) -> int:
        """How many (case, layer) tables of ``case_ids`` wait in layer checkpoints (:meth:`save_layer`)."""
        return sum(len(self._layer_paths(c)) for c in case_ids)

    def load_layer(self, case_id: int, layer: int) -> pd.DataFrame | None:
        """The saved table of ``layer`` of ``case_id`` (:meth:`save_layer`), or None."""
        path = self._layer_path(case_id, layer)
        return pd.read_parquet(path) if path.exists() else None

    def merge(self, case_ids: list[int], path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        """Concatenate the cases in ``case_ids`` order into ``path``, then remove the checkpoint."""
        parts = [pd.read_parquet(self._path(c)) for c in case_ids if self._path(c).exists()]
        parts = [p for p in parts if len(p)]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        out = write_parquet(table, path, provenance)
        for p in self.folder.glob("*"):
            p.unlink()
        self.folder.rmdir()
        return out
