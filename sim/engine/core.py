"""``simulate``: one system through the SimPy model of a serving cluster (``mode: full``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import simpy

from sim.base.errors import ConfigError
from sim.base.records import RecordBuffer
from sim.engine.predictor import build_predictor
from sim.engine.queues import QUEUES
from sim.engine.source import Source
from sim.engine.workers import GpuPool
from sim.metrics import timeseries
from sim.tiers import TierPath

if TYPE_CHECKING:
    import pandas as pd

    from sim.base.config import Experiment
    from sim.base.profile import Profile
    from sim.systems.base import System


def simulate(
    system: System,
    arrival_s: np.ndarray,
    prompt_ids: np.ndarray,
    user_codes: np.ndarray,
    exp: Experiment,
    profile: Profile,
    seed: int,
    embeddings: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay a trace through ``system`` on a simulated GPU cluster.

    ``system`` is a :class:`sim.systems.base.System`. Arrivals are seconds since the
    trace's start, non-decreasing. Returns the per-request records (the columns of
    :mod:`sim.base.records` plus ``boost``, the load-aware rungs asked for) and the per-minute
    time series of :func:`sim.metrics.timeseries`. Engine totals (GPU busy seconds, the
    areas under the queue-length and in-system curves, predictor counters) are in
    ``records.attrs["engine"]``. The same inputs and seed give the same records.
    """
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    prompt_ids = np.asarray(prompt_ids)
    user_codes = np.asarray(user_codes)
    n = len(arrival_s)
    if len(prompt_ids) != n or len(user_codes) != n:
        raise ValueError(
            f"arrival_s, prompt_ids and user_codes differ in length: {n}, {len(prompt_ids)}, "
            f"{len(user_codes)}"
        )
    if n and (np.any(np.diff(arrival_s) < 0) or arrival_s[0] < 0):
        raise ValueError("arrival_s must be non-negative and non-decreasing")
    cluster = exp.cluster
    if cluster.queue not in QUEUES:
        raise ConfigError("cluster.queue", cluster.queue, "allowed: " + ", ".join(sorted(QUEUES)))

    env = simpy.Environment()
    tiers = TierPath(profile, exp.cache.tier)
    predictor = build_predictor(exp.predictor, prompt_ids, embeddings, seed)
    # The system declares which model generates its images; the profile (the GPU) what that costs.
    gpu = profile.gpu_model(system.serves_with)
    pool = GpuPool(env, cluster.gpus, QUEUES[cluster.queue](), cluster.batch, gpu)
    source = Source(env, system, arrival_s, prompt_ids, exp, profile, pool, predictor, tiers, gpu)
    pool.on_finish = source.finish_job
    source.start_arrivals()
    env.run()
    if source.in_system:
        raise RuntimeError(f"simulation ended with {source.in_system} of {n} requests unfinished")

    rec = RecordBuffer(system.name, n)
    f, ii = rec.f, rec.i
    f["arrival_s"][:] = arrival_s
    f["start_s"][:] = source.start
    f["finish_s"][:] = source.finish
    f["queue_s"][:] = f["start_s"] - np.asarray(source.ready)
    f["lookup_s"][:] = source.lookup_t
    f["fetch_s"][:] = source.fetch_t
    f["latency_s"][:] = f["finish_s"] - arrival_s
    f["gpu_s"][:] = source.gpu_s
    ds = source.decisions
    f["similarity"][:] = [d.similarity for d in ds]
    f["quality"][:] = [d.quality for d in ds]
    ii["request"][:] = np.arange(n)
    ii["prompt_id"][:] = prompt_ids
    ii["user"][:] = user_codes
    ii["matched"][:] = [d.matched for d in ds]
    ii["k_planned"][:] = [d.k_planned for d in ds]
    ii["k_used"][:] = [d.k_used for d in ds]
    ii["steps"][:] = [d.steps for d in ds]
    ii["saved_latents"][:] = source.saved
    rec.outcome[:] = source.outcome_codes()
    records = rec.to_frame()
    records["boost"] = np.asarray(source.boost, dtype=np.int16)
    horizon = float(np.max(f["finish_s"])) if n else 0.0
    records.attrs["engine"] = {
        "gpus": cluster.gpus,
        "horizon_s": horizon,
        "gpu_busy_s": pool.busy_s,
        "batches": pool.batches,
        # Area under the number-in-system curve, counted from each trace arrival time.
        "system_area": source.system_area + n * source.embed_s,
        "queue_area": pool.queue_area,
        "lost_hits": source.lost_hits,
        "looked_up": source.looked_up,
        "boosted": source.boosted,
        "tier": tiers.name,
        "lookup_kind": source.kind,
        **predictor.stats(),
    }
    return records, timeseries(records, bin_s=60.0, gpus=cluster.gpus)
