"""Stages ``replay`` and ``scaling``: the cache-only replay's rate, beside libcachesim's LRU."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import libcachesim as lcs
import numpy as np

from sim.app.bench.figures import TOP_M, Figure, peak_rss_mb
from sim.app.bench.inputs import Inputs, experiment, load_prefix
from sim.base.profile import load_profile
from sim.engine.replay import replay
from sim.systems import build_system

if TYPE_CHECKING:
    from pathlib import Path


def warm_kernel(inp: Inputs) -> float:
    """Load (or, on a fresh install, compile) the replay kernel before anything is timed."""
    n = min(2000, len(inp.arrays.prompt_ids))
    a = inp.arrays
    t0 = time.perf_counter()
    system = build_system(
        "nirvana", experiment(n, "lcbfu", 500), a, inp.neighbours, load_profile("sdxl-a10g")
    )
    replay(system, a.arrival_s, a.prompt_ids, a.user_codes, n_requests=n)
    return time.perf_counter() - t0


def replay_rate(inp: Inputs, policy: str) -> tuple[float, float, int]:
    """(requests/s wall, requests/s CPU, fallbacks) of one nirvana cache-only replay."""
    n = len(inp.arrays.prompt_ids)
    system = build_system(
        "nirvana", experiment(n, policy), inp.arrays, inp.neighbours, load_profile("sdxl-a10g")
    )
    a = inp.arrays
    t0, c0 = time.perf_counter(), time.process_time()
    replay(system, a.arrival_s, a.prompt_ids, a.user_codes)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / cpu, system.stats()["fallbacks"]


def stage_replay(src: Path, requests: int) -> list[Figure]:
    """Cache-only replay of nirvana under LCBFU and LRU, against libcachesim's LRU."""
    inp = load_prefix(src, requests)
    complete = 100.0 * float(np.mean(inp.neighbours.complete))
    figures = [
        Figure("neighbour rows complete (no fallback possible)", complete, "%", f"top_m cap {TOP_M}"),
        Figure("replay kernel load (compiled once, cached on disk)", warm_kernel(inp), "s", "before timing"),
    ]
    ref, ref_cpu = _libcachesim_lru_rate(inp.arrays.prompt_ids, capacity=3000)
    for policy in ("lcbfu", "lru"):
        rate, cpu_rate, calls = replay_rate(inp, policy)
        figures.append(
            Figure(
                f"cache-only replay, nirvana {policy.upper()}",
                rate,
                "requests/s",
                "libcachesim LRU, same exact-ID sequence",
                ref,
                peak_rss_mb(),
            )
        )
        # CPU time does not count the time other processes on a shared machine take.
        figures.append(
            Figure(
                f"  same, per CPU second ({calls:,} fallbacks)",
                cpu_rate,
                "requests/s",
                "libcachesim LRU, per CPU second",
                ref_cpu,
            )
        )
    return figures


def _libcachesim_lru_rate(prompt_ids: np.ndarray, capacity: int) -> tuple[float, float]:
    """(requests/s wall, requests/s CPU) of libcachesim's LRU on the exact-ID sequence."""
    cache = lcs.LRU(cache_size=capacity)
    req = lcs.Request()
    req.obj_size = 1
    ids = prompt_ids.tolist()
    t0, c0 = time.perf_counter(), time.process_time()
    for pid in ids:
        req.obj_id = pid
        cache.get(req)
    return len(ids) / (time.perf_counter() - t0), len(ids) / (time.process_time() - c0)


def stage_scaling(src: Path, requests: int) -> list[Figure]:
    """Time and peak memory of one nirvana LCBFU cache-only replay of a prefix (for the growth fit)."""
    inp = load_prefix(src, requests)
    warm_kernel(inp)
    rate, _, calls = replay_rate(inp, "lcbfu")
    return [Figure(f"scaling {requests}", requests / rate, "s", "fallbacks", calls, peak_rss_mb())]
