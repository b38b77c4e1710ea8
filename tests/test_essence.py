"""Essence: sampled texts and their perplexity, checked against a plain full-logits computation."""

import math

import numpy as np
import pytest
import torch

from conftest import tiny_model
from locedit.editing.essence import essence_texts, perplexities
from locedit.editing.evaluation import evaluate
from locedit.editing.problems import EditRequest


def plain_perplexity(model, tok, text: str) -> float:
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    nll = -logp.gather(1, ids[0, 1:, None]).mean()
    return math.exp(nll.item())


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_perplexity_equals_plain_computation(model_type, gpt2_tokenizer):
    model = tiny_model(model_type)
    texts = ["Paris is a city in France and", "The Eiffel Tower is a", "x"]
    fast = perplexities(model, gpt2_tokenizer, texts)
    assert np.allclose(fast[:2], [plain_perplexity(model, gpt2_tokenizer, t) for t in texts[:2]], rtol=1e-5)
    assert fast[2] == 1.0  # one token: nothing predicted


def test_essence_texts_are_seeded_samples_after_the_prompt(gpt2_tokenizer):
    model = tiny_model("gpt2")
    a = essence_texts(model, gpt2_tokenizer, "Danielle Darrieux", n_texts=3, max_new_tokens=6, seed=4)
    b = essence_texts(model, gpt2_tokenizer, "Danielle Darrieux", n_texts=3, max_new_tokens=6, seed=4)
    assert a == b and len(a) == 3
    assert all(t.startswith("Danielle Darrieux is a") for t in a)
    assert len(set(a)) > 1  # sampled, not greedy


def test_evaluate_adds_essence_rows_and_noise_changes_them(gpt2_tokenizer):
    model = tiny_model("gpt2")
    texts = ("Danielle Darrieux is a French actress", "Danielle Darrieux is a singer")
    plain = EditRequest(1, "Danielle Darrieux speaks", "Danielle Darrieux", "French", "English", essence=texts)
    table = evaluate(model, gpt2_tokenizer, plain)
    ess = table[table.prompt_type == "essence"]
    assert ess.prompt.tolist() == list(texts) and ess.p_target.isna().all()
    assert np.allclose(ess.ppl, [plain_perplexity(model, gpt2_tokenizer, t) for t in texts], rtol=1e-5)
    assert table[table.prompt_type != "essence"].ppl.isna().all()
    noised = evaluate(model, gpt2_tokenizer, EditRequest(**{**plain.__dict__, "sigma": 3.0}))
    assert not np.allclose(noised[noised.prompt_type == "essence"].ppl, ess.ppl)
