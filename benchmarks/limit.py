"""How far each method's batched edit is from this machine's arithmetic limit.

    .venv/bin/python benchmarks/limit.py [--cases 16] [--layer 8] [--threads 1] [--problem error_injection]

1. Counts the floating-point operations of one batched edit of N cases per method (forward and
   backward matmuls, by :class:`torch.utils.flop_counter.FlopCounterMode`), split into the edit's
   optimisation and its evaluation, and the unembedding's share of each.
2. Measures this machine's matmul throughput in float32 and bfloat16 for the shapes involved:
   the unembedding ([rows, d] × [d, vocab], rows as in the batched edit) and the body
   ([tokens, d] × [d, d_ff]).
3. Times the same edit without the counter and prints achieved GFLOP/s, the attainable time
   (unembedding FLOPs at the unembedding's throughput + the rest at the body's), and
   achieved / attainable, in float32 and with mixed precision (the optimisation through a
   bfloat16 copy of the model, evaluation float32).
"""

from __future__ import annotations

import argparse
import importlib
import time

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from editing import bench_setup
from locedit.editing.evaluation import evaluate_cases
from locedit.editing.hparams import hparams_for
from locedit.editing.methods import METHODS
from locedit.editing.precision import bfloat16_optimisation
from locedit.editing.problems import PROBLEMS, request_for
from locedit.plan import edited_layers


def gflops_by_part(counter: FlopCounterMode, body_name: str) -> tuple[float, float]:
    """(all, unembedding) GFLOP seen by ``counter``: the unembedding runs outside the body
    (``locedit.prompts.logits_at``), so it is everything not counted under ``body_name``."""
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    body = sum(counts.get(body_name, {}).values())
    return total / 1e9, (total - body) / 1e9


def matmul_gflops(rows: int, inner: int, cols: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Sustained GFLOP/s of ``[rows, inner] @ [inner, cols]`` (forward) in ``dtype``."""
    a, b = torch.randn(rows, inner).to(dtype), torch.randn(inner, cols).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - start) / 1e9


def _count_safe_post_mlp_norm():
    """MEMIT's Gauss–Newton step takes a Jacobian (``autograd.grad``) through the post-MLP norm;
    FlopCounterMode's module hooks refuse that, so the norm is called through ``forward`` (no
    hooks; its arithmetic, on one 640-vector per case, is negligible)."""
    memit = importlib.import_module("locedit.editing.memit")  # the module (the package exports the function)
    original = memit.through_post_mlp_norm

    def through(norm, m, resid, **kwargs):
        return original(norm.forward, m, resid, **kwargs)

    memit.through_post_mlp_norm = through


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--problem", default="error_injection", choices=sorted(PROBLEMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _count_safe_post_mlp_norm()
    cfg, model, tok, cases, stats, templates, sigma, noised = bench_setup(args.model, args.cases, args.layer)
    n_layers = model.config.num_hidden_layers
    reqs = [request_for(c, PROBLEMS[args.problem], noised[c.case_id], tok.eos_token, sigma) for c in cases.itertuples()]
    body = type(model.base_model).__name__  # FlopCounterMode's name for the body's module
    d, d_ff, vocab = model.config.hidden_size, model.config.intermediate_size, model.get_output_embeddings().weight.shape[0]

    rows = []
    for method, spec in METHODS.items():
        window = edited_layers(args.layer, spec.window, n_layers)
        hp = hparams_for(cfg["editing"], method, args.problem)
        tpl = templates.get(spec.templates)
        with FlopCounterMode(display=False) as counter:
            updates = spec.edit_cases(model, tok, reqs, window, hp, stats, tpl)
        opt_all, opt_head = gflops_by_part(counter, body)
        with FlopCounterMode(display=False) as counter:
            evaluate_cases(model, tok, reqs, updates)
        eval_all, eval_head = gflops_by_part(counter, body)
        timings = {}
        for mixed in (False, True):
            start = time.perf_counter()
            with bfloat16_optimisation(model, enabled=mixed):
                updates = spec.edit_cases(model, tok, reqs, window, hp, stats, tpl)
            middle = time.perf_counter()
            evaluate_cases(model, tok, reqs, updates)
            timings[mixed] = (middle - start, time.perf_counter() - middle)
        rows.append({"method": method, "opt_gflop_per_edit": opt_all / len(reqs), "opt_unembed_share": opt_head / opt_all,
                     "eval_gflop_per_edit": eval_all / len(reqs), "eval_unembed_share": eval_head / max(eval_all, 1e-9),
                     "opt_s": timings[False][0], "eval_s": timings[False][1], "opt_mixed_s": timings[True][0],
                     "opt_gflop": opt_all, "opt_head_gflop": opt_head, "eval_gflop": eval_all, "eval_head_gflop": eval_head})
        print(rows[-1], flush=True)

    # throughput at the shapes of the batched passes: unembedding rows ~ target positions of a batch
    target_tokens = sum(len(tok(" " + r.target, add_special_tokens=False)["input_ids"]) for r in reqs) / len(reqs)
    ft_rows = 10 if reqs[0].sigma is not None else 1
    per_case = {"ft1": ft_rows * target_tokens, "ft5": ft_rows * target_tokens,
                "rome": len(templates["rome"]) * target_tokens + 1,
                "memit": sum(map(len, templates["memit"])) * target_tokens + 1}
    unembed_rows = {m: max(1, round(n * len(reqs))) for m, n in per_case.items()}
    body_tokens = 12 * 20 * len(reqs)  # ~12 rows of ~20 tokens per case (ROME's passes)
    tput = {}
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        tput["body", name] = matmul_gflops(body_tokens, d, d_ff, dtype)
        for method, r in unembed_rows.items():
            tput[method, name] = matmul_gflops(r, d, vocab, dtype, repeats=3)
    table = pd.DataFrame(rows)
    head_f32, head_bf16 = (table.method.map(lambda m, n=n: tput[m, n]) for n in ("f32", "bf16"))
    rest = (table.opt_gflop - table.opt_head_gflop + table.eval_gflop - table.eval_head_gflop) / tput["body", "f32"]
    table["attainable_s_f32"] = (table.opt_head_gflop + table.eval_head_gflop) / head_f32 + rest
    # mixed precision: the optimisation is bfloat16 (body and unembedding); evaluation stays float32
    table["attainable_s_bf16"] = (table.opt_head_gflop / head_bf16
                                  + (table.opt_gflop - table.opt_head_gflop) / tput["body", "bf16"]
                                  + table.eval_head_gflop / head_f32
                                  + (table.eval_gflop - table.eval_head_gflop) / tput["body", "f32"])
    table["achieved_s"] = table.opt_s + table.eval_s
    table["achieved_gflops"] = (table.opt_gflop + table.eval_gflop) / table.achieved_s
    table["achieved_over_attainable_f32"] = table.attainable_s_f32 / table.achieved_s
    print(f"\n{args.model}, {args.problem}, central layer {args.layer}, batch of {len(reqs)} cases, {args.threads} thread(s)")
    print("matmul GFLOP/s (unembedding rows per method: " + ", ".join(f"{m} {r}" for m, r in unembed_rows.items())
          + f"; body {body_tokens} tokens): " + ", ".join(f"{k[0]} {k[1]} {v:.0f}" for k, v in tput.items()))
    shown = ["method", "opt_gflop_per_edit", "opt_unembed_share", "eval_gflop_per_edit", "eval_unembed_share",
             "achieved_s", "opt_mixed_s", "achieved_gflops", "attainable_s_f32", "attainable_s_bf16",
             "achieved_over_attainable_f32"]
    print(table[shown].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    per_edit = table.assign(**{c: table[c] / len(reqs) for c in ("achieved_s", "attainable_s_f32", "attainable_s_bf16")})
    print("per edit (s): " + "; ".join(f"{r.method} achieved {r.achieved_s:.2f}, floor f32 {r.attainable_s_f32:.2f}, "
                                       f"floor mixed {r.attainable_s_bf16:.2f}" for r in per_edit.itertuples()))


if __name__ == "__main__":
    main()
