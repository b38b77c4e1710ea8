"""Localizations: how a tracing effect is measured (method × corruption × metric), and where its
tables live.

The paper's is ``exact-gaussian-prob``: activation patching (causal tracing) with Gaussian noise
on the subject embeddings, scored by P(target). ``tracing.method`` / ``tracing.corruption`` /
``tracing.metric`` choose the one the main analysis uses; ``analysis.effects`` lists more to
compare (issue 12: does the finding survive a better localization?)::

    >>> loc = Localization.parse("attribution-str-logit_diff")
    >>> loc.id, loc.is_paper, loc.table("results/r", "mlp", 5)
    ('attribution-str-logit_diff', False, 'results/r/tracing/attribution-str-logit_diff/mlp_w5.parquet')
    >>> PAPER.table("results/r", "mlp", 5)
    'results/r/tracing/mlp_w5.parquet'
    >>> Localization.parse("exact-str-prob").label
    'activation patching, token replacement, P(target)'
"""

from __future__ import annotations

from dataclasses import dataclass


TRACE_METHODS = ("exact", "attribution")
CORRUPTIONS = ("gaussian", "str")  # locedit.tracing.corruption
METRICS = ("prob", "logit_diff")  # locedit.tracing.metric
_LABELS = {"exact": "activation patching", "attribution": "attribution patching",
           "gaussian": "Gaussian noise", "str": "token replacement",
           "prob": "P(target)", "logit_diff": "logit difference"}


@dataclass(frozen=True)
class Localization:
    method: str = "exact"
    corruption: str = "gaussian"
    metric: str = "prob"

    def __post_init__(self):
        for key, value, allowed in (("method", self.method, TRACE_METHODS),
                                    ("corruption", self.corruption, CORRUPTIONS),
                                    ("metric", self.metric, METRICS)):
            if value not in allowed:
                raise ValueError(f"tracing.{key} {value!r} is not one of {', '.join(allowed)}")

    @classmethod
    def parse(cls, text: str) -> "Localization":
        """From an id ``method-corruption-metric`` (``analysis.effects`` entries)."""
        parts = text.split("-")
        if len(parts) != 3:
            raise ValueError(f"analysis.effects entry {text!r} is not method-corruption-metric, "
                             "e.g. exact-gaussian-prob or attribution-str-logit_diff")
        return cls(*parts)

    @classmethod
    def of_config(cls, tracing: dict) -> "Localization":
        """The localization ``tracing.method`` / ``corruption`` / ``metric`` name (defaults: the paper's)."""
        return cls(tracing.get("method", "exact"), tracing.get("corruption", "gaussian"), tracing.get("metric", "prob"))

    @property
    def id(self) -> str:
        return f"{self.method}-{self.corruption}-{self.metric}"

    @property
    def is_paper(self) -> bool:
        return self == PAPER

    @property
    def label(self) -> str:
        return ", ".join(_LABELS[part] for part in (self.method, self.corruption, self.metric))

    def folder(self, run_dir: str) -> str:
        """Where its tracing tables live: the paper's where they always were, others in a folder of their id."""
        return f"{run_dir}/tracing" if self.is_paper else f"{run_dir}/tracing/{self.id}"

    def table(self, run_dir: str, kind: str, window: int) -> str:
        return f"{self.folder(run_dir)}/{kind}_w{window}.parquet"


PAPER = Localization()


def configured(config: dict) -> list[Localization]:
    """The main localization, then ``analysis.effects`` not already listed."""
    main = Localization.of_config(config.get("tracing", {}))
    extra = [Localization.parse(e) for e in (config.get("analysis") or {}).get("effects", [])]
    return list(dict.fromkeys([main, *extra]))
