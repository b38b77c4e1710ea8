"""Attribution patching: exact where the metric is linear in the restored state, first-order
accurate for small corruptions, and the table format of exact tracing."""

import numpy as np
import pytest
from torch import nn

from locedit.attribution import attribution_trace
from locedit.corruption import GaussianNoise
from locedit.plan import layer_window
from locedit.tracing import trace, tracing_effects

from conftest import tiny_model

PROMPT, SUBJECT, TARGET = "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "French"


@pytest.mark.parametrize("kind", ["mlp", "hidden"])
def test_attribution_is_exact_where_the_metric_is_linear_in_the_state(kind, gpt2_tokenizer):
    """Without the final norm, the logit difference is linear in the last layer's MLP output and
    in its output (the residual stream after it): restoring there, window 1, the first-order
    estimate is the exact effect, at every token, for a large corruption."""
    model = tiny_model("llama")
    model.model.norm = nn.Identity()
    args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(2.0, samples=3))
    exact = trace(*args, kind=kind, window=1, metric="logit_diff")
    approx = attribution_trace(*args, kind=kind, window=1, metric="logit_diff")
    assert approx.low == pytest.approx(exact.low, abs=1e-5) and approx.clean == pytest.approx(exact.clean, abs=1e-5)
    last = exact.scores[:, -1]
    np.testing.assert_allclose(approx.scores[:, -1], last, atol=1e-4)
    assert np.ptp(last[exact.first_traced:]) > 1e-2  # the last token's restoration moves the metric
    assert np.abs(approx.scores[:, 0] - exact.scores[:, 0]).max() > 1e-3  # elsewhere it is only first order


@pytest.mark.parametrize("model_type,kind", [("gpt2", "mlp"), ("gemma3_text", "attn"), ("qwen2", "hidden")])
def test_attribution_is_first_order_accurate_for_small_corruptions(model_type, kind, gpt2_tokenizer):
    """One layer restored (window 1): the estimate's error shrinks faster than the effect as the
    noise shrinks. In float64, so that rounding does not floor the error: at σ = 1e-3 it is 0.5%
    (gpt2 MLP), 0.1% (gemma3 attention) and 8% (qwen2 residual stream) of the largest effect,
    5-11x less than at 1e-2. (In float32 gemma3's error stops shrinking below σ = 3e-3: 0.30% there,
    0.52% at 1e-3 on one machine, and the test failed there while passing on another.)"""
    model = tiny_model(model_type).double()
    relative = []
    for sigma in (1e-2, 1e-3):
        args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(sigma, samples=2))
        exact = trace(*args, kind=kind, window=1, metric="logit_diff")
        approx = attribution_trace(*args, kind=kind, window=1, metric="logit_diff")
        effect = exact.scores - exact.low
        relative.append(np.abs((approx.scores - approx.low) - effect).max() / np.abs(effect).max())
    assert relative[1] < 0.1
    assert relative[1] < relative[0] / 2


def test_a_window_sums_its_layers_estimates(gpt2_tokenizer):
    """A window's estimate is the sum of its layers' (the definition: each layer's gradient is the
    total derivative, so paths between restored layers count once per layer; unlike window 1 this
    is not the first-order term of restoring the window together, see docs/performance.md)."""
    model = tiny_model("gpt2")
    args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(0.5, samples=2))
    single = attribution_trace(*args, kind="mlp", window=1)
    wide = attribution_trace(*args, kind="mlp", window=3)
    per_layer = single.scores - single.low
    for layer in range(4):
        summed = per_layer[:, layer_window(layer, 3, 4)].sum(axis=1)
        np.testing.assert_allclose(wide.scores[:, layer] - wide.low, summed, atol=1e-6)


def test_attribution_table_reads_like_an_exact_one(gpt2_tokenizer):
    model = tiny_model("gpt2")
    r = attribution_trace(model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(0.5, samples=2),
                          kind="mlp", window=3)
    table = r.to_frame(case_id=3)
    assert table.method.eq("attribution").all() and table.metric.eq("prob").all()
    effects = tracing_effects(table)
    assert list(effects.layer) == [0, 1, 2, 3] and effects.max_fraction_restored.notna().all()
    np.testing.assert_allclose(r.scores[: r.first_traced], r.low)
