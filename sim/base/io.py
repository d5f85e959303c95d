"""Atomic file writes: a reader never sees a half-written result.

Every writer puts the data in a temporary file in the destination's own directory
(so the final rename never crosses a filesystem), flushes it to disk, then
``os.replace``-s it over the destination. A crash leaves either the old file or
the new one, plus at worst a stray ``.tmp`` file that the next write ignores.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is only needed by callers that pass DataFrames
    from collections.abc import Callable, Iterator

    import pandas as pd

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_parquet",
    "atomic_write_text",
]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Use this for writers that insist on opening the file themselves
    (``matplotlib.savefig``, ``pyarrow``). Parent directories are created.
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file 0600; results should get the usual permissions.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _write_with(path: str | Path, mode: str, writer: Callable[[IO[Any]], None], **open_kw: Any) -> Path:
    dest = Path(path)
    with atomic_path(dest) as tmp, open(tmp, mode, **open_kw) as fh:
        writer(fh)
    return dest


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    return _write_with(path, "w", lambda fh: fh.write(text), encoding=encoding, newline="")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    return _write_with(path, "wb", lambda fh: fh.write(data))


def atomic_write_csv(path: str | Path, df: pd.DataFrame, *, index: bool = False, **to_csv_kw: Any) -> Path:
    """Write a DataFrame as CSV atomically (no index column unless asked); return the path."""
    return _write_with(
        path, "w", lambda fh: df.to_csv(fh, index=index, **to_csv_kw), encoding="utf-8", newline=""
    )


def atomic_write_parquet(
    path: str | Path, df: pd.DataFrame, *, index: bool = False, **to_parquet_kw: Any
) -> Path:
    """Write a DataFrame as parquet (pyarrow) atomically; return the path."""
    dest = Path(path)
    with atomic_path(dest) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=index, **to_parquet_kw)
    return dest
