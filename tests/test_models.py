"""Every registry row on a tiny random model: hooks fire, and restoring clean states is exact."""

import pytest
import torch

from locedit.corruption import GaussianNoise
from locedit.hooks import capture_inputs, capture_outputs, edit_outputs, forward_until
from locedit.models import ARCHITECTURES, architecture_of, model_slug, num_layers
from locedit.prompts import encode, gather_target_log_probs
from locedit.tracing import trace

from conftest import TINY_CONFIGS, tiny_model

PROMPT, SUBJECT, TARGET = "The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "French"


def test_registry_and_tiny_configs_cover_the_same_families():
    assert set(ARCHITECTURES) == set(TINY_CONFIGS)


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_every_registered_module_exists_and_its_hook_fires(model_type, gpt2_tokenizer):
    model = tiny_model(model_type)
    arch = architecture_of(model)
    n = num_layers(model)
    names = [arch.embedding, arch.final_norm]
    for i in range(n):
        names += [arch.layer(i), arch.mlp(i), arch.attn(i)]
    ids = torch.tensor([encode(gpt2_tokenizer, PROMPT, TARGET).ids])
    with capture_outputs(model, names) as seen, capture_inputs(model, [arch.down_proj(i) for i in range(n)]) as keys:
        model(input_ids=ids)
    assert set(seen) == set(names)
    for name in names:
        assert seen[name].shape[:2] == ids.shape and seen[name].shape[-1] == model.config.hidden_size
    weight = model.get_submodule(arch.down_proj(0)).weight
    d_in = weight.shape[0] if arch.down_proj_transposed else weight.shape[1]
    assert all(k.shape == (*ids.shape, d_in) for k in keys.values())
    assert model.get_submodule(arch.unembedding) is model.get_output_embeddings()
    assert len(model.get_submodule(arch.layers)) == n


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_a_pass_stopped_after_a_layer_reads_what_a_full_pass_does(model_type, gpt2_tokenizer):
    """forward_until(…, the layer holding the read modules): their states are a full pass's, bit
    for bit, and no layer above it runs."""
    model = tiny_model(model_type)
    arch = architecture_of(model)
    read = [arch.down_proj(1), arch.layer(1)]
    assert arch.layer_of(read[0]) == 1 and arch.last_layer_for(read) == arch.layer(1)
    assert arch.last_layer_for([*read, arch.final_norm]) is None  # outside the layers: the whole pass
    batch = {"input_ids": torch.tensor([encode(gpt2_tokenizer, PROMPT, TARGET).ids])}
    with capture_inputs(model, read[:1]) as full_in, capture_outputs(model, read[1:]) as full_out:
        model.base_model(**batch)
    with capture_inputs(model, read[:1]) as part_in, capture_outputs(model, read[1:]) as part_out, \
            capture_outputs(model, [arch.layer(2)]) as above:
        forward_until(model, batch, arch.last_layer_for(read))
    assert torch.equal(part_in[read[0]], full_in[read[0]]) and torch.equal(part_out[read[1]], full_out[read[1]])
    assert not above


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_restoring_clean_states_gives_back_the_clean_probability(model_type, gpt2_tokenizer):
    model = tiny_model(model_type)
    arch = architecture_of(model)
    n = num_layers(model)
    result = trace(model, gpt2_tokenizer, PROMPT, SUBJECT, TARGET, GaussianNoise(1.0, samples=4), kind="hidden", window=1)
    assert result.low != pytest.approx(result.clean, rel=1e-3)  # the noise does something
    # the last layer's hidden state at the last prompt token decides the first target token; the
    # later target tokens see only unnoised positions, so restoring it restores P exactly
    assert result.scores[-1, n - 1] == pytest.approx(result.clean, rel=1e-5)
    # restoring every position of every layer's output is the clean run
    enc = encode(gpt2_tokenizer, PROMPT, TARGET)
    batch = {"input_ids": torch.tensor([enc.ids] * 3)}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad(), capture_outputs(model, [arch.layer(i) for i in range(n)]) as clean_states:
        clean = gather_target_log_probs(model, batch, [enc], rows_per_item=3).exp()

    def noise(_name, h):
        return h + torch.randn_like(h)

    def restore(name, h):
        return clean_states[name].clone()

    with torch.no_grad(), edit_outputs(model, {arch.embedding: noise, arch.layer(0): restore}):
        restored = gather_target_log_probs(model, batch, [enc], rows_per_item=3).exp()
    torch.testing.assert_close(restored, clean, rtol=0, atol=0)


def test_unknown_family_names_the_supported_ones():
    class Config:
        model_type = "mamba"

    with pytest.raises(ValueError, match="mamba.*supported: gemma3_text, gpt2"):
        architecture_of(Config())


def test_model_slug():
    assert model_slug("EleutherAI/gpt-j-6B") == "EleutherAI--gpt-j-6B"
    assert model_slug("gemma-3-270m") == "gemma-3-270m"


def test_an_embedded_model_converted_once_per_user_is_linked_not_converted_again(tmp_path, monkeypatch):
    """A second checkout (or CI run) finds the conversion in the user cache: prepare_model links its
    files into the checkout's folder and never opens the GGUF file."""
    from locedit import models

    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path / "cache"))
    cached = models.converted_folder(models.EMBEDDED_MODELS["gemma-3-270m"])
    assert cached.parent == tmp_path / "cache" / "models" and "1.0.0" in cached.name
    cached.mkdir(parents=True)
    (cached / "model.safetensors").write_bytes(b"weights")
    (cached / "config.json").write_text("{}")
    monkeypatch.setattr(models, "_write_hf_folder", lambda *a, **k: pytest.fail("converted again"))
    out = models.prepare_model("gemma-3-270m", tmp_path / "checkout" / "resources" / "models" / "gemma-3-270m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert (out / "model.safetensors").stat().st_ino == (cached / "model.safetensors").stat().st_ino  # a hard link
