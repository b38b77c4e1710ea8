"""Attribution patching against exact patching, window by window: agreement and time.

    .venv/bin/python benchmarks/attribution.py [--model gemma-3-270m] [--cases 5] [--windows 1 3 5 10]
    .venv/bin/python benchmarks/attribution.py --model tiny-gpt2 --cases 5      # random 4-layer model, seconds

Per case and window, exact causal tracing (``trace``) and attribution patching
(``attribution_trace``: the window's joint first-order term) of the same corruption; per window:
Pearson and Spearman correlation of the per-(case, layer) effects (``max_fraction_restored``,
max over tokens of the fraction restored), the share of cases whose peak layer is the same, the
mean peak layer of each, and the wall time of each. Cases: the first N correctly completed of
the bundled CounterFact subset (an embedded model), or the first N records (``tiny-*``: a random
model from ``tests/conftest.py`` with the GPT-2 tokenizer, whose "effects" measure nothing but
the code path and its cost).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import transformers as tf
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import gpt2_tokenizer_files, tiny_model  # noqa: E402

from locedit.tracing.attribution import attribution_trace  # noqa: E402
from locedit.cases.correctness import check_correctness  # noqa: E402
from locedit.tracing.corruption import GaussianNoise  # noqa: E402
from locedit.cases.counterfact import cases_frame, load_counterfact, select_cases  # noqa: E402
from locedit.analysis.localizations import peak_layers  # noqa: E402
from locedit.models import load_model, prepare_model  # noqa: E402
from locedit.tracing.trace import trace  # noqa: E402
from locedit.tracing.effects import tracing_effects  # noqa: E402

EFFECT = "max_fraction_restored"


def model_and_cases(name: str, n_cases: int):
    pool = cases_frame(select_cases(load_counterfact("bundled"), n_cases=60))
    if name.startswith("tiny-"):
        tok = tf.GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_files(Path(tempfile.mkdtemp()) / "gpt2"))
        return tiny_model(name.removeprefix("tiny-")), tok, pool.head(n_cases)
    model, tok = load_model(prepare_model(name, REPO / "resources" / "models" / name), "float32", "auto")
    correct = check_correctness(model, tok, pool, max_new_tokens=36)
    return model, tok, pool[correct.is_correct.to_numpy()].head(n_cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="an embedded id, or tiny-<family> (tests/conftest.py)")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--kind", default="mlp")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=3.09, help="σ (3σ rule value for Gemma 3 270M)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, cases = model_and_cases(args.model, args.cases)
    corruption = GaussianNoise(args.sigma, samples=args.samples)

    rows = []
    for window in args.windows:
        tables = {"exact": [], "attribution": []}
        seconds = {"exact": 0.0, "attribution": 0.0}
        for case in cases.itertuples():
            call = (model, tok, case.prompt, case.subject, case.target_true, corruption)
            for name, run in (("exact", trace), ("attribution", attribution_trace)):
                start = time.perf_counter()
                result = run(*call, kind=args.kind, window=window)
                seconds[name] += time.perf_counter() - start
                tables[name].append(result.to_frame(case.case_id))
        exact, approx = (tracing_effects(pd.concat(tables[n])).set_index(["case_id", "layer"])[EFFECT]
                         for n in ("exact", "attribution"))
        approx = approx.reindex(exact.index)
        peaks = {n: peak_layers(s.reset_index(), EFFECT) for n, s in (("exact", exact), ("attribution", approx))}
        rows.append({"window": window, "pairs": len(exact), "pearson": stats.pearsonr(exact, approx)[0],
                     "spearman": stats.spearmanr(exact, approx)[0],
                     "same_peak": (peaks["exact"] == peaks["attribution"]).mean(),
                     "peak_exact": peaks["exact"].mean(), "peak_attribution": peaks["attribution"].mean(),
                     "exact_s": seconds["exact"], "attribution_s": seconds["attribution"]})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda x: f"{x:.3g}"), flush=True)
    print(f"\n{args.model} on {next(model.parameters()).device} ({args.threads} threads), kind={args.kind}, "
          f"samples={args.samples}, σ={args.sigma}, {len(cases)} cases")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3g}"))


if __name__ == "__main__":
    main()
