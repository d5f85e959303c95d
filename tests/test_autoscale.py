"""``cluster.autoscale``: the controller's event log against hand-worked scenarios, its bounds and
its bill on every system, and the errors a user meets.

The hand scenarios use a profile where a generation takes exactly 100 s and nothing else costs
time, so every tick's utilisation and outstanding work can be added up on paper (the comments do).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from support import OWN_SPACE, Vanilla, experiment, service_only_profile, workload

from sim.base.config import AutoscaleConfig, CacheConfig, Experiment, from_dict
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.engine import simulate
from sim.engine.autoscaler import Observation, PidRule, QueueDelayRule, UtilizationRule
from sim.results.metrics import summarize
from sim.systems import SYSTEMS, build_system

P100 = service_only_profile(100.0)


def scaled(*, gpus: int, arrival: list[float], **autoscale: object):
    exp = experiment(cluster__gpus=gpus, cluster__autoscale=autoscale, systems=["vanilla"])
    records, series = simulate(
        Vanilla(), np.asarray(arrival, float), np.arange(len(arrival)), np.zeros(len(arrival), np.int32), exp, P100, 7
    )
    log = records.attrs["engine"]["gpus_log"]
    return exp, records, series, list(zip(log["t_s"], log["held"], log["pool"], strict=True))


def test_utilization_rule_scales_out_then_in_as_worked_by_hand():
    # 2 GPUs, 8 jobs of 100 s at t = 0 and one at t = 1000; a new GPU serves 20 + 10 s after the ask.
    exp, rec, _, log = scaled(
        gpus=2,
        arrival=[0.0] * 8 + [1000.0],
        rule="utilization",
        target_utilization=0.5,
        min_gpus=1,
        max_gpus=5,
        provision_s=20.0,
        model_load_s=10.0,
    )
    # t=60: both busy (utilisation 1) -> ceil(2 x 1/0.5) = 4: two asked for, serving at 90.
    # t=120: window [60,120]: 2x30 + 4x30 = 180 GPU-s, all busy -> 8, capped at 5: one more, at 150.
    # t=180: all 5 busy -> 10 -> 5: nothing. t=240: busy 60+10+20+20+60 = 170 of 300 (0.567, outside
    # the 10% tolerance) -> ceil(5 x 1.133) = 6 -> 5. t=300: 60/300 -> 2, but the last scale-out was
    # 180 s ago (cool-down 300). t=360: idle -> 1, still cooling. t=420: four idle GPUs go.
    # t=1020: 20 of 60 s busy -> ceil(0.667) = 1. t=1080: busy -> 2: one asked for; the run ends
    # at 1100, before it serves.
    assert log == [
        (0.0, 2, 2),
        (60.0, 4, 2),
        (90.0, 4, 4),
        (120.0, 5, 4),
        (150.0, 5, 5),
        (420.0, 1, 1),
        (1080.0, 2, 1),
    ]
    assert rec["start_s"].tolist() == pytest.approx([0, 0, 90, 90, 100, 100, 150, 190, 1000])
    assert rec["finish_s"].tolist() == pytest.approx([100, 100, 190, 190, 200, 200, 250, 290, 1100])
    row = summarize(rec, profile=P100, exp=exp, system_stats=Vanilla().stats())
    held = 2 * 60 + 4 * 60 + 5 * 300 + 1 * 660 + 2 * 20  # GPU-seconds held over [0, 1100]
    assert row["gpu_hours_provisioned"] == pytest.approx(held / 3600, rel=1e-12)
    assert row["cost_provisioned_usd"] == pytest.approx(held / 3600 * P100.gpu_price_per_hour_usd, rel=1e-12)
    assert row["gpu_utilization"] == pytest.approx(900 / held)
    assert (row["gpus_mean"], row["gpus_peak"]) == (pytest.approx(held / 1100), 5)


def test_queue_delay_rule_sizes_for_the_offered_load():
    exp, rec, _, log = scaled(
        gpus=1, arrival=[0.0] * 10, rule="queue-delay", target_queue_s=100.0, max_gpus=8, provision_s=0.0, model_load_s=0.0
    )
    # t=60: 60 s served + 940 s left (9 queued, 40 s of the running job) arrived in 60 s: 16.7 GPUs
    # of load, more than 8 can hold -> 8, serving at once. t=120: nothing new arrived -> 1, but
    # within the cool-down until the run ends.
    assert log == [(0.0, 1, 1), (60.0, 8, 8)]
    assert rec["start_s"].tolist() == pytest.approx([0] + [60] * 7 + [100, 160])


def test_busy_gpus_leave_as_they_finish_and_are_billed_until_then():
    exp, rec, series, log = scaled(
        gpus=2,
        arrival=[50.0, 50.0],
        rule="queue-delay",
        max_gpus=2,
        cooldown_s=0.0,
        provision_s=0.0,
        model_load_s=0.0,
    )
    # t=60: 200 s of work arrived in 60 s (3.3 GPUs) -> 2. t=120: none arrived -> 1; both GPUs are
    # busy, so one leaves when its job ends at 150, and is billed until then.
    assert log == [(0.0, 2, 2), (120.0, 2, 2), (150.0, 1, 1)]
    assert rec["start_s"].tolist() == pytest.approx([50, 50])
    row = summarize(rec, profile=P100, exp=exp, system_stats=Vanilla().stats())
    assert row["gpu_hours_provisioned"] == pytest.approx((2 * 100) / 3600)  # [50, 150], 2 GPUs
    # The per-minute series averages the GPUs held: 2, 2, then 2 for 30 s and 1 for 30 s.
    assert series["gpus_held"].tolist() == pytest.approx([2.0, 2.0, 1.5])


def test_a_scale_in_cancels_gpus_still_starting_before_touching_serving_ones():
    _, _, _, log = scaled(
        gpus=1,
        arrival=[0.0, 0.0, 0.0, 200.0],
        rule="queue-delay",
        target_queue_s=60.0,
        max_gpus=4,
        cooldown_s=0.0,
        provision_s=500.0,
        model_load_s=0.0,
    )
    # Load arrived over each interval (served + growth of what is left) and the GPUs asked for;
    # a new GPU would serve 500 s after the ask, so none ever does:
    # t=60: (60 + 240) / 60 = 5 GPUs -> 4 (three starts); t=120: (60 + 180 - 240) / 60 = 0 -> 1 (all
    # three cancelled); t=240: (60 + 160 - 120) / 60 = 1.67 -> 3 by Erlang C (2 would wait 227 s
    # on average, 3 wait 22.5 s); t=300: 0 -> 1 (both cancelled).
    assert log == [(0.0, 1, 1), (60.0, 4, 1), (120.0, 1, 1), (240.0, 3, 1), (300.0, 1, 1)]


def hand_held_seconds(log, start: float, end: float) -> float:
    """The integral of the held count, step by step, from the definition."""
    total = 0.0
    for (t, held, _), nxt in zip(log, [*log[1:], (math.inf, 0, 0)], strict=True):
        lo, hi = max(t, start), min(nxt[0], end)
        if hi > lo:
            total += held * (hi - lo)
    return total


@pytest.mark.parametrize("name", sorted(n for n, cls in SYSTEMS.items() if not cls.pool_models))
@pytest.mark.parametrize("rule", ["utilization", "queue-delay", "pid"])
def test_every_system_keeps_within_bounds_and_pays_for_what_it_held(name: str, rule: str):
    arrays, lists = workload(600)
    profile = load_profile("sdxl-a10g")
    arrival = arrays.arrival_s * 4.0  # one request per 4 s: about 4 busy A10Gs without a cache
    exp = Experiment(
        selector=OWN_SPACE,
        systems=[name],
        cache=CacheConfig(capacity=200, policy="lru"),
        params={"gptcache": {"threshold": 0.8, "space": "embedder"}, "pinecone": {"min_alignment": 0.2715}},
        cluster=from_dict(
            {"cluster": {"gpus": 3, "autoscale": {"rule": rule, "min_gpus": 2, "max_gpus": 6, "interval_s": 30}}}
        ).cluster,
    )
    exp.cluster.autoscale.provision_s, exp.cluster.autoscale.model_load_s = 45.0, 8.5
    system = build_system(name, exp, arrays, lists, profile)
    rec, _ = simulate(system, arrival, arrays.prompt_ids, arrays.user_codes, exp, profile, 7)
    log = [tuple(x) for x in zip(*rec.attrs["engine"]["gpus_log"].values(), strict=True)]
    assert all(2 <= held <= 6 and pool <= held for _, held, pool in log)
    # No more jobs run at once than GPUs are in the pool (batch size 1: one job per GPU).
    ran = rec[rec["gpu_s"] > 0]
    events = sorted([(s, 1) for s in ran["start_s"]] + [(f, -1) for f in ran["finish_s"]], key=lambda e: (e[0], e[1]))
    running, times = 0, np.array([t for t, _, _ in log])
    for t, step in events:
        running += step
        in_force = log[int(np.searchsorted(times, t, side="right")) - 1][2]
        assert running <= in_force
    row = summarize(rec, profile=profile, exp=exp, system_stats=system.stats())
    start, end = float(arrival.min()), float(rec["finish_s"].max())
    held = hand_held_seconds(log, start, end)
    assert row["gpu_hours_provisioned"] == pytest.approx(held / 3600, rel=1e-12)
    assert row["gpus_peak"] == max(h for t, h, _ in log if t <= end)
    assert row["gpu_utilization"] == pytest.approx(row["gpu_busy_s"] / held)


@pytest.mark.parametrize(
    ("serving", "utilization", "want"),
    [(4, 0.6, 4), (4, 0.65, 4), (4, 0.9, 6), (3, 0.2, 1), (5, 0.0, 0)],  # on target, within 10%, ...
)
def test_utilization_rule_from_its_definition(serving, utilization, want):
    rule = UtilizationRule(AutoscaleConfig(rule="utilization", target_utilization=0.6))
    assert rule.desired(Observation(0.0, serving, utilization, 0.0, 0.0)) == want


def erlang_c_wait(c: int, a: float, s: float) -> float:
    """Mean wait in an M/M/c queue with offered load ``a`` = lambda s, from the closed form."""
    top = a**c / math.factorial(c) * c / (c - a)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait * s / (c - a)


@pytest.mark.parametrize("a", [0.3, 1.0, 2.5, 4.99, 7.2])
@pytest.mark.parametrize("s", [2.1, 17.0])
@pytest.mark.parametrize("target", [0.5, 10.0])
def test_queue_delay_rule_is_the_fewest_gpus_erlang_c_allows(a, s, target):
    rule = QueueDelayRule(AutoscaleConfig(rule="queue-delay", target_queue_s=target, max_gpus=30))
    want = next(c for c in range(1, 31) if c > a and erlang_c_wait(c, a, s) <= target)
    assert rule.desired(Observation(0.0, 1, 0.5, a, s)) == want


def test_pid_rule_follows_a_step_in_load_as_modms_controller_does():
    s, target_s = 17.0, 10.0
    rule = PidRule(AutoscaleConfig(rule="pid", target_queue_s=target_s, max_gpus=20))
    loads = [2.0] * 5 + [6.0] * 15  # GPUs' worth of offered work: a step up at the 6th tick

    def target(a: float) -> int:  # the queue-delay count, from the closed form
        return next(c for c in range(1, 21) if c > a and erlang_c_wait(c, a, s) <= target_s)

    # MoDM's PIDController.compute (Kp 0.6, Ki 0.05, Kd 0.05, dt in minutes: 1), its level
    # starting at the 4 GPUs serving, and int(round(level)) asked for.
    level, integral, prev, want = 4.0, 0.0, 0.0, []
    for a in loads:
        error = target(a) - level
        integral += error
        step = 0.6 * error + 0.05 * integral + 0.05 * (error - prev)
        prev = error
        level += max(-20.0, min(20.0, step))
        want.append(int(round(level)))
    got = [rule.desired(Observation(60.0 * k, 4, 0.5, a, s)) for k, a in enumerate(loads)]
    assert got == want
    # Smoothed: the step is not taken in one tick, and the level settles on the new target.
    assert got[5] < target(6.0) and got[-1] == target(6.0) and target(2.0) < target(6.0)


@pytest.mark.parametrize(
    ("cluster", "field", "fragment"),
    [
        ({"autoscale": {"rule": "utilization", "min_gpus": 4, "max_gpus": 2}}, "max_gpus", "min_gpus"),
        ({"gpus": 9, "autoscale": {"rule": "utilization", "max_gpus": 8}}, "gpus", "1..8"),
        ({"autoscale": {"rule": "utilization", "target_utilization": 1.5}}, "target_utilization", "(0, 1]"),
        ({"autoscale": {"rule": "utilization"}, "replicas": [{"gpus": 2}]}, "autoscale.rule", "replicas"),
    ],
)
def test_bad_autoscale_blocks_name_the_field(cluster, field, fragment):
    with pytest.raises(ConfigError) as err:
        from_dict({"cluster": cluster})
    assert field in str(err.value) and fragment in str(err.value)


def test_preflight_names_an_unknown_rule_and_cache_only_mode():
    from sim.app.preflight import preflight

    with pytest.raises(ConfigError, match="cluster.autoscale.rule.*queue-delay"):
        preflight(from_dict({"cluster": {"autoscale": {"rule": "hpa"}}, "trace": {"requests": 10}}))
    with pytest.raises(ConfigError, match="mode: full"):
        preflight(from_dict({"mode": "cache-only", "cluster": {"autoscale": {"rule": "utilization"}}}))
    resolved = preflight(from_dict({"cluster": {"autoscale": {"rule": "utilization"}}}))
    # The profile's waits are written into the resolved config, which is saved beside the results.
    assert (resolved.cluster.autoscale.provision_s, resolved.cluster.autoscale.model_load_s) == (120.0, 8.5)


def test_a_static_cluster_logs_nothing_and_bills_its_size():
    exp = experiment(cluster__gpus=2, systems=["vanilla"])
    rec, series = simulate(Vanilla(), np.array([0.0, 0.0, 0.0]), np.arange(3), np.zeros(3, np.int32), exp, P100, 7)
    assert "gpus_log" not in rec.attrs["engine"] and "gpus_held" not in series
    row = summarize(rec, profile=P100, exp=exp, system_stats=Vanilla().stats())
    assert row["gpu_hours_provisioned"] == pytest.approx(2 * 200 / 3600)
    assert (row["gpus_mean"], row["gpus_peak"]) == (2.0, 2)
