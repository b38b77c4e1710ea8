"""The substring rule and batched greedy generation."""

import pandas as pd
import pytest

from locedit.cases.correctness import check_correctness, greedy_continuations, is_correct

from conftest import tiny_model


@pytest.mark.parametrize(
    "generation,target,expected",
    [(" French. She is a French-Canadian", "French", True), ("  paris, France", " Paris ", True),
     ("the official language of", "Portuguese", False), ("Portuguese", "Portuguese", True),
     ("Port", "Portuguese", False)],
)
def test_substring_rule(generation, target, expected):
    assert is_correct(generation, target) is expected


def test_batched_generation_equals_one_at_a_time(gpt2_tokenizer):
    model = tiny_model("llama")
    prompts = ["The capital of France is", "A", "Danielle Darrieux was born in the city of"]
    batched = greedy_continuations(model, gpt2_tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = [greedy_continuations(model, gpt2_tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert all(batched)


def test_check_correctness_table(gpt2_tokenizer):
    model = tiny_model("gpt2")
    cases = pd.DataFrame({"case_id": [1, 2], "prompt": ["The capital of France is", "Water is"],
                          "target_true": ["Paris", "wet"], "target_new": ["Rome", "dry"]})
    table = check_correctness(model, gpt2_tokenizer, cases, max_new_tokens=4, batch_size=2)
    assert list(table.case_id) == [1, 2]
    assert table.p_true.between(0, 1).all() and table.p_new.between(0, 1).all()
    assert list(table.is_correct) == [is_correct(g, t) for g, t in zip(table.generation, table.target_true)]


@pytest.mark.embedded
def test_gemma_completes_a_known_fact(gemma):
    model, tok = gemma
    cases = pd.DataFrame({"case_id": [0], "prompt": ["The official language of Brazil is"],
                          "target_true": ["Portuguese"], "target_new": ["French"]})
    row = check_correctness(model, tok, cases, max_new_tokens=8).iloc[0]
    assert row.is_correct and row.p_true > 0.5 > row.p_new
