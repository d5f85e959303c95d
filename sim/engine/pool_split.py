"""``cluster.controller``: GPUs moved between a two-model system's pools during the run.

A two-model system (``System.pool_models``: ``modm``, ``cascade``) runs the main model and the
small model on pools of their own (``cluster.pools``), over one shared cache; each decision names
the pool that runs it. Every ``interval_s`` the controller measures each pool's offered load over
the last interval (GPU-seconds of work that arrived per second: work done plus the growth of work
left) and its rule (:data:`SPLIT_RULES`) says how many of the cluster's G GPUs the main model's
pool should have, at least one per pool:

* ``load``: in proportion to the offered loads, ``round(G x main / (main + small))``;
* ``pid``: MoDM's (github.com/stsxxx/MoDM, ``serving_system.py`` ``global_monitor``): the target
  is the fewest main-model GPUs that carry the main model's load, ``ceil(main)``, or more when the
  small model's load leaves them spare at MoDM's 90% headroom, ``G - ceil(small / 0.9)``; a PID loop
  (:class:`sim.engine.autoscaler.PidLoop`, MoDM's gains) moves a running level toward it, and the
  level, rounded, is the allocation. (MoDM lets a large-model GPU serve hits too, so its spare large
  throughput counts toward the hits; here a pool serves its own model only.)

A GPU that moves leaves its pool at once when idle, else when its job ends (never in the middle of
one), and joins the other pool after the destination model's load time. Moving GPUs are held (and
billed: the cluster keeps its G GPUs) but serve neither pool meanwhile. ``static`` never moves one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from simpy.events import Timeout

from sim.engine.autoscaler import PidLoop

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    import simpy

    from sim.base.config import ControllerConfig
    from sim.engine.workers import GpuPool

__all__ = ["SPLIT_RULES", "LoadRule", "ModmPidRule", "PoolSplitter", "StaticRule"]

_EPS = 1e-9


class StaticRule:
    """The split of ``cluster.pools`` for the whole run."""

    name: ClassVar[str] = "static"

    def __init__(self, cfg: ControllerConfig, gpus: int) -> None:
        self.gpus = gpus

    def main_gpus(self, main: float, small: float, now_main: int) -> int:
        """GPUs the main model's pool should have, from the pools' offered loads (in GPUs)."""
        return now_main


class LoadRule(StaticRule):
    """GPUs in proportion to each pool's offered load."""

    name: ClassVar[str] = "load"

    def main_gpus(self, main: float, small: float, now_main: int) -> int:
        if main + small <= 0:
            return now_main
        return round(self.gpus * main / (main + small))


class ModmPidRule(StaticRule):
    """MoDM's allocation target, approached by its PID loop (see the module docstring)."""

    name: ClassVar[str] = "pid"

    def __init__(self, cfg: ControllerConfig, gpus: int) -> None:
        super().__init__(cfg, gpus)
        self.headroom = cfg.headroom
        self.loop = PidLoop((cfg.kp, cfg.ki, cfg.kd), cfg.interval_s, gpus)

    def target(self, main: float, small: float) -> int:
        """MoDM's allocation for the offered loads, before the PID loop."""
        return max(math.ceil(main - _EPS), self.gpus - math.ceil(small / self.headroom - _EPS))

    def main_gpus(self, main: float, small: float, now_main: int) -> int:
        return round(self.loop.step(self.target(main, small), now_main))


SPLIT_RULES: dict[str, type[StaticRule]] = {r.name: r for r in (StaticRule, LoadRule, ModmPidRule)}


class PoolSplitter:
    """Moves GPUs between ``pools`` (main model's first) by ``cfg.rule`` (see the module docstring).

    ``load_s``: each pool's model load time, paid by a GPU that joins it; ``done()``: the run is over.
    """

    def __init__(
        self,
        env: simpy.Environment,
        pools: list[GpuPool],
        cfg: ControllerConfig,
        load_s: tuple[float, float],
        done: Callable[[], bool],
    ) -> None:
        self.env = env
        self.pools = pools
        self.gpus = sum(p.gpus for p in pools)
        self.rule = SPLIT_RULES[cfg.rule](cfg, self.gpus)
        self.interval = cfg.interval_s
        self.load_s = load_s
        self.done = done
        self.incoming = [0, 0]  # GPUs loading each pool's model
        self.moves = 0
        self._marks = [self._work(p) for p in pools]
        # Every change of the pools' sizes: (time, main pool, small pool), GPUs serving or loading.
        self.log: list[tuple[float, int, int]] = [(env.now, pools[0].gpus, pools[1].gpus)]
        for k, pool in enumerate(pools):
            pool.on_release = self._left(k)
        env.process(self._loop())

    @staticmethod
    def _work(pool: GpuPool) -> float:
        """GPU-seconds done plus those still to run (queued or in service)."""
        return pool.busy_done_s() + pool.backlog_s() * pool.gpus

    def size(self, k: int) -> int:
        """GPUs of pool ``k`` that serve or will: in it and staying, plus those loading its model."""
        pool = self.pools[k]
        return pool.gpus - pool.retiring + self.incoming[k]

    def _loop(self) -> Generator[simpy.events.Event, None, None]:
        while True:
            yield Timeout(self.env, self.interval)
            if self.done():
                return
            self._tick()

    def _tick(self) -> None:
        offered = []
        for k, pool in enumerate(self.pools):
            work = self._work(pool)
            offered.append(max(0.0, (work - self._marks[k]) / self.interval))
            self._marks[k] = work
        now_main = self.size(0)
        want = min(max(self.rule.main_gpus(offered[0], offered[1], now_main), 1), self.gpus - 1)
        if want > now_main:
            self._move(1, 0, want - now_main)
        elif want < now_main:
            self._move(0, 1, now_main - want)

    def _move(self, src: int, dst: int, n: int) -> None:
        """``n`` GPUs from pool ``src`` to pool ``dst``: GPUs retiring from ``dst`` stay first."""
        back = self.pools[dst]
        kept = min(n, back.retiring)
        back.retiring -= kept
        n -= kept
        pool = self.pools[src]
        gone = pool.release_idle(n)
        pool.retiring += n - gone
        self.moves += n
        for _ in range(gone):
            self._load(dst)
        self._record()

    def _left(self, src: int) -> Callable[[float], None]:
        def left(now: float) -> None:
            self._load(1 - src)
            self._record()

        return left

    def _load(self, dst: int) -> None:
        self.incoming[dst] += 1
        Timeout(self.env, self.load_s[dst], dst).callbacks.append(self._loaded)

    def _loaded(self, event: Timeout) -> None:
        dst = event.value
        self.incoming[dst] -= 1
        self.pools[dst].add_gpus(1)
        self._record()

    def _record(self) -> None:
        now = self.env.now
        entry = (now, self.size(0), self.size(1))
        if self.log[-1][0] == now:
            self.log[-1] = entry
        else:
            self.log.append(entry)

    def pools_log(self) -> dict[str, list[float] | list[int]]:
        """The log as columns ``t_s``, ``model``, ``small_model`` (the engine totals carry it)."""
        t, main, small = zip(*self.log, strict=True)
        return {"t_s": list(t), "model": list(main), "small_model": list(small)}
