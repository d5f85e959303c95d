"""``simulate``: one system through the SimPy model of a serving cluster (``mode: full``)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.base.errors import ConfigError
from sim.base.records import RecordBuffer
from sim.cache.admission import build_admission
from sim.engine.autoscaler import Autoscaler, scaling_waits
from sim.engine.elastic import ActiveRouter, ElasticCluster
from sim.engine.model_switch import SwitchCosts
from sim.engine.pool_split import PoolSplitter
from sim.engine.predictor import build_predictor
from sim.engine.queues import QUEUES
from sim.engine.replicas import build_replicas, elastic, new_replica
from sim.engine.routing import router_class
from sim.engine.source import Source
from sim.results.metrics import timeseries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import pandas as pd

    from sim.base.config import Experiment
    from sim.base.profile import Profile
    from sim.base.request_work import RequestWork
    from sim.base.step_cache import StepCache
    from sim.engine.predictor import Predictor
    from sim.engine.replicas import Replica
    from sim.engine.routing import Router
    from sim.systems.base import System


def simulate(
    system: System | Sequence[System],
    arrival_s: np.ndarray,
    prompt_ids: np.ndarray,
    user_codes: np.ndarray,
    exp: Experiment,
    profile: Profile,
    seed: int,
    embeddings: np.ndarray | None = None,
    request_work: RequestWork | None = None,
    new_system: Callable[[], System] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay a trace through ``system`` on a simulated GPU cluster.

    ``system`` is a :class:`sim.systems.base.System`, or one per replica when the cluster keeps
    a cache per replica (``cache.placement: per-replica``; see :mod:`sim.engine.replicas`).
    ``profile`` is the experiment's: replicas of another GPU type run on their own profiles.
    Arrivals are seconds since the trace's start, non-decreasing. Returns the per-request
    records (the columns of :mod:`sim.base.records` plus ``boost``, the load-aware rungs asked
    for, and ``replica``, the replica that served it) and the per-minute time series of
    :func:`sim.results.metrics.timeseries`. Engine totals (GPU busy seconds, the areas under the
    queue-length and in-system curves, predictor counters, one entry per replica) are in
    ``records.attrs["engine"]``. The same inputs and seed give the same records. With
    ``request_work`` each request runs its own schedule at its own size (:mod:`sim.base.request_work`):
    ``steps`` is then what it ran of its schedule, and ``full_steps`` and ``area`` are added.
    An autoscaled cluster with a cache per replica (:mod:`sim.engine.elastic`) builds each new
    replica's system with ``new_system()``; ``system`` then holds the ``cluster.gpus`` it starts with.
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
    systems = list(system) if isinstance(system, list | tuple) else [system]

    env = simpy.Environment()
    switch = None
    if request_work is not None and request_work.models is not None:
        switch = switch_costs(profile, cluster.affinity_wait_s)
    replicas = build_replicas(env, exp, profile, systems, switch)
    router = _router(exp, replicas, seed)
    predictor = build_predictor(exp.predictor, prompt_ids, embeddings, seed)
    admission = build_admission(exp.cache.admission, n, seed)
    source = Source(env, replicas, router, arrival_s, prompt_ids, exp, profile, predictor, admission, request_work)
    for rep in replicas:
        rep.pool.on_finish = source.finish_job
    scaler, splitter = _controllers(env, exp, profile, replicas, source, new_system)
    source.start_arrivals()
    env.run()
    if source.in_system:
        raise RuntimeError(f"simulation ended with {source.in_system} of {n} requests unfinished")

    records = _records(systems[0].name, source, arrival_s, prompt_ids, user_codes)
    if request_work is not None:
        records = with_request_work(records, request_work, steps_run=source.steps_run)
    engine = records.attrs["engine"] = _engine_totals(exp, source, replicas, router, predictor, n)
    if scaler is not None:
        engine["gpus_log"] = scaler.gpus_log()
        if source.pooled:
            engine["pools_log"] = scaler.pools_log([r.model for r in replicas])
    if switch is not None:
        engine["model_loads"] = sum(r.pool.model_loads for r in replicas)
        engine["lora_loads"] = sum(r.pool.lora_loads for r in replicas)
    if splitter is not None:
        engine["pools_log"] = splitter.pools_log()
        engine["pool_moves"] = splitter.moves
    series = timeseries(
        records, bin_s=60.0, gpus=cluster.gpus, gpus_log=engine.get("gpus_log"), pools_log=engine.get("pools_log")
    )
    return records, series


def _router(exp: Experiment, replicas: list[Replica], seed: int) -> Router | ActiveRouter | None:
    """The router in front of several replicas (over those taking work, in an elastic cluster);
    None for one replica or a two-model system's pools (its decision picks the pool)."""
    cls = router_class(exp.cluster.router.kind)
    shapes = [r.shape for r in replicas]
    if elastic(exp):
        return ActiveRouter(cls, exp.cluster.router, shapes, seed)
    if len(replicas) > 1 and not replicas[0].cache.system.pool_models:
        return cls(exp.cluster.router, shapes, seed)
    return None


def _grown(env: simpy.Environment, exp: Experiment, profile: Profile, new_system: Callable[[], System], index: int) -> Replica:
    """The replica an elastic cluster adds: one GPU and an empty cache."""
    return new_replica(env, exp, profile, new_system(), index)


def _controllers(
    env: simpy.Environment,
    exp: Experiment,
    profile: Profile,
    replicas: list[Replica],
    source: Source,
    new_system: Callable[[], System] | None,
) -> tuple[Autoscaler | None, PoolSplitter | None]:
    """The cluster's autoscaler and pool controller, when it has them (both watch ``source``);
    ``new_system`` builds the cache of each replica an elastic cluster adds (:mod:`sim.engine.elastic`)."""
    cluster = exp.cluster
    pools: list = [r.pool for r in replicas]
    scaler = None
    if cluster.autoscale.on:
        provision_s, load_s = scaling_waits(cluster.autoscale, profile.provision_s, profile.model_load_s)
        if source.pooled:
            # Each pool's new GPUs load that pool's model.
            loads = pool_load_times(cluster.autoscale.model_load_s, profile)
            waits = [provision_s + s for s in loads]
        elif elastic(exp):
            if new_system is None:
                raise ValueError("an autoscaled cluster with a cache per replica needs new_system to build each one")
            grow = functools.partial(_grown, env, exp, profile, new_system)
            pools = [ElasticCluster(replicas, source.router, grow, source.finish_job, source.caches)]
            waits = [provision_s + load_s]
        else:
            pools, waits = pools[:1], [provision_s + load_s]
        scaler = Autoscaler(env, pools, cluster.autoscale, waits, lambda: source.finished)
    splitter = None
    if source.pooled and cluster.controller.rule != "static":
        if scaler is not None:
            raise ConfigError("cluster.controller.rule", cluster.controller.rule, "an autoscaler sizes each pool: static")
        load_s = pool_load_times(cluster.controller.load_s, profile)
        splitter = PoolSplitter(env, pools, cluster.controller, load_s, lambda: source.finished)
    return scaler, splitter


def _records(
    name: str, source: Source, arrival_s: np.ndarray, prompt_ids: np.ndarray, user_codes: np.ndarray
) -> pd.DataFrame:
    """The per-request records of a finished run (:mod:`sim.base.records`, plus boost and replica)."""
    n = len(arrival_s)
    rec = RecordBuffer(name, n)
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
    ii["steps"][:] = source.steps_run
    ii["saved_latents"][:] = source.saved
    rec.outcome[:] = source.outcome_codes()
    records = rec.to_frame()
    records["boost"] = np.asarray(source.boost, dtype=np.int16)
    records["replica"] = np.asarray(source.replica_of, dtype=np.int16)
    if source.pooled:
        # The pool model whose image each request got, and its denoising in main-model steps.
        records["model"] = np.asarray(source.model_of, dtype=np.int8)
        records["main_steps"] = np.asarray(source.main_steps, dtype=np.float64)
    return records


def switch_costs(profile: Profile, affinity_wait_s: float = 0.0) -> SwitchCosts:
    """A GPU's model load and per-LoRA load from the profile's ``scaling`` block, and how long the head
    of the queue lets a GPU prefer its own model's requests; ValueError when a load is absent."""
    if profile.model_load_s is None or profile.lora_load_s is None:
        raise ValueError("trace.request_models: the profile has no scaling.model_load_s and scaling.lora_load_s")
    return SwitchCosts(float(profile.model_load_s), float(profile.lora_load_s), affinity_wait_s)


def pool_load_times(own: float | None, profile: Profile) -> tuple[float, float]:
    """Seconds a GPU moved to the main and to the small model's pool loads that model: ``own``
    (``cluster.controller.load_s``) for both, else the profile's ``scaling`` block; ValueError
    when neither gives one."""
    if own is not None:
        return float(own), float(own)
    if profile.model_load_s is None or profile.small_model_load_s is None:
        raise ValueError(
            "cluster.controller.load_s: the profile has no scaling.model_load_s and scaling.small_model_load_s; give one"
        )
    return float(profile.model_load_s), float(profile.small_model_load_s)


def with_request_work(
    records: pd.DataFrame, work: RequestWork, steps_run: Any = None, own_schedule: bool = True
) -> pd.DataFrame:
    """``records`` with each request's ``full_steps``, ``area`` and (when the trace names them)
    ``images`` (:mod:`sim.base.request_work`);
    ``steps`` becomes the steps run of its own schedule (``steps_run`` when the engine knows them,
    else derived from the records' steps, which are then in the profile's schedule). A system that
    generates with another model (``own_schedule`` false) keeps that model's steps."""
    if steps_run is not None:
        steps = np.asarray(steps_run)
    else:
        steps = work.steps_run(records["steps"].to_numpy()) if own_schedule else records["steps"].to_numpy()
    records["steps"] = steps.astype(records["steps"].dtype)
    records["full_steps"] = work.full_steps.astype(np.int32)
    records["area"] = work.area
    if work.images is not None:
        records["images"] = work.images
    return records


def with_step_cache_quality(records: pd.DataFrame, step_cache: StepCache) -> pd.DataFrame:
    """``records`` whose generations lost the step cache's CLIP loss on the steps it acted on
    (:mod:`sim.base.step_cache`); a request that ran no steps keeps its image's quality."""
    steps = records["steps"].to_numpy()
    kept = np.where(steps > 0, step_cache.quality_factor(steps), 1.0)
    records["quality"] = records["quality"].to_numpy(dtype=float) * kept
    return records


def _engine_totals(
    exp: Experiment, source: Source, replicas: list[Replica], router: Router | ActiveRouter | None, predictor: Predictor, n: int
) -> dict[str, Any]:
    """The run's engine totals (``records.attrs["engine"]``)."""
    horizon = float(np.max(source.finish)) if n else 0.0
    pools = [r.pool for r in replicas]
    return {
        "gpus": exp.cluster.gpus,
        "horizon_s": horizon,
        "gpu_busy_s": sum(p.busy_s for p in pools),
        "batches": sum(p.batches for p in pools),
        # Area under the number-in-system curve, counted from each trace arrival time.
        "system_area": source.system_area + n * source.embed_s,
        "queue_area": sum(p.queue_area for p in pools),
        "lost_hits": source.lost_hits,
        "looked_up": source.looked_up,
        "boosted": source.boosted,
        "not_admitted": source.not_admitted,
        "tier": replicas[0].cache.tiers.name,
        "lookup_kind": source.kind,
        "router": router.name if router is not None else "",
        "placement": exp.cache.placement if len(source.caches) > 1 else "shared",
        "replicas": [r.describe() for r in replicas],
        **predictor.stats(),
    }
