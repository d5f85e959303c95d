"""``cache.placement: per-replica`` under ``cluster.autoscale``: every GPU a replica with a cache of its own.

A cluster whose replicas keep their own caches grows by whole replicas. Each GPU is a replica of
one GPU behind the router (``cluster.router``), with its own system instance and store. A GPU the
autoscaler adds joins as a new replica with an *empty* cache, so it serves cold until its own
generations fill it; a GPU let go takes its cache with it. (With the default ``shared`` placement
every GPU serves from the one store, and a new GPU finds the latents already there.)

:class:`ElasticCluster` is what the autoscaler scales: it answers the questions the autoscaler
asks of a pool (GPUs, busy seconds, work outstanding, batches) summed over the replicas, and adds
and lets go of replicas through the same ``add_gpus`` / ``release_idle`` / ``retiring`` calls.
:class:`ActiveRouter` routes over the replicas still taking work. The newest replica (the coldest
cache) is let go first. One that is busy, has work queued or has a job on its way (a request
fetching a latent) stops taking requests at once and leaves when its last job ends: no queued
request is ever moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sim.base.config import RouterConfig
    from sim.engine.queues import Job
    from sim.engine.replicas import Cache, Replica
    from sim.engine.routing import ClusterState, ReplicaShape, Router


class _Active:
    """The cluster state of the active replicas, indexed as the inner router sees them."""

    def __init__(self, active: list[int], cluster: ClusterState) -> None:
        self.active = active
        self.cluster = cluster

    def wait_s(self, r: int) -> float:
        return self.cluster.wait_s(self.active[r])

    def skipped_steps(self, r: int, i: int) -> int:
        return self.cluster.skipped_steps(self.active[r], i)


class ActiveRouter:
    """A router of ``cls`` over the replicas that take work; rebuilt (seeded by the change count)
    whenever a replica joins or stops taking work. ``choose`` returns the replica's index in the
    engine's list of every replica the run had."""

    def __init__(self, cls: type[Router], cfg: RouterConfig, shapes: Sequence[ReplicaShape], seed: int) -> None:
        self.cls = cls
        self.name = cls.name
        self.cfg = cfg
        self.seed = seed
        self.shapes = list(shapes)  # every replica's, by engine index
        self.active = list(range(len(self.shapes)))
        self.changes = 0
        self._view: _Active | None = None
        self._build()

    def _build(self) -> None:
        self.inner = self.cls(self.cfg, [self.shapes[r] for r in self.active], self.seed * 1_000_003 + self.changes)
        self._view = None

    def add(self, shape: ReplicaShape) -> int:
        """A new replica that takes work; its engine index."""
        self.shapes.append(shape)
        self.activate(len(self.shapes) - 1)
        return len(self.shapes) - 1

    def activate(self, r: int) -> None:
        """Replica ``r`` takes work (again)."""
        self.active.append(r)
        self.active.sort()
        self.changes += 1
        self._build()

    def deactivate(self, r: int) -> None:
        """Replica ``r`` takes no more work."""
        self.active.remove(r)
        self.changes += 1
        self._build()

    def choose(self, i: int, cluster: ClusterState) -> int:
        """The replica (engine index) that serves request ``i``."""
        if self._view is None or self._view.cluster is not cluster:
            self._view = _Active(self.active, cluster)
        return self.active[self.inner.choose(i, self._view)]


class ElasticCluster:
    """Single-GPU replicas, each with its own cache, grown and shrunk as one pool (see the module
    docstring). ``replicas`` is the engine's list of every replica the run had (the records index
    it), ``new_replica`` builds the next one (index ``len(replicas)``, an empty cache), and
    ``finish`` is the engine's completion callback."""

    def __init__(
        self,
        replicas: list[Replica],
        router: ActiveRouter,
        new_replica: Callable[[int], Replica],
        finish: Callable[[Job, float], None],
        caches: list[Cache],
    ) -> None:
        self.replicas = replicas
        self.caches = caches  # the caches the engine samples: the members'
        self.router = router
        self.new_replica = new_replica
        self.finish = finish
        self.members = list(range(len(replicas)))  # in the cluster: taking work or draining
        self.draining: list[int] = []
        self.on_release: Callable[[float], None] | None = None
        for r in self.members:
            self._watch(r)

    def _watch(self, r: int) -> None:
        pool = self.replicas[r].pool
        pool.on_finish = self._finished(r)
        pool.on_release = self._left(r)

    # -- what the autoscaler reads of a pool -------------------------------------------------
    @property
    def gpus(self) -> int:
        """GPUs (replicas) in the cluster, draining ones too."""
        return len(self.members)

    @property
    def busy_s(self) -> float:
        """GPU-seconds of service started, over every replica the run had."""
        return sum(rep.pool.busy_s for rep in self.replicas)

    @property
    def batches(self) -> int:
        """Jobs (batches) started, over every replica the run had."""
        return sum(rep.pool.batches for rep in self.replicas)

    def busy_done_s(self) -> float:
        """GPU-seconds of service done so far, over every replica the run had."""
        return sum(rep.pool.busy_done_s() for rep in self.replicas)

    def backlog_s(self) -> float:
        """Seconds of work queued or in service per GPU of the cluster."""
        pools = [self.replicas[r].pool for r in self.members]
        return sum(p.backlog_s() * p.gpus for p in pools) / len(pools)

    # -- what the autoscaler changes ------------------------------------------------------------
    def add_gpus(self, n: int) -> None:
        """``n`` new replicas join, each with an empty cache, and take work at once."""
        for _ in range(n):
            r = len(self.replicas)
            rep = self.new_replica(r)
            self.replicas.append(rep)
            self.caches.append(rep.cache)
            self.members.append(r)
            self._watch(r)
            self.router.add(rep.shape)

    def release_idle(self, n: int) -> int:
        """Let go of up to ``n`` replicas with nothing to do, the newest first; how many went."""
        gone = 0
        for r in sorted(self.members, reverse=True):
            if gone == n:
                break
            if r not in self.draining and self._empty(r):
                self.router.deactivate(r)
                self.replicas[r].pool.release_idle(1)
                self.members.remove(r)
                self.caches.remove(self.replicas[r].cache)
                gone += 1
        return gone

    @property
    def retiring(self) -> int:
        """Replicas that take no more work and leave when their last job ends."""
        return len(self.draining)

    @retiring.setter
    def retiring(self, n: int) -> None:
        while len(self.draining) > n:  # kept after all: the newest drain ends first
            r = self.draining.pop()
            self.replicas[r].pool.retiring = 0
            self.router.activate(r)
        for r in sorted(self.members, reverse=True):
            if len(self.draining) >= n:
                break
            if r not in self.draining:
                self.draining.append(r)
                self.router.deactivate(r)
                self._settle(r)

    # -- draining ---------------------------------------------------------------------------------
    def _empty(self, r: int) -> bool:
        pool = self.replicas[r].pool
        return pool.idle == pool.gpus and not len(pool.queue) and not pool.arriving

    def _settle(self, r: int) -> None:
        """A draining replica with nothing queued or on its way: its GPU leaves now or with its job."""
        pool = self.replicas[r].pool
        if len(pool.queue) or pool.arriving:
            return
        if pool.idle == pool.gpus:
            pool.release_idle(pool.gpus)
            self._left(r)(self.replicas[r].pool.env.now)
        else:
            pool.retiring = pool.gpus - pool.idle

    def _finished(self, r: int) -> Callable[[Job, float], None]:
        def finished(job: Job, gpu_s: float) -> None:
            self.finish(job, gpu_s)
            if self.draining and r in self.draining:
                self._settle(r)

        return finished

    def _left(self, r: int) -> Callable[[float], None]:
        def left(now: float) -> None:
            if self.replicas[r].pool.gpus:
                return  # one GPU of several left; the replica stays
            self.members.remove(r)
            self.draining.remove(r)
            self.caches.remove(self.replicas[r].cache)
            if self.on_release is not None:
                self.on_release(now)

        return left
