"""What every embedder shares: checking its input texts, unit rows, CPU threads and the device.

The bottom of the embedder modules: it imports nothing of the project, so the registry
(:mod:`traces.embeddings`) and the backends (:mod:`traces.onnx_embedder`,
:mod:`traces.static_embedder`) can all use it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DEVICES", "check_texts", "cpu_threads", "resolve_device", "unit_rows"]

DEVICES = ("auto", "cpu", "cuda")


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list; TypeError naming the first item that is not a str."""
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"prompt {i} is {type(t).__name__}, not str: {t!r}")
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 C-contiguous rows scaled to unit norm in place; all-zero rows stay zero."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    # einsum, not linalg.norm: no temporary as large as x (2M prompts of 256 dims: 2 GB).
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def cpu_threads() -> int:
    """CPUs this process may run on (a 2-core machine must not get 16 threads), at most
    ``$OMP_NUM_THREADS`` when it is set: a Ray task sets it to the CPUs it was given, so two
    one-CPU embedding tasks on two cores do not run two threads each."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cpus = max(1, os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return min(cpus, int(omp)) if omp.isdigit() and int(omp) > 0 else cpus


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``/``cuda`` as given.

    Raises ValueError for ``cuda`` on a machine without one, and for any other value.
    """
    if device not in DEVICES:
        raise ValueError(f"embedder device {device!r}: allowed: auto, cpu, cuda")
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not has_cuda:
        raise ValueError("embedder device 'cuda': torch sees no CUDA GPU on this machine (use auto or cpu)")
    return "cuda" if has_cuda else "cpu"
