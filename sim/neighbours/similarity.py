"""Exact cosine similarities of unit vectors, the one function every fallback scores with.

Every path that decides a lookup over the cached prompts (the compiled replay's fallback,
the request loop's, the ceiling's) scores prompts with :func:`similarities_to`, so they
round alike and decide alike. The dot product is float32 and may be reassociated so that it
vectorises (5x faster than a fixed order here); one compiled function serves every caller.
A prompt's similarity to itself counts 1.0, as in the neighbour lists.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["dot", "similarities_to"]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def dot(x: np.ndarray, y: np.ndarray) -> np.float32:  # pragma: no cover - compiled
    """float32 dot product of two vectors (vectorised; one compiled order for every caller)."""
    s = np.float32(0.0)
    for t in range(len(x)):
        s += x[t] * y[t]
    return s


@numba.njit(cache=True, nogil=True)
def similarities_to(emb: np.ndarray, prompts: np.ndarray, own: int) -> np.ndarray:  # pragma: no cover - compiled
    """Similarities (float32) of row ``own`` of ``emb`` to each of the rows ``prompts``; ``own``
    itself counts 1.0."""
    out = np.empty(len(prompts), np.float32)
    y = emb[own]
    for r in range(len(prompts)):
        p = prompts[r]
        out[r] = np.float32(1.0) if p == own else dot(emb[p], y)
    return out
