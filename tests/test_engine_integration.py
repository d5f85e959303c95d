"""The engine with the real systems of sim.systems: agreement with the cache-only replay,
the cost of saving latents, load-aware K and the summary of a whole comparison."""

from __future__ import annotations

import numpy as np
import pytest
from support import assert_littles_law, experiment

from sim.base.profile import load_profile
from sim.engine import simulate
from sim.engine.replay import replay
from sim.results.metrics import summarize
from sim.systems import SYSTEMS, TraceArrays, build_system

PROFILE = load_profile("sdxl-a10g")
COMPARED = ["outcome", "matched", "k_planned", "k_used", "steps", "quality"]

# Systems of one model: the compiled cache-only replay agrees with the engine on them (a
# two-model system runs its pools in full mode only).
ONE_MODEL = sorted(n for n, cls in SYSTEMS.items() if not cls.pool_models)


def clustered_trace(n: int, seed: int = 0, dim: int = 32, topics: int = 40, gap_s: float = 30.0):
    """Prompts as noisy copies of a few topic vectors (near neighbours at many similarities),
    with exact repeats; arrivals ``gap_s`` apart on average, never closer than 20 s."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim))
    n_prompts = n * 3 // 4
    noise = rng.uniform(0.05, 0.9, n_prompts)[:, None]
    emb = centres[rng.integers(0, topics, n_prompts)] + noise * rng.normal(size=(n_prompts, dim))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    # Prompt ids in order of first appearance, a quarter of the requests repeat an earlier prompt.
    ids, nxt = np.empty(n, dtype=np.int32), 0
    for i in range(n):
        if nxt and (nxt >= n_prompts or rng.random() < 0.25):
            ids[i] = rng.integers(0, nxt)
        else:
            ids[i], nxt = nxt, nxt + 1
    # At least 20 s apart: longer than one generation (17.6 s), so the trace is light load as given.
    arrival = np.cumsum(20.0 + rng.exponential(gap_s - 20.0, n))
    users = rng.integers(0, 20, n).astype(np.int32)
    return TraceArrays(ids, users, arrival), emb[:nxt]


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    from sim.neighbours import build_neighbours

    arrays, emb = clustered_trace(3000)
    nb = build_neighbours(
        emb,
        arrays.prompt_ids,
        top_m=8,
        min_similarity=0.6,
        index="exact",
        cache_dir=tmp_path_factory.mktemp("nb"),
        cache_key="engine-test",
        progress=False,
    )
    return arrays, emb, nb


def full_and_cache_only(name, exp, arrays, nb, profile=PROFILE, emb=None):
    full, _ = simulate(
        build_system(name, exp, arrays, nb, profile),
        arrays.arrival_s,
        arrays.prompt_ids,
        arrays.user_codes,
        exp,
        profile,
        seed=1,
        embeddings=emb,
    )
    assert_littles_law(full)
    cache_only = replay(
        build_system(name, exp, arrays, nb, profile), arrays.arrival_s, arrays.prompt_ids, arrays.user_codes
    )
    return full, cache_only


@pytest.mark.parametrize("name", ONE_MODEL)
def test_full_and_cache_only_agree_at_light_load(trace, name):
    arrays, _, nb = trace
    # Every generation ends before the next request arrives.
    exp = experiment(systems=[name], cluster__gpus=16, cache__capacity=600, cache__policy="lcbfu")
    full, cache_only = full_and_cache_only(name, exp, arrays, nb)
    assert full["queue_s"].max() == 0.0
    for col in COMPARED:
        assert full[col].tolist() == cache_only[col].tolist(), col
    np.testing.assert_array_equal(full["similarity"].to_numpy(), cache_only["similarity"].to_numpy())
    if SYSTEMS[name].needs_neighbours:
        # The test trace exercises reuse and evictions, not just misses (and holes for latent
        # caches: a ceiling, with room for everything, never has one).
        assert (full["outcome"] != "miss").sum() > 300
        cls = SYSTEMS[name]
        assert (full["outcome"] == "hole").any() == (cls.saves_latents and cls.caches)
    # The cache-only summary computes GPU time from steps and saved latents: the same as the engine's.
    stats = build_system(name, exp, arrays, nb, PROFILE).stats()
    busy_full = summarize(full, profile=PROFILE, exp=exp, system_stats=stats)["gpu_busy_s"]
    busy_est = summarize(cache_only, profile=PROFILE, exp=exp, system_stats=stats)["gpu_busy_s"]
    assert busy_est == pytest.approx(busy_full, rel=1e-9)


@pytest.mark.parametrize("name", ONE_MODEL)
@pytest.mark.parametrize("cache", [{"capacity": 0}, {"capacity": 600, "store_on_hit": False}])
def test_both_modes_charge_the_same_gpu_time(trace, name, cache):
    """Whatever a system stores (nothing at capacity 0; only misses without store_on_hit), the two
    modes charge the same GPU-seconds: saving latents is decided per request by the system."""
    arrays, _, nb = trace
    exp = experiment(systems=[name], cluster__gpus=16, **{f"cache__{k}": v for k, v in cache.items()})
    full, cache_only = full_and_cache_only(name, exp, arrays, nb)
    assert full["saved_latents"].tolist() == cache_only["saved_latents"].tolist()
    stats = build_system(name, exp, arrays, nb, PROFILE).stats()
    busy_full = summarize(full, profile=PROFILE, exp=exp, system_stats=stats)["gpu_busy_s"]
    busy_est = summarize(cache_only, profile=PROFILE, exp=exp, system_stats=stats)["gpu_busy_s"]
    assert busy_est == pytest.approx(busy_full, rel=1e-9)
    if cache["capacity"] == 0 and SYSTEMS[name].caches:  # a ceiling's cache is unbounded by definition
        # A cache that stores nothing reuses nothing: every image is a plain generation.
        vanilla = 50 * PROFILE.step_s(1) + PROFILE.text_encoder_s + PROFILE.vae_decode_s
        assert busy_full == pytest.approx(len(full) * vanilla, rel=1e-9)


def test_under_load_nothing_is_reused_before_its_generation_finished(trace):
    arrays, _, nb = trace
    fast = TraceArrays(arrays.prompt_ids, arrays.user_codes, arrays.arrival_s / 15)  # one request every 2 s
    exp = experiment(systems=["nirvana"], cluster__gpus=4, cache__capacity=600)
    full, cache_only = full_and_cache_only("nirvana", exp, fast, nb)
    assert full["queue_s"].mean() > 10
    # Latents are stored when the GPU finishes, so under load the decisions differ from the
    # cache-only replay (where every generation finishes at once) ...
    assert (full["outcome"] != cache_only["outcome"]).sum() > 100
    # ... and every reuse comes from a prompt whose generation had finished at lookup time.
    first_done = full.groupby("prompt_id")["finish_s"].min()
    reused = full[full["matched"] >= 0]
    lookup_at = reused["arrival_s"] + PROFILE.embed_s
    assert (first_done.loc[reused["matched"]].to_numpy() <= lookup_at.to_numpy() + 1e-9).all()
    # Cache-only replay has reuses that the loaded cluster could not have made.
    early = cache_only[cache_only["matched"] >= 0]
    assert (
        first_done.loc[early["matched"]].to_numpy() > early["arrival_s"].to_numpy() + PROFILE.embed_s
    ).any()


def test_nirvana_misses_pay_for_saving_latents(trace):
    arrays, _, nb = trace
    exp = experiment(systems=["nirvana"], cluster__gpus=16, cache__capacity=600)
    full, _ = full_and_cache_only("nirvana", exp, arrays, nb)
    p = PROFILE
    misses = full[full["outcome"] == "miss"]
    denoise = misses["gpu_s"] - p.text_encoder_s - p.vae_decode_s
    assert np.allclose(50 / denoise, 2.84, atol=0.01)  # saving five latents: 2.84 it/s
    van, _ = full_and_cache_only("vanilla", exp, arrays, nb)
    assert np.allclose(50 / (van["gpu_s"] - p.text_encoder_s - p.vae_decode_s), 3.30, atol=0.01)


def test_load_aware_trades_quality_for_latency(trace):
    arrays, _, nb = trace
    # ~1 request / 2.7 s on 4 GPUs: just over capacity (offered load ~1.07) without load-aware K,
    # the queue keeps growing.
    fast = TraceArrays(arrays.prompt_ids, arrays.user_codes, arrays.arrival_s / 11)
    base = {"systems": ["nirvana"], "cluster__gpus": 4, "cache__capacity": 600, "selector__slo_s": 40.0}
    plain_exp = experiment(**base)
    la_exp = experiment(**base, selector__load_aware=True, selector__floor=0.6)
    plain, _ = full_and_cache_only("nirvana", plain_exp, fast, nb)
    la, _ = full_and_cache_only("nirvana", la_exp, fast, nb)
    stats = build_system("nirvana", plain_exp, fast, nb, PROFILE).stats()
    row_plain = summarize(plain, profile=PROFILE, exp=plain_exp, system_stats=stats)
    row_la = summarize(la, profile=PROFILE, exp=la_exp, system_stats=stats)
    assert row_plain["offered_load"] > 1 and row_la["boosted_share"] > 0.2
    assert row_plain["slo_attainment"] < 0.1 and row_la["slo_attainment"] > 0.9
    assert row_la["p95_latency_s"] < row_plain["p95_latency_s"] / 5
    assert row_la["compute_saved"] > row_plain["compute_saved"]
    assert row_la["quality_traded"] > 0
    assert row_la["quality_clip"] < row_plain["quality_clip"]


def test_comparison_of_the_four_systems(trace):
    arrays, emb, nb = trace
    rows = {}
    for name in sorted(SYSTEMS):
        exp = experiment(systems=[name], cluster__gpus=2, cache__capacity=600)  # two-model: one GPU per model
        system = build_system(name, exp, arrays, nb, PROFILE)
        rec, series = simulate(
            system,
            arrays.arrival_s / 2,
            arrays.prompt_ids,
            arrays.user_codes,
            exp,
            PROFILE,
            seed=1,
            embeddings=emb,
        )
        rows[name] = summarize(rec, profile=PROFILE, exp=exp, system_stats=system.stats())
        assert series["arrivals"].sum() == len(rec)
    v, n = rows["vanilla"], rows["nirvana"]
    assert v["compute_saved"] == 0.0 and v["hit_rate"] == 0.0
    assert 0 < n["compute_saved"] < 0.5
    assert n["gpu_busy_s"] < v["gpu_busy_s"] * (1 + PROFILE.save_overhead_step_s / PROFILE.step_s(1))
    assert rows["gptcache"]["quality_clip"] < n["quality_clip"] < v["quality_clip"]
    assert n["storage_usd"] > 0 and n["index_usd"] > 0 and v["storage_usd"] == 0
    assert rows["exact"]["index_usd"] == 0
    # The small model's few cheap steps save most of the compute, at the lowest quality but CRS's;
    # CRS never runs the GPU and returns corpus images for every prompt.
    small, crs = rows["smallmodel"], rows["crs"]
    assert small["compute_saved"] > 0.9 and small["quality_clip"] < rows["gptcache"]["quality_clip"]
    assert crs["hit_rate"] == 1.0 and crs["gpu_busy_s"] == 0.0 and crs["quality_clip"] < small["quality_clip"]
    assert rows["pinecone"]["lookup_kind"] == "vector" and rows["pinecone"]["hit_rate"] > 0
    for name, r in rows.items():
        assert r["cost_usd"] > 0 and 0 <= r["gpu_utilization"] <= 1
        assert (r["gpu_utilization"] > 0) == (name != "crs")
