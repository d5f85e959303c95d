"""An autoscaled cluster with a cache per replica (sim.engine.elastic): every GPU is a replica with
a cache of its own, a new one starts cold and a released one takes its cache with it. Checked on an
event log worked out by hand and on the invariants of longer runs."""

from __future__ import annotations

import numpy as np
import pytest
from support import experiment, service_only_profile

from sim.app.preflight import preflight
from sim.base.config import from_dict
from sim.base.errors import ConfigError
from sim.engine.core import simulate
from sim.systems import TraceArrays, build_system

P100 = service_only_profile(100.0)


def elastic_run(arrival, prompts, placement="per-replica", **autoscale):
    n = len(arrival)
    scale = {"rule": "utilization", "target_utilization": 0.5, "min_gpus": 1, "max_gpus": 2, "interval_s": 60,
             "provision_s": 10.0, "model_load_s": 0.0, **autoscale}
    exp = experiment(systems=["exact"], cluster__gpus=1, cluster__autoscale=scale, cluster__router={"kind": "least-loaded"},
                     cache__placement=placement)
    arrays = TraceArrays(np.asarray(prompts, np.int32), np.zeros(n, np.int32), np.asarray(arrival, float))
    built = []

    def new_system():
        built.append(build_system("exact", exp, arrays, None, P100))
        return built[-1]

    first = [new_system()]
    rec, _ = simulate(first, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, exp, P100, 7, new_system=new_system)
    return rec, built


def test_a_replica_that_joins_starts_with_an_empty_cache_and_takes_it_when_it_goes():
    # One GPU; a generation takes 100 s. t=0: prompt 0 runs (0-100, cached on replica 0 at 100);
    # t=1: prompt 1 waits for it (100-200). Tick 60: utilisation 1.0 against 0.5 asks for 2 GPUs;
    # the second serves at 70 with an empty cache. t=150: prompt 0 again; replica 0 is busy until
    # 200, so least-loaded sends it to replica 1, where it misses (150-250). Ticks 120-240 stay at
    # 2 (within tolerance or at the cap); tick 300 asks for 1 but a scale-out was 240 s ago (cool-
    # down 300); tick 360 lets the newest, idle replica go with its cache. t=400: prompt 0 hits
    # replica 0's cache, stored at 100.
    arrival, prompts = [0.0, 1.0, 150.0, 400.0], [0, 1, 0, 0]
    rec, built = elastic_run(arrival, prompts)
    assert rec["replica"].tolist() == [0, 0, 1, 0]
    assert rec["outcome"].tolist() == ["miss", "miss", "miss", "exact"]
    assert rec["start_s"].tolist()[:3] == pytest.approx([0.0, 100.0, 150.0], abs=1e-3)
    assert rec["finish_s"].tolist()[:3] == pytest.approx([100.0, 200.0, 250.0], abs=1e-3)
    log = rec.attrs["engine"]["gpus_log"]
    assert list(zip(log["t_s"], log["held"], log["pool"], strict=True)) == [(0.0, 1, 1), (60.0, 2, 1), (70.0, 2, 2), (360.0, 1, 1)]
    assert len(built) == 2 and len(rec.attrs["engine"]["replicas"]) == 2
    # One shared store: the GPU that joins finds prompt 0 there.
    rec, built = elastic_run(arrival, prompts, placement="shared")
    assert rec["outcome"].tolist() == ["miss", "miss", "exact", "exact"] and len(built) == 1


def test_a_busy_replica_let_go_finishes_its_queue_and_waits_for_work_on_its_way():
    # Two one-GPU replicas; each job takes 100 s. t=0: A and B on replica 1, C on replica 0. t=10:
    # one replica is to go: the newest, 1, busy with A and holding B (asked back and let go again,
    # it is the same one). It takes no more work at once (the router sees only 0), runs A (0-100)
    # and B (100-200), and leaves at 200. t=20: a job D is on its way to replica 0 (its request
    # still fetching), so replica 0, idle from 100, is not idle for a release; D arrives at 150.
    import simpy

    from sim.engine.elastic import ActiveRouter, ElasticCluster
    from sim.engine.queues import Job
    from sim.engine.replicas import new_replica
    from sim.engine.routing import router_class

    exp = experiment(systems=["exact"], cluster__gpus=2, cache__placement="per-replica")
    arrays = TraceArrays(np.arange(4, dtype=np.int32), np.zeros(4, np.int32), np.zeros(4))
    env = simpy.Environment()
    replicas = [new_replica(env, exp, P100, build_system("exact", exp, arrays, None, P100), r) for r in range(2)]
    router = ActiveRouter(router_class("least-loaded"), exp.cluster.router, [r.shape for r in replicas], 7)
    done: dict[str, tuple[int, float]] = {}
    caches = [r.cache for r in replicas]
    cluster = ElasticCluster(replicas, router, lambda r: None, lambda job, s: done.__setitem__("ABCD"[job.i], env.now), caches)
    left: list[float] = []
    cluster.on_release = left.append

    def job(i: int) -> Job:
        return Job(i, env.now, 50, False, 100.0)

    def script():
        replicas[1].pool.push(job(0))
        replicas[1].pool.push(job(1))
        replicas[0].pool.push(job(2))
        yield env.timeout(10)
        assert cluster.release_idle(1) == 0  # nobody is idle
        cluster.retiring = 1
        cluster.retiring = 0
        assert (router.active, cluster.draining) == ([0, 1], [])
        cluster.retiring = 1
        assert (router.active, cluster.draining, cluster.gpus) == ([0], [1], 2)
        yield env.timeout(10)
        replicas[0].pool.arriving += 1
        assert cluster.release_idle(1) == 0  # replica 0 is busy; replica 1 is already going
        yield env.timeout(110)
        assert cluster.release_idle(1) == 0  # replica 0 is idle, but D is on its way
        yield env.timeout(20)
        replicas[0].pool.arriving -= 1
        replicas[0].pool.push(job(3))
        yield env.timeout(10)
        assert (cluster.gpus, cluster.members, cluster.retiring) == (2, [0, 1], 1)

    env.process(script())
    env.run()
    assert done == {"A": 100.0, "B": 200.0, "C": 100.0, "D": 250.0}
    assert left == [200.0]
    assert (cluster.members, cluster.draining, caches) == ([0], [], [replicas[0].cache])


@pytest.mark.parametrize("rule", ["utilization", "queue-delay", "pid"])
@pytest.mark.parametrize("router", ["least-loaded", "round-robin", "cache-affinity"])
def test_an_elastic_cluster_keeps_its_bounds_and_each_replica_serves_alone(rule, router):
    rng = np.random.default_rng(5)
    n = 800
    arrival = np.cumsum(rng.exponential(25.0, n))
    arrival[400:] = arrival[399] + np.cumsum(rng.exponential(6.0, n - 400))  # a step up in load
    prompts = rng.integers(0, 120, n)
    rec, built = elastic_run(arrival, prompts, rule=rule, min_gpus=1, max_gpus=5, cooldown_s=120.0)
    engine = rec.attrs["engine"]
    log = list(zip(engine["gpus_log"]["t_s"], engine["gpus_log"]["held"], engine["gpus_log"]["pool"], strict=True))
    assert all(1 <= held <= 5 and pool <= held for _, held, pool in log)
    assert len(built) == len(engine["replicas"]) > 1
    # Each replica has one GPU: its jobs never overlap, and none starts before it joined.
    ran = rec[rec["gpu_s"] > 0]
    for r, jobs in ran.groupby("replica"):
        jobs = jobs.sort_values("start_s")
        assert (jobs["start_s"].to_numpy()[1:] >= jobs["finish_s"].to_numpy()[:-1] - 1e-9).all(), r
    # A replica hits exactly the prompts it generated itself before (its cache of 15,000 evicts
    # none here): never one another replica generated.
    seen: dict[tuple[int, int], float] = {}
    for row in rec.sort_values("arrival_s").itertuples():
        key = (row.replica, row.prompt_id)
        assert (row.outcome == "exact") == (key in seen and seen[key] <= row.arrival_s)
        if row.outcome == "miss":
            seen.setdefault(key, row.finish_s)


def test_preflight_allows_it_for_one_model_systems_only():
    base = {"mode": "full", "trace": {"source": "synthetic", "requests": 200}, "selector": {"carried": False},
            "cache": {"placement": "per-replica"}, "cluster": {"gpus": 2, "autoscale": {"rule": "pid"}}}
    preflight(from_dict({**base, "systems": ["vanilla", "nirvana"]}))
    with pytest.raises(ConfigError, match="cache.placement"):
        preflight(from_dict({**base, "systems": ["modm"]}))
    with pytest.raises(ConfigError, match="cache.placement"):
        preflight(from_dict({**base, "systems": ["vanilla"], "trace": {"source": "synthetic", "requests": 200,
                                                                        "request_models": True}}))
