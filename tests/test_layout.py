"""The package's dependency rule: which half may import which (docs/usage.md, "Layout").

A small core (the top-level modules: models, hooks, prompts, io, provenance, plan, …) imports no half;
the cases half only the core; tracing and editing the core and the cases, never each other; the
analysis and results halves are torch-free and read the other halves only through their torch-free
modules (the tracing effects, the editing hyperparameters)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "locedit"
HALVES = ("cases", "tracing", "editing", "analysis", "results")
MAY_IMPORT = {
    "core": {"core"},
    "cases": {"core", "cases"},
    "tracing": {"core", "cases", "tracing"},
    "editing": {"core", "cases", "editing"},
    "analysis": {"core", "analysis", "locedit.tracing.effects"},
    "results": {"core", "analysis", "results", "locedit.tracing.effects", "locedit.editing.hparams"},
}
TORCH_FREE = ["locedit.plan", "locedit.config", "locedit.localization", "locedit.tracing.effects",
              "locedit.editing.hparams"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def half_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in HALVES else "core"


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def locedit_imports(path: Path) -> set[str]:
    """The locedit modules a file imports (``from locedit.x import y`` counts ``locedit.x.y`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the package imports absolutely (from locedit.… import …)"
            if node.module and node.module.startswith("locedit"):
                found |= {n for n in [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if is_module(n)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("locedit.")}
    return {n for n in found if n != "locedit"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "bundled" not in p.parts)


def test_every_module_sits_in_the_core_or_a_half():
    folders = {p.parent.name for p in modules() if p.parent != PACKAGE}
    assert folders == set(HALVES)


@pytest.mark.parametrize("path", modules(), ids=lambda p: module_name(p))
def test_module_imports_only_what_its_half_may(path):
    module, half = module_name(path), half_of(module_name(path))
    allowed = MAY_IMPORT[half]
    wrong = sorted(n for n in locedit_imports(path) if half_of(n) not in allowed and n not in allowed)
    assert not wrong, f"{module} ({half}) imports {wrong}; {half} may import {sorted(allowed)}"


def test_the_rule_catches_a_forbidden_import(tmp_path):
    """The checker itself: a tracing module importing the editing half is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("from locedit.editing.job import editable_cases\nfrom locedit import plan\n")
    assert locedit_imports(probe) == {"locedit.editing.job", "locedit.plan"}
    assert half_of("locedit.editing.job") not in MAY_IMPORT[half_of("locedit.tracing.trace")]


def test_analysis_results_and_planning_load_no_torch():
    torch_free = TORCH_FREE + [module_name(p) for p in modules() if half_of(module_name(p)) in ("analysis", "results")
                               and p.name != "__main__.py"]
    script = ("import importlib, sys\n"
              f"for name in {torch_free!r}:\n"
              "    importlib.import_module(name)\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"these modules load {done.stdout.strip()}: {torch_free}"
