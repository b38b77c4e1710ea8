"""The plan of a run from its config alone: layers, windows, shards and jobs, and each rule's peak
host memory, GPU memory and time. Torch-free: the Snakefile and config validation import only this
module, so the DAG is built without loading torch, transformers or the model.

    >>> shape = ModelShape.from_hf_config({"model_type": "gptj", "n_embd": 4096, "n_layer": 28,
    ...                                    "n_head": 16, "vocab_size": 50400})
    >>> round(shape.n_params / 1e9, 2), shape.d_mlp
    (6.05, 16384)
    >>> edited_layers(0, 5, 28), stats_layers(["rome", "memit"], [0, 27], 28)
    ([0, 1, 2], [0, 1, 2, 25, 26, 27])

From the command line, the table of every rule (jobs, peak host / GPU GB, GPU-hours, which GPUs fit)::

    python -m locedit.plan --configfile configs/gpt-j-6b.yaml

The figures are estimates from the model's shape (:class:`ModelShape`) and the run config, with the
assumptions in the config's ``plan`` section; benchmarks/scale.py measures them against real jobs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

GB = 1024**3

# ---------------------------------------------------------------------------------------------
# The names the DAG is built from (the torch modules take their rows from here)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditSite:
    """Where an editing method writes: the layers around the central one, and what it reads."""

    window: int  # layers edited around the central layer (clipped like tracing windows)
    label: str  # for tables and figures
    color: str  # its line / bar colour in figures
    needs_stats: bool = False  # key statistics C (ROME, MEMIT)
    templates: str | None = None  # which context templates it needs


EDIT_SITES: dict[str, EditSite] = {
    "ft1": EditSite(1, "FT-1", "tab:blue"),
    "ft5": EditSite(5, "FT-5", "tab:orange"),
    "rome": EditSite(1, "ROME", "tab:green", needs_stats=True, templates="rome"),
    "memit": EditSite(5, "MEMIT", "tab:red", needs_stats=True, templates="memit"),
}


@dataclass(frozen=True)
class Problem:
    """One of the paper's five editing problems (§3): which target the edit optimises, against which
    baseline, whether it minimises, whether it edits under subject noise, the clean P(o_true) a case
    needs (fact erasure)."""

    name: str
    short: str
    target: str  # which field of the case (or of its noised targets) is optimized
    baseline: str
    minimize: bool = False
    noised: bool = False
    min_p_true: float = 0.0

    @property
    def label(self) -> str:
        """``"Error Injection"`` for ``error_injection``: for tables and figure titles."""
        return self.name.replace("_", " ").title()


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        Problem("error_injection", "EI", target="target_new", baseline="target_true"),
        Problem("tracing_reversal", "TR", target="o_noise", baseline="target_true"),
        Problem("fact_erasure", "FE", target="target_true", baseline="eos", minimize=True, min_p_true=0.02),
        Problem("fact_amplification", "FA", target="target_true", baseline="eos"),
        Problem("fact_forcing", "FF", target="target_true", baseline="ff_baseline", noised=True),
    ]
}
PROBLEM_NAMES = tuple(PROBLEMS)
METHOD_LABELS = {name: site.label for name, site in EDIT_SITES.items()}  # for tables and figures
PROBLEM_LABELS = {name: problem.label for name, problem in PROBLEMS.items()}
NOISED_PROBLEMS = frozenset(name for name, problem in PROBLEMS.items() if problem.noised)  # edited under subject noise
ROME_LENGTHS = ((5, 10), (10, 10))  # ROME context templates: (tokens, count) (locedit.editing.templates)


def model_slug(name: str) -> str:
    """A folder-safe name for a model id: ``EleutherAI/gpt-j-6B`` -> ``EleutherAI--gpt-j-6B``."""
    return name.rstrip("/").replace("/", "--")


def corpus_slug(corpus: str) -> str:
    """A file-safe name of ``stats.corpus``: ``hf:wikimedia/wikipedia:20231101.en:train`` ->
    ``wikipedia-20231101.en-train``."""
    return Path(corpus).name.replace(":", "-").replace("@", "-")


def stats_folder_name(stats_cfg: dict) -> str:
    """Folder of one statistics setting, e.g. ``bundled-wiki_n400_t256_float32_s1``."""
    corpus = corpus_slug(stats_cfg["corpus"])
    return f"{corpus}_n{stats_cfg['n_samples']}_t{stats_cfg['max_tokens']}_{stats_cfg['dtype']}_s{stats_cfg['seed']}"


# ---------------------------------------------------------------------------------------------
# Layers, windows, priorities
# ---------------------------------------------------------------------------------------------


def layer_window(layer: int, window: int, n_layers: int) -> range:
    """Layers restored (or edited) around ``layer``: ``[layer - w//2, layer + ceil(w/2))`` clipped
    at the edges, not re-centred.

    >>> list(layer_window(0, 5, 18)), list(layer_window(9, 10, 18)), list(layer_window(17, 5, 18))
    ([0, 1, 2], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [15, 16, 17])
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} is outside the model's layers 0..{n_layers - 1}")
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def check_windows(windows: list[int], n_layers: int) -> None:
    """Stop a config whose tracing windows exceed the model's layers (every window would be clipped
    to the whole model, silently).

    >>> check_windows([10, 5], 18)
    >>> check_windows([30], 18)
    Traceback (most recent call last):
    ...
    ValueError: tracing.windows [30] are larger than the model's 18 layers; use windows of at most 18
    """
    too_big = [w for w in windows if w > n_layers]
    if too_big:
        raise ValueError(f"tracing.windows {too_big} are larger than the model's {n_layers} layers; "
                         f"use windows of at most {n_layers}")


def shard(table: Any, index: int, count: int) -> Any:
    """Rows ``index, index + count, …`` of a table (round robin, so shards stay balanced): the cases of
    one tracing or edit job of ``count``.

        >>> shard(pd.DataFrame({"case_id": [13, 37, 253, 307, 565]}), 1, 2).case_id.tolist()   # doctest: +SKIP
        [37, 307]
    """
    return table.iloc[index::count]


def central_layers(spec: Any, n_layers: int) -> list[int]:
    """``all``, an explicit list, or ``{"every": k}`` (0, k, 2k, … and always the last layer).

    >>> central_layers({"every": 4}, 18)
    [0, 4, 8, 12, 16, 17]
    """
    if spec == "all":
        return list(range(n_layers))
    if isinstance(spec, dict):
        layers = list(range(0, n_layers, int(spec["every"])))
        return layers if layers[-1] == n_layers - 1 else layers + [n_layers - 1]
    bad = [layer for layer in spec if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"editing.layers {bad} are outside the model's layers 0..{n_layers - 1}")
    return list(spec)


def edited_layers(central: int, window: int, n_layers: int) -> list[int]:
    """The layers an edit of ``window`` layers around ``central`` writes.

    >>> edited_layers(0, 5, 18), edited_layers(9, 1, 18)
    ([0, 1, 2], [9])
    """
    return list(layer_window(central, window, n_layers))


def stats_layers(methods: list[str], central: list[int], n_layers: int) -> list[int]:
    """Every layer whose key statistics some configured method needs."""
    needed = {layer for m in methods if EDIT_SITES[m].needs_stats for c in central
              for layer in edited_layers(c, EDIT_SITES[m].window, n_layers)}
    return sorted(needed)


def edit_priority(method: str, problem: str) -> int:
    """The Snakemake priority of an edit job: the longest jobs first. Edit jobs take one core,
    traces and pre-edit jobs two; a run on few cores that ends on one long edit leaves a core idle
    while the two-core jobs wait (benchmarks/scheduling.py). Fact forcing (50 steps, the noise
    redrawn every step) outranks the other problems; ROME / MEMIT (key and value optimisation
    over context templates) outrank fine-tuning.

    >>> [edit_priority(m, p) for m, p in [("memit", "fact_forcing"), ("ft1", "fact_forcing"),
    ...                                   ("rome", "error_injection"), ("ft5", "fact_erasure")]]
    [3, 2, 1, 0]
    """
    return 2 * (problem in NOISED_PROBLEMS) + EDIT_SITES[method].needs_stats


# ---------------------------------------------------------------------------------------------
# The model's shape, without loading it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """How one model family's HF config names its sizes (keys tried in order) and builds its blocks."""

    d_model: tuple[str, ...] = ("hidden_size",)
    n_layers: tuple[str, ...] = ("num_hidden_layers",)
    n_heads: tuple[str, ...] = ("num_attention_heads",)
    d_mlp: tuple[str, ...] = ("intermediate_size",)
    gated: bool = True  # three MLP matrices (gate, up, down) instead of two
    tied_default: bool = False  # tie_word_embeddings when the config does not say
    positions: str | None = None  # a learned position table (GPT-2)


_GPT_STYLE = dict(d_model=("n_embd",), n_layers=("n_layer",), n_heads=("n_head",), d_mlp=("n_inner",), gated=False)
FAMILIES: dict[str, Family] = {
    "gpt2": Family(**_GPT_STYLE, tied_default=True, positions="n_positions"),
    "gptj": Family(**_GPT_STYLE),
    "gpt_neox": Family(gated=False),
    "llama": Family(),
    "qwen2": Family(),
    "gemma3_text": Family(tied_default=True),
}


@dataclass(frozen=True)
class ModelShape:
    """The sizes the plan needs: widths, layers, vocabulary, and the parameter count they give."""

    model_type: str
    d_model: int
    d_mlp: int
    n_layers: int
    vocab: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    tied: bool
    gated: bool
    n_positions: int = 0  # learned position embeddings (GPT-2)

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> "ModelShape":
        """From a Hugging Face ``config.json`` (as a dict); names the families it knows otherwise."""
        family = FAMILIES.get(cfg.get("model_type", ""))
        if family is None:
            raise ValueError(f"model_type {cfg.get('model_type')!r} has no row in locedit.plan.FAMILIES "
                             f"(known: {', '.join(FAMILIES)}); add one, or state model.shape in the config")

        def first(keys: tuple[str, ...], default=None):
            found = next((cfg[k] for k in keys if cfg.get(k) is not None), default)
            if found is None:
                raise ValueError(f"the {cfg['model_type']} shape has none of {', '.join(keys)}: "
                                 "copy it from the model's config.json into model.shape")
            return found

        d_model = int(first(family.d_model))
        n_heads = int(first(family.n_heads))
        head_dim = int(cfg.get("head_dim") or d_model // n_heads)
        return cls(
            model_type=cfg["model_type"], d_model=d_model, d_mlp=int(first(family.d_mlp, 4 * d_model)),
            n_layers=int(first(family.n_layers)), vocab=int(first(("vocab_size",))), n_heads=n_heads,
            n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads), head_dim=head_dim,
            tied=bool(cfg.get("tie_word_embeddings", family.tied_default)), gated=family.gated,
            n_positions=int(cfg.get(family.positions) or 0) if family.positions else 0)

    @property
    def layer_params(self) -> int:
        attn = 2 * self.d_model * self.n_heads * self.head_dim + 2 * self.d_model * self.n_kv_heads * self.head_dim
        return attn + (3 if self.gated else 2) * self.d_model * self.d_mlp

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.d_model * (1 if self.tied else 2) + self.n_positions * self.d_model

    @property
    def n_params(self) -> int:
        """Weights of the matrices (biases and norms, under 0.1%, left out)."""
        return self.n_layers * self.layer_params + self.embedding_params

    def forward_flops(self, tokens: float, layers: int | None = None, logits_rows: float = 0) -> float:
        """Multiply-adds × 2 of a forward pass over ``tokens`` through ``layers`` layers (all by
        default), with the unembedding of ``logits_rows`` positions."""
        layers = self.n_layers if layers is None else layers
        return 2 * tokens * layers * self.layer_params + 2 * logits_rows * self.vocab * self.d_model


# The embedded models' config.json values (docs/models.md), so a plan needs no converted folder.
EMBEDDED_SHAPES: dict[str, dict[str, Any]] = {
    "gemma-3-270m": {"model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048,
                     "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1,
                     "head_dim": 256, "vocab_size": 262144, "tie_word_embeddings": True},
    "smollm2-135m-instruct": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                              "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                              "vocab_size": 49152, "tie_word_embeddings": True},
}


def hf_config_of(model_cfg: dict[str, Any], model_dir: str | Path | None = None) -> dict[str, Any] | None:
    """The model's ``config.json`` values without loading it, first found of: ``model.shape`` in the
    config (a preset states it), an embedded model's row, ``config.json`` in the prepared folder,
    in ``model.name`` as a local folder, or in the Hugging Face cache; None when none is at hand."""
    if model_cfg.get("shape"):
        return dict(model_cfg["shape"])
    name = model_cfg["name"]
    if name in EMBEDDED_SHAPES:
        return EMBEDDED_SHAPES[name]
    candidates = [Path(model_dir) / "config.json"] if model_dir else []
    candidates.append(Path(name) / "config.json")
    pointer = Path(model_dir) / "locedit_source.json" if model_dir else None
    if pointer is not None and pointer.is_file():
        candidates.append(Path(json.loads(pointer.read_text())["source"]) / "config.json")
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    candidates += sorted((hub / f"models--{model_slug(name)}" / "snapshots").glob("*/config.json"))
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text())
    return None


def planned_num_layers(model_cfg: dict, model_dir: str | Path | None = None) -> int:
    """Layer count for planning the DAG without loading the model: ``model.num_layers``, else the
    model's shape (:func:`hf_config_of`)."""
    if model_cfg.get("num_layers"):
        return int(model_cfg["num_layers"])
    cfg = hf_config_of(model_cfg, model_dir)
    if cfg is not None:
        return ModelShape.from_hf_config(cfg).n_layers
    raise ValueError(
        f"set model.num_layers for {model_cfg['name']!r} (e.g. 28 for GPT-J, 48 for GPT-2 XL), or model.shape: "
        "the workflow plans edit layers and key statistics without loading the model"
    )


# ---------------------------------------------------------------------------------------------
# Cost of each rule: jobs, peak host and GPU memory, hours
# ---------------------------------------------------------------------------------------------

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
BASE_GB = 0.5  # a model job before its weights: python, torch, transformers, pandas, the script (measured)
CPU_BASE_GB = 0.35  # a job that loads no model (measured: select_cases, trace_merge, noise_level with a constant σ)
CUDA_CONTEXT_GB = 0.6  # the CUDA context and caching allocator's slack on a GPU
ALL_RECORDS = {"bundled": 2191}  # records when data.n_cases is null; a full CounterFact file has 21,919
FULL_COUNTERFACT = 21919
GPU_SIZES_GB = (24, 40, 80)
# the rules whose jobs compute on the model's device (noise_level only when σ comes from the model)
GPU_RULES = ("check_correctness", "noise_level", "trace", "key_stats_part", "factor_stats", "context_templates",
             "noised_targets", "essence_texts", "pre_edit", "edit")


@dataclass(frozen=True)
class Assumptions:
    """What the plan cannot read from the config (``plan`` section; defaults stated in the schema)."""

    gpu_tflops: float = 10.0  # effective float32 TFLOPS of one GPU job (about half an A100's 19.5 peak)
    cpu_tflops: float = 0.05  # effective TFLOPS of a CPU job's threads (2 cores with AVX-512)
    correct_fraction: float = 0.33  # share of records the model completes correctly (GPT-J: 652 / 2,000)
    prompt_tokens: int = 16  # tokens of a CounterFact prompt with its target
    tokens_per_text: int = 600  # mean tokens of a corpus text (before truncation at stats.max_tokens)
    max_job_hours: float = 12.0  # the longest job the cluster allows

    @classmethod
    def of_config(cls, config: dict[str, Any]) -> "Assumptions":
        return replace(cls(), **(config.get("plan") or {}))


@dataclass(frozen=True)
class RuleCost:
    """One rule's jobs and the peak memory and time of each (the largest job where they differ)."""

    rule: str
    jobs: int
    host_gb: float
    gpu_gb: float = 0.0  # 0: the rule does not use the GPU
    hours: float = 0.0  # per job
    note: str = ""

    @property
    def gpu_hours(self) -> float:
        return self.jobs * self.hours if self.gpu_gb else 0.0

    def fits(self, gpu_gb: float) -> bool:
        return self.gpu_gb <= gpu_gb

    def resources(self, margin: float = 1.25) -> dict[str, int]:
        """Snakemake ``resources:`` of the rule: memory with ``margin`` over the plan, twice the
        planned minutes (slower GPUs, retries), ``gpu: 1`` where it runs on one."""
        res = {"mem_mb": math.ceil(self.host_gb * margin * 1024), "runtime": math.ceil(self.hours * 120) + 10}
        if self.gpu_gb:
            res.update(gpu=1, gpu_mem_mb=math.ceil(self.gpu_gb * 1024))
        return res


def uses_gpu(model_cfg: dict[str, Any]) -> bool:
    """Whether model jobs will run on a GPU: ``cuda`` / ``cuda:N`` always (a job stops at start
    where there is none), ``auto`` when this machine shows an NVIDIA device (torch-free check)."""
    device = model_cfg.get("device", "auto")
    if device.startswith("cuda"):
        return True
    if device == "auto":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip() in ("", "-1"):
            return False
        return any(Path("/proc/driver/nvidia/gpus").glob("*"))
    return False


class Plan:
    """Every rule's jobs, memory and time for one run config (validated, with its tuning merged).

        >>> from locedit.config import load_config
        >>> plan = Plan(load_config("configs/gpt-j-6b.yaml"))
        >>> plan.cost("edit").jobs, plan.cost("edit").gpu_gb < 80
        (320, True)
    """

    def __init__(self, config: dict[str, Any], model_dir: str | Path | None = None):
        self.config = config
        cfg = hf_config_of(config["model"], model_dir)
        if cfg is None:
            raise ValueError(f"no shape for model {config['model']['name']!r}: state model.shape in the config "
                             "(hidden_size, intermediate_size, num_hidden_layers, vocab_size, ... from its "
                             "config.json) or run prepare_model first")
        self.shape = ModelShape.from_hf_config(cfg)
        self.assume = Assumptions.of_config(config)
        self.gpu = uses_gpu(config["model"])
        self.act = DTYPE_BYTES[config["model"].get("dtype", "float32")]
        self.weights_gb = self.shape.n_params * self.act / GB
        n = self.shape.n_layers
        self.central = central_layers(config["editing"]["layers"], n)
        self.stats_layers = stats_layers(config["editing"]["methods"], self.central, n)
        self._costs = {c.rule: c for c in self._all_costs()}

    # -- sizes of the data ---------------------------------------------------------------------
    @property
    def records(self) -> int:
        data = self.config["data"]
        if data.get("case_ids"):
            return len(data["case_ids"])
        total = ALL_RECORDS.get(data.get("counterfact", "bundled"), FULL_COUNTERFACT) - data.get("skip_cases", 0)
        return min(total, data["n_cases"]) if data.get("n_cases") else total

    @property
    def correct(self) -> int:
        return max(1, round(self.records * self.assume.correct_fraction))

    @property
    def edited_cases(self) -> int:
        limit = self.config["editing"].get("max_cases")
        return min(self.correct, limit) if limit else self.correct

    @property
    def traced_cases(self) -> int:
        return self.records if self.config["tracing"].get("cases") == "all" else self.correct

    # -- building blocks ------------------------------------------------------------------------
    def tflops(self, on_gpu: bool) -> float:
        return self.assume.gpu_tflops if on_gpu else self.assume.cpu_tflops

    def hours(self, flops: float, on_gpu: bool) -> float:
        return flops / (self.tflops(on_gpu) * 1e12) / 3600

    def activations_gb(self, rows: float, tokens: float, grad_layers: int = 0, logits_rows: float | None = None) -> float:
        """A forward pass of ``rows`` × ``tokens`` (one layer's intermediates at a time, attention
        scores included; with ``grad_layers`` those layers' intermediates kept for the backward
        pass), and float32 logits of ``logits_rows`` positions (one per row by default)."""
        s = self.shape
        per_layer = rows * tokens * (4 * s.d_model + 2 * s.d_mlp + s.n_heads * tokens) * self.act
        logits = (rows if logits_rows is None else logits_rows) * s.vocab * 4
        return (per_layer * (1 + grad_layers) + logits) / GB

    def model_job(self, rule: str, jobs: int, working_gb: float, flops: float, host_extra_gb: float = 0.0,
                  note: str = "") -> RuleCost:
        """A job that loads the model: on a GPU, the weights pass through host memory while loading
        and the working set lives on the card; on the CPU everything is host memory."""
        hours = self.hours(flops, self.gpu)
        if self.gpu:
            return RuleCost(rule, jobs, BASE_GB + self.weights_gb + host_extra_gb,
                            CUDA_CONTEXT_GB + self.weights_gb + working_gb, hours, note)
        return RuleCost(rule, jobs, BASE_GB + self.resident_weights_gb + working_gb + host_extra_gb, 0.0, hours, note)

    @property
    def resident_weights_gb(self) -> float:
        """The weights a CPU job keeps in memory: safetensors are memory-mapped, and an input
        embedding table apart from the unembedding (GPT-J, Llama) is read only at the prompts'
        token rows (measured, benchmarks/scale.py)."""
        untied = 0 if self.shape.tied else self.shape.vocab * self.shape.d_model
        return (self.shape.n_params - untied) * self.act / GB

    def cpu_job(self, rule: str, jobs: int, host_gb: float, hours: float = 0.05, note: str = "") -> RuleCost:
        return RuleCost(rule, jobs, CPU_BASE_GB + host_gb, 0.0, hours, note)

    # -- the rules ------------------------------------------------------------------------------
    def _all_costs(self) -> Iterable[RuleCost]:
        s, a, cfg = self.shape, self.assume, self.config
        T = a.prompt_tokens
        fwd = s.forward_flops
        small = 0.2  # GB of a pandas / matplotlib job over the run's tables
        data = cfg["data"]
        # every rule gets a row (its resources), with no jobs where this config does not run it
        yield self.cpu_job("fetch_counterfact", int(str(data.get("counterfact", "")).startswith(("http://", "https://"))),
                           small, note="network: login node")
        yield self.cpu_job("fetch_corpus", int(str(cfg["stats"]["corpus"]).startswith("hf:") and bool(self.stats_layers)),
                           1.0, 1.0, note="network: login node")
        if cfg["model"]["name"] in EMBEDDED_SHAPES:  # GGUF -> float32 folder: the model twice while it is written
            yield self.cpu_job("prepare_model", 1, 2 * self.weights_gb, 0.05)
        else:  # a hub id is downloaded once (network), a local folder only checked
            yield self.cpu_job("prepare_model", 1, 1.0, 1.0, note="network once (hub id)")
        yield self.cpu_job("select_cases", 1, 0.02)
        check = cfg["correctness"]
        gen_tokens = T + check["max_new_tokens"]
        kv_cache = 2 * s.n_layers * check["batch_size"] * gen_tokens * s.n_kv_heads * s.head_dim * self.act / GB
        yield self.model_job("check_correctness", 1, self.activations_gb(check["batch_size"], gen_tokens) + kv_cache,
                             self.records * (fwd(gen_tokens) + check["max_new_tokens"] * fwd(0, logits_rows=1)))
        if cfg["noise"]["rule"] == "constant":  # σ given: nothing loaded
            yield self.cpu_job("noise_level", 1, 0.0)
        else:  # σ from the subject embeddings of the knowns: the model is loaded
            yield self.model_job("noise_level", 1, small, fwd(1000 * 8, layers=0))
        yield from self._tracing_costs()
        yield from self._stats_costs()
        editing = cfg["editing"]
        yield self.model_job("context_templates", int(any(EDIT_SITES[m].templates for m in editing["methods"])),
                             self.activations_gb(25, 2 * T), fwd(25 * 10 * 2 * T))
        yield self.model_job("noised_targets", 1, self.activations_gb(editing["ff_noise_samples"], T),
                             self.edited_cases * (editing["ff_noise_samples"] + 3) * fwd(T, logits_rows=1))
        ess = editing.get("essence", {})
        yield self.model_job("essence_texts", int(bool(ess.get("enabled"))),
                             self.activations_gb(ess.get("texts", 5), ess.get("max_new_tokens", 100)),
                             self.edited_cases * ess.get("texts", 5) * ess.get("max_new_tokens", 100) * fwd(1, logits_rows=1))
        yield self.model_job("pre_edit", len(editing["problems"]), self.activations_gb(EVAL_PROMPTS, 2 * T),
                             self.edited_cases * fwd(EVAL_PROMPTS * 2 * T, logits_rows=EVAL_PROMPTS * 3))
        yield from (self.edit_cost(m) for m in editing["methods"])
        yield self.cpu_job("scores", 1, small)
        yield self.cpu_job("regressions", 1, small, 0.1)
        yield self.cpu_job("figures", 1, small)
        yield self.cpu_job("localization_figures", int(len(self.localizations) > 1), small)

    @property
    def localizations(self) -> list[str]:
        tracing = self.config["tracing"]
        main = "-".join((tracing.get("method", "exact"), tracing.get("corruption", "gaussian"), tracing.get("metric", "prob")))
        return list(dict.fromkeys([main, *((self.config.get("analysis") or {}).get("effects") or [])]))

    def _tracing_costs(self) -> Iterable[RuleCost]:
        s, a, tracing = self.shape, self.assume, self.config["tracing"]
        T = a.prompt_tokens
        tables = len(tracing["kinds"]) * len(tracing["windows"]) + len(self.localizations) - 1
        shards = tracing.get("shards", 1)
        positions = T if tracing.get("all_tokens") else T // 2  # tokens from the subject start
        rows = positions * s.n_layers * tracing["samples"]  # noised rows per case (kind, window)
        # each pass starts at its window's first layer (the layers below are shared): half the depth on average
        flops_case = rows * s.forward_flops(T, layers=s.n_layers // 2 + 1, logits_rows=1)
        cases = math.ceil(self.traced_cases / shards)
        working = self.activations_gb(min(tracing["max_rows"], rows), T)
        if any(loc.startswith("attribution") for loc in self.localizations):
            working = max(working, self.activations_gb(tracing["samples"] + 1, T, grad_layers=s.n_layers))
        if tracing.get("mixed_precision"):
            working += s.n_params * 2 / GB  # the bfloat16 twin
        yield self.cpu_job("replacement_subjects", int("-str-" in "".join(self.localizations)), 0.5)
        yield self.model_job("trace", tables * shards, working, cases * flops_case,
                             note=f"{tables} tables x {shards} shards, {cases} cases per job")
        yield self.cpu_job("trace_merge", tables, 0.05)
        yield self.cpu_job("trace_heatmaps", len(tracing["kinds"]) * len(tracing["windows"]), 0.3)

    def _stats_costs(self) -> Iterable[RuleCost]:
        s, st = self.shape, self.config["stats"]
        acc = DTYPE_BYTES[st["dtype"]]
        groups = stats_groups(self.stats_layers, st.get("layers_per_job")) if self.stats_layers else {}
        jobs = len(groups)
        groups = groups or {"none": [0]}  # the rows' resources, for a run that needs no statistics
        G = max(len(layers) for layers in groups.values())
        shards = st.get("shards", 1)
        B, T = st["batch_size"], min(st["max_tokens"], self.assume.tokens_per_text)
        tokens = st["n_samples"] / shards * T
        square = s.d_mlp**2 * acc / GB
        keys = B * st["max_tokens"] * s.d_mlp * (G * self.act + acc) / GB  # captured keys of a batch, one float copy
        working = (G + 1) * square + keys + self.activations_gb(B, st["max_tokens"], logits_rows=0)
        top = max(max(layers) for layers in groups.values()) + 1
        flops = s.forward_flops(tokens, layers=top) + G * 2 * tokens * s.d_mlp**2
        yield self.model_job("key_stats_part", jobs * shards, working, flops,
                             host_extra_gb=G * square if self.gpu else 0.0,
                             note=f"{len(groups)} layer groups of <= {G} x {shards} corpus shards")
        # one layer at a time, but a part's layers stay resident once its memory-mapped file is read
        yield self.cpu_job("key_stats", int(jobs > 0), (G + 1) * square, note="sums the parts, one layer at a time")
        factor = RuleCost("factor_stats", len(self.stats_layers),
                          BASE_GB + s.d_mlp**2 * (4 + 8) / GB if self.gpu else BASE_GB + s.d_mlp**2 * (4 + 3 * 8) / GB,
                          CUDA_CONTEXT_GB + s.d_mlp**2 * (4 + 3 * 8) / GB if self.gpu else 0.0,
                          self.hours(2 * s.d_mlp**3, self.gpu), note="C^-1 in float64, once per layer")
        yield factor

    def edit_cost(self, method: str, problem: str | None = None) -> RuleCost:
        """An edit job of ``method`` (of ``problem``, else the longest problem configured)."""
        if problem is None:
            costs = [self.edit_cost(method, p) for p in self.config["editing"]["problems"]]
            worst = max(costs, key=lambda c: c.hours)
            return replace(worst, rule=f"edit ({method})", jobs=sum(c.jobs for c in costs),
                           host_gb=max(c.host_gb for c in costs), gpu_gb=max(c.gpu_gb for c in costs))
        s, T, editing = self.shape, self.assume.prompt_tokens, self.config["editing"]
        site = EDIT_SITES[method]
        hp = {**EDIT_STEPS[method], **editing.get("hparams", {}).get(method, {}),
              **editing.get("overrides", {}).get(method, {}).get(problem, {})}
        bc = editing["batch_cases"]
        window = max(len(edited_layers(c, site.window, s.n_layers)) for c in self.central)
        factor = s.d_mlp**2 * 8 / GB
        noised = problem in NOISED_PROBLEMS
        if site.templates:  # ROME / MEMIT: the value optimisation over context templates
            rows, tokens = bc * TEMPLATES[method], T + 10
            steps = hp["v_steps"]
            state = factor * (window if method == "memit" else 1)
            flops = TEMPLATES[method] * s.forward_flops(tokens) * (3 * steps * UPPER_ONLY + window)
        else:  # FT: the weights of the window, their gradient and Adam's two moments per case
            rows, tokens = bc * (hp["noise_samples"] if noised else 1), T
            steps = hp["steps"]
            state = bc * window * 4 * s.d_model * s.d_mlp * self.act / GB
            flops = (rows / bc) * 3 * steps * UPPER_ONLY * s.forward_flops(tokens)
        if editing.get("mixed_precision"):
            state += s.n_params * 2 / GB
        grad_layers = s.n_layers - min(self.central)  # backward from the lowest edited layer up (upper_only)
        working = max(state + self.activations_gb(rows, tokens, grad_layers=grad_layers, logits_rows=rows * 3),
                      state + self.activations_gb(bc * EVAL_PROMPTS, 2 * T, logits_rows=bc * EVAL_PROMPTS * 3))
        flops += s.forward_flops(EVAL_PROMPTS * 2 * T, logits_rows=EVAL_PROMPTS * 3)
        shards = editing["shards"]
        per_job = math.ceil(self.edited_cases / shards) * len(self.central) * flops
        return self.model_job("edit", shards, working, per_job,
                              host_extra_gb=factor if site.needs_stats and self.gpu else 0.0)

    # -- the table ------------------------------------------------------------------------------
    def costs(self) -> list[RuleCost]:
        return list(self._costs.values())

    def cost(self, rule: str) -> RuleCost:
        """The cost row of ``rule`` (``edit``: the largest over methods and problems)."""
        if rule == "edit":
            rows = [self.edit_cost(m) for m in self.config["editing"]["methods"]]
            return RuleCost("edit", sum(r.jobs for r in rows), max(r.host_gb for r in rows),
                            max(r.gpu_gb for r in rows), max(r.hours for r in rows))
        if rule not in self._costs:
            raise KeyError(f"the plan has no rule {rule!r} for this config (rules: {', '.join(self._costs)})")
        return self._costs[rule]

    def resources(self, rule: str, method: str | None = None, problem: str | None = None) -> dict[str, int]:
        """The Snakemake ``resources:`` of ``rule`` (an edit job's of its method and problem)."""
        cost = self.edit_cost(method, problem) if rule == "edit" and method else self.cost(rule)
        return cost.resources()

    def table(self) -> str:
        """The plan as a markdown table, with totals and the assumptions under it."""
        head = ["rule", "jobs", "host GB / job", "GPU GB / job", "h / job", "GPU-h"] + [f"{g} GB" for g in GPU_SIZES_GB] + ["note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in (c for c in self.costs() if c.jobs):
            fits = ["yes" if c.fits(g) else "**no**" for g in GPU_SIZES_GB] if c.gpu_gb else ["-"] * len(GPU_SIZES_GB)
            gpu = f"{c.gpu_gb:.1f}" if c.gpu_gb else "-"
            lines.append(f"| {c.rule} | {c.jobs} | {c.host_gb:.1f} | {gpu} | {c.hours:.2f} | {c.gpu_hours:.1f} | "
                         + " | ".join(fits) + f" | {c.note} |")
        s, a = self.shape, self.assume
        total = sum(c.gpu_hours for c in self.costs())
        lines += ["", f"{self.config['model']['name']}: {s.n_params / 1e9:.2f}B parameters ({s.n_layers} layers, "
                  f"d {s.d_model}, d_mlp {s.d_mlp}, vocabulary {s.vocab}), {self.weights_gb:.1f} GB of "
                  f"{self.config['model'].get('dtype', 'float32')} weights; model jobs on the "
                  f"{'GPU' if self.gpu else 'CPU'}; total {total:.0f} GPU-hours.",
                  f"Assumed: {self.records} records, {self.correct} completed correctly ({a.correct_fraction:.0%}), "
                  f"{self.traced_cases} traced, {self.edited_cases} edited at {len(self.central)} layers; "
                  f"{a.gpu_tflops:g} effective TFLOPS per GPU job, {a.cpu_tflops:g} per CPU job; "
                  f"{a.prompt_tokens} tokens per prompt, {a.tokens_per_text} per corpus text (plan section of the config)."]
        lines += [f"**Warning**: {w}" for w in self.warnings()]
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """Jobs longer than ``plan.max_job_hours``, with the key that shortens them."""
        fix = {"trace": "raise tracing.shards", "key_stats_part": "raise stats.shards",
               "edit": "raise editing.shards"}
        return [f"{c.rule} jobs take {c.hours:.1f} h, over plan.max_job_hours {self.assume.max_job_hours:g}: "
                f"{fix.get(c.rule.split(' ')[0], 'see the rule')}"
                for c in self.costs() if c.hours > self.assume.max_job_hours]


UPPER_ONLY = 0.5  # optimisation passes run from the edited layer up (upper_only): half the depth on average
EVAL_PROMPTS = 13  # prompts scored per edit: the rewrite, 2 paraphrases, 10 neighbourhood prompts
TEMPLATES = {"rome": 21, "memit": 26}  # context templates (locedit.editing.templates)
EDIT_STEPS = {"ft1": {"steps": 25, "noise_samples": 10}, "ft5": {"steps": 25, "noise_samples": 10},
              "rome": {"v_steps": 20}, "memit": {"v_steps": 25}}  # method defaults (locedit/editing/*.py)


# ---------------------------------------------------------------------------------------------
# Key statistics jobs
# ---------------------------------------------------------------------------------------------


def stats_groups(layers: list[int], per_job: int | None) -> dict[str, list[int]]:
    """The key-statistics layer groups: ``per_job`` consecutive needed layers each (all in one
    when None), named by their first and last layer.

    >>> stats_groups([0, 1, 2, 9, 10], 2)
    {'l0-1': [0, 1], 'l2-9': [2, 9], 'l10-10': [10]}
    >>> stats_groups([3, 4], None)
    {'l3-4': [3, 4]}
    """
    layers = sorted(layers)
    size = per_job or max(1, len(layers))
    chunks = [layers[i:i + size] for i in range(0, len(layers), size)]
    return {f"l{chunk[0]}-{chunk[-1]}": chunk for chunk in chunks}


def corpus_file(stats_cfg: dict) -> str:
    """Where rule fetch_corpus writes the selected texts of ``stats.corpus`` (gzipped JSON lines, in
    the statistics' order). Only ``hf:`` corpora are fetched (once, on a node with network); the
    bundled and local ones are read in place.

    >>> corpus_file({"corpus": "hf:wikimedia/wikipedia:20231101.en:train", "n_samples": 100000, "seed": 1})
    'resources/corpus/wikipedia-20231101.en-train_n100000_s1.jsonl.gz'
    """
    corpus = corpus_slug(stats_cfg["corpus"])
    return f"resources/corpus/{corpus}_n{stats_cfg['n_samples']}_s{stats_cfg['seed']}.jsonl.gz"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m locedit.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="config files over config.yaml, as snakemake takes them")
    parser.add_argument("--model-dir", help="a prepared model folder to read config.json from")
    args = parser.parse_args(argv)
    from locedit.config import ConfigError, load_config

    try:
        plan = Plan(load_config(*args.configfile), args.model_dir)
    except (ConfigError, ValueError) as err:
        print(f"locedit: {err}", file=sys.stderr)
        return 2
    print(plan.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
