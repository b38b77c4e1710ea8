"""Editing methods: each maps (model, tokenizer, request, layers, hparams, stats, templates) to
weight deltas; :mod:`locedit.editing.apply` applies them and restores the originals. Each also
edits many requests at once (``edit_cases``: per-case updates applied per row by
:mod:`locedit.editing.case_updates`, the weights never written), the engine an edit job runs.

    >>> METHODS["rome"].window, METHODS["ft5"].window
    (1, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from locedit.editing.ft import finetune, finetune_cases
from locedit.editing.hparams import DEFAULTS
from locedit.editing.memit import memit, memit_cases
from locedit.editing.rome import rome, rome_cases
from locedit.plan import EDIT_SITES


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


def _method(name: str, edit: Callable, edit_cases: Callable) -> Method:
    """A registry row; where it edits, what it reads and its label come from :data:`locedit.plan.EDIT_SITES`,
    its defaults from :data:`locedit.editing.hparams.DEFAULTS`."""
    site = EDIT_SITES[name]
    return Method(name, site.window, edit, edit_cases, DEFAULTS[name], site.templates, site.needs_stats, site.label,
                  site.color)


METHODS: dict[str, Method] = {
    "ft1": _method("ft1", finetune, finetune_cases),
    "ft5": _method("ft5", finetune, finetune_cases),
    "rome": _method("rome", rome, rome_cases),
    "memit": _method("memit", memit, memit_cases),
}
