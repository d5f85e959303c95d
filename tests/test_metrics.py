"""Summary rows and per-minute series, checked on runs small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from support import Vanilla, assert_littles_law, experiment, service_only_profile

from sim.base.profile import load_profile
from sim.engine import simulate
from sim.engine.replay import replay
from sim.results.metrics import quality_traded, summarize, timeseries
from sim.reuse.quality import QualityModel
from sim.reuse.selector import Selector
from sim.reuse.similarity_space import run_space
from sim.systems import TraceArrays, build_system

SUMMARY_COLUMNS = [
    "system",
    "policy",
    "cache_capacity",
    "requests",
    "hit_rate",
    "compute_saved",
    "mean_latency_s",
    "p50_latency_s",
    "p95_latency_s",
    "p99_latency_s",
    "mean_queue_s",
    "throughput_rps",
    "gpu_busy_s",
    "gpu_utilization",
    "offered_load",
    "slo_attainment",
    "quality_clip",
    "quality_pickscore",
    "quality_fid",
    "cost_usd",
    "cost_per_1k_images_usd",
    "holes",
    "evictions",
]


@pytest.fixture(scope="module")
def three_jobs():
    """One GPU, 10 s per job, arrivals at 0, 5 and 30 s: jobs run 0-10, 10-20 (after 5 s in queue), 30-40."""
    profile = service_only_profile(10.0)
    exp = experiment(selector__slo_s=12.0)
    rec, _ = simulate(
        Vanilla(50), np.array([0.0, 5.0, 30.0]), np.arange(3), np.zeros(3), exp, profile, seed=1
    )
    assert_littles_law(rec)
    return rec, profile, exp


def test_summary_of_a_run_worked_out_by_hand(three_jobs):
    rec, profile, exp = three_jobs
    row = summarize(rec, profile=profile, exp=exp, system_stats=Vanilla(50).stats())
    assert list(row)[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    assert row["system"] == "vanilla" and row["requests"] == 3
    assert row["hit_rate"] == 0.0 and row["compute_saved"] == 0.0
    assert row["mean_latency_s"] == pytest.approx(35 / 3)
    assert row["p50_latency_s"] == pytest.approx(10.0)
    assert row["mean_queue_s"] == pytest.approx(5 / 3)
    assert row["throughput_rps"] == pytest.approx(3 / 40)
    assert row["gpu_busy_s"] == pytest.approx(30.0)
    assert row["gpu_utilization"] == pytest.approx(0.75)  # 30 GPU-s busy over 40 s
    assert row["offered_load"] == pytest.approx(1.0)  # 30 GPU-s of work arriving within 30 s
    assert row["slo_attainment"] == pytest.approx(2 / 3)  # 15 s > the 12 s SLO
    assert row["quality_clip"] == pytest.approx(30.28)
    # Vanilla keeps no cache and no index: its bill is busy GPU time only.
    assert row["cost_usd"] == pytest.approx(30 / 3600 * profile.gpu_price_per_hour_usd)
    assert row["cost_per_1k_images_usd"] == pytest.approx(1000 * row["cost_usd"] / 3)
    assert row["storage_usd"] == 0.0 and row["index_usd"] == 0.0
    assert row["cost_provisioned_usd"] == pytest.approx(40 / 3600 * profile.gpu_price_per_hour_usd)
    assert row["holes"] == 0 and row["evictions"] == 0


def test_series_worked_out_by_hand(three_jobs):
    rec, _, _ = three_jobs
    ts = timeseries(rec, bin_s=10.0, gpus=1)
    assert ts["t_s"].tolist() == [0.0, 10.0, 20.0, 30.0]
    assert ts["arrivals"].tolist() == [2, 0, 0, 1]
    assert ts["completions"].tolist() == [0, 1, 1, 1]  # at 10, 20 and 40 s (bins are [a, b))
    assert ts["queue_len"].tolist() == pytest.approx([0.5, 0.0, 0.0, 0.0])
    assert ts["in_system"].tolist() == pytest.approx([1.5, 1.0, 0.0, 1.0])
    assert ts["utilization"].tolist() == pytest.approx([1.0, 1.0, 0.0, 1.0])
    assert ts["hit_rate"].tolist()[0] == 0.0 and math.isnan(ts["hit_rate"].iloc[1])
    assert ts["mean_latency_s"].iloc[0] == pytest.approx(12.5)


def test_series_integrate_to_the_records():
    profile = service_only_profile(7.0)
    rng = np.random.default_rng(4)
    arrival = np.cumsum(rng.exponential(2.0, 3000))
    exp = experiment(cluster__gpus=4)
    rec, series = simulate(Vanilla(50), arrival, np.arange(3000), np.zeros(3000), exp, profile, seed=1)
    assert_littles_law(rec)
    assert series["arrivals"].sum() == 3000 and series["completions"].sum() == 3000
    assert (series["queue_len"] * 60).sum() == pytest.approx(rec["queue_s"].sum())
    assert (series["in_system"] * 60).sum() == pytest.approx(rec["latency_s"].sum())
    assert (series["busy_gpus"] * 60).sum() == pytest.approx(rec["gpu_s"].sum())
    assert series["utilization"].max() <= 1.0 + 1e-9


def test_cache_only_records_give_nan_latency_and_estimated_gpu_time():
    profile = load_profile("sdxl-a10g")
    exp = experiment(systems=["exact"], cache__capacity=100)
    prompts = np.array([0, 0, 1, 0], dtype=np.int32)
    arrays = TraceArrays(prompts, np.full(4, -1, dtype=np.int32), np.array([0.0, 60.0, 120.0, 3600.0]))
    system = build_system("exact", exp, arrays, None, profile)
    rec = replay(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    row = summarize(rec, profile=profile, exp=exp, system_stats=system.stats())
    for col in (
        "mean_latency_s",
        "p50_latency_s",
        "p95_latency_s",
        "p99_latency_s",
        "mean_queue_s",
        "slo_attainment",
    ):
        assert math.isnan(row[col]), col
    assert row["hit_rate"] == 0.5 and row["compute_saved"] == 0.5
    one = profile.text_encoder_s + 50 * profile.step_s(1) + profile.vae_decode_s
    assert row["gpu_busy_s"] == pytest.approx(2 * one)
    assert row["throughput_rps"] == pytest.approx(4 / 3600)
    # No queue, no finish times: utilisation is unknown, offered load is the work per GPU-second.
    assert math.isnan(row["gpu_utilization"])
    assert row["offered_load"] == pytest.approx(2 * one / (exp.cluster.gpus * 3600))
    # The exact cache stores images (storage billed) but has no vector index.
    assert row["storage_usd"] > 0 and row["index_usd"] == 0.0
    assert row["cost_usd"] == pytest.approx(2 * one / 3600 * 1.006 + row["storage_usd"])
    series = timeseries(rec, bin_s=60.0, gpus=4)
    assert series["arrivals"].sum() == 4 and series["queue_len"].isna().all()
    assert series["hit_rate"].iloc[1] == 1.0


def test_quality_traded_by_load_aware_boosts():
    profile = load_profile("sdxl-a10g")
    exp = experiment(selector__load_aware=True)
    q = profile.quality_for_k
    rec = pd.DataFrame(
        {
            "similarity": [0.86, 0.86, np.nan, 0.99],
            # A boost of 2 took the 0.86 match from K = 15 to K = 25; the others were not boosted.
            "quality": [q(25), q(15), q(0), q(25)],
            "boost": [2, 0, 0, 0],
        }
    )
    selector, quality = Selector.from_config(exp, profile), QualityModel(profile, run_space(exp))
    assert quality_traded(rec, selector, quality) == pytest.approx((q(15) - q(25)) / 4)
    assert quality_traded(rec.assign(boost=0), selector, quality) == 0.0
    # Boosted requests from a system that reports no selector cannot be valued.
    with pytest.raises(ValueError, match="no selector"):
        quality_traded(rec, None, None)


@pytest.mark.parametrize("warmup", [1, "20s"])
def test_warmup_is_left_out_of_every_figure_and_said_so(three_jobs, warmup):
    """Leaving out the first request (``warmup: 1``), or the requests that arrived within 20 s of
    the first (the first two), gives the summary of the remaining requests alone."""
    rec, profile, _ = three_jobs
    exp = experiment(selector__slo_s=12.0, metrics__warmup=warmup)
    row = summarize(rec, profile=profile, exp=exp, system_stats=Vanilla(50).stats())
    kept = [1, 2] if warmup == 1 else [2]
    assert row["warmup_excluded"] == 3 - len(kept) and row["requests"] == len(kept)
    assert row["measured_from_s"] == rec["arrival_s"].iloc[kept[0]]
    assert row["mean_latency_s"] == pytest.approx(rec["latency_s"].iloc[kept].mean())
    assert row["slo_attainment"] == pytest.approx((rec["latency_s"].iloc[kept] <= 12.0).mean())
    # The measured window runs from the first measured arrival to the last measured finish.
    span = rec["finish_s"].iloc[kept].max() - rec["arrival_s"].iloc[kept[0]]
    assert row["throughput_rps"] == pytest.approx(len(kept) / span)
    assert row["gpu_hours_provisioned"] == pytest.approx(1 * span / 3600)
    assert row["gpu_busy_s"] == pytest.approx(10.0 * len(kept))
    plain = summarize(rec, profile=profile, exp=experiment(selector__slo_s=12.0), system_stats=Vanilla(50).stats())
    assert plain["warmup_excluded"] == 0 and plain["requests"] == 3


def test_warmup_that_leaves_nothing_is_an_error(three_jobs):
    from sim.base.errors import ConfigError

    rec, profile, _ = three_jobs
    for warmup in (3, "1h"):
        with pytest.raises(ConfigError, match="metrics.warmup"):
            summarize(rec, profile=profile, exp=experiment(metrics__warmup=warmup), system_stats=Vanilla(50).stats())


def test_warmup_applies_to_cache_only_records_too():
    profile = load_profile("sdxl-a10g")
    n = 400
    arrays = TraceArrays(np.arange(n, dtype=np.int32) % 40, np.zeros(n, np.int32), np.arange(n) * 10.0)
    exp = experiment(systems=["exact"], mode="cache-only", metrics__warmup=40)
    system = build_system("exact", exp, arrays, None, profile)
    records = replay(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    row = summarize(records, profile=profile, exp=exp, system_stats=system.stats())
    # The first 40 requests are the cold misses; every later one repeats a cached prompt.
    assert row["warmup_excluded"] == 40 and row["hit_rate"] == 1.0 and row["compute_saved"] == 1.0
    cold = summarize(records, profile=profile, exp=experiment(systems=["exact"], mode="cache-only"), system_stats=system.stats())
    assert cold["hit_rate"] == pytest.approx(360 / 400)


def test_the_summary_table_marks_the_ceiling_and_names_the_load():
    from sim.app.report import format_summary

    rows = pd.DataFrame(
        [
            {"system": "vanilla", "hit_rate": 0.0, "compute_saved": 0.0, "offered_load": 2.31,
             "gpu_utilization": np.nan, "is_baseline": True, "is_ceiling": False, "bounds": None},
            {"system": "nirvana", "hit_rate": 0.6, "compute_saved": 0.2, "offered_load": 1.85,
             "gpu_utilization": np.nan, "is_baseline": False, "is_ceiling": False, "bounds": None},
            {"system": "ceiling", "hit_rate": 0.7, "compute_saved": 0.25, "offered_load": 1.73,
             "gpu_utilization": np.nan, "is_baseline": False, "is_ceiling": True, "bounds": "nirvana"},
        ]
    )
    table = format_summary(rows)
    # Cache-only: work offered per GPU-second, not a utilisation (no column of NaNs for that).
    assert "offered load" in table and "231%" in table and "GPU util" not in table
    assert "ceiling (bound)" in table and "no nirvana policy or cache size can save more" in table
