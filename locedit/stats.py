"""Second-moment statistics C = E[k kᵀ] of the MLP keys (the input of the down-projection).

ROME and MEMIT need C for every edited layer. All layers are collected in **one pass** over the
corpus, accumulated in float32 (float64 on request), and checkpointed every few batches so a
killed job resumes where it stopped::

    >>> texts = corpus_texts("bundled-wiki", n_samples=400)                       # doctest: +SKIP
    >>> moments = collect_second_moments(model, tok, texts, layers=[3, 4, 5],
    ...                                  checkpoint="resources/stats/x/ckpt.pt")   # doctest: +SKIP
    >>> moments.layer(4).shape, moments.n_tokens                                  # doctest: +SKIP
    (torch.Size([2048, 2048]), 44512)
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .hooks import capture_inputs
from .models import architecture_of
from .prompts import pad_batch

BUNDLED_WIKI = "bundled-wiki"

log = logging.getLogger("locedit")


def corpus_texts(corpus: str, n_samples: int | None = None, seed: int = 1) -> list[str]:
    """Texts for the statistics: ``bundled-wiki``, a text file (paragraphs split on blank lines),
    or ``hf:<dataset>:<config>:<split>[@revision]`` through the ``datasets`` library.

    With ``n_samples`` a fixed pseudo-random subset (``random.Random(seed)``) is taken.
    """
    if corpus == BUNDLED_WIKI:
        from .data import bundled_path

        with gzip.open(bundled_path("corpus/ovos_wiki_offline_summaries_en-us.json.gz"), "rt") as f:
            pages = json.load(f)
        texts = [pages[title]["extract"] for title in sorted(pages)]
    elif corpus.startswith("hf:"):
        import datasets

        spec, _, revision = corpus[3:].partition("@")
        name, config, split = (spec.split(":") + ["", ""])[:3]
        rows = datasets.load_dataset(name, config or None, split=split or "train", revision=revision or None)
        texts = list(rows["text"])
    else:
        path = Path(corpus)
        if not path.is_file():
            raise FileNotFoundError(
                f"stats.corpus {corpus!r} is not '{BUNDLED_WIKI}', 'hf:<dataset>:<config>:<split>', or a text file"
            )
        texts = [p.strip() for p in path.read_text().split("\n\n")]
    texts = [t for t in texts if t.strip()]
    if n_samples is not None and n_samples < len(texts):
        texts = random.Random(seed).sample(texts, n_samples)
    return texts


@dataclass
class SecondMoments:
    """Running sums of k kᵀ per layer and the number of tokens they cover."""

    sums: dict[int, torch.Tensor]
    n_tokens: int = 0
    n_texts: int = 0
    meta: dict = field(default_factory=dict)

    def layer(self, layer: int) -> torch.Tensor:
        """C = E[k kᵀ] of ``layer``."""
        return self.sums[layer] / self.n_tokens

    def state_dict(self) -> dict:
        return {"sums": self.sums, "n_tokens": self.n_tokens, "n_texts": self.n_texts, "meta": self.meta}

    @classmethod
    def from_state_dict(cls, state: dict) -> "SecondMoments":
        return cls(state["sums"], state["n_tokens"], state["n_texts"], state.get("meta", {}))


class _StopForward(Exception):
    pass


@torch.no_grad()
def collect_second_moments(
    model: nn.Module,
    tok,
    texts: list[str],
    layers: list[int],
    max_tokens: int = 256,
    batch_size: int = 16,
    accumulate: torch.dtype = torch.float32,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    stop_after_batches: int | None = None,
) -> SecondMoments:
    """One pass over ``texts`` collecting E[k kᵀ] for all ``layers`` at once, over every non-pad token.

    Texts are truncated to ``max_tokens``. With ``checkpoint``, the running sums are saved every
    ``checkpoint_every`` batches and a rerun continues from the saved batch.
    ``stop_after_batches`` ends early (tests use it to simulate a killed job).
    """
    arch = architecture_of(model)
    device = next(model.parameters()).device
    names = {arch.down_proj(layer): layer for layer in layers}
    meta = {"max_tokens": max_tokens, "accumulate": str(accumulate), "layers": sorted(layers),
            "n_texts_planned": len(texts), "batch_size": batch_size}
    moments = SecondMoments(sums={}, meta=meta)
    if checkpoint and Path(checkpoint).exists():
        saved = SecondMoments.from_state_dict(torch.load(checkpoint, map_location="cpu"))
        if saved.meta == meta:  # a checkpoint of other settings is ignored (and overwritten)
            moments = saved
            log.info("resuming from %s: %d of %d texts done", checkpoint, saved.n_texts, len(texts))
    top = model.get_submodule(arch.layer(max(layers)))

    def stop(*_):  # nothing above the highest needed layer is computed
        raise _StopForward

    batches = range(moments.n_texts, len(texts), batch_size)
    for step, start in enumerate(tqdm(batches, desc="key statistics", unit="batch", mininterval=10)):
        chunk = texts[start : start + batch_size]
        ids = [tok(t, truncation=True, max_length=max_tokens)["input_ids"] for t in chunk]
        batch = pad_batch(ids, tok.pad_token_id, device)
        mask = batch["attention_mask"].bool()
        handle = top.register_forward_hook(stop)
        try:
            with capture_inputs(model, list(names)) as keys:
                model.base_model(**batch, use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()
        for name, layer in names.items():
            k = keys[name][mask].to(accumulate)
            moments.sums[layer] = moments.sums.get(layer, 0) + (k.T @ k).cpu()
        moments.n_tokens += int(mask.sum())
        moments.n_texts = start + len(chunk)
        finished = moments.n_texts == len(texts)
        if checkpoint and ((step + 1) % checkpoint_every == 0 or finished):
            _atomic_save(moments.state_dict(), Path(checkpoint))
        if stop_after_batches is not None and step + 1 >= stop_after_batches:
            break
    return moments


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def save_layer_moments(moments: SecondMoments, folder: str | Path) -> list[Path]:
    """One ``mom2_layer{l}.pt`` per layer (C itself, float32) plus ``meta.json``."""
    folder = Path(folder)
    paths = []
    for layer in sorted(moments.sums):
        path = folder / f"mom2_layer{layer}.pt"
        _atomic_save(moments.layer(layer).float(), path)
        paths.append(path)
    meta = {**moments.meta, "n_tokens": moments.n_tokens, "n_texts": moments.n_texts}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return paths


def load_layer_moment(folder: str | Path, layer: int) -> torch.Tensor:
    path = Path(folder) / f"mom2_layer{layer}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no key statistics for layer {layer} in {folder}: run the key_stats rule first")
    return torch.load(path, map_location="cpu")


class KeyStats:
    """C and C⁻¹ per layer from a statistics folder, loaded lazily and kept for the job's lifetime.

        >>> stats = KeyStats("resources/stats/gemma-3-270m/bundled-wiki_n400")   # doctest: +SKIP
        >>> stats.inverse(5) @ k                                                    # doctest: +SKIP
    """

    def __init__(self, folder: str | Path | None, dtype: torch.dtype = torch.float64):
        self.folder = folder
        self.dtype = dtype
        self._moments: dict[int, torch.Tensor] = {}
        self._inverses: dict[int, torch.Tensor] = {}

    def moment(self, layer: int) -> torch.Tensor:
        if layer not in self._moments:
            if self.folder is None:
                raise FileNotFoundError("this method needs key statistics: give the key_stats folder")
            self._moments[layer] = load_layer_moment(self.folder, layer)
        return self._moments[layer]

    def inverse(self, layer: int) -> torch.Tensor:
        if layer not in self._inverses:
            self._inverses[layer] = torch.linalg.inv(self.moment(layer).to(self.dtype))
        return self._inverses[layer]


def stats_folder_name(stats_cfg: dict) -> str:
    """Folder of one statistics setting, e.g. ``bundled-wiki_n400_t256_float32``."""
    corpus = Path(stats_cfg["corpus"]).name.replace(":", "-").replace("@", "-")
    return f"{corpus}_n{stats_cfg['n_samples']}_t{stats_cfg['max_tokens']}_{stats_cfg['dtype']}_s{stats_cfg['seed']}"
