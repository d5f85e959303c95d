"""The request path up to the GPU queue: arrival, embedding, prediction, lookup, fetch.

Arrivals are one chain of SimPy timeouts: each arrival event schedules the next, so the
event heap stays small however long the trace. Every request then costs:

* ``embed_s`` to embed the prompt (systems that search by similarity only). It is the same
  for every request, so the arrival event fires ``embed_s`` after the trace's arrival time
  and the lookup sees the cache exactly as it is at that moment;
* the match predictor's verdict; a predicted miss skips the lookup (and loses a hit if
  there was one: the engine counts those, for predictors that decide without seeing the
  outcome by asking the system's side-effect-free ``probe``);
* the lookup (``system.lookup_seconds()``: for an index, its time grows with the number of
  cached prompts) and, for a reuse, the fetch of the latent or image (``system.fetch_seconds``,
  else its storage tier);
* then the GPU queue, unless the outcome needs no GPU (a retrieved or exact-hit image),
  which finishes as soon as it is fetched.

Load-aware K: before the lookup the backlog per GPU is estimated (queued work plus what
is left of the jobs in service, divided by the GPUs); if this request would then miss the
SLO even as a full generation, the lookup is asked for ``boost`` more rungs of K, one rung
per ``rung spacing * step_s`` seconds of overshoot (at most one per cached K level). The
boost lowers the load it reacts to, so under a sustained overload it settles where the
backlog holds the SLO.

What a request costs before the GPU depends on the system's ``lookup_kind`` (``none``, ``hash``
or ``vector``) and ``lookup_seconds``, and whether its generation pays the latent-saving overhead
on the system's ``saved_latents(decision)``; its GPU work is that of the profile's model the
system declares it generates with (``serves_with``, turned into GPU seconds by the serving
replica: ``sim.engine.replicas.Replica.job``); a request whose lookup the predictor skipped gets
the system's ``miss_decision``. All of these are declared by the system
(``sim.systems.base.System``).

Several replicas (``sim.engine.replicas``): after the embedding, the router picks the replica
(``sim.engine.routing``); the lookup then asks that replica's cache, the fetch comes from that
cache's tier (or the system's own fetch time), the job queues at that replica and runs on its
GPUs. Admission (``sim.cache.admission``) is decided at the lookup, with the serving replica's
idle GPUs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.events import Timeout

from sim.base.records import OUTCOME_CODE, REUSE_OUTCOMES
from sim.engine.predictor import NoPredictor
from sim.systems.base import LOOKUP_KINDS

if TYPE_CHECKING:
    import simpy

    from sim.base.config import Experiment
    from sim.base.profile import Profile
    from sim.base.request_work import RequestWork
    from sim.cache.admission import Admission
    from sim.engine.predictor import Predictor
    from sim.engine.queues import Job
    from sim.engine.replicas import Replica
    from sim.engine.routing import Router

_REUSE = frozenset(REUSE_OUTCOMES)


class Source:
    """Replays arrivals and takes each request as far as a replica's GPU queue (or to completion)."""

    def __init__(
        self,
        env: simpy.Environment,
        replicas: list[Replica],
        router: Router | None,
        arrival_s: np.ndarray,
        prompt_ids: np.ndarray,
        exp: Experiment,
        profile: Profile,
        predictor: Predictor,
        admission: Admission,
        request_work: RequestWork | None = None,
    ) -> None:
        self.env = env
        # Each request's own schedule and size (trace.request_steps / request_resolution), or None.
        # A system that generates with another model (a small model's fixed few steps) keeps that
        # model's schedule; only the size applies to it.
        self.request_work = request_work
        self.replicas = replicas
        system = replicas[0].cache.system
        # A two-model system's replicas are its pools: its decision picks one (sim.engine.pool_split).
        self.pooled = bool(system.pool_models)
        # The engine gives a router to a cluster of replicas (None: one replica, or pools).
        self.router = router
        # Distinct caches in replica order (one when shared).
        self.caches = list({id(r.cache): r.cache for r in replicas}.values())
        self.arrival = arrival_s.tolist()
        self.prompt_ids = prompt_ids.tolist()
        self.n = n = len(self.arrival)
        self.profile = profile
        self.predictor = predictor
        self.admission = admission
        self.admit_all = admission.admits_all
        self.kind = system.lookup_kind
        if self.kind not in LOOKUP_KINDS:
            raise ValueError(f"system {system.name!r}: lookup_kind {self.kind!r} not in {LOOKUP_KINDS}")
        # The embedding and the index lookup run at the front end, on the experiment's profile.
        self.embed_s = profile.embed_s if self.kind == "vector" else 0.0
        self.load_aware = exp.selector.load_aware and system.takes_boost
        self.slo_s = exp.selector.slo_s
        self.blind = isinstance(predictor, NoPredictor)  # looks everything up: skip the calls
        self.max_boost = len(profile.k_levels)
        # About 200 samples of the caches' occupancy over the run (storage cost).
        self.sample_every = max(1, n // 200)
        # Per-request columns (python lists: much faster to fill one item at a time than numpy).
        nan = math.nan
        self.decisions: list[Any] = [None] * n
        self.replica_of = [0] * n
        self.ready = [nan] * n
        self.start = [nan] * n
        self.finish = [nan] * n
        self.lookup_t = [nan] * n
        self.fetch_t = [nan] * n
        self.gpu_s = [0.0] * n
        self.saved = [0] * n  # intermediate latents each generation saves
        self.steps_run = [0] * n  # denoising steps each request runs (of its own schedule)
        self.boost = [0] * n
        self.lost_hits = 0  # skipped lookups that would have reused something
        self.looked_up = 0  # requests whose lookup ran and counted
        self.boosted = 0
        self.not_admitted = 0  # generations that had levels to save and were refused
        self.refused: set[int] = set()  # requests refused a place in the cache (completion stores nothing)
        # Pools: the model each image came from, each request's denoising in main-model steps, and
        # the requests whose second job (a cascade's escalation) is running.
        self.model_of = [0] * n if self.pooled else None
        self.main_steps = [0.0] * n if self.pooled else None
        self.second: set[int] = set()
        self._main_step_s = replicas[0].gpu.step_s(1)
        # Little's law bookkeeping: the integral of the number of requests in the system.
        self.in_system = 0
        self.all_arrived = False
        self.system_area = 0.0
        self._last = 0.0

    # -- what a router may ask (sim.engine.routing.ClusterState) ---------------------------
    def wait_s(self, r: int) -> float:
        """Expected seconds before a new job starts on replica ``r``."""
        return self.replicas[r].pool.wait_s()

    def skipped_steps(self, r: int, i: int) -> int:
        """Steps request ``i`` would skip with replica ``r``'s cache (``System.probe``)."""
        return self.replicas[r].cache.system.probe(i, self.env.now)

    # -- the request path --------------------------------------------------------------------
    def start_arrivals(self) -> None:
        """Schedule the first arrival; each arrival schedules the next."""
        if self.n:
            Timeout(self.env, max(0.0, self.arrival[0] + self.embed_s), 0).callbacks.append(self._arrive)

    def _arrive(self, event: Timeout) -> None:
        i = event.value
        env = self.env
        now = env.now
        nxt = i + 1
        if nxt < self.n:
            Timeout(env, max(0.0, self.arrival[nxt] + self.embed_s - now), nxt).callbacks.append(self._arrive)
        else:
            self.all_arrived = True
        # Little's law bookkeeping, inlined: this runs once per request.
        self.system_area += self.in_system * (now - self._last)
        self._last = now
        self.in_system += 1
        if i % self.sample_every == 0:
            for cache in self.caches:
                cache.system.record_occupancy(now)
        self._serve(i, now)

    def _serve(self, i: int, now: float) -> None:
        if self.router is None:
            rep = self.replicas[0]
        else:
            r = self.router.choose(i, self)
            rep = self.replicas[r]
            self.replica_of[i] = r
        cache = rep.cache
        system = cache.system
        boost = 0
        if self.load_aware:
            over = rep.pool.backlog_s() + rep.full_work - self.slo_s
            if over > 0:
                boost = min(self.max_boost, math.ceil(over / rep.rung_s))
                self.boosted += 1
        if self.blind:
            d, look = system.lookup(i, now, boost), True
        else:
            d, look = self._predicted(i, now, boost, system)
        # A generation stores its own levels, and a reuse may share the matched prompt's trajectory.
        if not self.admit_all and (d.store_levels or d.matched >= 0) and not self.admission.admit(i, rep.pool.idle):
            # Not admitted: the generation stores nothing (it pays no save overhead either).
            if d.store_levels:
                d = d._replace(store_levels=())
                self.not_admitted += 1
            self.refused.add(i)
        if self.pooled:
            r = system.pool_of(d)
            rep = self.replicas[r]
            self.replica_of[i] = r
        outcome = d.outcome
        if look:
            self.looked_up += 1
        lookup = system.lookup_seconds() if look and self.kind != "none" else 0.0
        if outcome in _REUSE:
            own = system.fetch_seconds(d)
            fetch = own if own is not None else cache.fetch_s(d.matched) if cache.hierarchy else cache.fetch_one
        else:
            fetch = 0.0
        self.decisions[i] = d
        if boost:
            self.boost[i] = boost
        self.lookup_t[i] = self.embed_s + lookup
        self.fetch_t[i] = fetch
        delay = lookup + fetch
        ready = now + delay
        self.ready[i] = ready
        steps = d.steps
        rw = self.request_work
        if rw is not None and rep.own_schedule:
            steps = rw.one(i, steps)
        self.steps_run[i] = steps
        if steps <= 0:
            if delay > 0:
                Timeout(self.env, delay, i).callbacks.append(self._fetched)
            else:
                self._finish_without_gpu(i, now)
            return
        # Saving intermediate latents costs GPU time per step; storing a final image does not.
        saved = system.saved_latents(d)
        if saved:
            self.saved[i] = saved
        image = system.stores_images and bool(d.store_levels)
        job = self._job(rep, i, ready, steps, saved > 0, image)
        if delay > 0:
            rep.pool.arriving += 1
            Timeout(self.env, delay, (rep.pool, job)).callbacks.append(self._enqueue)
        else:
            rep.pool.push(job)

    def _job(self, rep: Replica, i: int, ready: float, steps: int, saves: bool, image: bool) -> Job:
        """Request ``i``'s GPU job on ``rep`` (its own schedule and size when the trace gives them)."""
        if self.pooled:
            gpu = rep.gpu
            self.main_steps[i] += gpu.denoise_work(steps) * gpu.step_s(1) / self._main_step_s
        rw = self.request_work
        if rw is None:
            return rep.job(i, ready, steps, saves, image)
        full = int(rw.full_steps[i]) if rep.own_schedule else None
        job = rep.job(i, ready, steps, saves, image, full, float(rw.area[i]))
        if rw.models is not None:
            job.model = int(rw.models[i])
            job.loras = int(rw.loras[i])
        return job

    def _predicted(self, i: int, now: float, boost: int, system: Any) -> tuple[Any, bool]:
        """Request ``i``'s decision under the match predictor, and whether its lookup ran."""
        if self.predictor.needs_truth:
            d = system.lookup(i, now, boost)
            hit = d.outcome in _REUSE
            look = self.predictor.look(i, hit)
            if not look:
                if hit:
                    self.lost_hits += 1
                d = system.miss_decision(i, now)
            return d, look
        look = self.predictor.look(i, None)
        if look:
            d = system.lookup(i, now, boost)
            self.predictor.observe(i, d.outcome in _REUSE)
            return d, look
        # The skipped lookup's outcome is unknown to the predictor: ask the cache (no side effect).
        if system.probe(i, now, boost) > 0:
            self.lost_hits += 1
        return system.miss_decision(i, now), look

    def _enqueue(self, event: Timeout) -> None:
        pool, job = event.value
        pool.arriving -= 1
        pool.push(job)

    def _fetched(self, event: Timeout) -> None:
        self._finish_without_gpu(event.value, self.env.now)

    def _finish_without_gpu(self, i: int, now: float) -> None:
        self.start[i] = now
        self.finish[i] = now
        self._complete(i, now)

    def finish_job(self, job: Job, gpu_s: float) -> None:
        """GPU callback: one job's image is done."""
        i = job.i
        now = self.env.now
        self.finish[i] = now
        if self.pooled and i in self.second:  # a cascade's second job: the request started earlier
            self.gpu_s[i] += gpu_s
        elif self.pooled and self._follow_up(job, gpu_s, now):
            return
        else:
            self.start[i] = job.start
            self.gpu_s[i] = gpu_s
        self._complete(i, now)

    def _follow_up(self, job: Job, gpu_s: float, now: float) -> bool:
        """Queue request ``job.i``'s second job in the main model's pool when its system asks for one."""
        i = job.i
        steps = self.replicas[0].cache.system.follow_up_steps(i, self.decisions[i])
        if steps <= 0:
            return False
        self.second.add(i)
        self.start[i] = job.start
        self.gpu_s[i] = gpu_s
        rep = self.replicas[0]
        rw = self.request_work
        if rw is not None:
            steps = rw.one(i, steps)
        self.steps_run[i] += steps
        rep.pool.push(self._job(rep, i, now, steps, False, False))
        return True

    def _complete(self, i: int, now: float) -> None:
        d = self.decisions[i]
        cache = self.replicas[self.replica_of[i]].cache
        if self.model_of is not None:
            self.model_of[i] = cache.system.delivered_by(i, d)
        if i not in self.refused:
            cache.system.complete(i, d, now)
        if d.store_levels and cache.hierarchy:
            cache.stored(self.prompt_ids[i], len(d.store_levels))
        self.system_area += self.in_system * (now - self._last)
        self._last = now
        self.in_system -= 1

    @property
    def finished(self) -> bool:
        """Every request has arrived and left."""
        return self.all_arrived and not self.in_system

    def outcome_codes(self) -> np.ndarray:
        """Outcome of every request as :data:`sim.base.records.OUTCOME_CODE` codes."""
        return np.fromiter((OUTCOME_CODE[d.outcome] for d in self.decisions), dtype=np.int8, count=self.n)
