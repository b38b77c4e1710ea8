"""Subject noise, one value and one policy: every case owns ``RandomState(seed)`` and its rows draw
``randn(e - b, d) * σ`` from it in row order; ``fresh=False`` re-seeds at every pass, ``fresh=True``
lets the generator advance. :func:`noised_subjects` installs it at the embedding layer, in closed
form, and removes it on exit; tracing's samples are the rows of one case, drawn in one call."""

import numpy as np
import pytest
import torch

from locedit.models import architecture_of
from locedit.noise import SubjectNoise, noised_subjects
from locedit.tracing.corruption import GaussianNoise

from conftest import tiny_model

ROWS = [(1, 3), None, (0, 4), (2, 4), (1, 3)]  # rows of one batch: spans of 2 and 4 tokens, one without
D = 32  # the tiny models' width


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def embed(model, ids: torch.Tensor) -> torch.Tensor:
    """The embedding layer's output for ``ids`` (its forward hooks run, as in a model pass)."""
    with torch.no_grad():
        return model.get_submodule(architecture_of(model).embedding)(ids)


def expected_noise(rows, cases, sigma, seed, passes=1, dtype=torch.float32):
    """The closed form: per pass, each row draws ``randn(e - b, D) * σ`` from its case's generator,
    in row order; one generator per case for all ``passes`` (index -1: the last pass's noise)."""
    generators = {c: np.random.RandomState(seed) for c in cases}
    out = []
    for _ in range(passes):
        noise = torch.zeros(len(rows), 4, D, dtype=torch.float64)
        for r, (span, c) in enumerate(zip(rows, cases)):
            if span is not None:
                b, e = span
                noise[r, b:e] = torch.from_numpy(generators[c].randn(e - b, D) * sigma)
        out.append(noise.to(dtype))
    return out


@pytest.mark.parametrize("cases", [[0, 0, 0, 0, 0], [0, 1, 2, 3, 4], [1, 0, 1, 0, 1]])
def test_noise_is_sigma_times_each_cases_generator_at_the_subject_rows_only(model, cases):
    ids = torch.randint(0, 1000, (len(ROWS), 4))
    clean = embed(model, ids)
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3), cases):
        noised = embed(model, ids)
    (noise,) = expected_noise(ROWS, cases, 0.3, 3)
    assert torch.equal(noised, clean + noise)  # exactly the draw, and nothing off the subject rows
    assert torch.equal(noised[1], clean[1]) and torch.equal(noised[0, 3:], clean[0, 3:])


def test_default_is_one_case_drawing_in_row_order(model):
    ids = torch.randint(0, 1000, (len(ROWS), 4))
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3)):
        one_case = embed(model, ids)
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3), [7] * len(ROWS)):
        named = embed(model, ids)
    assert torch.equal(one_case, named)
    assert torch.equal(one_case, embed(model, ids) + expected_noise(ROWS, [0] * len(ROWS), 0.3, 3)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_noise_is_cast_to_the_hidden_dtype_and_added_there(model, dtype):
    hidden = torch.randn(len(ROWS), 4, D).to(dtype)
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3, fresh=True), [0, 0, 1, 1, 0]) as hook:
        out = hook("embed", hidden)
    assert out.dtype == dtype
    assert torch.equal(out, hidden + expected_noise(ROWS, [0, 0, 1, 1, 0], 0.3, 3, dtype=dtype)[0])
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3), [0, 0, 1, 1, 0]) as hook:
        hook("embed", hidden.double())  # a pass in another dtype first: the same draw, re-seeded
        assert torch.equal(hook("embed", hidden), out)


def test_the_hook_is_removed_on_exit_and_on_an_exception(model):
    module = model.get_submodule(architecture_of(model).embedding)
    ids = torch.randint(0, 1000, (len(ROWS), 4))
    clean = embed(model, ids)
    with noised_subjects(model, ROWS, SubjectNoise(0.3)):
        assert len(module._forward_hooks) == 1
    assert not module._forward_hooks and torch.equal(embed(model, ids), clean)
    with pytest.raises(RuntimeError, match="inside"):
        with noised_subjects(model, ROWS, SubjectNoise(0.3)):
            raise RuntimeError("inside")
    assert not module._forward_hooks and torch.equal(embed(model, ids), clean)
    with noised_subjects(model, ROWS, None) as hook:  # no noise: nothing installed
        assert hook is None and not module._forward_hooks


def test_fresh_false_repeats_the_noise_fresh_true_advances(model):
    ids = torch.randint(0, 1000, (len(ROWS), 4))
    clean = embed(model, ids)
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3), [0, 1, 0, 1, 0]):
        first, second = embed(model, ids), embed(model, ids)
    assert torch.equal(first, second)  # evaluation: the same noise before and after an edit
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3, fresh=True), [0, 1, 0, 1, 0]):
        passes = [embed(model, ids) for _ in range(3)]
    expected = expected_noise(ROWS, [0, 1, 0, 1, 0], 0.3, 3, passes=3)
    assert torch.equal(passes[0], first)  # the first pass is the seeded draw
    for got, want in zip(passes, expected):  # then each case's generator advances
        assert torch.equal(got, clean + want)
    assert not torch.allclose(passes[1], passes[0])
    with noised_subjects(model, ROWS, SubjectNoise(0.3, seed=3, fresh=True), [0, 1, 0, 1, 0]):
        assert torch.equal(embed(model, ids), first)  # installed again: seeded again


def test_a_batch_of_cases_draws_per_case_as_if_alone(model):
    """Two cases' rows interleaved (copies of a batch, case 0 then case 1, twice over): each case's
    rows get the noise they get when the case runs alone, at every pass."""
    spans = {0: [(1, 3), (0, 2)], 1: [(2, 4), (1, 4)]}
    rows = spans[0][:1] + spans[1][:1] + spans[0][1:] + spans[1][1:]
    cases = [0, 1, 0, 1]
    ids = torch.randint(0, 1000, (4, 4))
    clean = embed(model, ids)
    for fresh in (False, True):
        noise = SubjectNoise(0.3, seed=5, fresh=fresh)
        with noised_subjects(model, rows, noise, cases):
            together = [embed(model, ids) - clean for _ in range(2)]
        for c, picked in ((0, [0, 2]), (1, [1, 3])):
            with noised_subjects(model, spans[c], noise):
                alone = [embed(model, ids[picked]) - clean[picked] for _ in range(2)]
            for a, b in zip(together, alone):
                assert torch.equal(a[picked], b)


def test_rows_left_out_draw_nothing_and_the_others_go_on(model):
    """``hook.only``: an optimisation whose case 0 stops after one step: case 1 keeps drawing its
    own stream, as it does alone; case 0 draws no more."""
    rows, cases = [(1, 3), (0, 2), (2, 4)], [0, 1, 1]
    ids = torch.randint(0, 1000, (3, 4))
    noise = SubjectNoise(0.3, seed=5, fresh=True)
    with noised_subjects(model, rows, noise, cases) as hook:
        embed(model, ids)
        hook.only(torch.tensor([1, 2]))
        later = [embed(model, ids[1:]) for _ in range(2)]
    with noised_subjects(model, rows[1:], noise) as hook:
        alone = [embed(model, ids[1:]) for _ in range(3)]
    assert torch.equal(later[0], alone[1]) and torch.equal(later[1], alone[2])


def test_tracing_samples_are_one_cases_rows_drawn_in_one_call(model):
    """``randn(samples, n, d)`` in one call equals the rows drawn one after another from the same
    generator: tracing's sample set is one case of the policy, and noised targets' first sample is
    the one-row draw."""
    noise = SubjectNoise(0.094, seed=1)
    draw = noise.draw(samples=10, n_tokens=3, d_model=D)
    np.testing.assert_array_equal(draw, np.random.RandomState(1).randn(10, 3, D) * 0.094)  # the reference's
    generator = np.random.RandomState(1)
    np.testing.assert_array_equal(draw, np.stack([generator.randn(3, D) * 0.094 for _ in range(10)]))
    ids = torch.randint(0, 1000, (10, 5))
    with noised_subjects(model, [(1, 4)] * 10, noise):
        rows = embed(model, ids)
    assert torch.equal(rows[:, 1:4], (embed(model, ids)[:, 1:4] + torch.from_numpy(draw).float()))
    run = GaussianNoise(0.094, samples=10, seed=1).corrupt([5] * 5, (1, 4), d_model=D)
    np.testing.assert_array_equal(run.noise.numpy(), draw)
    with noised_subjects(model, [(1, 4)], noise):
        assert torch.equal(embed(model, ids[:1]), rows[:1])
    assert not np.array_equal(SubjectNoise(0.094, seed=2).draw(10, 3, D), draw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_traces_noise_is_broadcast_over_copies_as_the_repeated_noise(dtype):
    run = GaussianNoise(0.5, samples=3, seed=1).corrupt([5, 6, 7, 8, 9, 4], (1, 3), d_model=16)
    hidden = torch.randn(12, 6, 16).to(dtype)  # 4 copies of the 3 noised rows
    expected = hidden.clone()
    expected[:, 1:3] += run.noise.repeat(4, 1, 1).to(dtype)
    assert torch.equal(run.embedding_edit()("embed", hidden), expected)


def test_a_trace_casts_its_noise_once_per_dtype():
    run = GaussianNoise(0.5, samples=3, seed=1).corrupt([5, 6, 7, 8, 9], (1, 4), d_model=16)
    hidden = torch.randn(6, 5, 16)
    first = run.embedding_edit()("embed", hidden)
    second = run.embedding_edit(start=2)("embed", hidden[:, 2:])  # another pass: a suffix of the positions
    assert list(run._cast) == [torch.float32]  # one float32 copy of the draw, shared by every pass
    assert torch.equal(first[:, 2:], second)
