"""Key statistics: the streamed corpus is the old selection, parts (layer groups × corpus shards) add
up to one pass (bit-identical for one part), a resumed part equals an uninterrupted one, and the
factors the edit jobs read are today's in-memory inverses."""

import gzip
import json
import logging
import random

import pytest
import torch

from locedit.cases.counterfact import bundled_path
from locedit.editing.key_stats import (KeyStats, SecondMoments, collect_second_moments, corpus_texts, load_layer_moment,
                                       save_corpus, save_factor, save_layer_moments, save_merged_moments, save_part)
from locedit.editing.methods import METHODS
from locedit.editing.problems import EditRequest
from locedit.hooks import capture_inputs
from locedit.models import architecture_of
from locedit.prompts import pad_batch

from conftest import tiny_model


def old_selection(texts: list[str], n_samples: int | None, seed: int = 1) -> list[str]:
    """The list-based selection the statistics used before streaming."""
    texts = [t for t in texts if t.strip()]
    return random.Random(seed).sample(texts, n_samples) if n_samples is not None and n_samples < len(texts) else texts


def bundled_texts() -> list[str]:
    with gzip.open(bundled_path("corpus/ovos_wiki_offline_summaries_en-us.json.gz"), "rt") as f:
        pages = json.load(f)
    return [pages[title]["extract"] for title in sorted(pages)]


def plain_single_pass(model, tok, texts: list[str], layers: list[int], max_tokens: int, batch_size: int):
    """C as the one-pass job computed it, written plainly: the whole forward pass per batch, each
    batch's k kᵀ moved to the host and added to the running sum there."""
    names = {architecture_of(model).down_proj(layer): layer for layer in layers}
    sums, n_tokens = {}, 0
    for start in range(0, len(texts), batch_size):
        ids = [tok(t, truncation=True, max_length=max_tokens)["input_ids"] for t in texts[start:start + batch_size]]
        batch = pad_batch(ids, tok.pad_token_id, torch.device("cpu"))
        mask = batch["attention_mask"].bool()
        with torch.no_grad(), capture_inputs(model, list(names)) as keys:
            model.base_model(**batch, use_cache=False)
        for name, layer in names.items():
            k = keys[name][mask].to(torch.float32)
            sums[layer] = sums.get(layer, 0) + (k.T @ k).cpu()
        n_tokens += int(mask.sum())
    return {layer: (total / n_tokens).float() for layer, total in sums.items()}


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


# -- the corpus ---------------------------------------------------------------------------------


def test_bundled_corpus_sample_is_fixed():
    a, b = list(corpus_texts("bundled-wiki", n_samples=5, seed=1)), list(corpus_texts("bundled-wiki", n_samples=5, seed=1))
    assert a == b and len(set(a)) == 5 and all(len(t) > 20 for t in a)
    assert list(corpus_texts("bundled-wiki", n_samples=5, seed=2)) != a


def test_streamed_corpus_is_the_old_selection_in_the_old_order(tmp_path):
    everything = bundled_texts()
    for n in (200, 1000, None):
        assert list(corpus_texts("bundled-wiki", n_samples=n))[:200] == old_selection(everything, n)[:200]
    paragraphs = [f"Paragraph {i} about something." if i % 7 else "   " for i in range(60)]
    local = tmp_path / "corpus.txt"
    local.write_text("\n\n".join(paragraphs))
    stripped = [p.strip() for p in paragraphs]
    for n, seed in ((10, 1), (10, 3), (None, 1)):
        assert list(corpus_texts(str(local), n_samples=n, seed=seed)) == old_selection(stripped, n, seed)
    # shards are contiguous slices of the selected order: together, the whole selection
    whole = list(corpus_texts(str(local), n_samples=25, seed=2))
    shards = [list(corpus_texts(str(local), n_samples=25, seed=2, shard=i, shards=3)) for i in range(3)]
    assert [len(s) for s in shards] == [8, 8, 9] and sum(shards, []) == whole


def test_fetched_corpus_file_and_arrow_table_stream_the_same_texts(tmp_path, monkeypatch):
    """An hf: corpus is indexed in its Arrow table (no list of every text); rule fetch_corpus's
    file of the selected texts then reads back in the same order."""
    import datasets

    rows = [f"text number {i}" if i % 5 else ["", " \n", "\u3000", None][i // 5 % 4] for i in range(80)]
    table = datasets.Dataset.from_dict({"id": list(range(80)), "text": rows})
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: table)
    selected = list(corpus_texts("hf:some/dataset:config:train", n_samples=30, seed=4))
    assert selected == old_selection([r or "" for r in rows], 30, 4)
    path = tmp_path / "corpus" / "texts.jsonl.gz"
    assert save_corpus(corpus_texts("hf:some/dataset:config:train", n_samples=30, seed=4), path) == 30
    assert list(corpus_texts(str(path))) == selected
    assert list(corpus_texts(str(path), shard=1, shards=2)) == selected[15:]
    assert list(corpus_texts(str(path), n_samples=7, seed=2)) == old_selection(selected, 7, 2)


# -- the sums -----------------------------------------------------------------------------------


def test_second_moment_equals_the_plain_sum_over_non_pad_tokens(gpt2_tokenizer):
    model = tiny_model("llama")
    texts = corpus_texts("bundled-wiki", n_samples=7)
    moments = collect_second_moments(model, gpt2_tokenizer, texts, layers=[1, 3], max_tokens=20, batch_size=3)
    name = architecture_of(model).down_proj(3)
    total, count = 0, 0
    for text in texts:  # one text at a time: no padding at all
        ids = gpt2_tokenizer(text, truncation=True, max_length=20)["input_ids"]
        with torch.no_grad(), capture_inputs(model, [name]) as seen:
            model(input_ids=torch.tensor([ids]))
        k = seen[name][0]
        total, count = total + k.T @ k, count + len(ids)
    assert moments.n_tokens == count
    torch.testing.assert_close(moments.layer(3), total / count, rtol=1e-4, atol=1e-6)


def part_job(model, tok, folder, layers, shard, shards, **opts):
    """What one key_stats_part job does: its corpus shard, its layers, its part file."""
    texts = corpus_texts("bundled-wiki", n_samples=opts.pop("n_samples"), shard=shard, shards=shards)
    part = collect_second_moments(model, tok, texts, layers, meta={"shard": shard, "shards": shards}, **opts)
    return save_part(part, folder / "parts" / f"l{layers[0]}-{layers[-1]}_shard{shard}.pt")


def test_one_part_is_bit_identical_to_the_plain_single_pass(gpt2_tokenizer, tmp_path):
    model = tiny_model("gpt2")
    opts = dict(max_tokens=24, batch_size=4)
    part = part_job(model, gpt2_tokenizer, tmp_path, [0, 2, 3], 0, 1, n_samples=18, **opts)
    save_merged_moments([part], tmp_path)
    expected = plain_single_pass(model, gpt2_tokenizer, old_selection(bundled_texts(), 18), [0, 2, 3], **opts)
    for layer, c in expected.items():
        assert torch.equal(load_layer_moment(tmp_path, layer), c), layer
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["layers"] == [0, 2, 3] and meta["n_texts"] == 18 and meta["shards"] == 1


def test_two_layer_groups_by_three_shards_equal_one_pass(gpt2_tokenizer, tmp_path):
    model = tiny_model("llama")
    opts = dict(n_samples=20, max_tokens=24, batch_size=3)
    parts = [part_job(model, gpt2_tokenizer, tmp_path, group, shard, 3, **dict(opts))
             for group in ([0, 1], [2, 3]) for shard in range(3)]
    save_merged_moments(parts, tmp_path / "sharded")
    whole = collect_second_moments(model, gpt2_tokenizer, corpus_texts("bundled-wiki", n_samples=20), [0, 1, 2, 3],
                                   max_tokens=24, batch_size=3)
    save_layer_moments(whole, tmp_path / "one")
    for layer in range(4):
        assert relative(load_layer_moment(tmp_path / "sharded", layer), load_layer_moment(tmp_path / "one", layer)) <= 1e-6
    meta = json.loads((tmp_path / "sharded" / "meta.json").read_text())
    assert meta["n_tokens"] == whole.n_tokens and meta["n_texts"] == 20 and meta["shards"] == 3
    with pytest.raises(ValueError, match="missing .* key_stats_part"):
        save_merged_moments(parts[:-1], tmp_path / "broken")


def test_resumed_part_equals_an_uninterrupted_one(gpt2_tokenizer, tmp_path):
    model = tiny_model("gemma3_text")
    texts = corpus_texts("bundled-wiki", n_samples=30, shard=1, shards=2)
    opts = dict(layers=[0, 2], max_tokens=24, batch_size=4, checkpoint_every=1, meta={"shard": 1, "shards": 2})
    whole = collect_second_moments(model, gpt2_tokenizer, texts, **opts)
    ckpt = tmp_path / "ckpt.pt"
    collect_second_moments(model, gpt2_tokenizer, texts, checkpoint=ckpt, stop_after_batches=2, **opts)  # "killed"
    saved = SecondMoments.load(ckpt)
    assert set(saved.sums) == {0, 2} and saved.n_texts == 8 and saved.meta["layers"] == [0, 2]
    assert saved.meta["device"] == "cpu" and saved.meta["shard"] == 1
    resumed = collect_second_moments(model, gpt2_tokenizer, texts, checkpoint=ckpt, **opts)
    assert resumed.n_texts == whole.n_texts == 15 and resumed.n_tokens == whole.n_tokens
    for layer in (0, 2):
        assert torch.equal(resumed.sums[layer], whole.sums[layer])


def test_a_checkpoint_of_another_device_or_shard_is_not_resumed(gpt2_tokenizer, tmp_path, caplog):
    model = tiny_model("gpt2")
    texts = corpus_texts("bundled-wiki", n_samples=20)
    opts = dict(layers=[1], max_tokens=16, batch_size=4, checkpoint_every=1, meta={"shard": 0, "shards": 1})
    ckpt = tmp_path / "ckpt.pt"
    for changed in ({"device": "cuda (NVIDIA H100 80GB HBM3)"}, {"shard": 1}):
        collect_second_moments(model, gpt2_tokenizer, texts, checkpoint=ckpt, stop_after_batches=3, **opts)
        state = torch.load(ckpt)
        state["meta"].update(changed)
        torch.save(state, ckpt)
        with caplog.at_level(logging.INFO, logger="locedit"):
            again = collect_second_moments(model, gpt2_tokenizer, texts, checkpoint=ckpt, stop_after_batches=1, **opts)
        assert again.n_texts == 4, changed  # started afresh, not at text 12
        assert "not resuming" in caplog.text
        ckpt.unlink()


# -- the factors --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factored(gpt2_tokenizer, tmp_path_factory):
    """A tiny model, its statistics folder with C and C⁻¹ of layers 0-3."""
    model = tiny_model("gpt2")
    folder = tmp_path_factory.mktemp("stats")
    save_layer_moments(collect_second_moments(model, gpt2_tokenizer, corpus_texts("bundled-wiki", n_samples=40),
                                              layers=[0, 1, 2, 3], max_tokens=32), folder)
    for layer in range(4):
        save_factor(folder, layer)
    return model, folder


class InMemoryInverse:
    """C⁻¹ as the edit jobs computed it before factor_stats: inverted on the CPU in the job."""

    def __init__(self, folder):
        self.folder = folder

    def inverse(self, layer, device="cpu"):
        return torch.linalg.inv(load_layer_moment(self.folder, layer).to(torch.float64)).to(device)


def test_factor_is_the_inverse_of_c_in_float64(factored):
    _, folder = factored
    for layer in range(4):
        factor = torch.load(folder / f"inv_layer{layer}.pt")
        assert factor.dtype == torch.float64
        assert torch.equal(factor, torch.linalg.inv(load_layer_moment(folder, layer).double()))


def test_key_stats_hold_one_window_and_name_a_missing_factor(factored, tmp_path):
    _, folder = factored
    stats = KeyStats(folder, keep=3)
    for layer in (0, 1, 2):
        stats.inverse(layer)
    assert stats.held == [0, 1, 2]
    stats.inverse(1)  # used again: the least recently used is now 0
    stats.inverse(3)  # the next window: 0 is released
    assert stats.held == [2, 1, 3]
    assert torch.equal(stats.inverse(3), InMemoryInverse(folder).inverse(3))
    with pytest.raises(FileNotFoundError, match=r"inv_layer7\.pt is missing; run rule factor_stats"):
        stats.inverse(7)
    with pytest.raises(FileNotFoundError, match="needs key statistics"):
        KeyStats(None).inverse(0)


REQUEST = EditRequest(case_id=1, prompt="The mother tongue of Danielle Darrieux is", subject="Danielle Darrieux",
                      target="English", baseline="French", paraphrases=("Danielle Darrieux speaks",),
                      neighborhood=("Léon Blum speaks",))
TEMPLATES = {"rome": ["{}", "A few words. {}"], "memit": [["{}"], ["The day. {}"]]}


@pytest.mark.parametrize("method,layers", [("rome", [2]), ("memit", [1, 2, 3])])
def test_edits_with_stored_factors_equal_edits_with_in_memory_inverses(factored, gpt2_tokenizer, method, layers):
    model, folder = factored
    spec, hp = METHODS[method], {"v_steps": 3}
    stored = spec.edit(model, gpt2_tokenizer, REQUEST, layers, hp, KeyStats(folder, keep=spec.window),
                       TEMPLATES[method])
    today = spec.edit(model, gpt2_tokenizer, REQUEST, layers, hp, InMemoryInverse(folder), TEMPLATES[method])
    assert stored.keys() == today.keys()
    for name in today:
        assert relative(stored[name], today[name]) <= 1e-6, name
