"""``cluster.autoscale``: a controller that adds and releases GPUs of the pool during the run.

Every ``interval_s`` the controller observes the pool and its rule (:data:`SCALING_RULES`) asks
for a number of GPUs, clamped to ``min_gpus..max_gpus``. It compares that with the GPUs that
serve or will serve (the pool's, less those retiring, plus those still starting):

* **more**: retiring GPUs stay first (they are loaded and paid for); the rest are asked for now,
  are *held* (billed) from now, and serve after ``provision_s + model_load_s``;
* **fewer**, and no scale-out for ``cooldown_s``: GPUs still starting are cancelled first, then
  idle GPUs leave at once, then busy ones leave as they finish (never in the middle of a job).

So the GPUs held never fall below ``min_gpus`` nor exceed ``max_gpus``, and the bill is the
integral of the held count over the run (:func:`sim.results.cost.held_gpu_seconds`), to the second. The pool's
GPUs share its one cache: a GPU that joins serves from the latents already stored. (With a cache
per GPU, each GPU is a replica of its own and a new one starts empty: :mod:`sim.engine.elastic`
is then the pool this controller scales.)

A two-model system's pools (``modm``, ``cascade``: :mod:`sim.engine.pool_split`) are scaled each by
its own copy of the rule on its own load, and a GPU asked for serves after that pool's model
loads; every pool keeps at least one GPU and the cluster's total stays within
``min_gpus..max_gpus`` (:func:`shares`: the pool that asks for most gives way first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from simpy.events import Timeout

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    import simpy

    from sim.base.config import AutoscaleConfig
    from sim.engine.workers import GpuPool

__all__ = [
    "SCALING_RULES",
    "Autoscaler",
    "Observation",
    "PidLoop",
    "PidRule",
    "QueueDelayRule",
    "UtilizationRule",
    "scaling_waits",
    "shares",
]

# Ratios within this of a whole number are that number (float sums of GPU-seconds).
_EPS = 1e-9


@dataclass(frozen=True)
class Observation:
    """What a rule sees of the pool at one of the controller's ticks."""

    now: float
    serving: int  # GPUs serving and staying (not retiring)
    utilization: float  # busy GPU-seconds / GPU-seconds in the pool over the last interval
    # Work that arrived over the last interval, per second: served + the growth of what is left
    # (queued or running), so it counts work the pool could not keep up with too.
    offered_gpus: float
    service_s: float  # mean GPU-seconds of the jobs (batches) started over the last interval


class UtilizationRule:
    """Kubernetes' Horizontal Pod Autoscaler: ``ceil(serving x utilisation / target)``, no change
    while utilisation is within ``tolerance`` of the target (kubernetes.io, "Horizontal Pod
    Autoscaling", algorithm details)."""

    name: ClassVar[str] = "utilization"

    def __init__(self, cfg: AutoscaleConfig) -> None:
        self.target = cfg.target_utilization
        self.tolerance = cfg.tolerance

    def desired(self, obs: Observation) -> int:
        """GPUs the rule asks for."""
        ratio = obs.utilization / self.target
        if abs(ratio - 1.0) <= self.tolerance:
            return obs.serving
        return math.ceil(obs.serving * ratio - _EPS)


class QueueDelayRule:
    """The fewest GPUs whose M/M/c queue, at the offered load and mean service time of the last
    interval, makes a job wait ``target_queue_s`` on average or less (Erlang C: Kleinrock,
    *Queueing Systems* vol. 1, 3.4). An empty interval asks for none (the floor is ``min_gpus``)."""

    name: ClassVar[str] = "queue-delay"

    def __init__(self, cfg: AutoscaleConfig) -> None:
        self.target_s = cfg.target_queue_s
        self.most = cfg.max_gpus

    def desired(self, obs: Observation) -> int:
        """GPUs the rule asks for."""
        a, s = obs.offered_gpus, obs.service_s
        if a <= 0 or s <= 0:
            return 0
        erlang_b = 1.0
        for c in range(1, self.most + 1):
            erlang_b = a * erlang_b / (c + a * erlang_b)  # Erlang B, by its recursion in c
            if c > a:
                waits = c * erlang_b / (c - a * (1.0 - erlang_b))  # Erlang C: the chance to wait
                if waits * s / (c - a) <= self.target_s:
                    return c
        return self.most


class PidRule:
    """MoDM's controller (github.com/stsxxx/MoDM, ``serving_system.py`` ``PIDController``): a target
    allocation is computed each interval, and a PID loop moves a running level toward it,
    ``level += Kp e + Ki sum(e dt) + Kd de/dt`` with ``e = target - level`` and ``dt`` in minutes,
    the step clipped to +-``max_gpus``; the level, rounded, is what it asks for. MoDM computes its
    target from the hit rate and the two models' throughputs (how to split GPUs between them);
    here the target is the queue-delay rule's count for the one pool, so the PID smooths it."""

    name: ClassVar[str] = "pid"

    def __init__(self, cfg: AutoscaleConfig) -> None:
        self.loop = PidLoop((cfg.kp, cfg.ki, cfg.kd), cfg.interval_s, cfg.max_gpus)
        self.target = QueueDelayRule(cfg)

    def desired(self, obs: Observation) -> int:
        """GPUs the rule asks for."""
        return round(self.loop.step(self.target.desired(obs), obs.serving))


class PidLoop:
    """MoDM's ``PIDController``: a running level moved toward a target each interval by
    ``Kp e + Ki sum(e dt) + Kd de/dt`` (``e = target - level``, ``dt`` in minutes), the step clipped
    to +-``most``."""

    def __init__(self, gains: tuple[float, float, float], interval_s: float, most: float) -> None:
        self.gains = gains
        self.dt_min = interval_s / 60.0
        self.most = most
        self.level: float | None = None
        self.integral = 0.0
        self.prev_error = 0.0

    def step(self, target: float, start: float) -> float:
        """The level after one interval toward ``target`` (``start``: the level before the first)."""
        if self.level is None:
            self.level = float(start)
        kp, ki, kd = self.gains
        error = target - self.level
        self.integral += error * self.dt_min
        derivative = (error - self.prev_error) / self.dt_min
        self.prev_error = error
        self.level += min(max(kp * error + ki * self.integral + kd * derivative, -self.most), self.most)
        return self.level


SCALING_RULES: dict[str, type[UtilizationRule] | type[QueueDelayRule] | type[PidRule]] = {
    r.name: r for r in (UtilizationRule, QueueDelayRule, PidRule)
}


def scaling_waits(cfg: AutoscaleConfig, provision_s: float | None, model_load_s: float | None) -> tuple[float, float]:
    """(provision_s, model_load_s): the config's, else the profile's; ValueError when neither gives one."""
    out = []
    for name, own, profile in (("provision_s", cfg.provision_s, provision_s), ("model_load_s", cfg.model_load_s, model_load_s)):
        value = own if own is not None else profile
        if value is None:
            raise ValueError(f"cluster.autoscale.{name}: the profile has no scaling.{name}; give one")
        out.append(float(value))
    return out[0], out[1]


class _Start:
    """A GPU asked for and not serving yet, for pool ``k``."""

    __slots__ = ("cancelled", "k")

    def __init__(self, k: int) -> None:
        self.cancelled = False
        self.k = k


def shares(wants: list[int], least: int, most: int) -> list[int]:
    """Each pool's GPUs: what its rule asks for, at least one, the total within ``least..most``
    (the pool that asks for most gives way first, and gains first; ties: the first pool gains,
    the last gives way)."""
    out = [max(w, 1) for w in wants]
    while sum(out) > most:
        out[max(range(len(out)), key=lambda j: (out[j], j))] -= 1
    while sum(out) < least:
        out[max(range(len(out)), key=lambda j: (out[j], -j))] += 1
    return out


class Autoscaler:
    """The controller of one pool, or of a two-model system's pools each scaled on its own load
    (see the module docstring); ``waits``: each pool's seconds from asking for a GPU to its serving;
    ``done()`` says the run is over."""

    def __init__(
        self,
        env: simpy.Environment,
        pools: list[GpuPool],
        cfg: AutoscaleConfig,
        waits: list[float],
        done: Callable[[], bool],
    ) -> None:
        self.env = env
        self.pools = pools
        self.cfg = cfg
        self.rules = [SCALING_RULES[cfg.rule](cfg) for _ in pools]
        self.waits = waits
        self.done = done
        self.starting: list[list[_Start]] = [[] for _ in pools]
        self.last_out = [-math.inf] * len(pools)
        # Every change of the GPUs held and in the pools: (time, held, pool), and per pool
        # (GPUs in it, GPUs held for it).
        self.log: list[tuple[float, int, int]] = []
        self.split: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self._record(env.now)
        self._since = env.now  # the last tick, and the log entry in force then
        self._since_k = 0
        self._marks = [(0.0, 0.0, 0.0, 0)] * len(pools)  # busy done, outstanding, work started, jobs started
        self._service_s = [0.0] * len(pools)
        self.owed = [0] * len(pools)  # GPUs a pool's rule asked for that max_gpus kept waiting
        for pool in pools:
            pool.on_release = self._ask
        env.process(self._loop())

    @property
    def held(self) -> int:
        """GPUs billed now: the pools' (retiring ones too) and those starting."""
        return sum(p.gpus for p in self.pools) + sum(len(s) for s in self.starting)

    def _record(self, now: float) -> None:
        entry = (now, self.held, sum(p.gpus for p in self.pools))
        split = (tuple(p.gpus for p in self.pools), tuple(p.gpus + len(s) for p, s in zip(self.pools, self.starting, strict=True)))
        if self.log and self.log[-1][0] == now:  # the earlier value lasted no time
            self.log[-1], self.split[-1] = entry, split
        else:
            self.log.append(entry)
            self.split.append(split)

    def _loop(self) -> Generator[simpy.events.Event, None, None]:
        interval = self.cfg.interval_s
        while True:
            yield Timeout(self.env, interval)
            if self.done():
                return
            self._tick()

    def _pool_seconds_since_tick(self, now: float, k: int) -> float:
        log = self.log
        area = 0.0
        for e in range(self._since_k, len(log)):
            lo = max(log[e][0], self._since)
            hi = log[e + 1][0] if e + 1 < len(log) else now
            area += self.split[e][0][k] * (hi - lo)
        return area

    def _observe(self, k: int) -> Observation:
        now = self.env.now
        pool = self.pools[k]
        area = self._pool_seconds_since_tick(now, k)
        done, left, started, jobs = pool.busy_done_s(), pool.backlog_s() * pool.gpus, pool.busy_s, pool.batches
        was_done, was_left, was_started, was_jobs = self._marks[k]
        util = (done - was_done) / area if area > 0 else 0.0
        offered = (done - was_done + left - was_left) / (now - self._since)
        if jobs > was_jobs:
            self._service_s[k] = (started - was_started) / (jobs - was_jobs)
        self._marks[k] = (done, left, started, jobs)
        return Observation(now, pool.gpus - pool.retiring, util, max(0.0, offered), self._service_s[k])

    def _tick(self) -> None:
        obs = [self._observe(k) for k in range(len(self.pools))]
        self._since, self._since_k = self.env.now, len(self.log) - 1
        cfg = self.cfg
        wants = shares([rule.desired(o) for rule, o in zip(self.rules, obs, strict=True)], cfg.min_gpus, cfg.max_gpus)
        self.owed = [0] * len(self.pools)
        for k, (o, want) in enumerate(zip(obs, wants, strict=True)):
            coming = o.serving + len(self.starting[k])
            if want > coming:
                self._scale_out(k, want - coming)
            elif want < coming and o.now - self.last_out[k] >= cfg.cooldown_s:
                self._scale_in(k, coming - want)

    def _scale_out(self, k: int, n: int) -> None:
        pool = self.pools[k]
        kept = min(n, pool.retiring)  # retiring GPUs stay: loaded and paid for
        pool.retiring -= kept
        self.last_out[k] = self.env.now
        self.owed[k] = n - kept
        self._ask(self.env.now)

    def _ask(self, now: float) -> None:
        """Ask for the GPUs owed to each pool as far as ``max_gpus`` allows: another pool's GPUs
        still finishing their last job are held, and an ask waits for each to leave."""
        for k, owed in enumerate(self.owed):
            n = min(owed, self.cfg.max_gpus - self.held)
            for _ in range(n):
                start = _Start(k)
                self.starting[k].append(start)
                Timeout(self.env, self.waits[k], start).callbacks.append(self._ready)
            self.owed[k] -= n
        self._record(now)

    def _ready(self, event: Timeout) -> None:
        start = event.value
        if start.cancelled or self.done():  # after the run's end: nothing left to serve or bill
            return
        self.starting[start.k].remove(start)
        self.pools[start.k].add_gpus(1)
        self._record(self.env.now)

    def _scale_in(self, k: int, n: int) -> None:
        starting = self.starting[k]
        while n and starting:
            starting.pop().cancelled = True
            n -= 1
        pool = self.pools[k]
        gone = pool.release_idle(n)
        pool.retiring += n - gone
        self._record(self.env.now)

    def gpus_log(self) -> dict[str, list[float] | list[int]]:
        """The log as columns: ``t_s``, ``held``, ``pool`` (the engine totals carry it)."""
        t, held, pool = zip(*self.log, strict=True)
        return {"t_s": list(t), "held": list(held), "pool": list(pool)}

    def pools_log(self, models: list[str]) -> dict[str, list[float] | list[int]]:
        """GPUs held for each pool over time, as columns ``t_s`` and each pool's ``models`` name."""
        out: dict[str, list[float] | list[int]] = {"t_s": [e[0] for e in self.log]}
        for k, model in enumerate(models):
            out[model] = [held[k] for _, held in self.split]
        return out
