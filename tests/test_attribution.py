"""Attribution patching: the window's joint first-order term, exact where the network is linear in
the restored states (windows 1, 3 and 5, clipped at the edges too), first-order accurate on tiny
random models, and the table format of exact tracing."""

import numpy as np
import pytest
import torch
import transformers as tf
from torch import nn

from locedit.plan import layer_window
from locedit.tracing.attribution import attribution_trace
from locedit.tracing.corruption import GaussianNoise
from locedit.tracing.effects import tracing_effects
from locedit.tracing.trace import trace

from conftest import tiny_model

PROMPT, SUBJECT, TARGET = "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "French"
CONTRAST = "English"


def linear_gpt2(n_layers: int = 6) -> nn.Module:
    """A GPT-2 whose metric is affine in every module output: no layer norms, an identity MLP
    activation, and zero query/key weights, so attention averages the values of the positions
    so far (a fixed linear map). Patching is then exactly its first-order term. Float64, but for
    the logits (:func:`locedit.prompts.unembed` returns float32): equal up to float32 rounding."""
    config = tf.GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=n_layers, n_head=4,
                           activation_function="linear", initializer_range=0.3, use_cache=False)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float64).eval()
    d = config.n_embd
    with torch.no_grad():
        for block in model.transformer.h:
            block.ln_1, block.ln_2 = nn.Identity(), nn.Identity()
            block.attn.c_attn.weight[:, : 2 * d] = 0
            block.attn.c_attn.bias[: 2 * d] = 0
    model.transformer.ln_f = nn.Identity()
    return model


@pytest.mark.parametrize("window", [1, 3, 5])
@pytest.mark.parametrize("kind", ["mlp", "attn"])
def test_attribution_equals_patching_where_the_network_is_linear(window, kind, gpt2_tokenizer):
    """On an affine network the joint first-order term is the exact effect of restoring the window,
    at every (token, layer), including layers 0, 1, 4 and 5 whose windows are clipped (6 layers),
    for a large corruption; the sum of the layers' own estimates (window 1) is not, beyond window 1:
    it counts the paths between the window's layers once per layer."""
    model = linear_gpt2()
    args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(2.0, samples=3))
    exact = trace(*args, kind=kind, window=window, metric="logit_diff", contrast=CONTRAST)
    approx = attribution_trace(*args, kind=kind, window=window, metric="logit_diff", contrast=CONTRAST, max_rows=7)
    rounding = 1e-6 * np.abs(exact.scores).max()  # float32 logits
    assert approx.low == pytest.approx(exact.low, abs=rounding) and approx.clean == pytest.approx(exact.clean, abs=rounding)
    np.testing.assert_allclose(approx.scores, exact.scores, rtol=0, atol=rounding)
    traced = exact.scores[exact.first_traced:] - exact.low
    assert np.abs(traced).max() > 1e3 * rounding  # the restorations move the metric
    single = attribution_trace(*args, kind=kind, window=1, metric="logit_diff", contrast=CONTRAST)
    summed = np.stack([(single.scores - single.low)[:, layer_window(layer, window, 6)].sum(axis=1)
                       for layer in range(6)], axis=1)[exact.first_traced:]
    if window == 1:
        np.testing.assert_allclose(summed, traced, atol=rounding)
    else:
        assert np.abs(summed - traced).max() > 1e3 * rounding


@pytest.mark.parametrize("window", [1, 3, 5])
@pytest.mark.parametrize("model_type,kind", [("gpt2", "mlp"), ("gemma3_text", "attn"), ("qwen2", "hidden")])
def test_attribution_is_first_order_accurate_for_small_corruptions(model_type, kind, window, gpt2_tokenizer):
    """On tiny random models (conftest.tiny_model, 4 layers) the estimate's error shrinks faster than
    the effect as the noise shrinks, for windows of 1, 3 and 5 layers (5: every layer, clipped).
    Stated tolerance: at σ = 1e-3 the largest error is below 10% of the largest effect, and at
    most half its share at σ = 1e-2 (measured: 0.05-0.12% for gpt2 MLP and gemma3 attention, 3.3%
    for qwen2's residual stream, 4.5-12x less than at 1e-2). In float64, so that rounding does
    not floor the error (in float32 gemma3's error stops shrinking below σ = 3e-3)."""
    model = tiny_model(model_type).double()
    relative = []
    for sigma in (1e-2, 1e-3):
        args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(sigma, samples=2))
        exact = trace(*args, kind=kind, window=window, metric="logit_diff", contrast=CONTRAST)
        approx = attribution_trace(*args, kind=kind, window=window, metric="logit_diff", contrast=CONTRAST)
        effect = exact.scores - exact.low
        relative.append(np.abs((approx.scores - approx.low) - effect).max() / np.abs(effect).max())
    assert relative[1] < 0.1
    assert relative[1] < relative[0] / 2


def test_attribution_table_reads_like_an_exact_one(gpt2_tokenizer):
    model = tiny_model("gpt2")
    r = attribution_trace(model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(0.5, samples=2),
                          kind="mlp", window=3)
    table = r.to_frame(case_id=3)
    assert table.method.eq("attribution").all() and table.metric.eq("prob").all()
    effects = tracing_effects(table)
    assert list(effects.layer) == [0, 1, 2, 3] and effects.max_fraction_restored.notna().all()
    np.testing.assert_allclose(r.scores[: r.first_traced], r.low)
