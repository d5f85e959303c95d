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
system declares it generates with (``serves_with``: ``gpu`` below); a request whose lookup the
predictor skipped gets the system's ``miss_decision``. All of these are declared by the system
(``sim.systems.base.System``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.events import Timeout

from sim.base.records import OUTCOME_CODE, REUSE_OUTCOMES
from sim.engine.predictor import NoPredictor, Predictor
from sim.engine.queues import Job
from sim.engine.workers import GpuPool, WorkTable, job_work
from sim.systems.base import LOOKUP_KINDS, System

if TYPE_CHECKING:
    import simpy

    from sim.base.config import Experiment
    from sim.base.profile import GpuModel, Profile
    from sim.tiers import TierPath

_REUSE = frozenset(REUSE_OUTCOMES)


class Source:
    """Replays arrivals and takes each request as far as the GPU queue (or to completion)."""

    def __init__(
        self,
        env: simpy.Environment,
        system: System,
        arrival_s: np.ndarray,
        prompt_ids: np.ndarray,
        exp: Experiment,
        profile: Profile,
        pool: GpuPool,
        predictor: Predictor,
        tiers: TierPath,
        gpu: GpuModel,
    ) -> None:
        self.env = env
        self.system = system
        self.arrival = arrival_s.tolist()
        self.prompt_ids = prompt_ids.tolist()
        self.n = n = len(self.arrival)
        self.profile = profile
        self.pool = pool
        self.predictor = predictor
        self.tiers = tiers
        self.kind = system.lookup_kind
        if self.kind not in LOOKUP_KINDS:
            raise ValueError(f"system {system.name!r}: lookup_kind {self.kind!r} not in {LOOKUP_KINDS}")
        self.embed_s = profile.embed_s if self.kind == "vector" else 0.0
        self.load_aware = exp.selector.load_aware
        self.slo_s = exp.selector.slo_s
        self.blind = isinstance(predictor, NoPredictor)  # looks everything up: skip the calls
        self.lookup_seconds = system.lookup_seconds
        self.fetch_seconds = system.fetch_seconds
        levels = sorted(profile.k_levels)
        spacing = (levels[-1] - levels[0]) / (len(levels) - 1) if len(levels) > 1 else float(levels[0])
        self.rung_s = spacing * gpu.step_s(1)
        self.max_boost = len(levels)
        self.full_work = job_work(gpu, gpu.steps, True)
        self.work = WorkTable(gpu)
        self.hierarchy = len(tiers.tiers) > 1
        self.fetch_one = tiers.fetch_by_tier[0]
        self.latent_bytes = profile.latent_bytes
        self.stored_bytes = 0.0  # bytes of latents stored so far (tier ages)
        self.stored_at: dict[int, float] = {}  # prompt id -> stored_bytes when its latents were stored
        # About 200 samples of the cache's occupancy over the run (storage cost).
        self.sample_every = max(1, n // 200)
        # Per-request columns (python lists: much faster to fill one item at a time than numpy).
        nan = math.nan
        self.decisions: list[Any] = [None] * n
        self.ready = [nan] * n
        self.start = [nan] * n
        self.finish = [nan] * n
        self.lookup_t = [nan] * n
        self.fetch_t = [nan] * n
        self.gpu_s = [0.0] * n
        self.saved = [0] * n  # intermediate latents each generation saves
        self.boost = [0] * n
        self.lost_hits = 0  # skipped lookups that would have reused something
        self.looked_up = 0  # requests whose lookup ran and counted
        self.boosted = 0
        # Little's law bookkeeping: the integral of the number of requests in the system.
        self.in_system = 0
        self.system_area = 0.0
        self._last = 0.0

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
        # Little's law bookkeeping, inlined: this runs once per request.
        self.system_area += self.in_system * (now - self._last)
        self._last = now
        self.in_system += 1
        if i % self.sample_every == 0:
            self.system.record_occupancy(now)
        self._serve(i, now)

    def _serve(self, i: int, now: float) -> None:
        system = self.system
        boost = 0
        if self.load_aware:
            over = self.pool.backlog_s() + self.full_work - self.slo_s
            if over > 0:
                boost = min(self.max_boost, math.ceil(over / self.rung_s))
                self.boosted += 1
        look = True
        if self.blind:
            d = system.lookup(i, now, boost)
        elif self.predictor.needs_truth:
            d = system.lookup(i, now, boost)
            hit = d.outcome in _REUSE
            look = self.predictor.look(i, hit)
            if not look:
                if hit:
                    self.lost_hits += 1
                d = system.miss_decision(i, now)
        else:
            look = self.predictor.look(i, None)
            if look:
                d = system.lookup(i, now, boost)
                self.predictor.observe(i, d.outcome in _REUSE)
            else:
                # The skipped lookup's outcome is unknown to the predictor: ask the cache (no side effect).
                if system.probe(i, now, boost):
                    self.lost_hits += 1
                d = system.miss_decision(i, now)
        outcome = d.outcome
        if look:
            self.looked_up += 1
        lookup = self.lookup_seconds() if look and self.kind != "none" else 0.0
        if outcome in _REUSE:
            own = self.fetch_seconds(d)
            if own is not None:
                fetch = own
            elif self.hierarchy:
                fetch = self.tiers.fetch_s(self.stored_bytes - self.stored_at.get(d.matched, 0.0))
            else:
                fetch = self.fetch_one
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
        job = Job(i, ready, steps, saved > 0, self.work(steps, saved > 0))
        if delay > 0:
            Timeout(self.env, delay, job).callbacks.append(self._enqueue)
        else:
            self.pool.push(job)

    def _enqueue(self, event: Timeout) -> None:
        self.pool.push(event.value)

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
        self.start[i] = job.start
        self.finish[i] = now
        self.gpu_s[i] = gpu_s
        self._complete(i, now)

    def _complete(self, i: int, now: float) -> None:
        d = self.decisions[i]
        self.system.complete(i, d, now)
        if self.hierarchy and d.store_levels:
            self.stored_bytes += len(d.store_levels) * self.latent_bytes
            self.stored_at[self.prompt_ids[i]] = self.stored_bytes
        self.system_area += self.in_system * (now - self._last)
        self._last = now
        self.in_system -= 1

    def outcome_codes(self) -> np.ndarray:
        """Outcome of every request as :data:`sim.base.records.OUTCOME_CODE` codes."""
        return np.fromiter((OUTCOME_CODE[d.outcome] for d in self.decisions), dtype=np.int8, count=self.n)
