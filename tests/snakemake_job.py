"""A workflow script run without Snakemake: the ``snakemake`` object it reads, faked, and the script
run in this process (tests of what a job does, in seconds)::

    >>> smk = fake_snakemake("trace", input={"model": "m"}, output=["t.parquet"], log="t.log",
    ...                      params={"model": {"name": "m"}}, wildcards={"kind": "mlp"})
    >>> smk.input.model, smk.output[0], list(smk.params.keys())
    ('m', 't.parquet', ['model'])
"""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


class Named(list):
    """What a script sees as ``snakemake.input`` / ``params`` / …: a list whose items may have names."""

    def __init__(self, items: list | None = None, named: dict[str, Any] | None = None):
        named = dict(named or {})
        super().__init__([*(items or []), *named.values()])
        self._named = named

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_named"][name]
        except KeyError:
            raise AttributeError(name) from None

    def keys(self):
        return self._named.keys()

    def items(self):
        return self._named.items()


def fake_snakemake(rule: str, *, input: dict, output: list, log: str | None, params: dict,
                   wildcards: dict | None = None, threads: int = 1) -> SimpleNamespace:
    """The ``snakemake`` object of one job of ``rule`` (its log and output folders made, as Snakemake does)."""
    for path in [*output, *([log] if log else [])]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(rule=rule, threads=threads, input=Named(named=input), params=Named(named=params),
                           wildcards=Named(named=wildcards or {}), output=Named([str(p) for p in output]),
                           log=Named([str(log)] if log else []))


def run_script(name: str, smk: SimpleNamespace) -> None:
    """Run ``workflow/scripts/{name}.py`` with ``smk`` as its ``snakemake`` (torch's thread count kept)."""
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(REPO / "workflow" / "scripts" / f"{name}.py"), init_globals={"snakemake": smk})
    finally:
        torch.set_num_threads(threads)
