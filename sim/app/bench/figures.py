"""What the bench prints: its figures, their targets, and the shared measuring helpers."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from sim.base.config import NeighbourConfig

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TOP_M = NeighbourConfig().top_m  # the config default, so the bench measures what users get


# The e2e lists' cap. At 2M requests most rows reach any cap (the static embedder lists 188 of
# 256 on average, 407 of 1,024 over the first 200k requests), so the lists cost top_m x 8 bytes
# per request: 16 GB at the default 1,024. A row that runs out falls back on the cached prompts
# (exactly while at most 4,096 are cached, then the cells nearest the request), so the cap
# changes the replays' time and, past that budget, which cached prompt a fallback finds.
E2E_TOP_M = 256


E2E_OFFLINE_MAX = 50_000_000  # listed pairs up to which the e2e replays the offline policy (Belady)


# Figures that must stay at or below a bound (seconds).
CEILINGS = {"plan, 4 systems x 2 GPU types": 120.0}


TARGETS = {
    "cache-only replay, nirvana LCBFU": 150_000.0,
    "cache-only replay, nirvana LRU": 150_000.0,
    "full SimPy replay, nirvana": 30_000.0,
    "neighbour precompute": 5_000.0,
    "e2e neighbour lists": 5_000.0,
    "embedding, minilm-static": 20_000.0,
}


E2E_CAPACITIES = (1_500, 15_000, 150_000, 1_500_000)  # the paper's cache sizes (cached latents)


RECALL_PREFIX = 30_000


@dataclass
class Figure:
    """One printed row: what was measured, its value, and the reference beside it."""

    name: str
    value: float
    unit: str
    reference: str = ""
    reference_value: float = float("nan")
    peak_rss_mb: float = float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process or of the largest of its finished children (MB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024.0


def pin_one_core() -> None:
    # The targets are per core; also stop BLAS and torch from spreading out.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    threadpool_limits(1)  # numpy's BLAS threads would only contend for the one core


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


@dataclass(frozen=True)
class Stage:
    """One stage of the bench: what it runs, and how it must be run."""

    run: Callable[[Path, int], list[Figure]]
    every_core: bool = False  # else pinned to one core, so its figure is a one-core rate
    own_processes: bool = False  # starts processes of its own, which a (daemonic) stage process cannot


def fit_exponent(sizes: list[int], values: list[float]) -> float:
    """Exponent b of ``value ~ a * size**b`` by least squares in log-log space."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def format_table(figures: list[Figure]) -> str:
    """The bench table: figure, value, target, reference and peak memory."""
    head = f"{'figure':56s} {'value':>14s} {'target':>10s}  {'reference':38s} {'ref value':>12s} {'peak RSS':>10s}"
    lines = [head, "-" * len(head)]
    for f in figures:
        target = next((v for k, v in TARGETS.items() if f.name.startswith(k)), None)
        ceiling = next((v for k, v in CEILINGS.items() if f.name.startswith(k)), None)
        tgt = f">={target:,.0f}" if target else f"<={ceiling:,.0f}" if ceiling else ""
        ref = f"{f.reference_value:,.0f}" if f.reference_value == f.reference_value else ""
        mem = f"{f.peak_rss_mb:,.0f} MB" if f.peak_rss_mb == f.peak_rss_mb else ""
        val = f"{f.value:,.2f}" if abs(f.value) < 100 else f"{f.value:,.0f}"
        lines.append(
            f"{f.name:56s} {val:>10s} {f.unit[:3]:3s} {tgt:>10s}  {f.reference[:38]:38s} {ref:>12s} {mem:>10s}"
        )
    return "\n".join(lines)


def set_threads(n: int) -> None:
    """Let torch use n threads, widening this process's CPU set to n cores if it is narrower."""
    import torch  # here, not at the top: a stage that embeds nothing never pays torch's memory

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if hasattr(os, "sched_setaffinity") and n > len(cpus):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    torch.set_num_threads(n)
