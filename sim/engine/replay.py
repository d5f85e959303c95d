"""Cache-only replay: every request's cache decision, with no queueing or GPU time.

Requests are replayed in trace order and each generation completes before the next
request arrives, so this path measures what the cache can give (hit rate, compute saved,
quality) at the speed big sweeps need. The SimPy engine reuses the same systems.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import numpy as np

from sim.base.records import OUTCOME_CODE, REUSE_OUTCOMES, RecordBuffer

if TYPE_CHECKING:
    import pandas as pd

    from sim.systems import System


def replay(
    system: System,
    arrival_s: np.ndarray,
    prompt_ids: np.ndarray,
    user_codes: np.ndarray,
    *,
    n_requests: int | None = None,
    occupancy_samples: int = 200,
    compiled: bool = True,
    admit: np.ndarray | None = None,
) -> pd.DataFrame:
    """Replay the first ``n_requests`` requests (default: all) through ``system``.

    Returns the per-request records (``sim.base.records.COLUMNS``; time columns other than
    ``arrival_s`` stay NaN). The system's occupancy is sampled about
    ``occupancy_samples`` times (see ``system.stats()["occupancy"]``). The system's compiled
    replay (``System.replay_columns``) runs when it has one, unless ``compiled`` is False;
    otherwise ``lookup`` then ``complete`` are called request by request. Both give the same
    records. ``admit`` (bool per request, default all True; see ``sim.cache.admission``): a
    request whose entry is False stores nothing when its generation completes.
    """
    n = len(arrival_s) if n_requests is None else int(n_requests)
    if n > len(arrival_s) or n > len(prompt_ids) or n > len(user_codes):
        raise ValueError(f"n_requests={n} exceeds the trace arrays ({len(arrival_s)} requests)")
    arrivals = np.asarray(arrival_s[:n], dtype=np.float64).tolist()
    stride = max(1, n // max(occupancy_samples, 1))
    if admit is not None and len(admit) < n:
        raise ValueError(f"admit has {len(admit)} entries for {n} requests")
    columns = system.replay_columns(n, arrivals, stride, admit) if compiled and n else None
    if columns is None:
        columns = _replay_decisions(system, n, arrivals, stride, admit)

    buf = RecordBuffer(system.name, n)
    buf.i["request"][:] = np.arange(n)
    buf.i["prompt_id"][:] = prompt_ids[:n]
    buf.i["user"][:] = user_codes[:n]
    buf.f["arrival_s"][:] = arrivals
    if n:
        buf.outcome[:] = columns["outcome"]
        for name in ("matched", "k_planned", "k_used", "steps", "saved_latents"):
            buf.i[name][:] = columns[name]
        buf.f["similarity"][:] = columns["similarity"]
        buf.f["quality"][:] = columns["quality"]
    return buf.to_frame()


def _replay_decisions(
    system: System, n: int, arrivals: list[float], stride: int, admit: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The generic loop over the public API: ``lookup`` then ``complete``, request by request."""
    refused = set() if admit is None else set(np.flatnonzero(~np.asarray(admit[:n], dtype=bool)).tolist())
    columns = {
        "outcome": np.zeros(n, np.int8),
        **{name: np.zeros(n, np.int64) for name in ("matched", "k_planned", "k_used", "steps", "saved_latents")},
        "similarity": np.zeros(n),
        "quality": np.zeros(n),
    }
    # The loop makes millions of long-lived objects (the store's and the policy's state) and next
    # to no reference cycles (a handful per 100k requests, whatever the system and policy), so the
    # cyclic collector would only rescan them, again and again (GDSF at 2M requests: 62 full
    # collections, a quarter of the replay's time). It waits for the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _loop(system, n, arrivals, stride, refused, columns)
    finally:
        if collecting:
            gc.enable()
    return columns


def _loop(
    system: System, n: int, arrivals: list[float], stride: int, refused: set[int], columns: dict[str, np.ndarray]
) -> None:
    """Fill ``columns`` with ``lookup`` then ``complete`` of requests 0..n-1 (occupancy sampled
    every ``stride`` requests); ``refused`` requests store nothing."""
    lookup, complete, saved_latents = system.lookup, system.complete, system.saved_latents
    codes = OUTCOME_CODE
    for start in range(0, n, stride):
        stop = min(start + stride, n)
        decisions = []
        for i in range(start, stop):
            now = arrivals[i]
            d = lookup(i, now)
            if i in refused:
                # Not admitted: the generation stores nothing (no levels, no shared trajectory).
                d = d._replace(store_levels=())
            else:
                complete(i, d, now)
            decisions.append(d)
        system.record_occupancy(arrivals[stop - 1])
        # Decisions are tuples: one zip transposes a block of them into columns (a block at a
        # time, so that millions of them are never held at once).
        outcome, matched, similarity, k_planned, k_used, steps, quality, _ = zip(*decisions, strict=True)
        block = slice(start, stop)
        columns["outcome"][block] = [codes[o] for o in outcome]
        columns["matched"][block] = matched
        columns["similarity"][block] = similarity
        columns["k_planned"][block] = k_planned
        columns["k_used"][block] = k_used
        columns["steps"][block] = steps
        columns["quality"][block] = quality
        columns["saved_latents"][block] = [saved_latents(d) for d in decisions]


def cache_summary(records: pd.DataFrame, n_steps: int, stats: dict) -> dict[str, float]:
    """The cache figures of one replay: hit rate, compute saved, mean quality, holes, evictions.

    ``compute_saved`` is the fraction of all denoising steps (N per request) not run.
    """
    n = len(records)
    reused = records["outcome"].isin(REUSE_OUTCOMES).to_numpy()
    steps = records["steps"].to_numpy()
    return {
        "requests": n,
        "hit_rate": float(reused.mean()) if n else float("nan"),
        "compute_saved": float(1.0 - steps.sum() / (n * n_steps)) if n else float("nan"),
        "quality_clip": float(records["quality"].mean()) if n else float("nan"),
        "holes": int((records["outcome"] == "hole").sum()),
        "evictions": int(stats.get("evictions", 0)),
    }
