"""The bfloat16 twin of a mixed-precision edit: the deep copy cast to bfloat16, bit for bit, made
without a second float32 copy of the weights."""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from locedit.editing.precision import bfloat16_copy

from conftest import tiny_model


class Float32Allocations(TorchDispatchMode):
    """Counts the float32 elements the torch ops inside the block allocate (not views of their inputs)."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in [*args, *(kwargs or {}).values()]
                  if isinstance(t, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.untyped_storage().data_ptr() not in inputs:
                self.elements += t.numel()
        return out


@pytest.mark.parametrize("model_type", ["gpt2", "gemma3_text"])  # tied unembedding; rotary buffers
def test_the_twin_equals_the_cast_deep_copy_without_copying_float32_weights(model_type):
    model = tiny_model(model_type)
    expected = copy.deepcopy(model).to(torch.bfloat16)
    with Float32Allocations() as seen:
        twin = bfloat16_copy(model)
    n_params = sum(p.numel() for p in model.parameters())
    assert seen.elements < n_params / 100  # buffers only (a deep copy: every weight again)
    want, got = expected.state_dict(keep_vars=True), twin.state_dict(keep_vars=True)
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name
    for (name, a), (_, b) in zip(expected.named_buffers(), twin.named_buffers()):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert twin.get_output_embeddings().weight is twin.get_input_embeddings().weight  # tied stays tied
    assert not any(p.requires_grad for p in twin.parameters()) and not twin.training
    assert next(model.parameters()).dtype == torch.float32  # the model itself untouched
