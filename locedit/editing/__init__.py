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

from ..plan import EDIT_SITES
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


def _method(name: str, edit: Callable, edit_cases: Callable, defaults: dict, label: str, color: str) -> Method:
    """A registry row; where it edits and what it reads come from :data:`locedit.plan.EDIT_SITES`."""
    site = EDIT_SITES[name]
    return Method(name, site.window, edit, edit_cases, defaults, site.templates, site.needs_stats, label, color)


METHODS: dict[str, Method] = {
    "ft1": _method("ft1", finetune, finetune_cases, FT_DEFAULTS, "FT-1", "tab:blue"),
    "ft5": _method("ft5", finetune, finetune_cases, FT_DEFAULTS, "FT-5", "tab:orange"),
    "rome": _method("rome", rome, rome_cases, ROME_DEFAULTS, "ROME", "tab:green"),
    "memit": _method("memit", memit, memit_cases, MEMIT_DEFAULTS, "MEMIT", "tab:red"),
}
