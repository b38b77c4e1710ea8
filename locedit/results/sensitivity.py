"""How much a results folder's rewrite verdicts lean on the tracing effect's denominator and on
single cases: the analysis of ``r2.csv`` redone under variants of the effect and of the cases.

    python -m locedit.results.sensitivity docs/results/smollm2-135m-instruct   # writes sensitivity.csv there

The paper's fraction restored divides by |clean − low| (spec §8). A small model often completes a
fact correctly with a small P(o_true); where the noised probability is close to the clean one that
denominator nears zero, the fraction runs far above 1, and one such case can carry the interacted
fit's added R² and its F-test. The variants, one block of rows each:

- ``paper``: the committed analysis (``max_fraction_restored``), as in ``r2.csv``;
- ``reference_denominator``: the reference code's |high − low| (``max_fraction_restored_high``, ≤ 1);
- ``reference_fraction_restored``: the reference code's effect, that denominator and its filter
  (cases with a clean P(o_true) below .02 are not traced, so not regressed; belief-localization
  ``experiments/tracing.py``; :func:`locedit.tracing.effects.tracing_effects`);
- ``without_case_<id>``: without the case of the largest effect (the most leveraged point);
- ``without_fraction_above_1``: without every case whose effect exceeds 1 at some edited layer.

Each row: variant, method, problem, cases left, R² layer / added / chance, F-test p, bootstrap
verdict (:func:`locedit.analysis.regressions.interval_verdict`, the same resamples as ``r2.csv``). The effects
are recomputed from the folder's effect-window MLP tracing tables (equal to ``scores.parquet``'s
where both have them; the reference effect is newer than the committed scores).

    >>> table = sensitivity(scores, "smollm2-135m-instruct", n_boot=1000)   # doctest: +SKIP
    >>> table.groupby("variant").verdict.value_counts()                     # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from locedit.analysis.localizations import with_effects
from locedit.analysis.regressions import EFFECT, regressions_with_verdicts, verdict_order
from locedit.results.build import load_groups

HIGH = "max_fraction_restored_high"
REFERENCE = "reference_fraction_restored"
COLUMNS = ["variant", "method", "problem", "effect", "n_cases", "r2_layer", "r2_added", "r2_added_chance",
           "f_pvalue", "r2_layer_lo", "r2_added_hi", "verdict"]


def variants(scores: pd.DataFrame, effect: str = EFFECT) -> dict[str, tuple[pd.DataFrame, str]]:
    """Name → (scores, effect column) of each variant (see the module docstring)."""
    largest = scores.groupby("case_id")[effect].max()
    top = int(largest.idxmax())
    above = largest[largest > 1].index
    return {"paper": (scores, effect),
            "reference_denominator": (scores, HIGH),
            REFERENCE: (scores, REFERENCE),
            f"without_case_{top}": (scores[scores.case_id != top], effect),
            "without_fraction_above_1": (scores[~scores.case_id.isin(above)], effect)}


def sensitivity(scores: pd.DataFrame, model: str, n_boot: int = 1000, effect: str = EFFECT) -> pd.DataFrame:
    """The rewrite-score rows of :func:`regressions_with_verdicts` under every variant."""
    blocks = []
    for name, (part, column) in variants(scores, effect).items():
        r2 = regressions_with_verdicts(part, model, column, n_boot=n_boot, metrics=("rewrite",))
        blocks.append(r2.assign(variant=name).reindex(columns=COLUMNS))
    return pd.concat(blocks, ignore_index=True)


def folder_scores(folder: Path) -> tuple[pd.DataFrame, str, str]:
    """(scores with every effect from the effect-window MLP tables, model, effect) of a results folder."""
    scores, tables, runs = load_groups(folder)
    return with_effects(scores, tables[runs[0]["effect_window"]]), runs[0]["model"], runs[0]["effect"]


def counts(table: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts per variant, one row each (columns in :data:`locedit.analysis.regressions.VERDICTS` order,
    then any other)."""
    found = table.groupby("variant", sort=False).verdict.value_counts().unstack(fill_value=0)
    return found[verdict_order(found)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a results folder (docs/results/<model>)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (r2.csv uses 1000)")
    args = parser.parse_args(argv)
    scores, model, effect = folder_scores(args.folder)
    table = sensitivity(scores, model, args.n_boot, effect)
    table.to_csv(args.folder / "sensitivity.csv", index=False, float_format="%.6g")
    print(counts(table).to_string())
    print(f"wrote {args.folder / 'sensitivity.csv'}")


if __name__ == "__main__":
    main()
