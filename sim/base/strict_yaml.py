"""The one YAML reader of acsim: safe, strict about duplicate keys, bounded in size.

Every YAML acsim reads (experiment files, ``--set`` values, profiles, a result's config.yaml)
goes through :func:`loads` or :func:`read`:

- plain data only (``yaml.SafeLoader``): a ``!!python/...`` tag is an error, nothing is imported;
- a key written twice in one mapping is an error naming the key and its line (PyYAML would
  silently keep the second);
- anchors and aliases (``&name`` / ``*name``) are allowed, but the document they expand to may
  hold at most :data:`MAX_VALUES` values: a few hundred bytes of nested aliases (an "alias
  bomb") would otherwise expand to billions of values in the code that walks the data;
- numbers in exponent form without a dot (``1e6``, ``2.5e9``) are numbers, as in YAML 1.2 (PyYAML
  follows YAML 1.1 and would read them as text).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from sim.base.errors import InputError

# Far above any real experiment or profile (the largest shipped sweep holds a few hundred values).
MAX_VALUES = 100_000


class YamlProblem(ValueError):
    """What is wrong with a YAML text, and on which line (1-based) when known."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        self.problem, self.line = problem, line
        super().__init__(problem if line is None else f"line {line}: {problem}")


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads YAML 1.2 exponent floats."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges; explicit keys may override merged ones
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise YamlProblem(f"key {key!r} appears twice in one mapping (first on line {first})", line)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _expanded_size(root: Node) -> int:
    """How many values the document holds once every alias is expanded (each node counted per use).

    Shared nodes are sized once (memo), so this costs time linear in the document's text even
    when the expansion is astronomically large; a node that contains itself is infinite.
    """
    memo: dict[int, int] = {}
    active: set[int] = set()
    # Iterative post-order walk: a deeply nested document must not exhaust Python's stack.
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in memo:
            continue
        if isinstance(node, ScalarNode):
            memo[key] = 1
            continue
        kids = [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else list(node.value)
        if children_done:
            active.discard(key)
            memo[key] = 1 + sum(memo[id(k)] for k in kids)
            continue
        if key in active:
            raise YamlProblem("an alias refers to a value that contains it (infinite)", node.start_mark.line + 1)
        active.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in active:
                raise YamlProblem(
                    "an alias refers to a value that contains it (infinite)", kid.start_mark.line + 1
                )
            if id(kid) not in memo:
                stack.append((kid, False))
    return memo[id(root)]


def loads(text: str) -> Any:
    """Parse one YAML document (see the module docstring); raises :class:`YamlProblem`."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_VALUES:
            raise YamlProblem(
                f"anchors and aliases (&name / *name) expand this document to {size:,} values, more than "
                f"the {MAX_VALUES:,} acsim reads; write the values out instead of nesting aliases",
                node.start_mark.line + 1,
            )
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if "could not determine a constructor for the tag" in problem:
            quoted = re.search(r"'([^']*)'", problem)
            tag = (quoted.group(1) if quoted else "?").replace("tag:yaml.org,2002:", "!!")
            problem = f"the tag {tag!r} is not allowed: acsim reads plain data only (no Python objects)"
        raise YamlProblem(problem, mark.line + 1 if mark is not None else None) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlProblem(f"not valid YAML: {exc.problem or exc}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlProblem("nested too deeply to be an acsim file") from None
    finally:
        loader.dispose()


def read(path: str | Path, what: str = "YAML file") -> Any:
    """Read and parse a YAML file; every problem is an :class:`InputError` naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, f"{what} not found" + ("; it is a directory" if p.is_dir() else ""))
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(p, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return loads(text)
    except YamlProblem as exc:
        raise InputError(p, exc.problem, line=exc.line) from None
