"""Second-moment statistics C = E[k kᵀ] of the MLP keys (the input of the down-projection).

ROME and MEMIT need C⁻¹ for every edited layer. The pass over the corpus (a stream of the selected
texts, :func:`corpus_texts`) may be split into jobs by layer group and corpus shard (rule
``key_stats_part``); each accumulates running sums of its layers on the model's device in the
statistics dtype, checkpointed every few batches. The parts' sums and token counts are added
(rule ``key_stats``), C is inverted once per layer (rule ``factor_stats``), and an edit job reads
only the factors of the window it edits (:class:`KeyStats`)::

    >>> texts = corpus_texts("bundled-wiki", n_samples=400, shard=0, shards=2)    # doctest: +SKIP
    >>> part = collect_second_moments(model, tok, texts, layers=[3, 4, 5], meta={"shard": 0, "shards": 2},
    ...                               checkpoint="stats/parts/.l3-5_shard0.checkpoint.pt")  # doctest: +SKIP
    >>> save_part(part, "stats/parts/l3-5_shard0.pt")                             # doctest: +SKIP
    >>> save_merged_moments(["stats/parts/l3-5_shard0.pt", "stats/parts/l3-5_shard1.pt"], "stats")  # doctest: +SKIP
    >>> save_factor("stats", 4, "cuda")                                           # doctest: +SKIP
    >>> KeyStats("stats", keep=5).inverse(4, "cuda").dtype                        # doctest: +SKIP
    torch.float64
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from locedit.device import stamp
from locedit.hooks import capture_inputs, forward_until
from locedit.models import architecture_of
from locedit.prompts import pad_batch

BUNDLED_WIKI = "bundled-wiki"

log = logging.getLogger("locedit")


# ---------------------------------------------------------------------------------------------
# The corpus: the selected texts, streamed
# ---------------------------------------------------------------------------------------------


class _ListSource:
    """Texts held in memory (the bundled Wikipedia leads, a local text file)."""

    def __init__(self, texts: list[str]):
        self.items = texts

    def nonempty(self) -> list[int]:
        return [i for i, t in enumerate(self.items) if t.strip()]

    def texts(self, positions: Sequence[int]) -> Iterator[str]:
        return (self.items[i] for i in positions)


class _ArrowSource:
    """The ``text`` column of a ``datasets`` table, read row by row from its memory-mapped Arrow files."""

    def __init__(self, rows):
        self.rows = rows.select_columns(["text"])

    def nonempty(self) -> np.ndarray:
        import pyarrow.compute as pc

        # str.strip()'s whitespace (str.isspace), matched by Arrow's RE2 without making Python strings
        space = "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x110000)) if c.isspace())
        column = self.rows.with_format("arrow")["text"]
        blank = pc.fill_null(pc.match_substring_regex(column, f"^[{space}]*$"), True)
        return np.flatnonzero(~blank.to_numpy(zero_copy_only=False))

    def texts(self, positions: Sequence[int], chunk: int = 256) -> Iterator[str]:
        for start in range(0, len(positions), chunk):
            yield from self.rows[[int(i) for i in positions[start:start + chunk]]]["text"]


class _JsonLinesSource:
    """A gzipped JSON-lines file, one ``{"text": ...}`` per line (what rule fetch_corpus writes)."""

    def __init__(self, path: Path):
        self.path = path

    def _lines(self) -> Iterator[str]:
        with gzip.open(self.path, "rt", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]

    def nonempty(self) -> list[int]:
        return [i for i, t in enumerate(self._lines()) if t.strip()]

    def texts(self, positions: Sequence[int]) -> Iterator[str]:
        wanted = list(positions)
        if wanted != sorted(wanted):  # a sampled order: gather the wanted lines, then yield in order
            keep = set(wanted)
            found = {i: t for i, t in enumerate(self._lines()) if i in keep}
            yield from (found[i] for i in wanted)
            return
        lines = self._lines()
        at = -1
        for i in wanted:  # file order: stream, never holding more than one text
            text = next(itertools.islice(lines, i - at - 1, None))
            at = i
            yield text


class CorpusTexts:
    """The selected texts of a statistics corpus in their fixed order, read when iterated.

    ``len()`` counts them; ``texts[a:b]`` is the view of positions ``a .. b-1``; iterating reads
    each text from its source (held only for the bundled and text-file corpora, which are small).
    Build it with :func:`corpus_texts`.
    """

    def __init__(self, source: _ListSource | _ArrowSource | _JsonLinesSource, order: Sequence[int]):
        self.source = source
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: slice) -> "CorpusTexts":
        if not isinstance(index, slice):
            raise TypeError("CorpusTexts takes slices (texts[a:b]); iterate it for the texts")
        return CorpusTexts(self.source, self.order[index])

    def __iter__(self) -> Iterator[str]:
        return self.source.texts(self.order)


def corpus_texts(corpus: str, n_samples: int | None = None, seed: int = 1, shard: int = 0,
                 shards: int = 1) -> CorpusTexts:
    """Texts for the statistics: ``bundled-wiki``, a text file (paragraphs split on blank lines),
    a gzipped JSON-lines file (``*.jsonl.gz``, rule fetch_corpus's output), or
    ``hf:<dataset>:<config>:<split>[@revision]`` through the ``datasets`` library (the Arrow
    table is indexed, never copied into a list).

    Blank texts are dropped; with ``n_samples`` a fixed pseudo-random subset is taken, the same
    texts in the same order as ``random.Random(seed).sample(texts, n_samples)``. Shard ``shard`` of
    ``shards`` is a contiguous slice of that order (``shards=1``: all of it).

        >>> texts = corpus_texts("bundled-wiki", n_samples=10, shard=1, shards=3)
        >>> len(texts), len(corpus_texts("bundled-wiki", n_samples=10))
        (3, 10)
    """
    if not 0 <= shard < shards:
        raise ValueError(f"corpus shard {shard} is not one of 0..{shards - 1} (stats.shards = {shards})")
    source = _corpus_source(corpus)
    positions = source.nonempty()
    if n_samples is not None and n_samples < len(positions):
        picks = random.Random(seed).sample(range(len(positions)), n_samples)  # as sample(texts, n): same draws
        positions = [positions[j] for j in picks]
    n = len(positions)
    return CorpusTexts(source, positions[shard * n // shards:(shard + 1) * n // shards])


def _corpus_source(corpus: str) -> _ListSource | _ArrowSource | _JsonLinesSource:
    if corpus == BUNDLED_WIKI:
        from locedit.cases.counterfact import bundled_path

        with gzip.open(bundled_path("corpus/ovos_wiki_offline_summaries_en-us.json.gz"), "rt") as f:
            pages = json.load(f)
        return _ListSource([pages[title]["extract"] for title in sorted(pages)])
    if corpus.startswith("hf:"):
        import datasets

        spec, _, revision = corpus[3:].partition("@")
        name, config, split = (spec.split(":") + ["", ""])[:3]
        return _ArrowSource(datasets.load_dataset(name, config or None, split=split or "train",
                                                  revision=revision or None))
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(f"stats.corpus {corpus!r} is not '{BUNDLED_WIKI}', "
                                "'hf:<dataset>:<config>:<split>', a .jsonl.gz file, or a text file")
    if path.name.endswith(".jsonl.gz"):
        return _JsonLinesSource(path)
    return _ListSource([p.strip() for p in path.read_text().split("\n\n")])


def save_corpus(texts: Iterable[str], path: str | Path) -> int:
    """Write ``texts`` in order as gzipped JSON lines (atomically); the number written.

    Rule fetch_corpus stores the selected texts of an ``hf:`` corpus this way, once, on a node with
    network; the statistics jobs then read the file with :func:`corpus_texts`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for text in tqdm(texts, desc="corpus", unit="text", mininterval=10):
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


# ---------------------------------------------------------------------------------------------
# Sums of k kᵀ over one corpus shard, for one group of layers
# ---------------------------------------------------------------------------------------------


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
        """The sums on the host, as checkpoints and parts store them."""
        sums = {layer: s.cpu() for layer, s in self.sums.items()}
        return {"sums": sums, "n_tokens": self.n_tokens, "n_texts": self.n_texts, "meta": self.meta}

    @classmethod
    def from_state_dict(cls, state: dict) -> "SecondMoments":
        return cls(state["sums"], state["n_tokens"], state["n_texts"], state.get("meta", {}))

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", mmap: bool = False) -> "SecondMoments":
        return cls.from_state_dict(torch.load(path, map_location=device, mmap=mmap, weights_only=True))


@torch.no_grad()
def collect_second_moments(
    model: nn.Module,
    tok,
    texts: Sequence[str] | CorpusTexts,
    layers: list[int],
    max_tokens: int = 256,
    batch_size: int = 16,
    accumulate: torch.dtype = torch.float32,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    stop_after_batches: int | None = None,
    meta: dict | None = None,
) -> SecondMoments:
    """One pass over ``texts`` collecting the sums of k kᵀ for all ``layers`` at once, over every
    non-pad token, accumulated on the model's device in ``accumulate``.

    Texts are truncated to ``max_tokens``; nothing above the highest of ``layers`` is computed.
    With ``checkpoint``, the running sums are saved (on the host) every ``checkpoint_every``
    batches and a rerun continues from the saved batch, provided the checkpoint was made with the
    same settings (``meta``, e.g. the corpus and shard, among them) on the same kind of device
    (:func:`locedit.device.stamp`); another checkpoint is ignored and overwritten.
    ``stop_after_batches`` ends early (tests use it to simulate a killed job).
    """
    arch = architecture_of(model)
    device = next(model.parameters()).device
    names = {arch.down_proj(layer): layer for layer in layers}
    meta = {"max_tokens": max_tokens, "accumulate": str(accumulate), "layers": sorted(layers),
            "n_texts_planned": len(texts), "batch_size": batch_size, "device": stamp(device), **(meta or {})}
    moments = SecondMoments(sums={}, meta=meta)
    if checkpoint and Path(checkpoint).exists():
        saved = SecondMoments.load(checkpoint, device)
        if saved.meta == meta:
            moments = saved
            log.info("resuming from %s: %d of %d texts done", checkpoint, saved.n_texts, len(texts))
        else:
            log.info("not resuming from %s: it was made with other settings %s", checkpoint, saved.meta)
    top = arch.layer(max(layers))
    rest = iter(texts[moments.n_texts:])
    n_batches = -(-(len(texts) - moments.n_texts) // batch_size)
    for step in tqdm(range(n_batches), desc="key statistics", unit="batch", mininterval=10):
        chunk = list(itertools.islice(rest, batch_size))
        ids = [tok(t, truncation=True, max_length=max_tokens)["input_ids"] for t in chunk]
        batch = pad_batch(ids, tok.pad_token_id, device)
        mask = batch["attention_mask"].bool()
        with capture_inputs(model, list(names)) as keys:
            forward_until(model, batch, top)
        for name, layer in names.items():
            k = keys[name][mask].to(accumulate)
            product = k.T @ k
            if layer not in moments.sums:
                moments.sums[layer] = torch.zeros_like(product)  # 0 + x, as the sums always began
            moments.sums[layer].add_(product)
        moments.n_tokens += int(mask.sum())
        moments.n_texts += len(chunk)
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


def save_part(moments: SecondMoments, path: str | Path) -> Path:
    """A finished part (one layer group over one corpus shard): its sums, tokens and texts."""
    if moments.n_texts != moments.meta["n_texts_planned"]:
        raise ValueError(f"part {path} is unfinished: {moments.n_texts} of {moments.meta['n_texts_planned']} texts")
    _atomic_save(moments.state_dict(), Path(path))
    return Path(path)


# ---------------------------------------------------------------------------------------------
# C per layer: one pass, or the parts added up
# ---------------------------------------------------------------------------------------------


def _save_layer(folder: Path, layer: int, total: torch.Tensor, n_tokens: int) -> Path:
    path = folder / f"mom2_layer{layer}.pt"
    _atomic_save((total / n_tokens).float(), path)
    return path


def save_layer_moments(moments: SecondMoments, folder: str | Path) -> list[Path]:
    """One ``mom2_layer{l}.pt`` per layer (C itself, float32) plus ``meta.json``."""
    folder = Path(folder)
    paths = [_save_layer(folder, layer, moments.sums[layer].cpu(), moments.n_tokens) for layer in sorted(moments.sums)]
    meta = {**moments.meta, "n_tokens": moments.n_tokens, "n_texts": moments.n_texts}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return paths


def save_merged_moments(parts: list[str | Path], folder: str | Path) -> list[Path]:
    """The parts' sums added exactly into ``mom2_layer{l}.pt`` (C = Σ sums / Σ tokens, the shards
    added in shard order) plus ``meta.json``, one layer at a time (the parts are memory-mapped).

    Every layer must come from one part of every corpus shard, and the parts of a shard must have
    read the same texts (their token counts agree). One part gives C bit-identical to one pass.
    """
    folder = Path(folder)
    loaded = {Path(p): SecondMoments.load(p, mmap=True) for p in parts}
    if not loaded:
        raise ValueError("no key statistics parts to merge: run rule key_stats_part first")
    shards = next(iter(loaded.values())).meta.get("shards", 1)
    by_layer: dict[int, dict[int, SecondMoments]] = {}
    counts: dict[int, tuple[int, int, Path]] = {}  # shard -> (tokens, texts, first part read)
    for path, part in loaded.items():
        shard = part.meta.get("shard", 0)
        if part.n_texts != part.meta["n_texts_planned"]:
            raise ValueError(f"{path} is unfinished ({part.n_texts} of {part.meta['n_texts_planned']} texts): "
                             "rerun its key_stats_part job")
        seen = counts.setdefault(shard, (part.n_tokens, part.n_texts, path))
        if seen[:2] != (part.n_tokens, part.n_texts):
            raise ValueError(f"{path} and {seen[2]} cover corpus shard {shard} with different texts "
                             f"({part.n_tokens} vs {seen[0]} tokens): rerun both with the same stats settings")
        for layer in part.meta["layers"]:
            if shard in by_layer.setdefault(layer, {}):
                raise ValueError(f"layer {layer} of corpus shard {shard} is in two parts: merge one layer grouping")
            by_layer[layer][shard] = part
    missing = {layer: sorted(set(range(shards)) - set(found)) for layer, found in by_layer.items()}
    missing = {layer: gaps for layer, gaps in missing.items() if gaps}
    if missing:
        raise ValueError(f"key statistics parts are missing (layer: corpus shards of {shards}): {missing}; "
                         "run rule key_stats_part for them")
    n_tokens = sum(tokens for tokens, _, _ in counts.values())
    n_texts = sum(texts for _, texts, _ in counts.values())
    paths = []
    for layer in sorted(by_layer):
        total = None
        for shard in range(shards):
            part_sum = by_layer[layer][shard].sums.get(layer)  # none in a shard without texts
            if part_sum is not None:
                total = part_sum if total is None else total + part_sum
        paths.append(_save_layer(folder, layer, total, n_tokens))
    first = next(iter(loaded.values())).meta
    meta = {**{k: v for k, v in first.items() if k not in ("shard", "layers", "n_texts_planned")},
            "layers": sorted(by_layer), "n_texts_planned": n_texts, "shards": shards,
            "n_tokens": n_tokens, "n_texts": n_texts}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return paths


def load_layer_moment(folder: str | Path, layer: int) -> torch.Tensor:
    path = Path(folder) / f"mom2_layer{layer}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no key statistics for layer {layer}: {path} is missing; run the key_stats rule")
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------
# C⁻¹: factored once per layer, read by the edit jobs
# ---------------------------------------------------------------------------------------------


def save_factor(folder: str | Path, layer: int, device: torch.device | str = "cpu") -> Path:
    """``inv_layer{l}.pt`` beside C: ``torch.linalg.inv(C.double())`` computed on ``device``,
    stored float64 (computed on the CPU it is bit-identical to inverting C in the edit job)."""
    c = load_layer_moment(folder, layer)
    path = Path(folder) / f"inv_layer{layer}.pt"
    _atomic_save(torch.linalg.inv(c.to(device, torch.float64)).cpu(), path)
    return path


class KeyStats:
    """C⁻¹ per layer from a statistics folder's ``inv_layer{l}.pt`` (rule factor_stats), loaded
    straight onto the device that asks, at most ``keep`` layers held at once: asking for a layer
    beyond them releases the least recently used (an edit job keeps one window's layers).

        >>> stats = KeyStats("resources/stats/gemma-3-270m/bundled-wiki_n400", keep=5)  # doctest: +SKIP
        >>> stats.inverse(5, "cuda") @ k                                                # doctest: +SKIP
    """

    def __init__(self, folder: str | Path | None, keep: int = 5):
        self.folder = None if folder is None else Path(folder)
        self.keep = keep
        self._factors: OrderedDict[int, torch.Tensor] = OrderedDict()

    @property
    def held(self) -> list[int]:
        """The layers whose factors are in memory, least recently used first."""
        return list(self._factors)

    def inverse(self, layer: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """C⁻¹ of ``layer`` (float64) on ``device``."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        factor = self._factors.get(layer)
        if factor is None or factor.device != device:
            self._factors.pop(layer, None)
            while len(self._factors) >= self.keep:
                self._factors.popitem(last=False)
            factor = self._factors[layer] = self._load(layer).to(device)
        self._factors.move_to_end(layer)
        return factor

    def _load(self, layer: int) -> torch.Tensor:
        if self.folder is None:
            raise FileNotFoundError("this method needs key statistics: give KeyStats the key_stats folder")
        path = self.folder / f"inv_layer{layer}.pt"
        if not path.exists():
            raise FileNotFoundError(f"no factored key statistics for layer {layer}: {path} is missing; run rule "
                                    f"factor_stats (snakemake {path}) or locedit.editing.key_stats.save_factor('{self.folder}', {layer})")
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
