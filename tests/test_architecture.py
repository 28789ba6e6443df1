"""The package's shape: the core never imports the analysis layer, modules do not reach into
each other's private names, the naive reference shares no code with the engine, and no
module grows past a readable size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "carlib"
MODULES = sorted(p for p in PKG.rglob("*.py"))


def _name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    here = _name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.append((mod, [a.name for a in node.names]))
    return out


def test_the_core_never_imports_the_analysis_layer():
    core = [p for p in MODULES if "analysis" not in p.relative_to(PKG).parts]
    bad = [(_name(p), m) for p in core for m, _ in _imports(p) if m.startswith("carlib.analysis")]
    assert not bad, bad
    # and importing the package loads none of it
    code = "import sys, carlib; print([m for m in sys.modules if m.startswith('carlib.analysis')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_no_module_imports_another_modules_private_names():
    bad = [(_name(p), m, n) for p in MODULES for m, names in _imports(p) if m.startswith("carlib")
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_the_naive_reference_shares_no_code_with_the_engine():
    allowed = {"carlib.data", "carlib.layers"}  # data loading and layer naming only
    used = {m for m, _ in _imports(PKG / "reference.py") if m.startswith("carlib")}
    assert used <= allowed, used - allowed


def test_production_code_never_calls_the_reference():
    users = [_name(p) for p in MODULES if p.name not in ("reference.py", "__init__.py")
             and any(m == "carlib.reference" for m, _ in _imports(p))]
    assert not users, users


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _name(p))
def test_modules_are_small_and_declare_their_api(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 400, f"{_name(path)} has {len(text.splitlines())} lines"
    if path.name not in ("__main__.py",):
        assert "__all__" in text, f"{_name(path)} declares no __all__"
