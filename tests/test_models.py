"""Every registry row on a tiny random model: hooks fire, and restoring clean states is exact."""

import fnmatch
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from locedit.hooks import capture_inputs, capture_outputs, edit_outputs, forward_until
from locedit.models import ARCHITECTURES, architecture_of, num_layers
from locedit.plan import model_slug
from locedit.prompts import encode, gather_target_log_probs
from locedit.tracing.corruption import GaussianNoise
from locedit.tracing.trace import trace

from conftest import TINY_CONFIGS, gpt2_tokenizer_files, tiny_model, weights_hash

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


def fake_hub(repo: Path, calls: list[list[str]]):
    """A stand-in for ``huggingface_hub.snapshot_download`` serving the files of ``repo``: what
    ``allow_patterns`` select, into ``local_dir`` or an HF cache snapshot under ``$HF_HOME``."""

    def snapshot_download(repo_id, *, allow_patterns, local_dir=None, **kwargs):
        calls.append(list(allow_patterns))
        target = Path(local_dir) if local_dir else (
            Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "abc123")
        target.mkdir(parents=True, exist_ok=True)
        for path in repo.iterdir():
            if any(fnmatch.fnmatch(path.name, pattern) for pattern in allow_patterns):
                shutil.copy(path, target / path.name)
        return str(target)

    return snapshot_download


@pytest.fixture
def hub_repo(tmp_path, gpt2_tokenizer):
    """A tiny Llama's hub repository: config, GPT-2 tokenizer files, safetensors weights, and the
    Flax / TensorFlow / PyTorch copies that must not be downloaded beside them."""
    repo = tmp_path / "repo"
    model = tiny_model("llama")
    model.save_pretrained(repo)
    gpt2_tokenizer.save_pretrained(repo)
    gpt2_tokenizer_files(repo)  # vocab.json and merges.txt beside tokenizer.json, as GPT-J's repository has them
    for decoy in ("flax_model.msgpack", "tf_model.h5", "pytorch_model.bin"):
        (repo / decoy).write_bytes(b"not these weights")
    return repo, weights_hash(model)


def unreachable_hub(monkeypatch) -> None:
    """Offline mode, a bogus endpoint, and any name lookup or connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for name, owner in (("getaddrinfo", socket), ("connect", socket.socket)):
        monkeypatch.setattr(owner, name, lambda *a, name=name: pytest.fail(f"network access: {name}{a[:2]}"))


@pytest.mark.parametrize("cache", [False, True], ids=["into-resources", "into-HF_HOME"])
def test_a_hub_model_is_downloaded_once_then_loaded_without_network(hub_repo, tmp_path, monkeypatch, cache):
    """prepare_model fetches config, tokenizer and the safetensors weights only, into the model
    folder (or the HF cache with a pointer); load_model then reads them with the hub unreachable."""
    from locedit import models

    repo, expected = hub_repo
    calls = []
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    if cache:
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    else:
        monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_hub(repo, calls))
    out = models.prepare_model("some-org/tiny-llama", tmp_path / "resources" / "models" / "some-org--tiny-llama")
    assert calls == [models.HUB_METADATA, ["model*.safetensors"]]  # no .bin fallback: safetensors exist
    if cache:
        assert sorted(p.name for p in out.iterdir()) == [models.SOURCE_FILE]
        pointer = json.loads((out / models.SOURCE_FILE).read_text())
        assert pointer == {"source": str(tmp_path / "hf" / "hub" / "models--some-org--tiny-llama" / "snapshots"
                                         / "abc123"), "hub_id": "some-org/tiny-llama"}
        weights = Path(pointer["source"])
    else:
        assert not (out / models.SOURCE_FILE).exists() and not out.with_name(out.name + ".download").exists()
        weights = out
    names = {p.name for p in weights.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"} <= names
    assert not names & {"flax_model.msgpack", "tf_model.h5", "pytorch_model.bin"}

    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: pytest.fail("downloaded again"))
    unreachable_hub(monkeypatch)
    model, tok = models.load_model(out, device="cpu")
    assert weights_hash(model) == expected and tok("Hello world")["input_ids"] == [15496, 995]


def test_a_hub_model_without_safetensors_falls_back_to_its_pytorch_weights(hub_repo, tmp_path, monkeypatch):
    from locedit import models

    repo, expected = hub_repo
    model, _ = models.load_model(repo, device="cpu")
    torch.save(model.state_dict(), repo / "pytorch_model.bin")
    (repo / "model.safetensors").unlink()
    calls = []
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_hub(repo, calls))
    out = models.prepare_model("some-org/tiny-llama", tmp_path / "models" / "tiny")
    assert calls == [models.HUB_METADATA, ["model*.safetensors"], ["pytorch_model*.bin"]]
    unreachable_hub(monkeypatch)
    assert weights_hash(models.load_model(out, device="cpu")[0]) == expected


def test_a_failed_download_names_the_id_the_network_and_the_login_node(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    from locedit import models

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub and the files are not cached")

    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    out = tmp_path / "models" / "EleutherAI--gpt-j-6B"
    with pytest.raises(ValueError) as err:
        models.prepare_model("EleutherAI/gpt-j-6B", out)
    message = str(err.value)
    assert "model.name 'EleutherAI/gpt-j-6B'" in message and "LocalEntryNotFoundError" in message
    assert "needs network access" in message and "login node" in message and "prepare_model" in message
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())  # nothing left behind
