"""Replicas behind a router: exact event logs on tiny traces, separate caches, mixed GPU types,
and the multi-replica cluster against queueing theory where it has an exact answer.

Event logs are checked the SimPy way: every (request, replica, start, finish) worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from support import (
    ExactPrompt,
    Vanilla,
    assert_littles_law,
    experiment,
    run,
    service_only_profile,
)
from test_queueing_theory import kiefer_wolfowitz_starts, mdc_wq, pk_wq

from sim.base.config import from_dict
from sim.base.profile import PROFILE_DIR
from sim.engine import simulate
from sim.results.metrics import summarize

D10 = service_only_profile(10.0)  # 50 steps of 0.2 s, nothing else costs time


def replicas(n: int, router: str, **extra) -> object:
    return experiment(
        cluster__gpus=n,
        cluster__replicas=[{"gpus": 1, "copies": n}],
        cluster__router={"kind": router},
        **extra,
    )


def log(records) -> list[tuple[int, int, float, float]]:
    return [
        (int(r.request), int(r.replica), round(r.start_s, 6), round(r.finish_s, 6))
        for r in records.itertuples()
    ]


def test_round_robin_serves_replicas_in_turn():
    rec, _ = run(Vanilla(50), [0, 1, 2, 3, 4, 5], np.arange(6), replicas(2, "round-robin"), profile=D10)
    assert log(rec) == [
        (0, 0, 0, 10),
        (1, 1, 1, 11),
        (2, 0, 10, 20),
        (3, 1, 11, 21),
        (4, 0, 20, 30),
        (5, 1, 21, 31),
    ]
    assert rec.attrs["engine"]["router"] == "round-robin"
    assert [r["gpu_busy_s"] for r in rec.attrs["engine"]["replicas"]] == pytest.approx([30.0, 30.0])


def test_least_loaded_sends_each_job_where_it_starts_first():
    # Services 10, 1, 10, 10, 10 s. At t=2 replica 1 is idle again (its 1 s job is done);
    # at t=3 replica 0 frees at 10 and replica 1 at 12; at t=15 replica 1 is idle.
    steps = np.array([50, 5, 50, 50, 50])
    rec, _ = run(Vanilla(steps), [0, 1, 2, 3, 15], np.arange(5), replicas(2, "least-loaded"), profile=D10)
    assert log(rec) == [(0, 0, 0, 10), (1, 1, 1, 2), (2, 1, 2, 12), (3, 0, 10, 20), (4, 1, 15, 25)]
    rr, _ = run(Vanilla(steps), [0, 1, 2, 3, 15], np.arange(5), replicas(2, "round-robin"), profile=D10)
    assert rr["replica"].tolist() == [0, 1, 0, 1, 0] and rr["latency_s"].mean() > rec["latency_s"].mean()


def test_random_routing_is_seeded_and_spreads_by_capacity():
    n = 4000
    arrival = np.arange(n) * 20.0
    a, _ = run(Vanilla(50), arrival, np.arange(n), replicas(3, "random"), profile=D10)
    b, _ = run(Vanilla(50), arrival, np.arange(n), replicas(3, "random"), profile=D10)
    assert a["replica"].tolist() == b["replica"].tolist()
    shares = np.bincount(a["replica"], minlength=3) / n
    assert shares == pytest.approx([1 / 3] * 3, abs=0.03)


@pytest.fixture
def two_gpu_types(tmp_path):
    """A slow replica (10 s per image, $1/h) and a fast one (4 s, $3/h), as profile files."""
    paths = {}
    for name, service, price in (("slow", 10.0, 1.0), ("fast", 4.0, 3.0)):
        data = yaml.safe_load((PROFILE_DIR / "sdxl-a10g.yaml").read_text())
        data["name"] = name
        data["gpu"]["name"] = name.upper()
        data["gpu"]["price_per_hour_usd"] = price
        data["latency"].update(
            denoise_step_s={1: service / 50},
            save_overhead_step_s=0.0,
            text_encoder_s=0.0,
            vae_decode_s=0.0,
            embed_s=0.0,
            index_lookup_base_s=0.0,
            index_lookup_per_decade_s=0.0,
        )
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(data))
    return paths


def test_mixed_gpu_types_run_at_their_own_speed_and_price(two_gpu_types):
    cluster = [
        {"gpus": 1, "profile": str(two_gpu_types["slow"])},
        {"gpus": 1, "profile": str(two_gpu_types["fast"])},
    ]
    exp = experiment(cluster__gpus=2, cluster__replicas=cluster, cluster__router={"kind": "least-loaded"})
    # t=0: both idle, the fast one finishes first; t=0.5: fast frees at 4 (+4 = 8) beats slow (10.5);
    # t=1: slow (idle, 11) beats fast (frees at 8, +4 = 12).
    rec, _ = run(Vanilla(50), [0, 0.5, 1], [0, 1, 2], exp, profile=D10)
    assert log(rec) == [(0, 1, 0, 4), (1, 1, 4, 8), (2, 0, 1, 11)]
    # Round-robin in proportion to capacity: 2.5 fast turns per slow one.
    exp_rr = experiment(cluster__gpus=2, cluster__replicas=cluster, cluster__router={"kind": "round-robin"})
    rr, _ = run(Vanilla(50), np.arange(7) * 100.0, np.arange(7), exp_rr, profile=D10)
    assert rr["replica"].tolist() == [1, 0, 1, 1, 1, 0, 1]
    # Each replica is billed at its own price.
    row = summarize(rr, profile=D10, exp=exp_rr, system_stats=Vanilla().stats())
    busy_usd = (2 * 10.0 * 1.0 + 5 * 4.0 * 3.0) / 3600
    assert row["cost_usd"] == pytest.approx(busy_usd)
    assert row["cost_provisioned_usd"] == pytest.approx((1.0 + 3.0) * rr["finish_s"].max() / 3600)


def test_per_replica_caches_are_separate():
    """A latent stored on replica A is not served on replica B (and is, with one shared store)."""
    prompts = np.array([0, 1, 1, 0])
    arrival = [0.0, 50.0, 100.0, 150.0]

    def go(placement: str, router: str):
        exp = replicas(2, router, cache__placement=placement)
        systems = [ExactPrompt(prompts) for _ in range(2 if placement == "per-replica" else 1)]
        rec, _ = run(systems, arrival, prompts, exp)
        return rec, systems

    separate, systems = go("per-replica", "round-robin")
    assert separate["replica"].tolist() == [0, 1, 0, 1]
    assert separate["outcome"].astype(str).tolist() == ["miss"] * 4  # each repeat lands on the other replica
    assert systems[0].cached == {0, 1} and systems[1].cached == {1, 0}  # two copies, one per store
    shared, _ = go("shared", "round-robin")
    assert shared["outcome"].astype(str).tolist() == ["miss", "miss", "hit", "hit"]
    affinity, systems = go("per-replica", "cache-affinity")
    assert affinity["outcome"].astype(str).tolist() == ["miss", "miss", "hit", "hit"]
    assert affinity["replica"].tolist() == [0, 0, 0, 0] and systems[1].cached == set()
    with pytest.raises(ValueError, match="per-replica"):
        run(
            [ExactPrompt(prompts)],
            arrival,
            prompts,
            replicas(2, "round-robin", cache__placement="per-replica"),
        )


@pytest.mark.parametrize(("imbalance_s", "replica", "outcome"), [(60.0, 0, "hit"), (10.0, 1, "miss")])
def test_cache_affinity_falls_back_on_load(imbalance_s, replica, outcome):
    # Prompt 0 is cached on replica 0, which is busy with request 1 when request 2 (prompt 0)
    # arrives while replica 1 idles: ~15.6 s of extra wait against the imbalance allowed.
    prompts = np.array([0, 5, 0])
    exp = experiment(
        cluster__gpus=2,
        cluster__replicas=[{"gpus": 1, "copies": 2}],
        cluster__router={"kind": "cache-affinity", "imbalance_s": imbalance_s},
        cache__placement="per-replica",
    )
    rec, _ = run([ExactPrompt(prompts), ExactPrompt(prompts)], [0.0, 20.0, 22.0], prompts, exp)
    assert rec["replica"].tolist() == [0, 0, replica]
    assert rec["outcome"].astype(str).tolist()[2] == outcome


# -- against queueing theory ---------------------------------------------------------------


def poisson_run(lam: float, c: int, n: int, seed: int, router: str, *, exponential: bool = False):
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / lam, n))
    steps = rng.geometric(1e-3, n) if exponential else np.full(n, 50)
    profile = service_only_profile(1.0, steps=1000 if exponential else 50)
    exp = from_dict(
        {
            "cluster": {"replicas": [{"gpus": 1, "copies": c}], "router": {"kind": router}},
            "systems": ["vanilla"],
        }
    )
    records, _ = simulate(
        Vanilla(steps), arrival, np.arange(n), np.zeros(n, np.int32), exp, profile, seed=seed
    )
    assert_littles_law(records)
    return records, steps * profile.step_s(1)


def test_least_loaded_single_gpu_replicas_are_one_fcfs_queue_of_all_gpus():
    """Least work left over c single-GPU replicas: each job starts when the first GPU frees,
    exactly the central FCFS queue of c GPUs (the Kiefer-Wolfowitz recursion), request by request."""
    c = 3
    records, service = poisson_run(0.85 * c, c, 20000, seed=5, router="least-loaded", exponential=True)
    expect = kiefer_wolfowitz_starts(records["arrival_s"].to_numpy(), service, c)
    np.testing.assert_allclose(records["start_s"].to_numpy(), expect, rtol=0, atol=1e-6)


def test_round_robin_replicas_each_run_their_own_fcfs_recursion():
    c = 3
    records, service = poisson_run(0.8 * c, c, 9000, seed=6, router="round-robin", exponential=True)
    arrival = records["arrival_s"].to_numpy()
    for r in range(c):
        idx = np.arange(r, len(arrival), c)
        assert (records["replica"].to_numpy()[idx] == r).all()
        expect = kiefer_wolfowitz_starts(arrival[idx], service[idx], 1)
        np.testing.assert_allclose(records["start_s"].to_numpy()[idx], expect, rtol=0, atol=1e-6)


def test_random_routing_gives_independent_md1_queues():
    """Poisson arrivals split at random stay Poisson: each replica is M/D/1 at its share of the load
    (Pollaczek-Khinchine), estimated with the control variate of test_queueing_theory per replica."""
    c, rho, n = 2, 0.8, 100_000
    records, service = poisson_run(rho * c, c, n, seed=11, router="random")
    arrival = records["arrival_s"].to_numpy()
    for r in range(c):
        mine = records["replica"].to_numpy() == r
        lam_r = rho * c * mine.mean()
        twin = kiefer_wolfowitz_starts(arrival[mine], service[mine] * 2, 2) - arrival[mine]
        est = records["queue_s"].to_numpy()[mine].mean() - twin.mean() + mdc_wq(lam_r, 2.0, 2)
        assert est == pytest.approx(pk_wq(lam_r, 1.0), rel=0.01)
