"""Cache-only replay: every request's cache decision, with no queueing or GPU time.

Requests are replayed in trace order and each generation completes before the next
request arrives, so this path measures what the cache can give (hit rate, compute saved,
quality) at the speed big sweeps need. The SimPy engine reuses the same systems.
"""

from __future__ import annotations

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
) -> dict[str, object]:
    """The generic loop over the public API: ``lookup`` then ``complete``, request by request."""
    lookup, complete = system.lookup, system.complete
    refused = set() if admit is None else set(np.flatnonzero(~np.asarray(admit[:n], dtype=bool)).tolist())
    decisions = [None] * n
    for start in range(0, n, stride):
        for i in range(start, min(start + stride, n)):
            now = arrivals[i]
            d = lookup(i, now)
            if i in refused:
                # Not admitted: the generation stores nothing (no levels, no shared trajectory).
                d = d._replace(store_levels=())
            else:
                complete(i, d, now)
            decisions[i] = d
        system.record_occupancy(arrivals[min(start + stride, n) - 1])
    if not n:
        return {}
    # Decisions are tuples: one zip transposes them into columns.
    outcome, matched, similarity, k_planned, k_used, steps, quality, _ = zip(*decisions, strict=True)
    codes = OUTCOME_CODE
    return {
        "outcome": [codes[o] for o in outcome],
        "matched": matched,
        "similarity": similarity,
        "k_planned": k_planned,
        "k_used": k_used,
        "steps": steps,
        "quality": quality,
        "saved_latents": [system.saved_latents(d) for d in decisions],
    }


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
