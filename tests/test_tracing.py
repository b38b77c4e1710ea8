"""Batched causal tracing equals the plain one-pass-per-(token, layer) algorithm."""

import numpy as np
import pytest

from locedit.noise import SubjectNoise
from locedit.plan import layer_window
from locedit.prompts import subject_range
from locedit.tracing.corruption import GaussianNoise, TokenReplacement
from locedit.tracing.trace import trace

from conftest import tiny_model
from plain_tracing import plain_trace

PROMPT, SUBJECT, TARGET = "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "French"
CONTRAST = "English"  # the corrupted prompt's answer for the logit difference


def test_window_is_clipped_at_both_edges_not_recentred():
    assert list(layer_window(0, 5, 28)) == [0, 1, 2]
    assert list(layer_window(1, 5, 28)) == [0, 1, 2, 3]
    assert list(layer_window(27, 5, 28)) == [25, 26, 27]
    assert list(layer_window(0, 10, 28)) == [0, 1, 2, 3, 4]
    assert list(layer_window(27, 10, 28)) == [22, 23, 24, 25, 26, 27]
    assert list(layer_window(13, 10, 28)) == list(range(8, 18))
    assert list(layer_window(5, 1, 28)) == [5]
    assert list(layer_window(5, 3, 28)) == [4, 5, 6]
    assert list(layer_window(2, 40, 4)) == [0, 1, 2, 3]


def test_window_rejects_a_layer_outside_the_model():
    with pytest.raises(ValueError, match="layer 28 is outside the model's layers 0..27"):
        layer_window(28, 5, 28)


def test_noise_is_the_reference_draw_and_fresh_per_call():
    expected = np.random.RandomState(1).randn(10, 3, 8) * 0.094
    np.testing.assert_array_equal(SubjectNoise(0.094, seed=1).draw(10, 3, 8), expected)
    np.testing.assert_array_equal(SubjectNoise(0.094, seed=1).draw(10, 3, 8), expected)
    assert not np.array_equal(SubjectNoise(0.094, seed=2).draw(10, 3, 8), expected)


@pytest.mark.parametrize(
    "model_type,kind,window",
    [("gpt2", "mlp", 3), ("gpt2", "hidden", 1), ("gemma3_text", "mlp", 10), ("gemma3_text", "attn", 5),
     ("llama", "attn", 1), ("gptj", "hidden", 3), ("gpt_neox", "mlp", 5), ("qwen2", "mlp", 2)],
)
def test_batched_equals_plain(model_type, kind, window, gpt2_tokenizer):
    model = tiny_model(model_type)
    args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET)
    plain, low, clean = plain_trace(*args, kind=kind, window=window, samples=3, sigma=0.5)
    # max_rows=7 forces several chunks per start layer
    fast = trace(*args, GaussianNoise(0.5, samples=3), kind=kind, window=window, max_rows=7)
    assert fast.low == pytest.approx(low, rel=1e-5) and fast.clean == pytest.approx(clean, rel=1e-5)
    assert fast.scores.shape == plain.shape
    # tiny random models give small probabilities: compare in log space
    np.testing.assert_allclose(np.log(fast.scores), np.log(plain), atol=1e-4)
    assert fast.first_traced == fast.subject_range[0]
    assert np.ptp(plain[fast.first_traced :]) > 1e-3 * plain.max()  # the restorations differ from each other


def test_all_tokens_traces_from_the_first_token(gpt2_tokenizer):
    model = tiny_model("gpt2")
    r = trace(model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(0.5, samples=2), kind="mlp", window=3,
              all_tokens=True)
    assert r.first_traced == 0
    # before the subject, restoring a clean state changes nothing: the corrupted probability
    np.testing.assert_allclose(r.scores[: r.subject_range[0]], r.low, rtol=1e-5)


def test_trace_table_has_one_row_per_token_and_layer(gpt2_tokenizer):
    model = tiny_model("llama")
    r = trace(model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(0.5, samples=2), kind="mlp", window=3)
    table = r.to_frame(case_id=7, is_correct=True)
    assert len(table) == len(r.tokens) * 4
    assert set(table.columns) >= {"case_id", "token_idx", "token", "layer", "restored", "low", "clean",
                                  "high", "subject_start", "subject_end", "kind", "window", "is_correct"}
    assert table.high.iloc[0] == max(r.clean, r.scores.max())


@pytest.mark.embedded
def test_batched_equals_plain_on_gemma(gemma):
    model, tok = gemma
    args = (model, tok, "Michael Jordan plays the sport of", "Michael Jordan", "basketball")
    plain, low, clean = plain_trace(*args, kind="mlp", window=10, samples=3, sigma=3.09)  # 3 noised rows (was 10): fewer rows per pass
    fast = trace(*args, GaussianNoise(3.09, samples=3), kind="mlp", window=10)
    assert np.abs(fast.scores - plain).max() <= 1e-5
    assert clean > 0.5 and low < 0.1  # Gemma knows the fact; the noise destroys it
    # restoring the last subject token's MLP outputs in early layers brings much of it back
    assert fast.scores[fast.subject_range[1] - 1, :6].max() > 0.3


@pytest.mark.parametrize("model_type,metric", [("gpt2", "logit_diff"), ("gemma3_text", "logit_diff"),
                                               ("llama", "prob"), ("gpt_neox", "logit_diff")])
def test_token_replacement_and_logit_difference_equal_plain(model_type, metric, gpt2_tokenizer):
    model = tiny_model(model_type)
    ids = gpt2_tokenizer(PROMPT)["input_ids"]
    b, e = subject_range(gpt2_tokenizer, PROMPT, SUBJECT)
    other = ids[:b] + gpt2_tokenizer(" Barack Obama Barack Obama")["input_ids"][: e - b] + ids[e:]
    assert len(other) == len(ids) and other[b:e] != ids[b:e]
    args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET)
    plain, low, clean = plain_trace(*args, kind="mlp", window=3, metric=metric, replacement_ids=other,
                                    contrast=CONTRAST)
    fast = trace(*args, TokenReplacement(tuple(other), partner_case_id=0), kind="mlp", window=3, metric=metric,
                 contrast=CONTRAST, max_rows=2)
    assert fast.low == pytest.approx(low, abs=1e-5) and fast.clean == pytest.approx(clean, abs=1e-5)
    np.testing.assert_allclose(fast.scores, plain, atol=1e-4 if metric == "logit_diff" else 1e-6)
    assert fast.corruption == "str" and fast.metric == metric
    assert np.ptp(plain[fast.first_traced:]) > 0


def test_gaussian_logit_difference_equals_plain(gpt2_tokenizer):
    model = tiny_model("qwen2")
    args = (model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET)
    plain, low, clean = plain_trace(*args, kind="attn", window=2, samples=3, sigma=0.5, metric="logit_diff",
                                    contrast=CONTRAST)
    fast = trace(*args, GaussianNoise(0.5, samples=3), kind="attn", window=2, metric="logit_diff", contrast=CONTRAST)
    np.testing.assert_allclose(fast.scores, plain, atol=1e-4)
    table = fast.to_frame(1)
    assert table.metric.eq("logit_diff").all() and table.contrast_target.eq(CONTRAST).all()
    assert fast.contrast_token == " English"


def test_logit_difference_needs_a_contrast_with_another_first_token(gpt2_tokenizer):
    args = (tiny_model("gpt2"), gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(0.5, samples=2))
    with pytest.raises(ValueError, match="needs the corrupted prompt's answer"):
        trace(*args, kind="mlp", window=1, metric="logit_diff")
    with pytest.raises(ValueError, match="logit difference is 0 by construction"):
        trace(*args, kind="mlp", window=1, metric="logit_diff", contrast="French Guiana")


def test_prefix_cache_is_exact_past_the_sliding_window(gpt2_tokenizer):
    """Gemma's sliding-window layers keep only the last 16 keys of the tiny config: a prompt longer
    than that still traces exactly with the corrupted prefix cached."""
    model = tiny_model("gemma3_text")
    prompt = "In the long and well documented history of European cinema, the mother tongue of Danielle Darrieux is"
    assert len(gpt2_tokenizer(prompt)["input_ids"]) > 16
    args = (model, gpt2_tokenizer, prompt, SUBJECT, TARGET)
    cached = trace(*args, GaussianNoise(0.5, samples=2), kind="hidden", window=3)
    uncached = trace(*args, GaussianNoise(0.5, samples=2), kind="hidden", window=3, reuse_prefix=False)
    plain, _, _ = plain_trace(*args, kind="hidden", window=3, samples=2, sigma=0.5)
    np.testing.assert_allclose(np.log(cached.scores), np.log(plain), atol=1e-4)
    np.testing.assert_allclose(np.log(uncached.scores), np.log(plain), atol=1e-4)
