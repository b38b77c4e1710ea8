"""Measure the effect of three deliberate deviations from the reference code on a finished run.

    .venv/bin/python tools/measure_deviations.py --configfile configs/paper-gemma.yaml g1.yaml \\
        [--cases 3] [--layer 8]

Each deviation is run both ways on the same cases at one central layer (the run's artifacts, as
``tools/tune_hparams.py`` reads them), and the differences are printed:

1. **MEMIT under fact erasure makes ``v_steps`` Adam updates** (ROME's reference skips the
   final-iteration break when minimising; MEMIT's reference does not, so it makes one fewer).
   Measured: MEMIT fact erasure with ``v_steps`` and ``v_steps − 1``.
2. **Context templates sample as many tokens as their length** (the ROME paper's "length 5 and
   10"); the reference's ``max_out_len`` counts the prompt's token, so it samples one fewer.
   Measured: ROME and MEMIT error injection with templates sampled both ways, beside templates of
   the same lengths drawn with another seed (the effect of any other draw of templates).
3. **Fact-forcing evaluation gives every prompt of a case the same noise draw** (each row's noise is
   ``RandomState(seed)`` afresh); the reference draws successive slices from one
   ``RandomState(1)`` per evaluation call, so each row gets its own. Measured on the pre-edit
   probabilities of the fact-forcing prompts (no edit needed).
"""

from __future__ import annotations

import argparse
from unittest import mock

import pandas as pd

from locedit.editing.evaluation import evaluate
import locedit.editing.evaluation
from locedit.editing.templates import ROME_LENGTHS, context_templates
from locedit.noise import noised_subjects
from tune_hparams import SCORES, Setting


def score_change(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Mean of b − a and max |b − a| per score, cases matched."""
    a, b = a.set_index("case_id")[SCORES], b.set_index("case_id")[SCORES]
    diff = b - a
    return {**{f"mean Δ {c.split('_')[0]}": round(diff[c].mean(), 4) for c in SCORES},
            "max |Δ rewrite|": round(diff["rewrite_score"].abs().max(), 4)}


def memit_erasure_steps(args) -> pd.DataFrame:
    setting = Setting.load(args.configfile, "memit", "fact_erasure", None, args.layer)  # P(o_true) ≥ 0.02 leaves few
    steps = setting.hparams()["v_steps"]
    ours, _, _ = setting.edit(setting.hparams())
    reference, _, _ = setting.edit(setting.hparams(v_steps=steps - 1))
    return pd.DataFrame([{"deviation": f"MEMIT FE: {steps} updates vs the reference's {steps - 1}",
                          "cases": len(setting.requests),
                          **score_change(reference, ours)}])


def template_lengths(args) -> pd.DataFrame:
    rows, sampled = [], None
    for method in ("rome", "memit"):
        setting = Setting.load(args.configfile, method, "error_injection", args.cases, args.layer)
        if sampled is None:  # both methods' templates at once, as the workflow samples them
            seed = setting.editing["templates_seed"]
            lengths = [tuple(p) for p in setting.editing.get("rome_template_lengths", ROME_LENGTHS)]
            shorter = [(n - 1, count) for n, count in lengths]
            sampled = {
                "reference lengths": context_templates(setting.model, setting.tok, seed, shorter, memit_length=9),
                "another seed": context_templates(setting.model, setting.tok, seed + 1, lengths),
            }
        ours, _, _ = setting.edit(setting.hparams())
        for name, templates in sampled.items():
            other, _, _ = setting.edit(setting.hparams(), templates=templates[method])
            rows.append({"deviation": f"{method.upper()} EI templates: ours vs {name}", "cases": len(setting.requests),
                         **score_change(other, ours)})
    return pd.DataFrame(rows)


def forcing_evaluation_noise(args) -> pd.DataFrame:
    setting = Setting.load(args.configfile, "ft1", "fact_forcing", args.cases, args.layer)
    seed = setting.editing["seed"]

    def one_generator(model, rows, noise, cases=None):  # the reference: one generator per evaluation call
        return noised_subjects(model, rows, noise)

    ours = setting.pre.reset_index(drop=True)
    with mock.patch.object(locedit.editing.evaluation, "noised_subjects", one_generator):
        reference = pd.concat([evaluate(setting.model, setting.tok, r, seed) for r in setting.requests],
                              ignore_index=True)
    rows = []
    for kind in ("rewrite", "paraphrase"):
        pick = ours.prompt_type == kind
        diff = (ours.p_target - reference.p_target)[pick]
        rows.append({"deviation": f"FF pre-edit P(o_true), {kind}: same draw per prompt vs a slice per row",
                     "mean P ours": round(ours.p_target[pick].mean(), 5),
                     "mean P reference": round(reference.p_target[pick].mean(), 5),
                     "max |ΔP|": round(diff.abs().max(), 5), "mean |ΔP|": round(diff.abs().mean(), 5)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays over config.yaml, as snakemake's")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--layer", type=int, default=None, help="central layer (default: the middle one)")
    parser.add_argument("--only", choices=["memit", "templates", "noise"], default=None)
    args = parser.parse_args()
    measures = {"noise": forcing_evaluation_noise, "memit": memit_erasure_steps, "templates": template_lengths}
    for name, measure in measures.items():
        if args.only in (None, name):
            print(measure(args).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
