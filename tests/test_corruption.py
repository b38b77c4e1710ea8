"""Corruptions: the Gaussian draw is the reference's; token-replacement partners share the case's
relation, change exactly the subject's tokens, keep their count and have an answer with another
first token (recorded); a case whose relation offers none is reported, not paired elsewhere."""

import numpy as np
import pandas as pd
import pytest
import torch

from locedit.cases.counterfact import cases_frame, load_counterfact, select_cases
from locedit.prompts import subject_range
from locedit.tracing.corruption import GaussianNoise, TokenReplacement, find_replacement, replacements
from locedit.tracing.metric import answer_token


@pytest.fixture(scope="module")
def pool():
    return cases_frame(load_counterfact("bundled"))


def test_gaussian_rows_carry_the_reference_draw_at_the_subject():
    run = GaussianNoise(0.2, samples=4, seed=3).corrupt([5, 6, 7, 8], (1, 3), d_model=8)
    np.testing.assert_array_equal(run.noise.numpy(), np.random.RandomState(3).randn(4, 2, 8) * 0.2)
    assert run.ids.tolist() == [[5, 6, 7, 8]] * 4
    edit = run.embedding_edit(start=2)  # a suffix from position 2: one subject token left
    out = edit("embed", torch.zeros(8, 2, 8))  # two copies of the 4 rows: the noise is broadcast over them
    np.testing.assert_allclose(out[:, 0].numpy(), np.tile(run.noise[:, 1].numpy(), (2, 1)))
    assert out[:, 1].abs().sum() == 0
    assert run.embedding_edit(start=3) is None  # past the subject: no noise


def test_replacement_must_only_change_the_subject():
    with pytest.raises(ValueError, match="partner case_id 9 differs from the prompt outside the subject"):
        TokenReplacement((1, 2, 3), partner_case_id=9).corrupt([1, 5, 4], (1, 2), d_model=4)


def test_partners_share_the_relation_keep_the_token_count_and_change_the_answer(gpt2_tokenizer, pool):
    cases = cases_frame(select_cases(load_counterfact("bundled"), n_cases=12))
    table = replacements(gpt2_tokenizer, cases, pool, seed=1)
    assert list(table.case_id) == list(cases.case_id)
    found = table[table.partner_case_id.notna()]
    assert len(found) >= 10  # most cases find a partner among the ~64 records of their relation
    by_id = pool.set_index("case_id")
    for row, case in zip(table.itertuples(), cases.itertuples()):
        assert row.candidates == ((pool.relation_id == case.relation_id) & (pool.case_id != case.case_id)).sum()
        if pd.isna(row.partner_case_id):
            assert case.relation_id in row.reason
            continue
        partner = by_id.loc[row.partner_case_id]
        assert partner.relation_id == case.relation_id == row.relation_id
        assert partner.target_true == row.partner_target and partner.subject != case.subject
        assert row.partner_target_id == answer_token(gpt2_tokenizer, partner.target_true)
        assert row.partner_target_id != answer_token(gpt2_tokenizer, case.target_true)
        ids = gpt2_tokenizer(case.prompt)["input_ids"]
        b, e = subject_range(gpt2_tokenizer, case.prompt, case.subject)
        assert len(row.prompt_ids) == len(ids) and list(row.prompt_ids[:b]) == ids[:b]
        assert list(row.prompt_ids[e:]) == ids[e:] and list(row.prompt_ids[b:e]) != ids[b:e]
        replaced = case.prompt_template.format(row.partner_subject)
        assert subject_range(gpt2_tokenizer, replaced, row.partner_subject) == (b, e)


def test_a_case_without_a_partner_in_its_relation_is_reported_not_paired_across(gpt2_tokenizer, pool):
    """The case's relation has no other record in the pool: no partner, though other relations
    have subjects that would fit the template."""
    case = pool.iloc[[0]]
    alone = pd.concat([case, pool[pool.relation_id != case.relation_id.iloc[0]]], ignore_index=True)
    row = replacements(gpt2_tokenizer, case, alone, seed=1).iloc[0]
    assert pd.isna(row.partner_case_id) and pd.isna(row.partner_target_id) and row.candidates == 0
    assert f"none of the 0 other records of relation {case.relation_id.iloc[0]}" in row.reason
    assert replacements(gpt2_tokenizer, case, pool, seed=1).partner_case_id.notna().all()  # with its relation: one


def test_partner_choice_is_deterministic_and_seeded(gpt2_tokenizer, pool):
    case = pool.iloc[0]
    args = (gpt2_tokenizer, int(case.case_id), case.prompt_template, case.subject, case.target_true,
            case.relation_id, pool)
    first, again, other = find_replacement(*args, seed=1), find_replacement(*args, seed=1), find_replacement(*args, seed=2)
    assert first == again and first.partner_case_id != other.partner_case_id
