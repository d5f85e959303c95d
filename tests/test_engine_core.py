"""The SimPy engine on small systems whose every number can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support import (
    A10G,
    EFS_FETCH,
    ExactPrompt,
    Retrieval,
    Vanilla,
    experiment,
    make_profile,
    run,
)

from sim.base.errors import ConfigError
from sim.engine import simulate


def service(profile, steps, saves):
    step = profile.step_s(1) + (profile.save_overhead_step_s if saves else 0.0)
    return profile.text_encoder_s + steps * step + profile.vae_decode_s


def test_light_load_latency_is_the_sum_of_its_parts():
    p = A10G
    sysm = ExactPrompt(np.array([0, 1, 0]))
    rec, _ = run(sysm, [0.0, 100.0, 200.0], [0, 1, 0])
    assert list(rec["outcome"].astype(str)) == ["miss", "miss", "hit"]
    lookup0 = p.embed_s + p.index_lookup_base_s  # nothing cached yet: log10(1) = 0
    lookup2 = p.embed_s + p.index_lookup_base_s + p.index_lookup_per_decade_s * np.log10(2)
    assert rec["lookup_s"].tolist() == pytest.approx([lookup0, p.embed_s + p.index_lookup_base_s, lookup2])
    assert rec["fetch_s"].tolist() == pytest.approx([0.0, 0.0, EFS_FETCH])
    miss, hit = service(p, 50, True), service(p, 25, False)
    assert rec["gpu_s"].tolist() == pytest.approx([miss, miss, hit])
    assert rec["queue_s"].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert rec["latency_s"].tolist() == pytest.approx(
        [lookup0 + miss, lookup0 + miss, lookup2 + EFS_FETCH + hit]
    )
    assert rec["k_used"].tolist() == [0, 0, 25] and rec["steps"].tolist() == [50, 50, 25]


def test_saving_latents_costs_gpu_time_as_in_the_artifact():
    """Artifact: 3.30 it/s for plain generation, 2.84 it/s while also saving the K latents."""
    p = A10G
    saving, _ = run(ExactPrompt(np.array([0])), [0.0], [0])  # a miss stores 5 latents
    plain, _ = run(Vanilla(50), [0.0], [0])  # stores nothing
    denoise = lambda rec: rec["gpu_s"].iloc[0] - p.text_encoder_s - p.vae_decode_s  # noqa: E731
    assert 50 / denoise(plain) == pytest.approx(3.30, abs=0.01)
    assert 50 / denoise(saving) == pytest.approx(2.84, abs=0.01)
    # Per image, as in the artifact's README: about 15 s plain and 17 s while saving.
    assert 15.0 < plain["gpu_s"].iloc[0] < 16.0 and 17.0 < saving["gpu_s"].iloc[0] < 18.2


def test_storing_only_the_final_image_costs_no_extra_gpu_time():
    sysm = Retrieval(np.array([0]))  # a miss stores level N (the image), not intermediate latents
    rec, _ = run(sysm, [0.0], [0])
    assert rec["gpu_s"].iloc[0] == pytest.approx(service(A10G, 50, False))


def test_completion_happens_when_the_gpu_finishes():
    sysm = ExactPrompt(np.array([0, 0, 0]))
    # The second request arrives while the first still runs: nothing is cached yet, it misses.
    rec, _ = run(sysm, [0.0, 5.0, 60.0], [0, 0, 0])
    assert list(rec["outcome"].astype(str)) == ["miss", "miss", "hit"]
    completes = {i: t for kind, i, t in sysm.log if kind == "complete"}
    lookups = {i: t for kind, i, t in sysm.log if kind == "lookup"}
    for i in range(3):
        assert completes[i] == pytest.approx(rec["finish_s"].iloc[i])
        assert lookups[i] == pytest.approx(rec["arrival_s"].iloc[i] + A10G.embed_s)
    # The second waited for the one GPU.
    assert rec["queue_s"].iloc[1] == pytest.approx(rec["finish_s"].iloc[0] - 5.0 - rec["lookup_s"].iloc[1])


def test_retrievals_skip_the_gpu():
    sysm = Retrieval(np.array([0, 0]))
    rec, _ = run(sysm, [0.0, 100.0], [0, 0])
    hit = rec.iloc[1]
    assert hit["outcome"] == "retrieval" and hit["steps"] == 0 and hit["gpu_s"] == 0.0
    assert hit["start_s"] == hit["finish_s"]
    assert hit["latency_s"] == pytest.approx(hit["lookup_s"] + EFS_FETCH)
    assert rec.attrs["engine"]["gpu_busy_s"] == pytest.approx(rec["gpu_s"].iloc[0])


def test_same_inputs_and_seed_give_the_same_records():
    rng = np.random.default_rng(3)
    arrival = np.cumsum(rng.exponential(4.0, 3000))
    prompts = rng.integers(0, 400, 3000)
    exp = experiment(
        cluster__gpus=4, predictor__kind="model", predictor__precision=0.8, predictor__recall=0.7
    )
    a, sa = run(ExactPrompt(prompts), arrival, prompts, exp)
    b, sb = run(ExactPrompt(prompts), arrival, prompts, exp)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(sa, sb)
    assert a.attrs["engine"] == b.attrs["engine"]


def test_batches_share_a_gpu_step():
    p = A10G
    exp = experiment(cluster__batch={"max_batch": 4, "max_wait_s": 1.0})
    rec, _ = run(Vanilla(50), [0.0, 0.1, 0.2, 0.3, 100.0], [0, 1, 2, 3, 4], exp)
    first = rec.iloc[:4]
    batch = p.text_encoder_s + 50 * p.step_s(4) + 4 * p.vae_decode_s
    # Four jobs reached max_batch at t = 0.3: one batch, all finishing together.
    assert first["start_s"].tolist() == pytest.approx([0.3] * 4)
    assert first["finish_s"].tolist() == pytest.approx([0.3 + batch] * 4)
    assert first["gpu_s"].sum() == pytest.approx(batch)
    # A lone job waits max_wait_s for company, then runs as a batch of one.
    last = rec.iloc[4]
    assert last["start_s"] == pytest.approx(101.0)
    assert last["gpu_s"] == pytest.approx(service(p, 50, False))
    assert rec.attrs["engine"]["batches"] == 2


def test_a_job_left_waiting_by_a_freed_gpu_starts_at_its_deadline():
    p = A10G
    exp = experiment(cluster__batch={"max_batch": 4, "max_wait_s": 1.0})
    alone = service(p, 50, False)
    # The first job runs 1.0 .. 1.0 + alone; the second arrives 0.5 s before that ends.
    second = 1.0 + alone - 0.5
    rec, _ = run(Vanilla(50), [0.0, second], [0, 1], exp)
    assert rec["start_s"].tolist() == pytest.approx([1.0, second + 1.0])


def test_sjf_serves_the_fewest_steps_first():
    steps = np.array([50, 50, 10, 30])
    arrival = [0.0, 1.0, 2.0, 3.0]  # all behind the first on one GPU
    fcfs, _ = run(Vanilla(steps), arrival, [0, 1, 2, 3])
    sjf, _ = run(Vanilla(steps), arrival, [0, 1, 2, 3], experiment(cluster__queue="sjf"))
    assert list(np.argsort(fcfs["start_s"].to_numpy())) == [0, 1, 2, 3]
    assert list(np.argsort(sjf["start_s"].to_numpy())) == [0, 2, 3, 1]
    # Shortest first lowers the mean wait for the same work.
    assert sjf["queue_s"].mean() < fcfs["queue_s"].mean()
    assert sjf["gpu_s"].sum() == pytest.approx(fcfs["gpu_s"].sum())


def test_load_aware_asks_for_more_k_only_when_the_slo_is_at_risk():
    n = 400
    prompts = np.arange(n) % 20
    # One every 20 s on 2 GPUs (light), then one every 2 s (each hit takes ~9 s): the backlog builds up.
    arrival = np.concatenate([np.arange(40) * 20.0, 800.0 + np.arange(n - 40) * 2.0])
    exp = experiment(cluster__gpus=2, selector__load_aware=True, selector__slo_s=60.0)
    sysm = ExactPrompt(prompts)
    rec, _ = run(sysm, arrival, prompts, exp)
    boosts = np.asarray(sysm.boosts)
    assert rec["boost"].tolist() == boosts.tolist()
    assert boosts[:40].max() == 0  # light load at the start
    # Under the burst every request is boosted, and the boost holds the backlog near the SLO.
    assert boosts[-100:].min() >= 1
    assert rec["latency_s"].iloc[-100:].max() < 60.0 + 20.0
    # A boosted hit reuses more steps and so runs fewer.
    boosted_hits = rec[(rec["boost"] > 0) & (rec["outcome"] == "hit")]
    assert (boosted_hits["k_used"] > 25).all()
    plain, _ = run(ExactPrompt(prompts), arrival, prompts, experiment(cluster__gpus=2))
    assert plain["boost"].max() == 0
    assert plain["latency_s"].iloc[-100:].min() > 100.0  # without it the queue keeps growing
    assert rec["latency_s"].mean() < plain["latency_s"].mean()
    assert rec["steps"].sum() < plain["steps"].sum()


def test_tier_hierarchy_serves_recent_latents_from_the_fast_tier():
    five = 5 * 131072  # one miss stores five latents
    profile = make_profile(tiers={"host": {"capacity_bytes": 2 * five}})
    prompts = np.array([0, 1, 2, 3, 3, 0])
    exp = experiment(cache__tier="host,efs")
    rec, _ = run(ExactPrompt(prompts), np.arange(6) * 100.0, prompts, exp, profile=profile)
    host = profile.tiers["host"].fetch_s(131072)
    # Prompt 3 was stored last (in host memory); prompt 0 has three prompts' bytes after it (EFS).
    assert rec["fetch_s"].iloc[4] == pytest.approx(host)
    assert rec["fetch_s"].iloc[5] == pytest.approx(EFS_FETCH)
    assert rec.attrs["engine"]["tier"] == "host,efs"


@pytest.mark.parametrize(
    ("tier", "message"), [("tape", "unknown tier 'tape'"), ("efs,host", "unbounded"), (",", "allowed")]
)
def test_bad_tier_names_are_config_errors(tier, message):
    with pytest.raises(ConfigError, match=message):
        run(Vanilla(), [0.0], [0], experiment(cache__tier=tier))


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match="differ in length"):
        simulate(Vanilla(), np.zeros(3), np.zeros(2), np.zeros(3), experiment(), A10G, seed=1)
    with pytest.raises(ValueError, match="non-decreasing"):
        simulate(Vanilla(), np.array([1.0, 0.5]), np.zeros(2), np.zeros(2), experiment(), A10G, seed=1)


def test_empty_trace_gives_empty_records():
    rec, series = simulate(Vanilla(), np.zeros(0), np.zeros(0), np.zeros(0), experiment(), A10G, seed=1)
    assert len(rec) == 0 and "boost" in rec
    assert len(series) == 1 and series["arrivals"].sum() == 0


@pytest.mark.parametrize("name", ["vanilla", "exact", "gptcache"])
def test_load_aware_leaves_a_system_without_a_ladder_alone(name):
    # Under a burst vanilla and the exact cache would be "boosted", but they have no K to move
    # along: the engine asks them for no boost, and the summary has nothing traded.
    from sim.results.metrics import summarize
    from sim.systems import SYSTEMS, TraceArrays, build_system

    n = 300
    prompts = np.arange(n) % 30
    arrival = np.arange(n) * 2.0  # a request per 2 s on 2 GPUs: the backlog builds up
    exp = experiment(systems=[name], cluster__gpus=2, selector__load_aware=True, selector__slo_s=60.0,
                     params={"gptcache": {"space": "embedder"}})
    arrays = TraceArrays(prompts.astype(np.int32), np.zeros(n, np.int32), arrival)
    emb = np.eye(30, dtype=np.float32)
    from sim.neighbours import build_neighbours

    lists = build_neighbours(emb, arrays.prompt_ids, 16, 0.5, index="exact", progress=False)
    system = build_system(name, exp, arrays, lists, A10G)
    assert not SYSTEMS[name].takes_boost
    rec, _ = run(system, arrival, prompts, exp)
    assert rec["boost"].max() == 0 and rec.attrs["engine"]["boosted"] == 0
    row = summarize(rec, profile=A10G, exp=exp, system_stats=system.stats())
    assert row["quality_traded"] == 0.0 and row["boosted_share"] == 0.0
