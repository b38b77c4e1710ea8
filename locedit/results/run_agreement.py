"""Two runs of the same edits under one changed setting — float32 against mixed precision — side by
side: how far each edit's scores move, how often success flips, and whether the regressions keep
their finding. Issue 10's rule for making mixed precision the default reads this page.

    python -m locedit.results.run_agreement docs/results/gemma-3-270m docs/results/gemma-3-270m-mixed \\
        --out docs/results/precision-agreement.md

Both arguments are results folders (:mod:`locedit.results.build`). The reference is restricted to the
(method, problem, case, layer) edits the candidate made, so a candidate may rerun a subset of the
reference's layers or groups; every candidate edit must be in the reference. The regressions of both
are fitted on those shared edits, with the same bootstrap resamples of cases.

    >>> MIN_CASES, MIN_LAYERS, MAX_R2_MOVE
    (20, 6, 0.02)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from locedit.analysis.regressions import regressions_with_verdicts
from locedit.results.build import load_groups

KEYS = ["method", "problem", "case_id", "layer"]
MIN_CASES, MIN_LAYERS = 20, 6  # a "mid-size run" (issue 10)
MAX_R2_MOVE = 0.02             # the most any R² cell may move
R2_CELLS = ["r2_layer", "r2_trace", "r2_both", "r2_added"]


def shared_edits(reference: pd.DataFrame, candidate: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, candidate) on the candidate's edits, both sorted by :data:`KEYS`; raises naming the
    first candidate edits the reference lacks."""
    missing = candidate[KEYS].merge(reference[KEYS], how="left", indicator=True).query("_merge == 'left_only'")
    if len(missing):
        raise ValueError(f"{len(missing)} candidate edits are not in the reference, e.g. "
                         f"{missing[KEYS].head(3).to_dict('records')}: compare runs of the same cases and layers")
    keys = candidate[KEYS]
    ref = keys.merge(reference, on=KEYS, how="left").sort_values(KEYS, ignore_index=True)
    return ref, candidate.sort_values(KEYS, ignore_index=True)


def edit_agreement(reference: pd.DataFrame, candidate: pd.DataFrame) -> pd.DataFrame:
    """Per method × problem: edits, max / mean |Δ rewrite score| and |Δ overall score|, and the
    rewrite-success flips (count), on the candidate's edits.

        >>> ref = pd.DataFrame({"method": "rome", "problem": "error_injection", "case_id": [1, 2],
        ...     "layer": 0, "rewrite_score": [.5, .9], "overall_score": [.4, .8], "rewrite_success": [0., 1.]})
        >>> cand = ref.assign(rewrite_score=[.6, .9], rewrite_success=[1., 1.])
        >>> print(edit_agreement(ref, cand)[["n", "rewrite_max", "rewrite_mean", "flips"]].round(6).to_string(index=False))
         n  rewrite_max  rewrite_mean  flips
         2          0.1          0.05      1
    """
    ref, cand = shared_edits(reference, candidate)
    rows = []
    for (method, problem), part in cand.groupby(["method", "problem"], sort=True):
        base = ref.loc[part.index]
        rewrite = (part.rewrite_score - base.rewrite_score).abs()
        overall = (part.overall_score - base.overall_score).abs()
        rows.append({"method": method, "problem": problem, "n": len(part),
                     "rewrite_max": rewrite.max(), "rewrite_mean": rewrite.mean(),
                     "overall_max": overall.max(), "overall_mean": overall.mean(),
                     "flips": int((part.rewrite_success != base.rewrite_success).sum())})
    return pd.DataFrame(rows)


def regression_agreement(reference: pd.DataFrame, candidate: pd.DataFrame, effect: str, model: str,
                         n_boot: int = 1000) -> pd.DataFrame:
    """Per method × problem × metric: R² layer / tracing / both / added of each run on the shared
    edits (``*_ref``, ``*_cand``), the largest move over those cells (``max_move``) and each run's
    bootstrap verdict (same resamples: same cases, same seed)."""
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot}: the verdicts need bootstrap resamples (≥ 1; 1000 by default)")
    ref, cand = shared_edits(reference, candidate)
    fitted = []
    for scores in (ref, cand):
        r2 = regressions_with_verdicts(scores, model, effect, n_boot)
        fitted.append(r2.set_index(["method", "problem", "metric"])[[*R2_CELLS, "n_cases", "verdict"]])
    both = fitted[0].merge(fitted[1], left_index=True, right_index=True, suffixes=("_ref", "_cand"))
    moves = np.column_stack([(both[f"{c}_cand"] - both[f"{c}_ref"]).abs() for c in R2_CELLS])
    both["max_move"] = np.nanmax(moves, axis=1)
    return both.reset_index()


def decision(edits: pd.DataFrame, r2: pd.DataFrame, n_cases: int, n_layers: int) -> str:
    """Issue 10's rule in one sentence: the candidate setting may be the default only if a run of at
    least :data:`MIN_CASES` cases × :data:`MIN_LAYERS` layers keeps every verdict and moves no R² cell
    by more than :data:`MAX_R2_MOVE`.

        >>> r2 = pd.DataFrame({"max_move": [.01], "verdict_ref": ["holds"], "verdict_cand": ["holds"]})
        >>> decision(pd.DataFrame(), r2, 20, 6)
        'passes: 20 cases × 6 layers; every verdict kept (1 conditions); the largest R² move 0.0100 ≤ 0.02'
    """
    size = f"{n_cases} cases × {n_layers} layers"
    largest = float(r2.max_move.max())
    changed = r2[r2.verdict_ref != r2.verdict_cand]
    problems = []
    if n_cases < MIN_CASES or n_layers < MIN_LAYERS:
        problems.append(f"too small to decide ({size}; the rule needs ≥ {MIN_CASES} × {MIN_LAYERS})")
    if len(changed):
        problems.append(f"{len(changed)} verdicts change")
    if largest > MAX_R2_MOVE:
        problems.append(f"the largest R² move {largest:.4f} > {MAX_R2_MOVE}")
    if problems:
        return "fails: " + "; ".join(problems)
    return (f"passes: {size}; every verdict kept ({len(r2)} conditions); "
            f"the largest R² move {largest:.4f} ≤ {MAX_R2_MOVE}")


def agreement_markdown(reference: Path, candidate: Path, n_boot: int = 1000) -> str:
    """The page: the decision, the per-edit agreement and the rewrite regressions of both runs."""
    ref_scores, _, ref_runs = load_groups(reference)
    cand_scores, _, cand_runs = load_groups(candidate)
    effect, model = cand_runs[0]["effect"], cand_runs[0]["model"]
    if {r["effect"] for r in ref_runs} != {effect} or {r["model"] for r in ref_runs} != {model}:
        raise ValueError(f"{reference} and {candidate} differ in model or tracing effect: compare one protocol")
    edits = edit_agreement(ref_scores, cand_scores)
    r2 = regression_agreement(ref_scores, cand_scores, effect, model, n_boot)
    n_cases, n_layers = cand_scores.case_id.nunique(), cand_scores.layer.nunique()
    ref, cand = shared_edits(ref_scores, cand_scores)
    effect_moved = float((ref[effect] - cand[effect]).abs().max())
    lines = [f"# Run agreement: `{candidate}` against `{reference}`", "",
             f"{model}; {len(cand_scores)} shared edits, {n_cases} cases × {n_layers} layers "
             f"({', '.join(map(str, sorted(cand_scores.layer.unique())))}); effect {effect}, "
             f"max |Δ| between the runs {effect_moved:.2g} (0 when both traced alike).", "",
             f"**Decision (issue 10's rule)**: {decision(edits, r2, n_cases, n_layers)}.", "",
             "## Per edit", "",
             "| method | problem | edits | max \\|Δ rewrite\\| | mean \\|Δ rewrite\\| | max \\|Δ overall\\| "
             "| mean \\|Δ overall\\| | success flips |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {e.method} | {e.problem} | {e.n} | {e.rewrite_max:.4f} | {e.rewrite_mean:.4f} | {e.overall_max:.4f} "
              f"| {e.overall_mean:.4f} | {e.flips} |" for e in edits.itertuples()]
    lines += ["", "## Rewrite-score regressions (reference → candidate)", "",
              "| method | problem | R² layer | R² tracing | R² both | added | largest move | verdict |",
              "|---|---|---|---|---|---|---:|---|"]
    for row in r2[r2.metric == "rewrite"].itertuples():
        cells = [f"{getattr(row, c + '_ref'):.3f} → {getattr(row, c + '_cand'):.3f}" for c in R2_CELLS]
        verdict = (row.verdict_ref if row.verdict_ref == row.verdict_cand
                   else f"{row.verdict_ref or '–'} → {row.verdict_cand or '–'}") or "–"
        lines.append(f"| {row.method} | {row.problem} | {' | '.join(cells)} | {row.max_move:.4f} | {verdict} |")
    lines += ["", f"Largest move over all {len(r2)} method × problem × metric cells: {r2.max_move.max():.4f}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m locedit.results.run_agreement", description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="results folder of the reference run (float32)")
    parser.add_argument("candidate", type=Path, help="results folder of the candidate run (the changed setting)")
    parser.add_argument("--out", type=Path, default=None, help="write the page here (default: print it)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of cases for the verdicts")
    args = parser.parse_args(argv)
    page = agreement_markdown(args.reference, args.candidate, args.bootstrap)
    if args.out:
        args.out.write_text(page)
    print(page.split("\n\n")[2])


if __name__ == "__main__":
    main()
