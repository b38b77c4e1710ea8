"""The GPU check: a reduced smoke run on the CPU and on CUDA, and on CUDA twice, table by table.

    .venv/bin/python benchmarks/gpu.py --out results/gpu-check.md [--workdir results/gpu-check] [--cores N]
    make gpu-check

On a CUDA machine: trains the workflow tests' tiny Llama on two of the smoke cases
(``tests/conftest.py``, seconds on the CPU), then runs ``configs/smoke.yaml`` reduced to it (every
trace kind, the three problems that draw noise, essence off: its texts are sampled, and CPU and CUDA
draw other samples) three times with Snakemake, each run in its own folder with its own key
statistics: ``model.device: cpu``, ``cuda``, and ``cuda`` again. Then, for every table the runs
wrote (tracing, pre- and post-edit probabilities, scores, R² and the other analysis tables, key
statistics), it reports the largest |Δ| between CPU and CUDA, and which tables the two CUDA runs
reproduce bit for bit; and per rule the seconds of its jobs (the rules' benchmark .tsv files) and
their peak GPU memory (the line :func:`locedit.jobs.job` logs). The report, in markdown, goes to
``--out`` and to stdout. Jobs share the GPU (no ``gpu=1`` limit: the tiny model fits many times over).
A run is about 40 short jobs, mostly process start-up, side by side on ``--cores``: sized for a few
minutes in all on a 16-core GPU machine, not yet timed on one (on the project's 2-core CPU machine,
under load, one run took 7–9 min; two CPU runs' 41 tables were bit-identical). Exit status: 0 when
the runs did the same work (same rows, same non-float values), 1 when a table is missing or differs
in them, 2 at once on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RUN = "gpu-check"
KNOWN_CASES = [13, 37]  # the smoke cases the tiny model is trained on (case 18 stays unknown)
PROBLEMS = ["error_injection", "tracing_reversal", "fact_forcing"]  # each draws noise its own way
RUNS = {"cpu": "cpu", "cuda": "cuda", "cuda-again": "cuda"}  # run folder -> model.device
PEAK_GPU = re.compile(r"(\S+): peak GPU memory (\d+) MiB")


@dataclass(frozen=True)
class Comparison:
    """One table of two runs: the largest |Δ| over its float columns, and whether the runs did the
    same work (``mismatch`` names what differs otherwise: shape, columns, non-float values)."""

    table: str
    rows: int
    max_abs: float = math.nan
    column: str = ""
    identical: bool = False
    mismatch: str = ""


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of a run folder by relative path: the Parquet and CSV files under
    ``results/gpu-check/`` (wall-time columns ``*_s`` dropped) and the key statistics (``.pt``,
    flattened into one column) under ``resources/stats/``."""
    import torch

    tables = {}
    results = folder / "results" / RUN
    for path in sorted([*results.rglob("*.parquet"), *results.rglob("*.csv")]):
        parts = path.relative_to(results).parts  # not logs, benchmarks, or checkpoints (.partial/)
        if {"logs", "benchmarks"} & set(parts) or any(part.startswith(".") for part in parts):
            continue
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except pd.errors.EmptyDataError:  # an analysis table with no rows on 3 cases (r2_concentrated.csv)
            frame = pd.DataFrame()
        tables[str(path.relative_to(results))] = frame.drop(columns=[c for c in frame.columns if c.endswith("_s")])
    stats = folder / "resources" / "stats"
    for path in sorted(stats.rglob("*.pt")):
        parts = path.relative_to(stats).parts  # the summed statistics, not their parts or checkpoints
        if "parts" in parts or any(part.startswith(".") for part in parts):
            continue
        values = [t.detach().double().flatten().numpy() for t in _tensors(torch.load(path, map_location="cpu"))]
        tables[f"stats/{path.relative_to(stats)}"] = pd.DataFrame({"value": np.concatenate(values or [[]])})
    return tables


def _tensors(obj) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    return [t for item in obj for t in _tensors(item)] if isinstance(obj, (list, tuple)) else []


def compare(table: str, a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Float columns by |Δ| (NaN against NaN is equal, NaN against a number is an infinite |Δ|);
    every other column must be equal."""
    if list(a.columns) != list(b.columns):
        return Comparison(table, len(a), mismatch=f"columns {sorted(set(a.columns) ^ set(b.columns))} in one only")
    if len(a) != len(b):
        return Comparison(table, len(a), mismatch=f"{len(a)} rows against {len(b)}")
    floats = [c for c in a.columns if pd.api.types.is_float_dtype(a[c]) and pd.api.types.is_float_dtype(b[c])]
    differing = [c for c in a.columns if c not in floats and _plain(a[c]) != _plain(b[c])]
    max_abs, column, identical = 0.0 if floats else math.nan, "", not differing
    for c in floats:
        x, y = a[c].to_numpy(np.float64), b[c].to_numpy(np.float64)
        identical &= bool(np.array_equal(x, y, equal_nan=True))
        delta = np.where(np.isnan(x) & np.isnan(y), 0.0, np.abs(x - y))
        delta[np.isnan(delta)] = np.inf  # NaN in one run only
        if delta.size and delta.max() > max_abs:
            max_abs, column = float(delta.max()), c
    mismatch = f"values differ in {', '.join(differing)}" if differing else ""
    return Comparison(table, len(a), max_abs, column, identical, mismatch)


def _plain(column: pd.Series) -> list:
    """A column's values as plain Python objects for ``==``: arrays (list columns) as lists, every
    missing value (None, NaN, NA) as None."""
    return [value.tolist() if isinstance(value, np.ndarray)
            else None if not isinstance(value, (list, tuple, dict)) and pd.isna(value) else value
            for value in column]


def compare_runs(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> list[Comparison]:
    """:func:`compare` for every table of either run (a table in one run only is a mismatch)."""
    comparisons = []
    for table in sorted(set(a) | set(b)):
        if table not in a or table not in b:
            comparisons.append(Comparison(table, len(a.get(table, b.get(table))),
                                          mismatch=f"only in the {'first' if table in a else 'second'} run"))
        else:
            comparisons.append(compare(table, a[table], b[table]))
    return comparisons


def rule_seconds(folder: Path) -> dict[str, tuple[int, float]]:
    """Per rule, its jobs and their summed seconds, from the benchmark files (written with
    ``--benchmark-extended``, which names the rule)."""
    frames = [pd.read_csv(p, sep="\t") for p in folder.rglob("*.tsv") if ".snakemake" not in p.parts]
    frames = [f for f in frames if {"rule_name", "s"} <= set(f.columns)]
    if not frames:
        return {}
    per_rule = pd.concat(frames).groupby("rule_name").s.agg(["count", "sum"])
    return {rule: (int(row["count"]), float(row["sum"])) for rule, row in per_rule.iterrows()}


def peak_gpu_mib(folder: Path) -> dict[str, int]:
    """Per rule, the largest peak GPU memory one of its jobs logged."""
    peaks: dict[str, int] = {}
    for path in folder.rglob("*.log"):
        if ".snakemake" not in path.parts:
            for rule, mib in PEAK_GPU.findall(path.read_text(errors="replace")):
                peaks[rule] = max(peaks.get(rule, 0), int(mib))
    return peaks


def overlay(device: str) -> str:
    """configs/smoke.yaml reduced to the tiny model (as tests/test_workflow.py's tiny run) on ``device``,
    with tracing and key statistics sharded as the GPU presets shard them."""
    import yaml

    return yaml.safe_dump({
        "run": RUN,
        "model": {"name": "models/tiny-llama", "num_layers": 6, "device": device},
        "tracing": {"kinds": ["hidden", "mlp", "attn"], "shards": 2},
        "stats": {"shards": 2, "layers_per_job": 2},
        "editing": {"layers": [1, 4], "problems": PROBLEMS, "essence": {"enabled": False}},
    })


def train_tiny_model(folder: Path) -> Path:
    """The tests' tiny Llama, trained to complete :data:`KNOWN_CASES`' prompts (tests/conftest.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import trained_tiny_model

    from locedit.cases.counterfact import load_counterfact

    rewrites = {r["case_id"]: r["requested_rewrite"] for r in load_counterfact("bundled")}
    facts = [f"{r['prompt'].format(r['subject'])} {r['target_true']['str']}" for r in map(rewrites.get, KNOWN_CASES)]
    return trained_tiny_model(folder, facts)


def run_workflow(folder: Path, model: Path, device: str, cores: int) -> float:
    """The reduced smoke run in a fresh ``folder`` on ``device``; its wall seconds."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "tiny-llama").symlink_to(model.resolve())
    (folder / "overlay.yaml").write_text(overlay(device))
    command = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "--directory",
               str(folder), "--configfile", str(REPO / "configs" / "smoke.yaml"), str(folder / "overlay.yaml"),
               "--cores", str(cores), "--benchmark-extended", "--show-failed-logs"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(f"gpu-check: the {device} run in {folder} failed:\n{(done.stdout + done.stderr)[-6000:]}")
    return time.perf_counter() - start


def _number(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2e}" if value else "0"


def report(setup: str, walls: dict[str, float], cpu_cuda: list[Comparison], cuda_cuda: list[Comparison],
           seconds: dict[str, dict[str, tuple[int, float]]], peaks: dict[str, int]) -> str:
    """The markdown report: setup, the two comparisons, and seconds / peak GPU memory per rule."""
    lines = [f"# GPU check ({datetime.date.today()}, benchmarks/gpu.py)", "", setup, "",
             "Wall time: " + ", ".join(f"{run} {wall:.0f} s" for run, wall in walls.items()) + ".", "",
             "## CPU against CUDA", "", "| table | rows | max \\|Δ\\| | in column | bit-identical | differs in |",
             "|---|---:|---:|---|---|---|"]
    lines += [f"| {c.table} | {c.rows} | {_number(c.max_abs)} | {c.column} | {'yes' if c.identical else 'no'} | "
              f"{c.mismatch} |" for c in cpu_cuda]
    same = [c.table for c in cuda_cuda if c.identical]
    lines += ["", "## CUDA against CUDA (the same run twice)", "",
              f"Bit-identical: {len(same)} of {len(cuda_cuda)} tables.", "",
              "| table | bit-identical | max \\|Δ\\| | in column | differs in |", "|---|---|---:|---|---|"]
    lines += [f"| {c.table} | {'yes' if c.identical else 'no'} | {_number(c.max_abs)} | {c.column} | {c.mismatch} |"
              for c in cuda_cuda]
    lines += ["", "## Seconds and peak GPU memory per rule", "",
              "| rule | jobs | " + " | ".join(f"{run} s" for run in seconds) + " | peak GPU MiB |",
              "|---|---:|" + "---:|" * len(seconds) + "---:|"]
    for rule in sorted({r for per_run in seconds.values() for r in per_run}):
        jobs = max(per_run.get(rule, (0, 0.0))[0] for per_run in seconds.values())
        cells = [f"{per_run[rule][1]:.1f}" if rule in per_run else "–" for per_run in seconds.values()]
        lines.append(f"| {rule} | {jobs} | {' | '.join(cells)} | {peaks.get(rule, '–')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check.md"), help="the markdown report")
    parser.add_argument("--workdir", type=Path, default=Path("results/gpu-check"),
                        help="the three run folders and the tiny model (runs are redone from scratch)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="snakemake --cores of each run")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}, "
              f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}); "
              "run it on a machine with an NVIDIA GPU", file=sys.stderr)
        sys.exit(2)
    model = train_tiny_model(args.workdir / "models" / "tiny-llama")
    walls = {run: run_workflow(args.workdir / run, model, device, args.cores) for run, device in RUNS.items()}
    tables = {run: read_tables(args.workdir / run) for run in RUNS}
    cpu_cuda = compare_runs(tables["cpu"], tables["cuda"])
    cuda_cuda = compare_runs(tables["cuda"], tables["cuda-again"])
    peaks: dict[str, int] = {}
    for run in ("cuda", "cuda-again"):
        for rule, mib in peak_gpu_mib(args.workdir / run).items():
            peaks[rule] = max(peaks.get(rule, 0), mib)
    setup = (f"{torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
             f"{args.cores} cores. configs/smoke.yaml on the tests' tiny trained Llama (6 layers, d 64; it "
             f"knows cases {', '.join(map(str, KNOWN_CASES))}): hidden / MLP / attention traces (window 5), the 4 "
             f"methods x {', '.join(PROBLEMS)} at layers 1 and 4, essence off; one folder per run under "
             f"{args.workdir}.")
    text = report(setup, walls, cpu_cuda, cuda_cuda, {run: rule_seconds(args.workdir / run) for run in RUNS}, peaks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"gpu-check: report in {args.out}")
    sys.exit(1 if any(c.mismatch for c in cpu_cuda + cuda_cuda) else 0)


if __name__ == "__main__":
    main()
