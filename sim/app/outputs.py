"""Result directories: what acsim may replace, one writer at a time, atomic replacement.

The guarantees (README "What acsim writes, and what it never touches"):

- Every result directory acsim writes carries a marker file, :data:`MARKER`, naming its kind
  (:data:`KINDS`: ``run``, ``compare``, ``quality``, ``sweep``, ``plan``). acsim replaces a
  directory only when it carries the marker of the kind being written and holds nothing but the
  files that kind writes (:func:`foreign_files`); it adds to a sweep or plan directory only when
  it carries that marker. A missing or empty directory is taken. Anything else (a file, a
  foreign or non-empty directory, the current directory or one that contains it, a symbolic
  link, a directory inside any result, one kind where another is asked for) is refused with
  :class:`sim.base.errors.OutputError` before anything is written. Single files (traces,
  profiles) follow the same rule through :func:`sim.base.io.check_own_file`.
- An output is locked while it is written (:func:`locked`): an exclusive ``flock`` on
  ``.<name>.lock`` beside it. The kernel drops the lock when its process dies, so a killed run
  never blocks the next one; a second writer gets :class:`sim.base.errors.OutputBusy`.
- A run is written into ``.<name>.partial-XXXXXXXX`` beside its destination and swapped in whole
  (:func:`staging_dir`); a killed run leaves that directory behind, and the next writer of the
  same output removes it (it holds the lock, so no live process can own it).
- Results get the usual permissions (``0777`` minus the umask), like the files inside them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sim.base.errors import OutputBusy, OutputError

if TYPE_CHECKING:
    from collections.abc import Iterator

MARKER = ".acsim-result"
FORMAT = 1
_TMP = re.compile(r"([^/]+/)?\.[^/]+\.tmp")  # a temporary file of an interrupted atomic write (sim.base.io)
# What `acsim plot` writes into plots/: figures, and the paper comparison's table beside its figure
# (plots.figures.paper_comparison).
_PLOTTED = r"([^/]+\.(png|pdf)|paper_comparison\.(md|csv))"
_FIGURES = re.compile(rf"plots/{_PLOTTED}")
# What each kind of result directory may hold (relative paths). A directory of a kind listed
# here is replaced whole by its next writer, so a file outside its list was put there by someone
# else and the directory is refused. Sweeps and plans are only added to, never replaced.
OWN_FILES: dict[str, tuple[re.Pattern[str], ...]] = {
    "run": (  # sim.app.run and sim.app.sweep
        re.compile(r"(config\.yaml|profile\.yaml|summary\.csv|done|error\.txt)"),
        re.compile(r"records/[^/]+\.parquet"),
        re.compile(r"timeseries/[^/]+\.csv"),
        _FIGURES,
        re.compile(rf"\.plots\.partial-[^/]+/{_PLOTTED}"),  # figures of an interrupted `acsim plot`
        _TMP,
    ),
    "compare": (re.compile(r"summary\.csv"), _FIGURES, _TMP),  # acsim trace compare
    "serve": (  # acsim calibrate serve
        re.compile(r"config\.yaml|validation\.csv|summary\.json"),
        re.compile(r"(real|profiles)/[^/]+\.(csv|yaml)"),
        _FIGURES,
        _TMP,
    ),
    "quality": (  # acsim calibrate quality
        re.compile(r"profile\.yaml|[^/]+\.csv|contact_sheet\.png"),
        re.compile(r"images/[^/]+\.png"),
        _TMP,
    ),
}
KINDS = (*OWN_FILES, "sweep", "plan")
_COMMANDS = {"compare": "acsim trace compare", "quality": "acsim calibrate quality", "serve": "acsim calibrate serve"}
_UMASK = os.umask(0)
os.umask(_UMASK)
_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth


def read_marker(directory: Path) -> str | None:
    """The kind of result ``directory`` holds according to its marker; None when it has none."""
    try:
        data = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) and data.get("acsim") == "result" else None
    return kind if kind in KINDS else None


def write_marker(directory: Path, kind: str) -> None:
    """Mark ``directory`` as an acsim result of ``kind``."""
    info = {
        "acsim": "result",
        "kind": kind,
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (directory / MARKER).write_text(json.dumps(info) + "\n", encoding="utf-8")


def foreign_files(directory: Path, kind: str = "run") -> list[str]:
    """Files and links in a ``kind`` result directory that acsim does not write there (relative, sorted)."""
    own = OWN_FILES[kind]
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if rel != MARKER and not any(p.fullmatch(rel) for p in own):
            out.append(rel)
    return out


def _command(kind: str) -> str:
    return _COMMANDS.get(kind, f"acsim {kind}")


def check_target(out: Path, kind: str, flag: str = "--output") -> None:
    """Raise OutputError unless acsim may write a ``kind`` result at ``out`` (see the module docstring).

    ``flag`` is the option the error tells the user to change.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}")
    where = f"choose another {flag}"
    if not str(out).strip():
        raise OutputError(out, f"is empty; give {flag} a result directory")
    if out.is_symlink():
        raise OutputError(out, f"is a symbolic link; acsim writes results only to a real directory ({where})")
    full = out.resolve()
    cwd = Path.cwd().resolve()
    if full == cwd or full in cwd.parents:
        raise OutputError(out, f"is the current directory or contains it; acsim will not write a result over it ({where})")
    if full.parent == full:
        raise OutputError(out, f"is the root of the file system ({where})")
    for parent in full.parents:
        inside = read_marker(parent)
        if inside in OWN_FILES:
            raise OutputError(
                out,
                f"is inside the acsim {inside} directory {parent}, which its next writer replaces whole ({where})",
            )
        if inside is not None and kind != "run":  # a sweep's runs are written by the sweep: check_alone
            raise OutputError(
                out,
                f"is inside the acsim {inside} directory {parent}, whose runs and tables only "
                f"`{_command(inside)}` writes ({where})",
            )
    if out.exists() and not out.is_dir():
        raise OutputError(out, f"is a file, not a result directory; acsim never replaces a file it did not create ({where})")
    if not out.is_dir():
        if out.parent.exists() and not out.parent.is_dir():
            raise OutputError(out, f"its parent {out.parent} is a file, not a directory")
        return
    found = read_marker(out)
    if found is None:
        if any(out.iterdir()):
            raise OutputError(
                out,
                f"exists and is not an acsim {kind} directory (it has no {MARKER} marker); acsim replaces "
                f"or adds to only what it wrote itself ({where}, or move the directory away)",
            )
        return
    if found != kind:
        raise OutputError(
            out, f"is an acsim {found} directory; `{_command(kind)}` writes {kind} directories only ({where})"
        )
    if kind in OWN_FILES:
        extra = foreign_files(out, kind)
        if extra:
            shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
            raise OutputError(
                out,
                f"holds files {_command(kind)} does not write ({shown}); acsim replaces a {kind} directory "
                f"only when everything in it is its own: move them away ({where})",
            )


def check_alone(out: Path, flag: str = "--output") -> None:
    """Raise OutputError if ``out`` lies inside a sweep or plan directory: a run the user asks for
    must not replace one of a sweep's runs (its summary would no longer match them)."""
    for parent in Path(out).resolve().parents:
        inside = read_marker(parent)
        if inside in ("sweep", "plan"):
            raise OutputError(
                out,
                f"is inside the acsim {inside} directory {parent}, whose runs and tables only "
                f"`{_command(inside)}` writes (choose another {flag})",
            )


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the exclusive lock of the output ``out`` (re-entrant within this process).

    Raises OutputBusy naming the holder's pid when another process holds it.
    """
    out = Path(out)
    lock = _lock_path(out)
    key = str(lock.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(out, f"{ancestor} is a file, not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise OutputBusy(
                    out,
                    f"is being written by another acsim process (pid {holder}); wait for it to finish "
                    "or choose another --output",
                ) from None
            # The previous holder may have removed the lock file between our open and flock:
            # then we hold a lock on a file nobody else will open, so start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        raise OutputError(out, f"cannot write here: {exc.strerror or exc}") from None
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        # Removed while still held: a process waiting on this file sees it is gone and retries.
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


_PARTIAL = re.compile(r"\.(?P<name>.+)\.(partial|old)-[A-Za-z0-9_]+")


def clean_stale(out: Path) -> list[Path]:
    """Remove what killed writers of ``out`` left beside it; call with ``out``'s lock held.

    Only acsim's own: directories named ``.<name>.partial-*`` (or ``.old-*``, a replaced run
    that was being deleted) that carry acsim's marker, or are empty. Returns what was removed.
    """
    removed = []
    parent = out.parent
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        m = _PARTIAL.fullmatch(path.name)
        if not m or m.group("name") != out.name or path.is_symlink() or not path.is_dir():
            continue
        if read_marker(path) is not None:
            shutil.rmtree(path, ignore_errors=True)
        elif not any(path.iterdir()):
            path.rmdir()
        else:
            continue
        removed.append(path)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # e.g. a file system without the flag: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def _swap_by_renames(new: Path, dest: Path, aside: Path) -> None:
    """``new`` takes ``dest``'s place and ``dest``'s content ends up at ``new`` (three renames).

    Where the atomic exchange is missing; a kill between the renames leaves ``aside`` (acsim's
    own, marked), which the next writer removes. A failing second rename puts ``dest`` back.
    """
    os.rename(dest, aside)
    try:
        os.rename(new, dest)
    except OSError:
        os.rename(aside, dest)
        raise
    os.rename(aside, new)


@contextlib.contextmanager
def staging_dir(out: Path, kind: str = "run", flag: str = "--output") -> Iterator[Path]:
    """A scratch directory beside ``out`` that replaces it, whole, if the block succeeds.

    ``kind`` is the result kind written (one of :data:`OWN_FILES`); ``flag`` the option named in
    a refusal.

    Holds ``out``'s lock throughout; checks that ``out`` may be replaced before anything is
    written and again just before the swap; removes leftovers of killed writers first. On an
    exception the scratch directory is removed and ``out`` is untouched.
    """
    out = Path(out)
    check_target(out, kind, flag)  # before the lock file is made: a refused output is not touched at all
    with locked(out):
        check_target(out, kind, flag)
        for path in clean_stale(out):
            print(f"acsim: note: removed {path}, left behind by an interrupted run", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            # mkdtemp makes the directory private (0700); a result is shared like its files.
            os.chmod(tmp, 0o777 & ~_UMASK)
            write_marker(tmp, kind)
            yield tmp
            check_target(out, kind, flag)
            if out.is_dir():
                if not _exchange(tmp, out):
                    _swap_by_renames(tmp, out, out.parent / f".{out.name}.old-{os.getpid()}")
            else:
                os.rename(tmp, out)
        finally:
            # After a swap ``tmp`` holds the replaced run; after a failure, the unfinished one.
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def sweep_dir(out: Path, kind: str = "sweep") -> Iterator[Path]:
    """Claim ``out`` as a sweep (or plan) directory, created and marked if new, and hold its lock.

    Both only add run directories and tables to what is there; neither deletes anything.
    """
    out = Path(out)
    check_target(out, kind)
    with locked(out):
        check_target(out, kind)
        try:
            out.mkdir(parents=True, exist_ok=True)
            if read_marker(out) is None:
                write_marker(out, kind)
        except OSError as exc:
            raise OutputError(out, f"cannot write here: {exc.strerror or exc}") from None
        yield out


@contextlib.contextmanager
def staging_plots(root: Path) -> Iterator[Path]:
    """A scratch folder inside the result ``root`` that replaces ``root/plots`` if the block succeeds.

    So ``acsim plot`` on damaged results leaves the figures that were there untouched. Call with
    ``root``'s lock held; leftovers of an interrupted plot are removed first.
    """
    for old in root.glob(".plots.partial-*"):
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".plots.partial-", dir=root))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        dest = root / "plots"
        if dest.is_dir() and not dest.is_symlink():
            if not _exchange(tmp, dest):
                _swap_by_renames(tmp, dest, root / f".plots.partial-old-{os.getpid()}")
        else:
            os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mark_run_dir(run_dir: Path) -> None:
    """Create a run directory of a sweep (for its ``error.txt``) with the marker that makes it acsim's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if read_marker(run_dir) is None:
        write_marker(run_dir, "run")
