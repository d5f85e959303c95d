"""The request path up to the GPU queue: arrival, embedding, prediction, lookup, fetch.

Arrivals are one chain of SimPy timeouts: each arrival event schedules the next, so the
event heap stays small however long the trace. Every request then costs:

* ``embed_s`` to embed the prompt (systems that search by similarity only). It is the same
  for every request, so the arrival event fires ``embed_s`` after the trace's arrival time
  and the lookup sees the cache exactly as it is at that moment;
* the match predictor's verdict; a predicted miss skips the lookup (and loses a hit if
  there was one);
* the index lookup, whose time grows with the number of cached prompts
  (``profile.lookup_s``), and, for a reuse, the fetch of the latent from its storage tier;
* then the GPU queue, unless the outcome needs no GPU (a retrieved or exact-hit image),
  which finishes as soon as it is fetched.

Load-aware K: before the lookup the backlog per GPU is estimated (queued work plus what
is left of the jobs in service, divided by the GPUs); if this request would then miss the
SLO even as a full generation, the lookup is asked for ``boost`` more rungs of K, one rung
per ``rung spacing * step_s`` seconds of overshoot (at most one per cached K level). The
boost lowers the load it reacts to, so under a sustained overload it settles where the
backlog holds the SLO.

Optional system attributes: ``lookup_kind`` (``none``, ``hash`` or ``vector``; by default
from the system's name: vanilla none, exact hash, others vector) and
``miss_decision(i, now)`` (the decision for a request whose lookup the predictor skipped;
by default the system's latest decision with the fields of a miss).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy
from simpy.events import Timeout

from sim.base.config import Experiment
from sim.base.profile import Profile
from sim.base.records import OUTCOME_CODE, REUSE_OUTCOMES
from sim.engine.predictor import NoPredictor, Predictor
from sim.engine.queues import Job
from sim.engine.tiers import TierPath
from sim.engine.workers import GpuPool, WorkTable, job_work

# What a system's request costs before the GPU: nothing (no cache), a key-value lookup
# (identical prompts only) or an embedding plus a vector-index search.
LOOKUP_KINDS = ("none", "hash", "vector")
_REUSE = frozenset(REUSE_OUTCOMES)
_DEFAULT_LOOKUP_KIND = {"vanilla": "none", "exact": "hash"}


def default_lookup_kind(name: str) -> str:
    """The lookup kind of a system by its name: ``vector`` unless it is one of the plain ones."""
    return _DEFAULT_LOOKUP_KIND.get(name, "vector")


def lookup_kind(system: Any) -> str:
    """A system's ``lookup_kind`` attribute, or the default for its name."""
    kind = getattr(system, "lookup_kind", None) or default_lookup_kind(system.name)
    if kind not in LOOKUP_KINDS:
        raise ValueError(f"system {system.name!r}: lookup_kind {kind!r} not in {LOOKUP_KINDS}")
    return kind


class Source:
    """Replays arrivals and takes each request as far as the GPU queue (or to completion)."""

    def __init__(
        self,
        env: simpy.Environment,
        system: Any,
        arrival_s: np.ndarray,
        prompt_ids: np.ndarray,
        exp: Experiment,
        profile: Profile,
        pool: GpuPool,
        predictor: Predictor,
        tiers: TierPath,
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
        self.kind = lookup_kind(system)
        self.embed_s = profile.embed_s if self.kind == "vector" else 0.0
        self.full_steps = profile.steps
        self.load_aware = exp.selector.load_aware
        self.slo_s = exp.selector.slo_s
        self.blind = isinstance(predictor, NoPredictor)  # looks everything up: skip the calls
        self.lookup_base = profile.index_lookup_base_s
        self.lookup_decade = profile.index_lookup_per_decade_s
        levels = sorted(profile.k_levels)
        spacing = (levels[-1] - levels[0]) / (len(levels) - 1) if len(levels) > 1 else float(levels[0])
        self.rung_s = spacing * profile.step_s(1)
        self.max_boost = len(levels)
        self.full_work = job_work(profile, profile.steps, True)
        self.work = WorkTable(profile)
        self._saves: dict[tuple[int, ...], bool] = {}
        self.hierarchy = len(tiers.tiers) > 1
        self.fetch_one = tiers.fetch_by_tier[0]
        self.latent_bytes = profile.latent_bytes
        self.stored_bytes = 0.0  # bytes of latents stored so far (tier ages)
        self.stored_at: dict[int, float] = {}  # prompt id -> stored_bytes when its latents were stored
        self.miss_levels: tuple[int, ...] = tuple(profile.k_levels)
        # About 200 samples of the cache's occupancy over the run (storage cost).
        self.sample_every = max(1, n // 200)
        self.record_occupancy: Callable[[float], None] | None = getattr(system, "record_occupancy", None)
        self.miss_decision: Callable[[int, float], Any] | None = getattr(system, "miss_decision", None)
        self._template: Any = None  # the latest decision the system made (a shape to copy)
        # Per-request columns (python lists: much faster to fill one item at a time than numpy).
        nan = math.nan
        self.decisions: list[Any] = [None] * n
        self.ready = [nan] * n
        self.start = [nan] * n
        self.finish = [nan] * n
        self.lookup_t = [nan] * n
        self.fetch_t = [nan] * n
        self.gpu_s = [0.0] * n
        self.boost = [0] * n
        self.lost_hits = 0
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
        i = event._value
        env = self.env
        now = env.now
        nxt = i + 1
        if nxt < self.n:
            Timeout(env, max(0.0, self.arrival[nxt] + self.embed_s - now), nxt).callbacks.append(self._arrive)
        # Little's law bookkeeping, inlined: this runs once per request.
        self.system_area += self.in_system * (now - self._last)
        self._last = now
        self.in_system += 1
        if i % self.sample_every == 0 and self.record_occupancy is not None:
            self.record_occupancy(now)
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
            if not look and hit:
                self.lost_hits += 1
                d = self._skip_decision(i, now, d)
        else:
            look = self.predictor.look(i, None)
            if look:
                d = system.lookup(i, now, boost)
                self.predictor.observe(i, d.outcome in _REUSE)
            else:
                d = self._skip_decision(i, now, self._template)
        outcome = d.outcome
        if not self.blind and look:
            # Shapes for the decisions of skipped lookups (see _skip_decision).
            self._template = d
            if outcome == "miss":
                self.miss_levels = d.store_levels
        kind = self.kind
        if not look or kind == "none":
            lookup = 0.0
        elif kind == "hash":
            lookup = self.lookup_base
        else:
            lookup = self.lookup_base + self.lookup_decade * math.log10(max(system.cached_prompts(), 1))
        if outcome in _REUSE:
            if self.hierarchy:
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
        levels = d.store_levels
        saves = self._saves.get(levels)
        if saves is None:
            # Storing intermediate latents (levels below N) costs GPU time per step; storing the
            # final image (level N, exact and retrieval caches) does not.
            saves = self._saves[levels] = any(k < self.full_steps for k in levels)
        job = Job(i, ready, steps, saves, self.work(steps, saves))
        if delay > 0:
            Timeout(self.env, delay, job).callbacks.append(self._enqueue)
        else:
            self.pool.push(job)

    def _skip_decision(self, i: int, now: float, template: Any) -> Any:
        """A fresh generation for a request whose lookup the predictor skipped."""
        if self.miss_decision is not None:
            return self.miss_decision(i, now)
        if template is None:
            raise TypeError(
                f"system {self.system.name!r} has no miss_decision(i, now) and no earlier decision to copy"
            )
        p = self.profile
        fields = {
            "outcome": "miss",
            "matched": -1,
            "similarity": math.nan,
            "k_planned": 0,
            "k_used": 0,
            "steps": p.steps,
            "quality": p.quality_vanilla,
            "store_levels": self.miss_levels,
        }
        if hasattr(template, "_replace"):  # a NamedTuple (sim.systems.Decision)
            return template._replace(**fields)
        return dataclasses.replace(template, **fields)

    def _enqueue(self, event: Timeout) -> None:
        self.pool.push(event._value)

    def _fetched(self, event: Timeout) -> None:
        self._finish_without_gpu(event._value, self.env.now)

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
