"""Editing methods: each maps (model, tokenizer, request, layers, hparams, stats, templates) to
weight deltas; :mod:`locedit.editing.apply` applies them and restores the originals. Each also
edits many requests at once (``edit_cases``: per-case updates applied per row by
:mod:`locedit.editing.case_updates`, the weights never written), the engine the sweep runs.

    >>> METHODS["rome"].window, METHODS["ft5"].window
    (1, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .ft import FT_DEFAULTS, finetune, finetune_cases
from .memit import MEMIT_DEFAULTS, memit, memit_cases
from .rome import ROME_DEFAULTS, rome, rome_cases


@dataclass(frozen=True)
class Method:
    name: str
    window: int  # layers edited around the central layer (clipped like tracing windows)
    edit: Callable  # one request -> Deltas (the plain path)
    edit_cases: Callable  # many requests -> CaseUpdates (the batched engine)
    defaults: dict
    templates: str | None = None  # which context templates it needs
    needs_stats: bool = False
    label: str = ""  # for tables and figures
    color: str = "tab:gray"  # its line / bar colour in figures


METHODS: dict[str, Method] = {
    "ft1": Method("ft1", 1, finetune, finetune_cases, FT_DEFAULTS, label="FT-1", color="tab:blue"),
    "ft5": Method("ft5", 5, finetune, finetune_cases, FT_DEFAULTS, label="FT-5", color="tab:orange"),
    "rome": Method("rome", 1, rome, rome_cases, ROME_DEFAULTS, templates="rome", needs_stats=True, label="ROME",
                   color="tab:green"),
    "memit": Method("memit", 5, memit, memit_cases, MEMIT_DEFAULTS, templates="memit", needs_stats=True,
                    label="MEMIT", color="tab:red"),
}
