"""Every generated section of README.md and docs/ equals what its generator prints now
(tools/docs.py): no number in them is copied by hand. The README and docs/performance.md stay short,
and every relative link in the documents points at a file that exists."""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import docs  # noqa: E402

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_generated_sections_are_current():
    assert not [(path.name, name) for path in docs.DOCUMENTS for name in docs.stale(path)], \
        "run .venv/bin/python tools/docs.py"


def test_every_generator_has_its_section_somewhere():
    text = "".join(path.read_text() for path in docs.DOCUMENTS)
    assert {m.group(2) for m in docs.MARKED.finditer(text)} == set(docs.SECTIONS)


def test_a_section_that_differs_is_named(tmp_path):
    stale = tmp_path / "doc.md"
    stale.write_text("x\n<!-- generated: plan-gpt2-xl -->\n| old table |\n<!-- /generated -->\n")
    assert docs.stale(stale) == ["plan-gpt2-xl"]
    stale.write_text(docs.regenerate(stale.read_text()))
    assert docs.stale(stale) == []


def test_a_changed_results_table_changes_the_answer(tmp_path, monkeypatch):
    """The answer is read from the committed r2.csv, not typed: a verdict changed there shows."""
    for folder in docs.MODELS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "r2.csv").write_text((docs.RESULTS / folder / "r2.csv").read_text())
    first = next(iter(docs.MODELS))
    r2 = (tmp_path / first / "r2.csv")
    lines = r2.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if ",rewrite," in line and line.endswith(",holds"))
    lines[row] = lines[row][: -len("holds")] + "reversed"
    r2.write_text("\n".join(lines) + "\n")
    before = docs.answer()
    monkeypatch.setattr(docs, "RESULTS", tmp_path)
    assert docs.answer() != before


def test_readme_and_performance_are_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150
    assert len((REPO / "docs" / "performance.md").read_text().splitlines()) <= 200


def test_readme_numbers_only_in_generated_sections():
    """Outside its generated sections the README's prose quotes no measured number (decimals,
    percentages, durations); commands and code blocks are not prose."""
    text = docs.MARKED.sub("", (REPO / "README.md").read_text())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = re.sub(r"`[^`]*`", "", prose)
    assert not re.findall(r"\d+\.\d+|\d+\s?%|\d+\s?(?:min|h|s)\b|\d+ of \d+", prose)


def test_relative_links_point_at_files():
    missing = []
    for path in docs.DOCUMENTS:
        for target in LINK.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                missing.append(f"{path.relative_to(REPO)} -> {target}")
    assert not missing, missing
