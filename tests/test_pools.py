"""Two-model systems (modm, cascade) on pools of their own, and the controller that moves GPUs
between the pools: decisions against MoDM's rule written out here, exact event logs of a cascade,
the PID split against a short independent computation, and the pools' invariants in a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support import OWN_SPACE, experiment, workload

from sim.base.config import CacheConfig, ClusterConfig, ControllerConfig, Experiment, from_dict
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.engine.core import simulate
from sim.engine.pool_split import LoadRule, ModmPidRule
from sim.engine.workers import job_work
from sim.systems import TraceArrays, build_system

PROFILE = load_profile("sdxl-a10g")
SMALL = PROFILE.gpu_model("small_model")
LARGE = PROFILE.gpu_model("model")


def modm_rule(similarity: float) -> tuple[int, float] | None:
    """MoDM's retrieve_best_image on the profile's retrieval line: (small-model steps, strength),
    None for a miss. Written from stsxxx/MoDM serving_system_MoDM.py and diffusers' img2img."""
    a = (30.28 - 17.4918 * (1.0 - min(similarity, 1.0))) / 100.0  # the shipped profile's line
    if a >= 0.30:
        strength = 0.4
    elif a >= 0.29:
        strength = 0.5
    elif a >= 0.28:
        strength = 0.7
    elif a >= 0.27:
        strength = 0.8
    elif a >= 0.25:
        strength = 0.9
    else:
        return None
    return max(1, int(4 * strength)), strength


def test_modm_decides_by_mordms_rule():
    arrays, lists = workload(900)
    exp = Experiment(selector=OWN_SPACE, systems=["modm"], cache=CacheConfig(capacity=300, policy="lru"))
    system = build_system("modm", exp, arrays, lists, PROFILE)
    seen = set()
    for i in range(900):
        d = system.lookup(i, float(i))
        system.complete(i, d, float(i))
        if d.outcome == "miss":
            assert d.steps == PROFILE.steps and system.pool_of(d) == 0 and d.quality == PROFILE.quality_vanilla
            continue
        assert d.outcome == "retrieval" and system.pool_of(d) == 1
        want = modm_rule(d.similarity)
        assert want is not None, (i, d.similarity)
        steps, strength = want
        retrieved = 30.28 - 17.4918 * (1.0 - min(d.similarity, 1.0))
        assert d.steps == steps
        assert d.k_used == round(50 * (1 - strength))
        assert d.quality == pytest.approx(retrieved + strength * (25.64 - retrieved))
        assert d.store_levels == (PROFILE.steps,)  # the refined image is cached under its prompt
        seen.add(strength)
    assert len(seen) >= 3  # the workload reaches several rungs


def test_modm_gate_is_the_lowest_rung():
    exp = Experiment(selector=OWN_SPACE, systems=["modm"])
    floor = build_system("modm", exp, *workload(50), PROFILE).acts_from
    # The line reaches 25.0 at 1 - 5.28/17.4918.
    assert floor == pytest.approx(1 - 5.28 / 17.4918, abs=2e-4)
    assert modm_rule(floor + 1e-3) is not None and modm_rule(floor - 1e-3) is None


def _cascade_run(arrival, prompts, rate, gpus=2):
    exp = experiment(systems=["cascade"], cluster__gpus=gpus, params={"cascade": {"escalation_rate": rate}})
    arrays = TraceArrays(np.asarray(prompts, np.int32), np.zeros(len(arrival), np.int32), np.asarray(arrival, float))
    system = build_system("cascade", exp, arrays, None, PROFILE)
    rec, _ = simulate(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 1)
    return rec, system


def test_cascade_event_log_by_hand():
    small = job_work(SMALL, SMALL.steps, False)
    large = job_work(LARGE, LARGE.steps, False)
    # Everything escalates: each request runs on the one small GPU, then on the one large GPU.
    rec, system = _cascade_run([0.0, 0.1, 0.2], [0, 1, 2], rate=1.0)
    s0 = [0.0, small, 2 * small]  # the small GPU, back to back
    f_small = [s + small for s in s0]
    l0 = []
    free = 0.0
    for f in f_small:  # the large GPU takes each escalation as it comes
        start = max(f, free)
        l0.append(start)
        free = start + large
    assert rec["start_s"].tolist() == pytest.approx([0.0, 0.1, 0.2][:1] + s0[1:])
    assert rec["finish_s"].tolist() == pytest.approx([s + large for s in l0])
    assert rec["gpu_s"].tolist() == pytest.approx([small + large] * 3)
    assert rec["steps"].tolist() == [SMALL.steps + LARGE.steps] * 3
    assert rec["model"].tolist() == [0, 0, 0] and (rec["outcome"] == "miss").all()
    assert system.stats()["escalations"] == 3
    # Nothing escalates: one small job each, and the image is the small model's.
    rec, _ = _cascade_run([0.0, 50.0], [0, 1], rate=0.0)
    assert rec["latency_s"].tolist() == pytest.approx([small, small])
    assert rec["model"].tolist() == [1, 1] and rec["quality"].tolist() == [25.64, 25.64]


def test_cascade_escalates_a_prompt_alike_every_time():
    prompts = np.arange(400) % 100
    rec, _ = _cascade_run(np.arange(400) * 30.0, prompts, rate=0.3, gpus=3)
    by_prompt = rec.groupby("prompt_id")["model"].nunique()
    assert (by_prompt == 1).all()
    share = float((rec.groupby("prompt_id")["model"].first() == 0).mean())
    assert 0.15 < share < 0.45  # 30 of 100 prompts expected, binomial spread


def independent_pid(targets, start, gains=(0.6, 0.05, 0.05), dt=1.0, most=6):
    """MoDM's PIDController.compute, written from its code: output = Kp e + Ki I + Kd D, clipped."""
    level, integral, prev, out = float(start), 0.0, 0.0, []
    for t in targets:
        e = t - level
        integral += e * dt
        d = (e - prev) / dt
        prev = e
        level += max(-most, min(most, gains[0] * e + gains[1] * integral + gains[2] * d))
        out.append(round(level))
    return out


def test_pid_split_follows_a_step_in_load():
    rule = ModmPidRule(ControllerConfig(rule="pid"), 6)
    # Main-model load of 1 GPU, small 0.5: MoDM's target is max(1, 6 - 1) = 5; then the main load
    # steps to 4.2 GPUs and the small to 1.7: max(5, 6 - 2) = 5 ... and main 2.1, small 3.5: max(3, 6 - 4) = 3.
    loads = [(1.0, 0.5)] * 3 + [(4.2, 1.7)] * 3 + [(2.1, 3.5)] * 6
    targets = [max(math.ceil(m), 6 - math.ceil(s / 0.9)) for m, s in loads]
    assert targets[:3] == [5] * 3 and targets[-1] == 3
    got, now = [], 2
    for m, s in loads:
        now = rule.main_gpus(m, s, now)
        got.append(now)
    assert got == independent_pid(targets, 2)
    assert got[-1] == 3


def test_load_rule_is_proportional():
    rule = LoadRule(ControllerConfig(rule="load"), 8)
    assert rule.main_gpus(3.0, 1.0, 4) == 6
    assert rule.main_gpus(0.0, 0.0, 4) == 4


@pytest.mark.parametrize("rule", ["load", "pid"])
def test_controller_keeps_every_gpu_and_pays_the_load_time(rule):
    arrays, lists = workload(900)
    # A step in load (slow first half, four times faster second half), from a split that starves
    # the main model: the controller must move GPUs to it.
    arrival = np.concatenate([np.arange(450) * 4.0, 1800.0 + np.arange(450) * 1.0])
    exp = Experiment(
        selector=OWN_SPACE,
        systems=["modm"],
        cache=CacheConfig(capacity=300, policy="lru"),
        cluster=from_dict({"cluster": {"gpus": 5, "pools": {"small_model": 3},
                                       "controller": {"rule": rule, "interval_s": 60, "load_s": 30.0}}}).cluster,
    )
    system = build_system("modm", exp, arrays, lists, PROFILE)
    rec, series = simulate(system, arrival, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 3)
    engine = rec.attrs["engine"]
    log = list(zip(*engine["pools_log"].values(), strict=True))
    assert all(main >= 1 and small >= 1 and main + small == 5 for _, main, small in log)
    assert engine["pool_moves"] > 0 and len(log) > 1
    assert "gpus_model" in series and "gpus_small_model" in series
    # No pool runs more jobs at once than it has GPUs serving (those loading serve neither).
    for pool in (0, 1):
        ran = rec[rec["replica"] == pool]
        events = sorted([(s, 1) for s in ran["start_s"]] + [(f, -1) for f in ran["finish_s"]])
        most = max(n for _, n, _ in log) if pool == 0 else max(n for _, _, n in log)
        running = 0
        for _, step in events:
            running += step
            assert running <= most
    assert rec["gpu_s"].sum() == pytest.approx(sum(r["gpu_busy_s"] for r in engine["replicas"]))
    # The main pool starts with 2 GPUs; the first move is asked for at the first tick (60 s) and
    # the GPU serves 30 s later: never a third main-model job at once before 90 s, later there is.
    main = rec[rec["replica"] == 0]
    events = sorted([(s, 1) for s in main["start_s"]] + [(f, -1) for f in main["finish_s"]])
    running, before, after = 0, 0, 0
    for t, step in events:
        running += step
        if t < 90.0 - 1e-9:
            before = max(before, running)
        else:
            after = max(after, running)
    assert before <= 2 < after


def held_seconds(log, start: float, end: float) -> float:
    """The integral of the held count (the log's second column), step by step, from the definition."""
    total = 0.0
    for k, entry in enumerate(log):
        lo, hi = max(entry[0], start), min(log[k + 1][0] if k + 1 < len(log) else math.inf, end)
        total += entry[1] * max(0.0, hi - lo)
    return total


@pytest.mark.parametrize("name", ["modm", "cascade"])
@pytest.mark.parametrize("rule", ["utilization", "queue-delay", "pid"])
def test_autoscaled_pools_keep_within_bounds_and_pay_for_what_they_held(name, rule):
    from sim.results.metrics import summarize

    arrays, lists = workload(900)
    # A step in load: one request per 8 s for an hour, then one a second.
    arrival = np.concatenate([np.arange(450) * 8.0, 3600.0 + np.arange(450) * 1.0])
    scale = {"rule": rule, "min_gpus": 2, "max_gpus": 6, "interval_s": 30, "provision_s": 45.0}
    exp = Experiment(
        selector=OWN_SPACE,
        systems=[name],
        cache=CacheConfig(capacity=300, policy="lru"),
        cluster=from_dict({"cluster": {"gpus": 3, "autoscale": scale}}).cluster,
    )
    system = build_system(name, exp, arrays, lists, PROFILE)
    rec, series = simulate(system, arrival, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 3)
    engine = rec.attrs["engine"]
    log = list(zip(*engine["gpus_log"].values(), strict=True))
    pools = list(zip(*engine["pools_log"].values(), strict=True))
    assert [t for t, _, _ in log] == [t for t, _, _ in pools]
    assert all(2 <= held <= 6 for _, held, _ in log) and len({held for _, held, _ in log}) > 1
    # Each pool keeps a GPU; the pools' GPUs held add up to the cluster's.
    assert all(main >= 1 and small >= 1 and main + small == held for (_, main, small), (_, held, _) in zip(pools, log, strict=True))
    assert "gpus_model" in series and "gpus_small_model" in series and "gpus_held" in series
    if name == "modm":  # one job per request: no pool runs more at once than it holds GPUs
        times = np.array([t for t, _, _ in pools])
        for k in (0, 1):
            ran = rec[rec["replica"] == k]
            running = 0
            for t, step in sorted([(s, 1) for s in ran["start_s"]] + [(f, -1) for f in ran["finish_s"]]):
                running += step
                assert running <= pools[int(np.searchsorted(times, t, side="right")) - 1][1 + k]
    row = summarize(rec, profile=PROFILE, exp=exp, system_stats=system.stats())
    start, end = float(arrival.min()), float(rec["finish_s"].max())
    assert row["gpu_hours_provisioned"] == pytest.approx(held_seconds(log, start, end) / 3600, rel=1e-12)
    assert row["gpus_peak"] == max(h for t, h, _ in log if t <= end)


@pytest.mark.parametrize(
    ("wants", "least", "most", "want"),
    [([3, 2], 1, 8, [3, 2]), ([0, 0], 1, 8, [1, 1]), ([6, 4], 1, 6, [3, 3]), ([7, 1], 2, 6, [5, 1]),
     ([1, 1], 5, 8, [4, 1]), ([4], 2, 3, [3]), ([0], 2, 3, [2])],
)
def test_the_pools_shares_from_their_definition(wants, least, most, want):
    from sim.engine.autoscaler import shares

    # At least one each; over the cap, the largest ask gives one GPU at a time (ties: the last
    # pool); under the floor, the largest gains one at a time (ties: the first).
    assert shares(wants, least, most) == want


def test_pools_config_errors():
    with pytest.raises(ConfigError, match=r"pools.*add up to 4"):
        from_dict({"cluster": {"gpus": 4, "pools": {"model": 3, "small_model": 2}}}).cluster.pool_split()
    with pytest.raises(ConfigError, match=r"pools.*tiny"):
        from_dict({"cluster": {"gpus": 4, "pools": {"tiny": 1}}})
    with pytest.raises(ConfigError, match=r"pools.small_model"):
        from_dict({"cluster": {"gpus": 4, "pools": {"small_model": 0}}})
    with pytest.raises(ConfigError, match=r"headroom"):
        from_dict({"cluster": {"controller": {"headroom": 1.5}}})
    assert from_dict({"cluster": {"gpus": 4, "pools": {"small_model": 3}}}).cluster.pool_split() == {"model": 1, "small_model": 3}
    assert ClusterConfig(gpus=5).pool_split() == {"model": 4, "small_model": 1}


def test_modm_jobs_run_in_their_models_pool_for_exactly_their_work():
    arrays, lists = workload(600)
    exp = Experiment(
        selector=OWN_SPACE,
        systems=["modm"],
        cache=CacheConfig(capacity=200, policy="lru"),
        cluster=ClusterConfig(gpus=3, pools={"small_model": 1}),
    )
    system = build_system("modm", exp, arrays, lists, PROFILE)
    rec, _ = simulate(system, arrays.arrival_s * 3.0, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 2)
    hit = (rec["outcome"] == "retrieval").to_numpy()
    assert 0 < hit.sum() < len(rec)
    assert (rec["replica"].to_numpy() == hit).all() and (rec["model"].to_numpy() == hit).all()
    for r in rec.itertuples():
        gpu = SMALL if r.outcome == "retrieval" else LARGE
        # Every generation keeps its image for the cache (the capacity is above zero).
        assert r.gpu_s == pytest.approx(job_work(gpu, r.steps, False, image=True), rel=1e-12)
        assert r.finish_s - r.start_s == pytest.approx(r.gpu_s, rel=1e-9)
    # Compute saved counts a hit's small-model steps in main-model steps.
    main = np.where(hit, rec["steps"] * SMALL.step_s(1) / LARGE.step_s(1), rec["steps"])
    assert rec["main_steps"].to_numpy() == pytest.approx(main)
    engine = rec.attrs["engine"]
    assert [r["model"] for r in engine["replicas"]] == ["model", "small_model"]
    assert [r["gpus"] for r in engine["replicas"]] == [2, 1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mode": "cache-only"}, "mode"),
        ({"cluster": {"gpus": 1}}, "cluster.gpus"),
        ({"cluster": {"gpus": 4, "autoscale": {"rule": "pid"}, "controller": {"rule": "pid"}}}, "cluster.controller.rule"),
        ({"cluster": {"gpus": 1, "autoscale": {"rule": "pid", "max_gpus": 1}}}, "cluster.autoscale.max_gpus"),
        ({"cluster": {"gpus": 4, "pools": {"small_model": 4}}}, "pools"),
        ({"cluster": {"gpus": 4, "controller": {"rule": "psychic"}}}, "cluster.controller.rule"),
    ],
)
def test_two_model_systems_refuse_what_they_cannot_run(change, field):
    from sim.app.preflight import preflight

    data = {"systems": ["vanilla", "cascade"], "mode": "full", "trace": {"source": "synthetic", "requests": 200},
            "selector": {"carried": False}, **change}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        preflight(from_dict(data))


def test_a_cascade_escalation_runs_the_requests_own_schedule():
    from sim.base.request_work import RequestWork

    exp = experiment(systems=["cascade"], cluster__gpus=2, params={"cascade": {"escalation_rate": 1.0}})
    arrays = TraceArrays(np.arange(3, dtype=np.int32), np.zeros(3, np.int32), np.array([0.0, 100.0, 200.0]))
    work = RequestWork.of(PROFILE.steps, 1024, steps=np.array([30.0, np.nan, 150.0]), n=3)
    system = build_system("cascade", exp, arrays, None, PROFILE)
    rec, _ = simulate(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 1, request_work=work)
    # The small model keeps its 4 steps; the large one runs each request's own 30, 50 and 150.
    assert rec["steps"].tolist() == [4 + 30, 4 + 50, 4 + 150]
    small = job_work(SMALL, SMALL.steps, False)
    assert rec["gpu_s"].tolist() == pytest.approx([small + job_work(LARGE, n, False, full_steps=n) for n in (30, 50, 150)])


def test_a_sweep_of_two_model_systems_static_and_autoscaled_draws_both_rows(tmp_path):
    import yaml

    from plots.data import load_results
    from sim.app.cli import main

    spec = {
        "name": "pools",
        "trace": {"source": "synthetic", "requests": 400, "arrival": {"process": "poisson", "rate": 0.3}},
        "embedder": "hashing",
        "selector": {"carried": False},
        "systems": ["vanilla", "modm"],
        "mode": "full",
        "cluster": {"gpus": 3, "autoscale": {"min_gpus": 2, "max_gpus": 5, "provision_s": 30.0}},
        "output": str(tmp_path / "out"),
        "sweep": {"zip": {"cluster.autoscale.rule": ["none", "queue-delay"]}},
    }
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), "--jobs", "1", "--quiet"]) == 0
    plots = tmp_path / "out-sweep" / "plots"
    assert (plots / "successors.png").is_file() and (plots / "autoscaling.png").is_file()
    table = (plots / "successors.md").read_text()
    assert table.count("| modm |") == 2 and "queue-delay" in table
    s = load_results(tmp_path / "out-sweep").summary.set_index(["cluster.autoscale.rule", "system"])
    # The static cluster holds its 3 GPUs; the autoscaled modm holds what its rule asked for.
    assert s.loc[("none", "modm"), "gpus_mean"] == pytest.approx(3.0)
    assert 2 <= s.loc[("queue-delay", "modm"), "gpus_mean"] <= 5
