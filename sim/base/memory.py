"""Giving freed memory back to the operating system.

glibc's allocator keeps pages freed by ``free()`` in its heap for reuse, so a process that
once held a large working set (millions of prompt strings, the parts of neighbour lists being
assembled) keeps that peak long after it let go. ``malloc_trim`` returns every free page, at
any place in the heap, to the operating system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["release_free_memory"]


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system (glibc); a no-op elsewhere."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
