"""Key statistics at GPT-J's width on this CPU: seconds per batch of the pass (forward + k kᵀ
accumulation) per layer, and seconds to factor one 16,384² C in float64; then the arithmetic that
takes them to the GPT-J preset (configs/gpt-j-6b.yaml: 100,000 texts, max_tokens 2048, batch 4).

    PYTHONPATH=. .venv/bin/python benchmarks/stats_width.py [--batch 1] [--tokens 512] [--batches 2] \\
        [--threads 2] [--factor-size 16384] [--tokens-per-text 600]

The model is GPT-J's block at full width with random weights and two layers (GPTJConfig n_embd
4096, n_inner 16,384, 16 heads, rotary_dim 64, vocabulary 50,400; the embedding tied to the
unembedding, which the pass never runs), so nothing is downloaded and it fits in ~3 GB. The pass is
:func:`locedit.editing.key_stats.collect_second_moments` itself, on pseudo-random token ids of exactly
``--tokens`` per text (tokenization is not measured). The forward alone is timed on the same
batches, so the accumulation is the difference. C to factor is the pass's layer-0 moment plus a
small ridge (the few measured tokens leave it singular; LU does the same work whatever the values).
Peak memory ~8 GB (the factor: C, its float64 copy, the LU and the inverse).
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
import transformers as tf

from locedit.editing.key_stats import collect_second_moments
from locedit.hooks import forward_until
from locedit.models import architecture_of
from locedit.prompts import pad_batch

GPTJ = dict(n_embd=4096, n_inner=16384, n_head=16, rotary_dim=64, vocab_size=50400, n_positions=2048)
PRESET = dict(texts=100_000, max_tokens=2048, batch=4, layers=28)  # configs/gpt-j-6b.yaml
PRESET_D_MLP = GPTJ["n_inner"]
GPU_FLOPS = 10e12  # effective float32 FLOP/s of one GPU job (locedit.plan.Assumptions.gpu_tflops)


class RandomTokens:
    """Stands in for the tokenizer: every text becomes ``length`` pseudo-random token ids."""

    pad_token_id = 0

    def __init__(self, vocab: int, length: int, seed: int = 0):
        self.vocab, self.length = vocab, length
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, text: str, truncation: bool = True, max_length: int | None = None) -> dict:
        n = min(self.length, max_length or self.length)
        return {"input_ids": torch.randint(1, self.vocab, (n,), generator=self.generator).tolist()}


def gptj_width_model(n_layer: int = 2) -> torch.nn.Module:
    config = tf.GPTJConfig(**GPTJ, n_layer=n_layer, tie_word_embeddings=True, use_cache=False)
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def seconds(fn, repeats: int) -> float:
    """Mean wall seconds of ``fn()`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1, help="texts per measured batch")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per measured text")
    parser.add_argument("--batches", type=int, default=2, help="measured batches (after one warm-up forward)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--factor-size", type=int, default=16384, help="side of the C factored (GPT-J: 16,384)")
    parser.add_argument("--tokens-per-text", type=int, default=600,
                        help="mean tokens of a corpus text after truncation at 2048 (locedit.plan's assumption)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    start = time.perf_counter()
    model = gptj_width_model()
    print(f"GPT-J-width model, 2 layers, random weights: built in {time.perf_counter() - start:.0f} s "
          f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, {args.threads} threads)")
    n_layers, d_mlp = model.config.n_layer, model.config.n_inner
    layers = list(range(n_layers))
    tok = RandomTokens(model.config.vocab_size, args.tokens)
    tokens = args.batch * args.tokens
    texts = [""] * args.batch

    moments = {}

    def one_batch_of_statistics():
        moments.clear()  # one set of sums in memory at a time
        moments["last"] = collect_second_moments(model, tok, texts, layers, max_tokens=args.tokens,
                                                 batch_size=args.batch)

    batch = pad_batch([tok("")["input_ids"] for _ in range(args.batch)], tok.pad_token_id, torch.device("cpu"))
    top = architecture_of(model).layer(n_layers - 1)

    def one_forward():
        with torch.no_grad():
            forward_until(model, batch, top)

    one_forward()  # warm-up
    both = seconds(one_batch_of_statistics, args.batches)
    forward = seconds(one_forward, args.batches)
    accumulate = both - forward
    per_layer = both / n_layers
    print(f"\nper batch of {args.batch} x {args.tokens} = {tokens} tokens, {n_layers} layers, mean of {args.batches}:")
    print(f"  statistics pass (forward + accumulation): {both:.2f} s = {per_layer:.2f} s per layer")
    print(f"  forward alone: {forward:.2f} s; accumulation (k kᵀ, {d_mlp}², float32): {accumulate:.2f} s "
          f"= {accumulate / n_layers:.2f} s per layer")
    fwd_tok = forward / tokens / n_layers  # s per token per layer
    acc_tok = accumulate / tokens / n_layers
    print(f"  per token and layer: forward {fwd_tok * 1e3:.3f} ms, accumulation {acc_tok * 1e3:.3f} ms "
          f"({2 * d_mlp**2 / acc_tok / 1e9:.0f} GFLOPS on 2·{d_mlp}² flops per token)")

    n = args.factor_size
    c = moments["last"].layer(0)[:n, :n].double()
    del model, moments, batch
    gc.collect()
    c.diagonal().add_(1e-2)
    start = time.perf_counter()
    inverse = torch.linalg.inv(c)
    factor = time.perf_counter() - start
    del inverse, c
    scale = (PRESET_D_MLP / n) ** 3
    print(f"\nfactor (torch.linalg.inv, float64) of one {n}² C: {factor:.1f} s "
          f"({2 * n**3 / factor / 1e9:.1f} GFLOPS on 2n³ flops)"
          + (f"; x (16384/{n})³ = {scale:.0f} -> {factor * scale:.0f} s at 16,384²" if n != PRESET_D_MLP else ""))
    factor_16k = factor * scale

    T, N, L = args.tokens_per_text, PRESET["texts"], PRESET["layers"]
    real = N * T
    padded = N * PRESET["max_tokens"]
    print(f"\nGPT-J preset: {N:,} texts x {T} tokens (assumed mean after truncation at {PRESET['max_tokens']}) "
          f"= {real:.2e} tokens, {L} layers, batch {PRESET['batch']}")
    print(f"  accumulation: {real:.2e} tokens x {L} layers x {acc_tok * 1e3:.3f} ms = {real * L * acc_tok / 3600:,.0f} CPU-h")
    print(f"  forward:      {real:.2e} tokens x {L} layers x {fwd_tok * 1e3:.3f} ms = {real * L * fwd_tok / 3600:,.0f} CPU-h "
          f"(up to {padded:.2e} padded tokens: {padded * L * fwd_tok / 3600:,.0f} CPU-h if every batch pads to "
          f"{PRESET['max_tokens']})")
    one_pass = real * L * (acc_tok + fwd_tok)
    print(f"  one pass, all {L} layers in one job: {one_pass / 3600:,.0f} CPU-h on this machine "
          f"({args.threads} threads; attention at 2048 tokens adds ~8% to the forward, not measured here)")
    fwd_flops = 2 * (4 * GPTJ["n_embd"] ** 2 + 2 * GPTJ["n_embd"] * d_mlp)  # per token and layer
    acc_flops = 2 * d_mlp**2
    flops = real * L * (acc_flops + fwd_flops)
    print(f"  its FLOPs: {real:.2e} x {L} x (2·{d_mlp}² + 2·(4·4096² + 2·4096·{d_mlp})) = {flops:.2e}: "
          f"{flops / GPU_FLOPS / 3600:.1f} GPU-h at an effective {GPU_FLOPS / 1e12:g} TFLOPS (locedit.plan's gpu_tflops)")
    for per_job, shards in ((7, 4), (7, 8), (4, 8)):
        groups = [list(range(i, min(i + per_job, L))) for i in range(0, L, per_job)]
        job_s = [real / shards * ((g[-1] + 1) * fwd_tok + len(g) * acc_tok) for g in groups]
        top, size = groups[-1][-1] + 1, len(groups[-1])
        job_flops = real / shards * (top * fwd_flops + size * acc_flops)
        print(f"  layers_per_job {per_job}, shards {shards}: {len(groups) * shards} jobs; the longest "
              f"{real:.2e}/{shards} tokens x ({top} x {fwd_tok * 1e3:.3f} + {size} x {acc_tok * 1e3:.3f}) ms "
              f"= {max(job_s) / 3600:,.0f} CPU-h, or {job_flops / GPU_FLOPS / 3600:.1f} GPU-h; all jobs "
              f"{shards} x {sum(job_s) / 3600:,.0f} = {shards * sum(job_s) / 3600:,.0f} CPU-h (the forward below each "
              f"group is repeated); sums on the device {size} x {d_mlp**2 * 4 / 2**30:.0f} GiB")
    print(f"  factor_stats: {L} jobs x {factor_16k:.0f} s = {L * factor_16k / 3600:.1f} CPU-h, or {2 * d_mlp**3:.2e} "
          f"float64 FLOPs each (once; before, every MEMIT edit job inverted each of its up to {L} layers itself)")


if __name__ == "__main__":
    main()
