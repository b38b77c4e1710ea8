"""Editing methods: each maps (model, tokenizer, request, layers, hparams, stats, templates) to
weight deltas; :mod:`locedit.editing.apply` applies them and restores the originals.

    >>> METHODS["rome"].window, METHODS["ft5"].window
    (1, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .ft import FT_DEFAULTS, finetune
from .memit import MEMIT_DEFAULTS, memit
from .rome import ROME_DEFAULTS, rome


@dataclass(frozen=True)
class Method:
    name: str
    window: int  # layers edited around the central layer (clipped like tracing windows)
    edit: Callable
    defaults: dict
    templates: str | None = None  # which context templates it needs
    needs_stats: bool = False
    label: str = ""  # for tables and figures


METHODS: dict[str, Method] = {
    "ft1": Method("ft1", 1, finetune, FT_DEFAULTS, label="FT-1"),
    "ft5": Method("ft5", 5, finetune, FT_DEFAULTS, label="FT-5"),
    "rome": Method("rome", 1, rome, ROME_DEFAULTS, templates="rome", needs_stats=True, label="ROME"),
    "memit": Method("memit", 5, memit, MEMIT_DEFAULTS, templates="memit", needs_stats=True, label="MEMIT"),
}
