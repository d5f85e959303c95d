"""The import graph stays layered: no cycles, nothing imports upward.

Three layers (ARCHITECTURE.md), one folder each at the ends: the bottom layer ``sim/base``
imports nothing else of acsim; the application layer (``sim/app``, every command, and
``sim/__main__``) is imported by nothing below it; everything else sits in between. Every import of
the project counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (annotations only, never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "traces", "calibrate", "plots")
APP = ("sim.app", "sim.__main__")
BASE = ("sim.base",)


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> int:
    """0: bottom, 1: middle, 2: application."""
    return 0 if _in(module, BASE) else 2 if _in(module, APP) else 1


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def imports_of(path: Path, known: set[str]) -> dict[str, int]:
    """Project modules imported by the file at ``path`` (outside TYPE_CHECKING) -> first line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.setdefault(name, node.lineno)
    return found


def graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    mods = modules(root)
    known = set(mods)
    return {m: {d: line for d, line in imports_of(p, known).items() if d != m} for m, p in mods.items()}


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, dict[str, int]]) -> list[str]:
    """Imports from a lower layer into a higher one."""
    return [
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)}), line {line}"
        for m, deps in sorted(g.items())
        for d, line in sorted(deps.items())
        if layer(d) > layer(m)
    ]


def test_the_project_has_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_module_imports_a_higher_layer() -> None:
    assert upward(graph()) == []


def test_the_layers_are_populated() -> None:
    g = graph()
    counts = [sum(layer(m) == k for m in g) for k in range(3)]
    assert min(counts) >= 3, counts
    assert "sim.app.cli" in g and "sim.base.config" in g


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"sim/base/a.py": "from sim.systems import x\n", "sim/systems/__init__.py": ""}, "upward"),
        ({"sim/b.py": "def f():\n    from sim.app import run\n", "sim/app/run.py": ""}, "upward"),
        ({"sim/a.py": "import sim.b\n", "sim/b.py": "from sim import a\n"}, "cycle"),
        (
            {
                "sim/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sim.b\n",
                "sim/b.py": "import sim.a\n",
            },
            None,
        ),
    ],
)
def test_the_checks_catch_what_they_claim(tmp_path: Path, files: dict[str, str], problem: str | None) -> None:
    """The checker on small made-up trees: an upward import, a function-level upward import, a
    cycle, and a cycle that only exists under TYPE_CHECKING (allowed)."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    g = graph(tmp_path)
    assert bool(upward(g)) == (problem == "upward")
    assert bool(cycles(g)) == (problem == "cycle")
