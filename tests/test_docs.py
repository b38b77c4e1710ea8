"""Every generated section of README.md and docs/ equals what its generator prints now
(tools/docs.py): no number in them is copied by hand."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import docs  # noqa: E402


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
