"""Sections of the documents that are printed by a command, never typed: each lies between
``<!-- generated: NAME -->`` and ``<!-- /generated -->`` and is rewritten from its generator.

    .venv/bin/python tools/docs.py            # rewrite every generated section in README.md and docs/
    .venv/bin/python tools/docs.py --check    # exit 1 naming each section that differs (tests/test_docs.py)

A generator is a function of nothing that returns markdown; add one to :data:`SECTIONS` and put its
markers where the text goes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from locedit.config import load_config  # noqa: E402
from locedit.plan import Plan  # noqa: E402

DOCUMENTS = [REPO / "README.md", REPO / "docs" / "performance.md"]
SCALE_TABLE = REPO / "docs" / "results" / "scale" / "memory.csv"


def plan_table(preset: str) -> Callable[[], str]:
    def render() -> str:
        return f"`python -m locedit.plan --configfile {preset}`:\n\n{Plan(load_config(REPO / preset)).table()}"
    return render


def scale_memory() -> str:
    """benchmarks/scale.py's measured peak RSS beside the plan (docs/results/scale/memory.csv)."""
    table = pd.read_csv(SCALE_TABLE)
    lines = ["| model | rule | plan host GB | measured peak RSS GB | measured / plan |", "|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.rule} | {r.plan_gb:.2f} | {r.measured_gb:.2f} | {r.measured_gb / r.plan_gb:.2f} |"
              for r in table.itertuples()]
    worst = (table.measured_gb / table.plan_gb - 1).abs().max()
    return "\n".join(lines) + f"\n\nLargest deviation from the plan: {worst:.0%} (tolerance 25%)."


SECTIONS: dict[str, Callable[[], str]] = {
    "plan-gpt-j-6b": plan_table("configs/gpt-j-6b.yaml"),
    "plan-gpt2-xl": plan_table("configs/gpt2-xl.yaml"),
    "scale-memory": scale_memory,
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
