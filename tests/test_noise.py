"""Subject noise reaches the device in fewer, larger copies, with the values of one numpy draw per
row as before, bit for bit."""

import numpy as np
import pytest
import torch

from locedit.tracing.corruption import GaussianNoise
from locedit.noise import add_noise, row_noise_hook

RANGES = [(1, 3), None, (0, 4), (2, 4), (1, 3)]  # rows of one batch: spans of 2 and 4 tokens, one without


def per_row(ranges, sigma, rng=None, seed=1):
    """The hook as it was: a numpy draw and a copy to the device per row and forward pass."""

    def add(_name, hidden):
        hidden = hidden.clone()
        for row, span in enumerate(ranges):
            if span is None:
                continue
            b, e = span
            source = rng[row] if isinstance(rng, list) else rng if rng is not None else np.random.RandomState(seed)
            hidden[row, b:e] += torch.from_numpy(source.randn(e - b, hidden.shape[-1]) * sigma).to(hidden.device,
                                                                                                   hidden.dtype)
        return hidden

    return add


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("draws", ["seeded", "one generator", "a generator per row"])
def test_row_noise_equals_one_draw_per_row(dtype, draws):
    def generators():
        return {"seeded": None, "one generator": np.random.RandomState(7),
                "a generator per row": [np.random.RandomState(10 + r) for r in range(len(RANGES))]}[draws]

    hidden = torch.randn(len(RANGES), 5, 16).to(dtype)
    fast, slow = row_noise_hook(RANGES, 0.3, generators(), seed=3), per_row(RANGES, 0.3, generators(), seed=3)
    for _ in range(3):  # forward passes: fresh draws from a generator, the same seeded draw
        assert torch.equal(fast("embed", hidden), slow("embed", hidden))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_noise_broadcast_over_copies_equals_the_repeated_noise(dtype):
    noise = torch.from_numpy(np.random.RandomState(1).randn(3, 2, 16) * 0.5)
    hidden = torch.randn(12, 6, 16).to(dtype)  # 4 copies of the 3 noised rows
    expected = hidden.clone()
    expected[:, 1:3] += noise.repeat(4, 1, 1).to(dtype)
    assert torch.equal(add_noise(hidden, 1, noise), expected)


def test_a_trace_casts_its_noise_once_per_dtype():
    run = GaussianNoise(0.5, samples=3, seed=1).corrupt([5, 6, 7, 8, 9], (1, 4), d_model=16)
    hidden = torch.randn(6, 5, 16)
    first = run.embedding_edit()("embed", hidden)
    second = run.embedding_edit(start=2)("embed", hidden[:, 2:])  # another pass: a suffix of the positions
    assert list(run._cast) == [torch.float32]  # one float32 copy of the draw, shared by every pass
    assert torch.equal(first[:, 2:], second)
