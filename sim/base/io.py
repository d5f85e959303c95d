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

from sim.base.errors import ConfigError

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
    "check_own_file",
    "check_writable",
    "exists",
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


def exists(path: str | Path, kind: str = "any") -> bool:
    """Whether ``path`` exists (``kind``: any, file or dir); False for a name the OS rejects (too long)."""
    p = Path(path).expanduser()
    try:
        return p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
    except OSError:
        return False


def _can(path: Path, mode: int) -> bool:
    """``os.access`` for this process's effective user (what an open() will be checked against)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def check_writable(path: str | Path, flag: str, *, directory: bool = False) -> None:
    """Raise ConfigError naming ``flag`` unless ``path`` can be written as a file (or a ``directory``).

    Checked before a command starts its work, so that minutes of computing never end in a
    permission error or a path that is a directory where a file is needed (or the reverse).
    """
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(flag, str(p), "is a file; expected a directory")
    if not directory and p.is_dir():
        raise ConfigError(flag, str(p), "is a directory; expected a file path")
    if not directory and p.exists() and not _can(p, os.W_OK):
        raise ConfigError(flag, str(p), "is not writable (permission denied)")
    parent = p if directory and p.is_dir() else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(flag, str(p), f"{parent} is a file, not a directory")
    if not _can(parent, os.W_OK | os.X_OK):
        raise ConfigError(flag, str(p), f"cannot write in {parent} (permission denied)")


def check_own_file(path: str | Path, flag: str, what: str, is_own: Callable[[Path], bool]) -> None:
    """Raise ConfigError naming ``flag`` unless ``path`` is free or holds a ``what`` acsim wrote.

    acsim overwrites a file only when ``is_own(path)`` recognises it as its own output of the
    same kind (a trace it wrote, a profile it wrote, ...): never a user's file, and never
    another kind of result. Also checks that the path can be written (:func:`check_writable`).
    """
    if not str(path).strip():
        raise ConfigError(flag, str(path), "is empty; give a file path")
    check_writable(path, flag)
    p = Path(path)
    if p.is_symlink():
        raise ConfigError(flag, str(p), "is a symbolic link; acsim writes results only to a real file")
    if p.exists() and not is_own(p):
        raise ConfigError(
            flag,
            str(p),
            f"exists and is not a {what} acsim wrote; acsim never overwrites a file it did not create "
            "(choose another path, or move the file away)",
        )
