"""Key statistics: one pass equals per-layer sums, and a resumed run equals an uninterrupted one."""

import torch

from locedit.hooks import capture_inputs
from locedit.models import architecture_of
from locedit.stats import KeyStats, collect_second_moments, corpus_texts, save_layer_moments

from conftest import tiny_model


def test_bundled_corpus_sample_is_fixed():
    a, b = corpus_texts("bundled-wiki", n_samples=5, seed=1), corpus_texts("bundled-wiki", n_samples=5, seed=1)
    assert a == b and len(set(a)) == 5 and all(len(t) > 20 for t in a)
    assert corpus_texts("bundled-wiki", n_samples=5, seed=2) != a


def test_second_moment_equals_the_plain_sum_over_non_pad_tokens(gpt2_tokenizer):
    model = tiny_model("llama")
    texts = corpus_texts("bundled-wiki", n_samples=7)
    moments = collect_second_moments(model, gpt2_tokenizer, texts, layers=[1, 3], max_tokens=20, batch_size=3)
    name = architecture_of(model).down_proj(3)
    total, count = 0, 0
    for text in texts:  # one text at a time: no padding at all
        ids = gpt2_tokenizer(text, truncation=True, max_length=20)["input_ids"]
        with torch.no_grad(), capture_inputs(model, [name]) as seen:
            model(input_ids=torch.tensor([ids]))
        k = seen[name][0]
        total, count = total + k.T @ k, count + len(ids)
    assert moments.n_tokens == count
    torch.testing.assert_close(moments.layer(3), total / count, rtol=1e-4, atol=1e-6)


def test_resumed_statistics_equal_one_go(gpt2_tokenizer, tmp_path):
    model = tiny_model("gemma3_text")
    texts = corpus_texts("bundled-wiki", n_samples=20)
    opts = dict(layers=[0, 2], max_tokens=24, batch_size=4, checkpoint_every=1)
    whole = collect_second_moments(model, gpt2_tokenizer, texts, **opts)
    ckpt = tmp_path / "ckpt.pt"
    collect_second_moments(model, gpt2_tokenizer, texts, checkpoint=ckpt, stop_after_batches=2, **opts)  # "killed"
    resumed = collect_second_moments(model, gpt2_tokenizer, texts, checkpoint=ckpt, **opts)
    assert resumed.n_texts == whole.n_texts == 20 and resumed.n_tokens == whole.n_tokens
    for layer in (0, 2):
        torch.testing.assert_close(resumed.layer(layer), whole.layer(layer), rtol=1e-6, atol=0)


def test_saved_statistics_load_back(gpt2_tokenizer, tmp_path):
    model = tiny_model("gpt2")
    moments = collect_second_moments(model, gpt2_tokenizer, corpus_texts("bundled-wiki", n_samples=30),
                                     layers=[1], max_tokens=32)
    save_layer_moments(moments, tmp_path)
    stats = KeyStats(tmp_path)
    torch.testing.assert_close(stats.moment(1), moments.layer(1))
    eye = stats.moment(1).double() @ stats.inverse(1)
    torch.testing.assert_close(eye, torch.eye(eye.shape[0], dtype=torch.float64), atol=1e-6, rtol=0)
