"""Sections of the documents that are printed by a command, never typed: each lies between
``<!-- generated: NAME -->`` and ``<!-- /generated -->`` and is rewritten from its generator.

    .venv/bin/python tools/docs.py            # rewrite every generated section in README.md and docs/
    .venv/bin/python tools/docs.py --check    # exit 1 naming each section that differs (tests/test_docs.py)

A generator is a function of nothing that returns markdown; add one to :data:`SECTIONS` and put its
markers where the text goes. Every generator reads committed files only (results tables, run.json,
configs), so rerunning this after new results are committed updates every number in the documents.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from locedit.analysis.regressions import VERDICTS, verdict_counts  # noqa: E402
from locedit.config import load_config  # noqa: E402
from locedit.plan import METHOD_LABELS, Plan  # noqa: E402
from locedit.results.comparison import PROJECT_EFFECT, verdict_variants  # noqa: E402

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "docs" / "results" / "README.md"]
RESULTS = REPO / "docs" / "results"
SCALE_TABLE = RESULTS / "scale" / "memory.csv"
PAPER_TABLE = REPO / "locedit" / "bundled" / "paper_r2.csv"
MODELS = {"gemma-3-270m": "Gemma 3 270M", "smollm2-135m-instruct": "SmolLM2-135M-Instruct"}


def plan_table(preset: str) -> Callable[[], str]:
    def render() -> str:
        return f"`python -m locedit.plan --configfile {preset}`:\n\n{Plan(load_config(REPO / preset)).table()}"
    return render


def scale_memory() -> str:
    """benchmarks/scale.py's measured peak RSS beside the plan (docs/results/scale/memory.csv), a row per
    rule and a column group per model."""
    table = pd.read_csv(SCALE_TABLE)
    models = list(dict.fromkeys(table.model))
    head = "| rule | " + " | ".join(f"{m}: plan / measured GB (ratio)" for m in models) + " |"
    lines = [head, "|---|" + "---|" * len(models)]
    for rule in dict.fromkeys(table.rule):
        cells = []
        for model in models:
            row = table[(table.model == model) & (table.rule == rule)]
            cells.append("–" if row.empty else
                         f"{row.plan_gb.iloc[0]:.2f} / {row.measured_gb.iloc[0]:.2f} "
                         f"({row.measured_gb.iloc[0] / row.plan_gb.iloc[0]:.2f})")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    worst = (table.measured_gb / table.plan_gb - 1).abs().max()
    return "\n".join(lines) + f"\n\nLargest deviation from the plan: {worst:.0%} (tolerance 25%)."


def _r2(x: float) -> str:
    return f"{x:.3f}".replace("0.", ".", 1) if x >= 0 else f"{x:.3f}"


def answer() -> str:
    """Per committed model (docs/results/<model>/r2.csv, rewrite score) the bootstrap verdicts counted
    and the mean R² over the unsaturated method × problem conditions, beside the paper's GPT-J
    (locedit/bundled/paper_r2.csv: the mean of Table 3's 20 conditions, Table 1 for ROME error injection),
    then the reading: where the verdicts are not "holds", which methods they fall on."""
    paper = pd.read_csv(PAPER_TABLE)
    paper = paper[paper.metric == "rewrite"]
    rows, found, others, variants = [], set(), [], []
    for folder, name in MODELS.items():
        r2 = pd.read_csv(RESULTS / folder / "r2.csv")
        variants.append((name, verdict_variants(RESULTS / folder, r2)))
        rewrite = r2[r2.metric == "rewrite"]
        verdicts = rewrite.verdict.fillna("").replace("", "no verdict").value_counts()
        found |= set(verdicts.index)
        others.append((name, rewrite[rewrite.verdict.fillna("") != "holds"]))
        rows.append((f"{name} ([{folder}](docs/results/{folder}/summary.md))", int(rewrite.n_cases.max()),
                     int(rewrite.n_layers.max()), verdicts, rewrite[~rewrite.saturated],
                     rewrite[(rewrite.method == "rome") & (rewrite.problem == "error_injection")].iloc[0]))
    rule = ["holds", "undetermined", "reversed", "at ceiling", "at floor"]
    order = rule + [v for v in VERDICTS if v in found and v not in rule] + sorted(found - set(VERDICTS) - set(rule))
    head = (["model", "cases × layers", *order, "mean R² layer", "mean R² tracing", "mean R² added (chance)",
             "ROME error injection: layer / tracing / both"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    conditions = []
    for label, n_cases, n_layers, verdicts, fitted, rome in rows:
        conditions.append(len(fitted))
        counts = [str(int(verdicts.get(v, 0))) for v in order]
        lines.append(f"| {label} | {n_cases} × {n_layers} | " + " | ".join(counts)
                     + f" | {_r2(fitted.r2_layer.mean())} | {_r2(fitted.r2_trace.mean())} "
                     f"| {_r2(fitted.r2_added.mean())} ({_r2(fitted.r2_added_chance.mean())}) "
                     f"| {_r2(rome.r2_layer)} / {_r2(rome.r2_trace)} / {_r2(rome.r2_both)} |")
    table3 = paper[paper.table == 3]
    table1 = paper[(paper.table == 1) & (paper.method == "rome") & (paper.problem == "error_injection")].iloc[0]
    lines.append("| GPT-J 6B, the paper (Tables 1, 3) | 652 × 9 | " + " | ".join("–" for _ in order)
                 + f" | {_r2(table3.r2_layer.mean())} | {_r2(table3.r2_trace.mean())} | {_r2(table3.r2_added.mean())} "
                 f"| {_r2(table1.r2_layer)} / {_r2(table1.r2_trace)} / {_r2(table1.r2_both)} |")
    return ("\n".join(lines) + f"\n\nRewrite score, {max(conditions)} fitted method × problem conditions (FT-1, FT-5, ROME, "
            "MEMIT × the five editing problems). Verdicts: bootstrap 95% intervals over cases (resampled with "
            "their layers); **holds** when the R² tracing adds is below the layer's R², **reversed** when above, "
            "**undetermined** when the intervals overlap, **at ceiling** / **at floor** when every layer's "
            "edits succeed / fail alike. Means over the conditions whose fit is not saturated; the paper gives "
            "no intervals. Per condition: [`docs/results/comparison.md`](docs/results/comparison.md)."
            + "\n\n" + _reading(others) + "\n\n" + _variants(variants) + _strength())


def _strength() -> str:
    """Per committed strength sweep (docs/results/strength-*/strength.csv), the verdict counts per scale."""
    parts = []
    for folder in sorted(RESULTS.glob("strength-*")):
        table = pd.read_csv(folder / "strength.csv")
        methods = ", ".join(METHOD_LABELS[m] for m in METHOD_LABELS if m in set(table.method))
        hparam = table.hparam.iloc[0]
        scales = "; ".join(f"× {scale:g}: {verdict_counts(rows)}" for scale, rows in table.groupby("scale"))
        parts.append(f"\n\nEdit strength ({methods}; {hparam} × the tuned value, {int(table.n_cases.max())} cases): "
                     f"{scales} ([{folder.name}](docs/results/{folder.name}/strength.md)).")
    return "".join(parts)


def _variants(models: list[tuple[str, pd.DataFrame]]) -> str:
    """The same edits' verdict counts under the other localizations and the reference code's effect
    (:func:`locedit.results.comparison.verdict_variants`)."""
    parts = []
    for name, table in models:
        others = [rows.localization.iloc[0] + ("" if rows.effect.iloc[0] == PROJECT_EFFECT else
                                                     f", the {rows.effect.iloc[0]} effect on {int(rows.n_cases.max())} cases")
                  + f" ({verdict_counts(rows)})" for variant, rows in table.groupby("variant", sort=False)
                  if variant != "main"]
        if others:
            parts.append(f"{name}: " + "; ".join(others))
    return ("The same edits' verdicts under the other localizations and tracing-effect definitions — "
            + " · ".join(parts) + " ([comparison.md](docs/results/comparison.md#does-the-verdict-depend-on-the-"
            "localization-or-the-effects-definition)).") if parts else ""


def _reading(others: list[tuple[str, pd.DataFrame]]) -> str:
    """Which conditions of each model are not "holds", by verdict and method (from r2.csv)."""
    parts = []
    for name, rows in others:
        if rows.empty:
            parts.append(f"{name}: every condition holds")
            continue
        by = rows.assign(verdict=rows.verdict.fillna("no verdict")).groupby("verdict").method
        parts.append(f"{name}: " + "; ".join(f"{verdict}: {', '.join(sorted(set(METHOD_LABELS[m] for m in methods)))}"
                                              for verdict, methods in by))
    return "Conditions without a **holds** verdict, by method — " + " · ".join(parts) + "."


def _records(run: dict) -> str:
    data = run["config"]["data"]
    if data.get("case_ids"):
        return "case_ids"
    first = data.get("skip_cases") or 0
    return f"{first}–{first + data['n_cases'] - 1}"


def _stage(job: str) -> str:
    if job.startswith("edit_"):
        return "editing"
    if job.startswith("trace"):
        return "tracing"
    return "correctness filter" if job == "check_correctness" else "the rest"


def ledger(folder: str) -> Callable[[], str]:
    """One row per group under docs/results/<folder>/groups/ from its run.json (records, commit, wall
    and job seconds) and scores.parquet (cases, edits), a total row, and the job-seconds by stage."""
    def render() -> str:
        groups = sorted((RESULTS / folder / "groups").iterdir(),
                        key=lambda g: json.loads((g / "run.json").read_text())["config"]["data"].get("skip_cases") or 0)
        lines = ["| group | records | correct cases | fact-erasure cases | edits | wall s | job s | edit job s / edit "
                 "| traces | commit |", "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
        totals = {"cases": 0, "erasure": 0, "edits": 0, "wall": 0.0, "job": 0.0, "edit_job": 0.0}
        stages: dict[str, float] = {}
        for group in groups:
            run = json.loads((group / "run.json").read_text())
            scores = pd.read_parquet(group / "scores.parquet", columns=["method", "problem", "case_id"])
            cases = sorted(int(c) for c in scores.case_id.unique())
            erasure = scores[scores.problem == "fact_erasure"].case_id.nunique()
            edit_s = sum(s for job, s in run["job_s"].items() if job.startswith("edit_"))
            for job, s in run["job_s"].items():
                key = f"editing {job.split('_')[1]}" if job.startswith("edit_") else _stage(job)
                stages[key] = stages.get(key, 0.0) + s
            kinds = sorted({p.name.split("_")[1] for p in group.glob("tracing_*_w*.parquet")
                            if p.name.split("_")[1] in ("hidden", "attn")})
            windows = "/".join(str(w) for w in sorted(run["mlp_windows"], reverse=True))
            traces = f"MLP w{windows}" + (f"; {' / '.join(kinds)} w{run['effect_window']}" if kinds else "")
            lines.append(f"| {run['run']} | {_records(run)} | {len(cases)}: {', '.join(map(str, cases))} | {erasure} "
                         f"| {len(scores):,} | {run['wall_s']:,.0f} | {run['job_s_total']:,.0f} "
                         f"| {edit_s / len(scores):.2f} | {traces} | {run['commit'][:7]} |")
            for key, value in (("cases", len(cases)), ("erasure", erasure), ("edits", len(scores)),
                               ("wall", run["wall_s"]), ("job", run["job_s_total"]), ("edit_job", edit_s)):
                totals[key] += value
        lines.append(f"| **all {len(groups)}** | | {totals['cases']} | {totals['erasure']} | {totals['edits']:,} "
                     f"| {totals['wall']:,.0f} ({totals['wall'] / 3600:.1f} h) | {totals['job']:,.0f} "
                     f"| {totals['edit_job'] / totals['edits']:.2f} | | |")
        editing = sorted(((k.split()[1], v) for k, v in stages.items() if k.startswith("editing ")), key=lambda kv: -kv[1])
        other = {k: v for k, v in stages.items() if not k.startswith("editing ")}
        by_stage = (f"editing {sum(v for _, v in editing):,.0f} ("
                    + ", ".join(f"{m.upper().replace('FT', 'FT-')} {v:,.0f}" for m, v in editing) + "), "
                    + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(other.items(), key=lambda kv: -kv[1])))
        return "\n".join(lines) + f"\n\nJob-seconds by stage: {by_stage}."
    return render


def scheduling() -> str:
    """What `benchmarks/scheduling.py` prints now (the committed groups' job seconds replayed), summed
    per model: its per-group rows are the command's output."""
    out = subprocess.run([sys.executable, "benchmarks/scheduling.py"], cwd=REPO, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    number = re.compile(r"[\d,]+")
    sums: dict[str, list[float]] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 5 or not cells[1].isdigit():
            continue
        model = re.sub(r"-g\d[\w-]*$", "", cells[0])
        values = [float(v.replace(",", "")) for c in cells[2:] for v in number.findall(c)]
        total = sums.setdefault(model, [0.0] * 7)
        for i, v in enumerate([1.0, *values]):
            total[i] += v
    sums["**all**"] = [sum(t[i] for t in sums.values()) for i in range(7)]
    lines = ["| groups of | groups | any order: medians / worst s (summed) | longest edits first: medians / worst s "
             "| any / first | idle core-s any / first (medians) |", "|---|---:|---|---|---:|---|"]
    for model, (n, med_any, worst_any, med_first, worst_first, idle_any, idle_first) in sums.items():
        lines.append(f"| {model} | {n:.0f} | {med_any:,.0f} / {worst_any:,.0f} | {med_first:,.0f} / {worst_first:,.0f} "
                     f"| {med_any / med_first:.3f}× | {idle_any:,.0f} / {idle_first:,.0f} |")
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[], str]] = {
    "answer": answer,
    "plan-gpt-j-6b": plan_table("configs/gpt-j-6b.yaml"),
    "plan-gpt2-xl": plan_table("configs/gpt2-xl.yaml"),
    "scale-memory": scale_memory,
    "scheduling": scheduling,
    "ledger-gemma-3-270m": ledger("gemma-3-270m"),
    "ledger-smollm2-135m-instruct": ledger("smollm2-135m-instruct"),
    "ledger-gemma-3-270m-mixed": ledger("precision/gemma-3-270m-mixed"),
}
MARKED = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def regenerate(text: str) -> str:
    """``text`` with every marked section replaced by its generator's output."""
    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in SECTIONS:
            raise KeyError(f"generated section {name!r} has no generator in tools/docs.py SECTIONS")
        return f"{match.group(1)}{SECTIONS[name]().rstrip()}\n{match.group(4)}"
    return MARKED.sub(fill, text)


def stale(path: Path) -> list[str]:
    """Names of the sections of ``path`` whose text differs from what their generator prints now."""
    text = path.read_text()
    return [m.group(2) for m in MARKED.finditer(text) if m.group(3).rstrip() != SECTIONS[m.group(2)]().rstrip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report sections that differ (exit 1)")
    args = parser.parse_args()
    differ = []
    for path in DOCUMENTS:
        if args.check:
            differ += [f"{path.relative_to(REPO)}: {name}" for name in stale(path)]
        else:
            path.write_text(regenerate(path.read_text()))
    for line in differ:
        print(f"stale generated section {line}: run .venv/bin/python tools/docs.py")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
