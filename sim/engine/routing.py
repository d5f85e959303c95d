"""Routers: which replica serves a request (``cluster.router.kind``).

A cluster of several replicas (``cluster.replicas``) puts a router in front of them. The router
sees each replica's static shape (:class:`ReplicaShape`: GPUs and the seconds an image takes
there) and, per request, the cluster's state through :class:`ClusterState`: the expected wait at
each replica (``GpuPool.wait_s``) and what each replica's cache would give the request
(``System.probe``: the denoising steps it would skip, read without side effects). Routers
(``ROUTERS``):

* ``round-robin``: replicas in turn, in proportion to their capacity (GPUs / seconds per image:
  a replica of two GPUs, or of one GPU twice as fast, gets two turns per cycle). Smooth
  weighted round-robin (nginx's): identical replicas are served strictly in turn.
* ``random``: a replica drawn at random in proportion to its capacity (seeded). Poisson arrivals
  split this way stay Poisson, so each replica is an independent M/G/c queue.
* ``least-loaded``: the replica where a full generation would finish first (expected wait plus
  its own service time there). Over single-GPU replicas with exact work estimates this is the
  central FCFS queue of all the GPUs (the job goes to the server that frees first).
* ``cache-affinity``: the replica whose cache lets the request skip the most steps (the best
  match, where the probe finds it; ties: the one that finishes it first), unless that replica's
  expected wait exceeds the least-loaded replica's by more than ``cluster.router.imbalance_s``;
  then, and when no cache holds anything usable, the least-loaded replica. With one shared
  cache every replica probes alike, so it is ``least-loaded``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

import numpy as np

from sim.base.errors import unknown_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sim.base.config import RouterConfig
    from sim.base.step_cache import StepCache


class ReplicaShape(NamedTuple):
    """What a router knows of a replica before the run: its GPUs and how fast they are."""

    gpus: int
    fixed_s: float  # seconds per image besides the denoising steps (text encoder, VAE)
    step_s: float  # seconds per denoising step (batch of one, no latent saving)
    steps: int  # denoising steps of a full generation
    step_cache: StepCache | None = None  # the model's step-level cache, if any (sim.base.step_cache)

    def image_s(self, steps: int | None = None) -> float:
        """Seconds one image of ``steps`` steps (default: a full generation) takes alone on a GPU."""
        n = self.steps if steps is None else steps
        work = n if self.step_cache is None else self.step_cache.work(n)
        return self.fixed_s + work * self.step_s

    @property
    def capacity(self) -> float:
        """Full generations per second the replica can serve."""
        return self.gpus / self.image_s()


class ClusterState(Protocol):
    """What a router may ask about the cluster at the moment it routes a request."""

    def wait_s(self, r: int) -> float:
        """Expected seconds before a new job starts on replica ``r``."""
        ...

    def skipped_steps(self, r: int, i: int) -> int:
        """Denoising steps request ``i`` would skip with replica ``r``'s cache (no side effects)."""
        ...


class Router:
    """Base class of the routers: ``choose`` returns the index of the replica for request ``i``.

    Class attributes declare what a router reads: ``uses_load`` (the replicas' expected waits)
    and ``uses_cache`` (what each replica's cache would give the request).
    """

    name: ClassVar[str] = ""
    uses_load: ClassVar[bool] = False
    uses_cache: ClassVar[bool] = False

    def __init__(self, cfg: RouterConfig, shapes: Sequence[ReplicaShape], seed: int) -> None:
        if not shapes:
            raise ValueError("a router needs at least one replica")
        self.cfg = cfg
        self.shapes = list(shapes)
        self.n = len(self.shapes)
        caps = np.array([s.capacity for s in self.shapes])
        # Relative to the smallest, so that identical replicas weigh exactly 1.0 (exact ties).
        self.weights = (caps / caps.min()).tolist()

    def choose(self, i: int, cluster: ClusterState) -> int:
        """The replica that serves request ``i``."""
        raise NotImplementedError

    def least_loaded(self, cluster: ClusterState) -> int:
        """The replica where a full generation would finish first (ties: the lowest index)."""
        best, best_t = 0, float("inf")
        for r, shape in enumerate(self.shapes):
            t = cluster.wait_s(r) + shape.image_s()
            if t < best_t:
                best, best_t = r, t
        return best


class RoundRobin(Router):
    """Replicas in turn, each as often as its capacity (smooth weighted round-robin)."""

    name = "round-robin"

    def __init__(self, cfg: RouterConfig, shapes: Sequence[ReplicaShape], seed: int) -> None:
        super().__init__(cfg, shapes, seed)
        self.current = [0.0] * self.n
        self.total = sum(self.weights)

    def choose(self, i: int, cluster: ClusterState) -> int:
        cur = self.current
        best = 0
        for r in range(self.n):
            cur[r] += self.weights[r]
            if cur[r] > cur[best]:
                best = r
        cur[best] -= self.total
        return best


class RandomRouter(Router):
    """A replica drawn at random in proportion to its capacity (seeded)."""

    name = "random"

    def __init__(self, cfg: RouterConfig, shapes: Sequence[ReplicaShape], seed: int) -> None:
        super().__init__(cfg, shapes, seed)
        w = np.asarray(self.weights)
        self.cum = (np.cumsum(w) / w.sum()).tolist()
        self.rng = np.random.default_rng([seed, 0x40])

    def choose(self, i: int, cluster: ClusterState) -> int:
        u = self.rng.random()
        for r, c in enumerate(self.cum):
            if u < c:
                return r
        return self.n - 1


class LeastLoaded(Router):
    """The replica where a full generation would finish first."""

    name = "least-loaded"
    uses_load = True

    def choose(self, i: int, cluster: ClusterState) -> int:
        return self.least_loaded(cluster)


class CacheAffinity(Router):
    """The replica whose cache gives the request the most, unless it is too loaded."""

    name = "cache-affinity"
    uses_load = True
    uses_cache = True

    def choose(self, i: int, cluster: ClusterState) -> int:
        fallback = self.least_loaded(cluster)
        skips = [cluster.skipped_steps(r, i) for r in range(self.n)]
        best = max(skips)
        if best <= 0:
            return fallback
        pick, pick_t = -1, float("inf")
        for r, shape in enumerate(self.shapes):
            if skips[r] == best:
                t = cluster.wait_s(r) + shape.image_s(shape.steps - best)
                if t < pick_t:
                    pick, pick_t = r, t
        if cluster.wait_s(pick) - cluster.wait_s(fallback) > self.cfg.imbalance_s:
            return fallback
        return pick


ROUTERS: dict[str, type[Router]] = {
    cls.name: cls for cls in (RoundRobin, RandomRouter, LeastLoaded, CacheAffinity)
}


def router_class(name: str, field: str = "cluster.router.kind") -> type[Router]:
    """The registered router ``name``; ConfigError naming ``field`` when there is none."""
    cls = ROUTERS.get(name)
    if cls is None:
        raise unknown_name(field, name, ROUTERS)
    return cls
