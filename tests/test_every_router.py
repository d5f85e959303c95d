"""Every registered router, through one set of checks: one module parametrised over ROUTERS.

A router reads only what it declares (``uses_load``, ``uses_cache``), always picks a replica that
exists, decides the same way for the same seed, and in the engine spreads a steady load over
identical replicas (none is starved) while Little's law holds for the whole cluster.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import ExactPrompt, Vanilla, experiment, run, service_only_profile

from sim.base.config import RouterConfig
from sim.base.errors import ConfigError
from sim.engine.routing import ROUTERS, ReplicaShape, router_class

ALL = sorted(ROUTERS)
SHAPES = [ReplicaShape(1, 0.5, 0.3, 50), ReplicaShape(2, 0.5, 0.3, 50), ReplicaShape(1, 0.2, 0.1, 50)]


class Cluster:
    """A ClusterState with scripted waits and reuse that refuses what a router did not declare."""

    def __init__(self, cls, rng):
        self.cls, self.rng = cls, rng

    def wait_s(self, r: int) -> float:
        assert self.cls.uses_load, f"{self.cls.name} reads loads without declaring uses_load"
        return float(self.rng.integers(0, 4) * 10.0)

    def skipped_steps(self, r: int, i: int) -> int:
        assert self.cls.uses_cache, f"{self.cls.name} probes caches without declaring uses_cache"
        return int(self.rng.choice([0, 0, 5, 25]))


@pytest.mark.parametrize("name", ALL)
def test_declarations_and_registry(name: str) -> None:
    cls = ROUTERS[name]
    assert cls.name == name and router_class(name) is cls
    assert isinstance(cls.uses_load, bool) and isinstance(cls.uses_cache, bool)
    with pytest.raises(ConfigError, match="cluster.router.kind"):
        router_class(name + "x")


@pytest.mark.parametrize("name", ALL)
def test_choices_are_valid_and_reproducible(name: str) -> None:
    cls = ROUTERS[name]
    picks = []
    for _ in range(2):
        router = cls(RouterConfig(), SHAPES, seed=4)
        cluster = Cluster(cls, np.random.default_rng(9))
        picks.append([router.choose(i, cluster) for i in range(300)])
    assert picks[0] == picks[1]
    assert set(picks[0]) <= {0, 1, 2}


@pytest.mark.parametrize("name", ALL)
def test_a_steady_load_reaches_every_identical_replica(name: str) -> None:
    n, c = 3000, 3
    rng = np.random.default_rng(2)
    arrival = np.cumsum(rng.exponential(10.0 / (0.7 * c), n))  # 70% of three 10 s GPUs
    exp = experiment(
        cluster__gpus=c,
        cluster__replicas=[{"gpus": 1, "copies": c}],
        cluster__router={"kind": name},
        cache__placement="per-replica",
    )
    prompts = rng.integers(0, 200, n)
    rec, _ = run(
        [ExactPrompt(prompts) for _ in range(c)], arrival, prompts, exp, profile=service_only_profile(10.0)
    )
    shares = np.bincount(rec["replica"], minlength=c) / n
    assert shares.min() > 0.15, shares
    assert rec.attrs["engine"]["router"] == name
    # Every replica's GPU time adds up to the records'.
    busy = sum(r["gpu_busy_s"] for r in rec.attrs["engine"]["replicas"])
    assert busy == pytest.approx(rec["gpu_s"].sum())


@pytest.mark.parametrize("name", ALL)
def test_one_replica_needs_no_router(name: str) -> None:
    exp = experiment(cluster__replicas=[{"gpus": 1}], cluster__router={"kind": name})
    rec, _ = run(Vanilla(50), [0.0, 1.0], [0, 1], exp)
    assert rec["replica"].tolist() == [0, 0] and rec.attrs["engine"]["router"] == ""
