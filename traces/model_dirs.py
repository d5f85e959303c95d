"""Model directories named in a config or on the command line are data, never code.

``sentence-transformers:PATH`` and ``clip:PATH`` (the ``embedder`` field, ``calibrate --scorer``)
and the diffusers directory of ``calibrate --model PATH``.

A model directory can ask its loader to run code: ``modules.json`` may name a module class of
the directory itself, a ``config.json`` may carry an ``auto_map`` to modeling files, and a module
config may pass ``weights_only: false`` through to ``torch.load`` (which then unpickles, and so
runs, whatever a ``pytorch_model.bin`` holds). sentence-transformers >= 6.0 refuses the first
without ``trust_remote_code`` and transformers refuses the second, but the third gets through
both (checked with sentence-transformers 6.2 / transformers 5.24). :func:`check_model_dir`
therefore reads the directory's JSON files *before* anything loads it, and refuses it when:

- a module type (``modules.json``, a Router's ``types``) is not one of sentence-transformers' own
  classes (``sentence_transformers.<...>``), or a module path leaves the directory;
- any JSON file holds ``auto_map``, ``trust_remote_code`` or ``weights_only`` (the switches that
  make transformers import modeling code or unpickle arbitrary objects);
- a Dense module names an activation function outside ``torch.nn``;
- a diffusers ``model_index.json`` takes a component from a library other than diffusers or
  transformers (diffusers would import it from the directory);
- the directory holds no model at all (no config, no weights, no tokenizer for ``clip:``).

Loaders are then called with ``trust_remote_code=False`` (sim embedders and calibrate scorers).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

from sim.base.io import exists

# The first sentence-transformers release that refuses a model directory's own module classes
# unless trust_remote_code=True (earlier ones imported them from a local directory).
MIN_SENTENCE_TRANSFORMERS = (6, 0)

ST_TYPE = re.compile(r"sentence_transformers(\.[A-Za-z_][A-Za-z0-9_]*)+")
TORCH_ACTIVATION = re.compile(r"torch\.nn\.(modules\.activation\.|functional\.)?[A-Za-z_][A-Za-z0-9_]*")
# Keys that make transformers / torch run code named or stored in the directory.
CODE_SWITCHES = ("auto_map", "trust_remote_code", "weights_only")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# JSON files bigger than this are not configs (a tokenizer.json of a big vocabulary is ~10 MB).
_MAX_JSON = 64 * 2**20


def _json(path: Path) -> Any:
    try:
        if path.stat().st_size > _MAX_JSON:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _Refused(f"{path.name} is not readable JSON ({type(exc).__name__})") from None


class _Refused(Exception):
    pass


def _switches(node: Any, where: str) -> None:
    """Refuse ``CODE_SWITCHES`` anywhere in a parsed JSON document."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in CODE_SWITCHES:
                    raise _Refused(f"{where} sets {key!r}, which would let the model directory run code")
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _inside(root: Path, rel: Any, where: str) -> Path:
    if not isinstance(rel, str):
        raise _Refused(f"{where}: module path {rel!r} is not a relative path")
    path = (root / rel).resolve()
    if path != root and root not in path.parents:
        raise _Refused(f"{where}: module path {rel!r} leaves the model directory")
    return path


def _module_type(value: Any, where: str) -> None:
    if not isinstance(value, str) or not ST_TYPE.fullmatch(value):
        raise _Refused(
            f"{where} names the module class {value!r}, which is not part of sentence-transformers "
            "(acsim never imports code from a model directory)"
        )


def _check_json_files(root: Path) -> None:
    # A model's configs sit at its top and in its modules' folders (a Router nests one level more).
    found = [p for pattern in ("*.json", "*/*.json", "*/*/*.json") for p in root.glob(pattern)]
    for path in sorted(found):
        if path.is_file():
            data = _json(path)
            if data is None:
                continue
            rel = path.relative_to(root).as_posix()
            _switches(data, rel)
            if isinstance(data, dict):
                types = data.get("types")
                if isinstance(types, dict) and "structure" in data:  # a Router module's config
                    for name, value in types.items():
                        _module_type(value, f"{rel} (types.{name})")
                activation = data.get("activation_function")
                if activation is not None and not (
                    isinstance(activation, str) and TORCH_ACTIVATION.fullmatch(activation)
                ):
                    raise _Refused(f"{rel} names the activation function {activation!r}, which is not torch.nn's")


def _sentence_transformers(root: Path) -> None:
    try:
        version = importlib.metadata.version("sentence-transformers")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    parts = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if parts < MIN_SENTENCE_TRANSFORMERS:
        raise _Refused(
            f"cannot be loaded safely: sentence-transformers {version} may import code from a model "
            "directory; install sentence-transformers>=6.0"
        )
    modules = root / "modules.json"
    if not modules.is_file():
        if not (root / "config.json").is_file():
            raise _Refused("holds no model (no modules.json or config.json)")
        return  # a plain transformers model: sentence-transformers adds mean pooling
    entries = _json(modules)
    if not isinstance(entries, list) or not entries:
        raise _Refused("modules.json must be a non-empty list of modules")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _Refused(f"modules.json entry {i} is not a mapping")
        _module_type(entry.get("type"), f"modules.json entry {i}")
        _inside(root, entry.get("path", ""), f"modules.json entry {i}")


def _clip(root: Path) -> None:
    if not (root / "config.json").is_file():
        raise _Refused("holds no CLIP model (no config.json)")
    if not any((root / name).is_file() for name in WEIGHTS):
        raise _Refused("holds no model weights (model.safetensors or pytorch_model.bin)")
    if not ((root / "tokenizer.json").is_file() or (root / "vocab.json").is_file() and (root / "merges.txt").is_file()):
        raise _Refused("holds no CLIP tokenizer (vocab.json and merges.txt, or tokenizer.json)")


def _diffusers(root: Path) -> None:
    index = _json(root / "model_index.json") if (root / "model_index.json").is_file() else None
    if not isinstance(index, dict):
        raise _Refused("holds no diffusers pipeline (no model_index.json mapping)")
    if not isinstance(index.get("_class_name"), str):
        raise _Refused(f"model_index.json names the pipeline class {index.get('_class_name')!r}, not a diffusers one")
    for name, value in index.items():
        # A component is [library, class]; a library outside these would be imported from the directory.
        if isinstance(value, list) and value and value[0] not in (None, "diffusers", "transformers"):
            raise _Refused(f"model_index.json: component {name!r} comes from {value[0]!r}, not diffusers or transformers")


CHECKS = {"sentence-transformers": _sentence_transformers, "clip": _clip, "diffusers": _diffusers}


def check_model_dir(kind: str, path: str | Path) -> str | None:
    """None when the ``kind`` model directory at ``path`` may be loaded, else why not (one line)."""
    root = Path(path).expanduser()
    if not exists(root, "dir"):
        return f"model directory {str(root)!r} does not exist"
    root = root.resolve()
    try:
        CHECKS[kind](root)
        _check_json_files(root)
    except _Refused as exc:
        return f"{str(root)!r} {exc}" if str(exc).startswith("holds") else f"{str(root)!r}: {exc}"
    except OSError as exc:
        return f"{str(root)!r} cannot be read ({exc.strerror or exc})"
    return None
