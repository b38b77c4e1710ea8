"""Subject token ranges (BOS-adding and GPT-2 BPE tokenizers) and whole-target probabilities."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from locedit.prompts import encode, subject_range, target_log_probs, token_strings

from conftest import tiny_model


def bos_word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer that prepends <bos>, like Gemma's."""
    words = "<unk> <pad> <bos> The mother tongue of Danielle Darrieux is French Paris in".split()
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")


def test_subject_range_gpt2_bpe(gpt2_tokenizer):
    prompt = "The mother tongue of Danielle Darrieux is"
    b, e = subject_range(gpt2_tokenizer, prompt, "Danielle Darrieux")
    pieces = token_strings(gpt2_tokenizer, gpt2_tokenizer(prompt)["input_ids"])
    assert "".join(pieces[b:e]).strip() == "Danielle Darrieux"
    assert b == 4 and pieces[0] == "The"  # no BOS from GPT-2
    assert subject_range(gpt2_tokenizer, "Danielle Darrieux was born in", "Danielle Darrieux")[0] == 0


def test_subject_range_is_offset_by_bos():
    tok = bos_word_tokenizer()
    assert tok("The mother")["input_ids"][0] == 2
    assert subject_range(tok, "The mother tongue of Danielle Darrieux is", "Danielle Darrieux") == (5, 7)


def test_subject_range_falls_back_to_ascii_folding(gpt2_tokenizer):
    b, e = subject_range(gpt2_tokenizer, "The capital of Sao Tome is", "São Tomé")
    assert token_strings(gpt2_tokenizer, gpt2_tokenizer("The capital of Sao Tome is")["input_ids"])[b].strip() == "Sao"


def test_subject_missing_from_prompt_is_an_error(gpt2_tokenizer):
    with pytest.raises(ValueError, match="subject 'Paris' not found in the tokens of prompt"):
        subject_range(gpt2_tokenizer, "The mother tongue of Danielle Darrieux is", "Paris")


def test_target_is_encoded_with_a_leading_space(gpt2_tokenizer):
    enc = encode(gpt2_tokenizer, "The capital of France is", "Paris")
    assert enc.target_ids == [6342]  # " Paris"
    assert list(enc.target_positions) == [len(enc.prompt_ids) - 1]


def test_target_log_probs_equals_full_logits_one_by_one(gpt2_tokenizer):
    model = tiny_model("llama")
    prompts = ["The capital of France is", "Danielle Darrieux speaks", "A"]
    targets = ["Paris", "French and English", "longer target with several tokens"]
    batched = target_log_probs(model, gpt2_tokenizer, prompts, targets, batch_size=2)
    for prompt, target, got in zip(prompts, targets, batched):
        enc = encode(gpt2_tokenizer, prompt, target)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([enc.ids])).logits[0], -1)
        expected = sum(logp[pos, t] for pos, t in zip(enc.target_positions, enc.target_ids))
        assert got.item() == pytest.approx(expected.item(), abs=1e-4)


@pytest.mark.embedded
def test_subject_range_with_gemma_bos(gemma):
    _, tok = gemma
    ids = tok("The mother tongue of Danielle Darrieux is")["input_ids"]
    assert ids[0] == tok.bos_token_id == 2
    b, e = subject_range(tok, "The mother tongue of Danielle Darrieux is", "Danielle Darrieux")
    assert "".join(token_strings(tok, ids[b:e])).strip() == "Danielle Darrieux"
    assert b == 5  # <bos> The mother tongue of | Danielle
