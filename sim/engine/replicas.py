"""The cluster's replicas: GPUs of one type behind one queue, each with a profile and a cache.

``cluster.replicas`` lists them (``gpus``, ``gpu`` type or ``profile``, ``copies``); without it
the cluster is one replica of ``cluster.gpus`` on the experiment's profile, today's model.
Everything that depends on a replica's GPU type lives here: its profile (step times, price,
storage tiers), the GPU work of a job (:meth:`Replica.job`: the one place a decision is turned
into GPU seconds) and its pool of workers.

Cache placement (``cache.placement``): ``shared`` is one store every replica fetches from over
the network (a remote store such as EFS, the profile's default tier; the model of a single
replica); ``per-replica`` gives each replica a store of its own of ``cache.capacity``, in the
tier ``cache.tier`` of that replica's profile, and its own system instance, so a latent stored
by one replica is never served by another. The vector index and the embedding run at the
front end on the experiment's profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.base.profile import load_run_profile, profile_for_gpu
from sim.cache.tiers import TierPath
from sim.engine.model_switch import ModelSwitchingPool, SwitchCosts
from sim.engine.queues import QUEUES, Job
from sim.engine.routing import ReplicaShape
from sim.engine.workers import GpuPool, WorkTable, job_work

if TYPE_CHECKING:
    import simpy

    from sim.base.config import Experiment, ReplicaConfig
    from sim.base.profile import Profile
    from sim.systems.base import System


def replica_profile_name(exp: Experiment, rc: ReplicaConfig, field: str) -> str | None:
    """The profile a replica runs on (a name or path), or None for the experiment's own."""
    if rc.profile is not None:
        return rc.profile
    if rc.gpu is not None:
        found = profile_for_gpu(exp.profile, rc.gpu, field)
        return None if found == exp.profile else found
    return None


def elastic(exp: Experiment) -> bool:
    """Whether the cluster grows by whole replicas, each GPU one with a cache of its own: an
    autoscaled cluster with ``cache.placement: per-replica`` and no ``cluster.replicas``
    (:mod:`sim.engine.elastic`)."""
    cluster = exp.cluster
    return cluster.autoscale.on and exp.cache.placement == "per-replica" and cluster.replicas is None


def replica_layout(exp: Experiment, profile: Profile) -> list[tuple[int, Profile]]:
    """(GPUs, profile) of every replica, copies expanded, in the order of ``cluster.replicas``."""
    cluster = exp.cluster
    if elastic(exp):
        return [(1, profile)] * cluster.gpus
    if cluster.replicas is None:
        return [(cluster.gpus, profile)]
    out: list[tuple[int, Profile]] = []
    for j, rc in enumerate(cluster.replicas):
        name = replica_profile_name(exp, rc, f"cluster.replicas[{j}].gpu")
        p = profile if name is None else load_run_profile(name, exp.step_cache)
        out += [(rc.gpus, p)] * rc.copies
    return out


def cache_count(exp: Experiment) -> int:
    """How many caches (system instances) the cluster starts with: one, or one per replica."""
    if elastic(exp):
        return exp.cluster.gpus
    if exp.cache.placement != "per-replica" or exp.cluster.replicas is None:
        return 1
    return sum(rc.copies for rc in exp.cluster.replicas)


class Cache:
    """One cache the engine serves from: a system with its store, and the tiers its latents live in."""

    def __init__(self, system: System, tiers: TierPath) -> None:
        self.system = system
        self.tiers = tiers
        self.hierarchy = len(tiers.tiers) > 1
        self.fetch_one = tiers.fetch_by_tier[0]
        self.latent_bytes = tiers.latent_bytes
        self.stored_bytes = 0.0  # bytes of latents stored so far (tier ages)
        self.stored_at: dict[int, float] = {}  # prompt id -> stored_bytes when its latents were stored

    def fetch_s(self, matched: int) -> float:
        """Seconds to fetch the latent of prompt ``matched`` from where it lives now."""
        if self.hierarchy:
            return self.tiers.fetch_s(self.stored_bytes - self.stored_at.get(matched, 0.0))
        return self.fetch_one

    def stored(self, prompt_id: int, levels: int) -> None:
        """Account for ``levels`` latents of ``prompt_id`` just stored (they age the older ones)."""
        if self.hierarchy and levels:
            self.stored_bytes += levels * self.latent_bytes
            self.stored_at[prompt_id] = self.stored_bytes


class Replica:
    """``gpus`` GPUs of one type serving one queue, with their profile and the cache they use."""

    def __init__(
        self,
        index: int,
        env: simpy.Environment,
        gpus: int,
        profile: Profile,
        exp: Experiment,
        cache: Cache,
        model: str | None = None,
        switch: SwitchCosts | None = None,
    ) -> None:
        self.index = index
        self.gpus = gpus
        self.profile = profile
        self.cache = cache
        # The system declares which model generates its images (or this pool's ``model``); this
        # replica's profile (its GPU) what an image of that model costs.
        self.model = model or cache.system.serves_with
        # A request's own schedule (trace.request_steps) applies to the main model; another model
        # (a small model's fixed few steps) keeps its own.
        self.own_schedule = self.model == "model"
        self.gpu = gpu = profile.gpu_model(self.model)
        queue = QUEUES[exp.cluster.queue]()
        if switch is None:
            self.pool = GpuPool(env, gpus, queue, exp.cluster.batch, gpu)
        else:
            self.pool = ModelSwitchingPool(env, gpus, queue, exp.cluster.batch, gpu, switch)
        self.work = WorkTable(gpu)
        self.full_work = job_work(gpu, gpu.steps, True)
        levels = sorted(profile.k_levels)
        spacing = (levels[-1] - levels[0]) / (len(levels) - 1) if len(levels) > 1 else float(levels[0])
        self.rung_s = spacing * gpu.step_s(1)  # seconds of one load-aware rung of K
        fixed = gpu.text_encoder_s + gpu.vae_decode_s
        self.shape = ReplicaShape(gpus, fixed, gpu.step_s(1), gpu.steps, gpu.step_cache)

    def job(
        self,
        i: int,
        ready: float,
        steps: int,
        saves: bool,
        image: bool = False,
        full_steps: int | None = None,
        area: float = 1.0,
    ) -> Job:
        """The GPU job of request ``i``: ``steps`` denoising steps, saving latents or not, keeping its
        final image for an image cache or not; ``full_steps`` and ``area``: its own schedule and size
        (None and 1: the model's)."""
        work = self.work(steps, saves, image, full_steps, area)
        resumes = steps < (self.gpu.steps if full_steps is None else full_steps)
        return Job(i, ready, steps, saves, work, image, area, resumes)

    def describe(self) -> dict[str, object]:
        """What the records' engine totals say about this replica."""
        p = self.profile
        return {
            "gpus": self.gpus,
            "model": self.model,
            "profile": p.name,
            "gpu": p.gpu_name,
            "price_per_hour_usd": self.gpu.gpu_price_per_hour_usd,
            "gpu_busy_s": self.pool.busy_s,
            "batches": self.pool.batches,
        }


def new_replica(env: simpy.Environment, exp: Experiment, profile: Profile, system: System, index: int) -> Replica:
    """A replica of one GPU with a cache of its own (``system``'s), joining an elastic cluster."""
    return Replica(index, env, 1, profile, exp, Cache(system, TierPath(profile, exp.cache.tier)))


def build_replicas(
    env: simpy.Environment,
    exp: Experiment,
    profile: Profile,
    systems: list[System],
    switch: SwitchCosts | None = None,
) -> list[Replica]:
    """The replicas of ``exp.cluster`` with their caches: ``systems`` holds one system (a shared
    cache) or one per replica (``cache.placement: per-replica``); ``switch``: the trace names each
    request's model (:mod:`sim.engine.model_switch`), one replica only."""
    models = systems[0].pool_models
    if models:
        # A two-model system: one pool per model over one shared cache (sim.engine.pool_split).
        shared = Cache(systems[0], TierPath(profile, exp.cache.tier))
        split = exp.cluster.pool_split()
        return [Replica(r, env, split[m], profile, exp, shared, m) for r, m in enumerate(models)]
    layout = replica_layout(exp, profile)
    if len(systems) != cache_count(exp):
        raise ValueError(
            f"cache.placement {exp.cache.placement!r} over {len(layout)} replicas needs "
            f"{cache_count(exp)} system instance(s), not {len(systems)}"
        )
    if len(systems) == 1:
        shared = Cache(systems[0], TierPath(profile, exp.cache.tier))
        caches = [shared] * len(layout)
    else:
        caches = [Cache(s, TierPath(p, exp.cache.tier)) for s, (_, p) in zip(systems, layout, strict=True)]
    return [Replica(r, env, g, p, exp, caches[r], switch=switch) for r, (g, p) in enumerate(layout)]
