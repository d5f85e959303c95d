"""Every function in ``sim/`` stays small enough to read whole: at most 80 lines and 15 parameters.

The limits are issue 25's. Lines count from a function's ``def`` (or first decorator) to its
last line, docstring and comments included; parameters count every named one (positional,
keyword-only), not ``*args`` / ``**kwargs``. Nested functions count on their own and inside
their parent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
MAX_PARAMS = 15


def functions(root: Path) -> list[tuple[str, int, int]]:
    """(``path:line name`` with the path under ``root``, lines, parameters) of every function under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                a = node.args
                params = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                out.append((where, node.end_lineno - first + 1, params))
    return out


def test_the_counter_counts(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    params = ", ".join(f"a{i}" for i in range(16))
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    src.write_text(f"@staticmethod\ndef big({params}, *rest, k=1, **kw):\n{body}\n\n\ndef small(a, /, b, *, c):\n    pass\n")
    found = {name.split()[-1]: (lines, n) for name, lines, n in functions(tmp_path)}
    assert found == {"big": (82, 17), "small": (2, 3)}


@pytest.mark.parametrize("limit", ["lines", "params"])
def test_no_function_in_sim_is_too_big(limit: str) -> None:
    found = functions(ROOT / "sim")
    assert len(found) > 500  # the walk found the package
    if limit == "lines":
        big = [f"{w}: {n} lines" for w, n, _ in found if n > MAX_LINES]
    else:
        big = [f"{w}: {p} parameters" for w, _, p in found if p > MAX_PARAMS]
    assert not big, "\n".join(big)
