"""Cache-only replay: records, summary figures, occupancy, and lists == live index."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from support import OWN_SPACE

from sim.base import strict_yaml
from sim.base.config import CacheConfig, Experiment
from sim.base.profile import PROFILE_DIR, load_profile, parse_profile
from sim.base.records import COLUMNS, OUTCOME_CODE, RecordBuffer
from sim.engine.replay import cache_summary, replay
from sim.neighbours import NeighbourLists, build_neighbours
from sim.systems import TraceArrays, build_system

PROFILE = load_profile("sdxl-a10g")
N = PROFILE.steps


def workload(n: int = 1500, seed: int = 5) -> tuple[TraceArrays, np.ndarray]:
    """Clustered unit embeddings, repeats and near-duplicates, 4 users."""
    rng = np.random.default_rng(seed)
    n_prompts = int(n * 0.7)
    centres = rng.normal(size=(n_prompts // 12, 32))
    emb = centres[rng.integers(0, len(centres), n_prompts)] + rng.normal(scale=0.3, size=(n_prompts, 32))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids, nxt = [], 0
    for _ in range(n):
        if nxt < n_prompts and (nxt == 0 or rng.random() < 0.7):
            pids.append(nxt)
            nxt += 1
        else:
            pids.append(int(rng.integers(max(0, nxt - 80), nxt)))
    pids = np.array(pids, np.int32)
    users = rng.integers(0, 4, n).astype(np.int32)
    arrival = np.cumsum(rng.exponential(5.0, n))
    return TraceArrays(pids, users, arrival), emb[: pids.max() + 1]


@pytest.fixture(scope="module")
def work() -> tuple[TraceArrays, np.ndarray]:
    return workload()


def lists(work, top_m: int) -> NeighbourLists:
    arrays, emb = work
    return build_neighbours(
        emb, arrays.prompt_ids, top_m=top_m, min_similarity=0.65, index="exact", progress=False
    )


def live(work) -> NeighbourLists:
    """No precomputed candidates at all: every lookup queries the full exact index."""
    arrays, emb = work
    n = len(arrays.prompt_ids)
    return NeighbourLists(
        offsets=np.zeros(n + 1, np.int64),
        ids=np.zeros(0, np.int32),
        sims=np.zeros(0, np.float32),
        complete=np.zeros(n, bool),
        top_m=0,
        min_similarity=0.65,
        index="exact",
        prompt_ids=arrays.prompt_ids,
        embeddings=emb,
    )


def counting(search, asked: list[int]):
    """A fallback search (``more`` or ``similarities``) that also notes which requests needed it."""

    def wrapped(i: int, arg):
        asked.append(i)
        return search(i, arg)

    return wrapped


def run(system: str, work, nb, compiled: bool = True, **cache: object) -> tuple[pd.DataFrame, dict]:
    arrays, _ = work
    exp = Experiment(selector=OWN_SPACE, cache=CacheConfig(**{"capacity": 150, "policy": "lcbfu", **cache}))
    sys_ = build_system(system, exp, arrays, nb, PROFILE)
    df = replay(sys_, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, compiled=compiled)
    return df, sys_.stats()


def test_records_shape_and_columns(work) -> None:
    arrays, _ = work
    df, _ = run("nirvana", work, lists(work, 8))
    assert tuple(df.columns) == COLUMNS and len(df) == len(arrays.prompt_ids)
    assert (df["system"] == "nirvana").all()
    np.testing.assert_array_equal(df["prompt_id"], arrays.prompt_ids)
    np.testing.assert_array_equal(df["user"], arrays.user_codes)
    np.testing.assert_allclose(df["arrival_s"], arrays.arrival_s)
    assert df[["start_s", "finish_s", "queue_s", "latency_s", "gpu_s"]].isna().all().all()
    assert set(df["outcome"]) <= {"miss", "hit", "hole"} and (df["outcome"] == "hit").any()
    hits = df[df["outcome"].isin(["hit", "hole"])]
    assert (hits["steps"] == N - hits["k_used"]).all() and (hits["k_used"] <= hits["k_planned"]).all()
    assert (hits["matched"] >= 0).all() and (df.loc[df["outcome"] == "miss", "steps"] == N).all()


def test_summary_figures(work) -> None:
    df, stats = run("nirvana", work, lists(work, 8))
    s = cache_summary(df, N, stats)
    assert s["requests"] == len(df)
    assert s["hit_rate"] == pytest.approx(df["outcome"].isin(["hit", "hole"]).mean())
    assert s["compute_saved"] == pytest.approx(df["k_used"].sum() / (len(df) * N))
    assert 0 < s["compute_saved"] < s["hit_rate"] and s["holes"] == stats["holes"]
    assert s["evictions"] == stats["evictions"] > 0
    assert s["quality_clip"] < PROFILE.quality_vanilla
    hits_by_k = df[df["outcome"].isin(["hit", "hole"])]["k_used"].value_counts().to_dict()
    assert stats["hits_by_k"] == hits_by_k


def test_occupancy_series(work) -> None:
    arrays, _ = work
    nb = lists(work, 8)
    sys_ = build_system("nirvana", Experiment(selector=OWN_SPACE, cache=CacheConfig(capacity=150)), arrays, nb, PROFILE)
    replay(sys_, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, occupancy_samples=50)
    occ = sys_.stats()["occupancy"]
    assert 50 <= len(occ) <= 51 and occ["time_s"].is_monotonic_increasing
    assert occ["entries"].max() == 150 and occ["entries"].iloc[0] <= 150
    assert occ["time_s"].iloc[-1] == pytest.approx(arrays.arrival_s[-1])


def test_vanilla_and_n_requests(work) -> None:
    arrays, _ = work
    sys_ = build_system("vanilla", Experiment(selector=OWN_SPACE), arrays, None, PROFILE)
    df = replay(sys_, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, n_requests=100)
    assert len(df) == 100 and cache_summary(df, N, sys_.stats())["compute_saved"] == 0.0
    with pytest.raises(ValueError, match="exceeds"):
        replay(sys_, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, n_requests=10**6)


@pytest.mark.parametrize(
    ("system", "cache"),
    [
        ("nirvana", {"policy": "lcbfu"}),
        ("nirvana", {"policy": "lru", "granularity": "prompt"}),
        ("nirvana", {"policy": "s3fifo", "isolation": "per-user"}),
        ("gptcache", {"policy": "lru", "capacity": 60}),
    ],
)
def test_neighbour_lists_equal_live_index(system: str, cache: dict, work) -> None:
    """Truncated lists (with the fallback) and full lists give the replay that queries the
    live exact index for every request, record for record, in the request loop and in the
    compiled replay (which decides its fallbacks itself)."""
    reference, _ = run(system, work, live(work), compiled=False, **cache)
    fallbacks: dict[int, set[int]] = {}
    for top_m in (0, 2, 32):
        for compiled in (False, True):
            nb = live(work) if top_m == 0 else lists(work, top_m)
            asked: list[int] = []
            nb.more = counting(nb.more, asked)
            nb.similarities = counting(nb.similarities, asked)
            df, stats = run(system, work, nb, compiled=compiled, **cache)
            pd.testing.assert_frame_equal(df, reference)
            if top_m == 2 and not compiled:
                assert len(asked) > 10, "the truncated lists must exercise the fallback"
            if system == "nirvana":  # both paths count the lookups a fallback decided
                fallbacks.setdefault(top_m, set()).add(stats["fallbacks"])
    if system == "nirvana":
        assert len(fallbacks[2]) == 1 and len(fallbacks[0]) == 1, fallbacks  # the same in both paths
        assert fallbacks[0] == {len(reference)} and 10 < min(fallbacks[2]) < len(reference)
    assert reference["outcome"].isin(["hit", "hole", "retrieval"]).mean() > 0.05


@pytest.mark.parametrize("policy", ["lru", "lcbfu", "fifo"])
def test_probed_fallback_is_the_same_in_both_paths(policy: str, work) -> None:
    """Once the cache holds more prompts than the ivf partition's budget, a fallback searches only
    the cells nearest the request: the compiled replay (cached slots kept per cell) and the request
    loop (counting the cache's prompts per cell) probe the same cells and decide alike."""
    arrays, emb = work
    exact, _ = run("nirvana", work, live(work), compiled=False, policy=policy)
    nb = build_neighbours(emb, arrays.prompt_ids, top_m=2, min_similarity=0.65, index="ivf", progress=False)
    assert nb.cells is not None and len(nb.cells.centroids) > 20
    # A budget of 12 prompts, 1 to 3 cells per search: most fallbacks see part of the cache.
    nb.cells = dataclasses.replace(nb.cells, budget=12, min_probes=1, max_probes=3)
    (slow, a), (fast, b) = (run("nirvana", work, nb, compiled=c, policy=policy) for c in (False, True))
    pd.testing.assert_frame_equal(fast, slow)
    pd.testing.assert_frame_equal(a.pop("occupancy"), b.pop("occupancy"))
    assert a == b
    cols = ["matched", "similarity", "k_planned", "k_used"]
    changed = int((slow[cols].fillna(-1) != exact[cols].fillna(-1)).any(axis=1).sum())
    assert 0 < changed < len(exact) // 4, changed  # some fallbacks missed the best cached prompt
    # With the default budget (more than the cache ever holds) the search is exact again.
    nb.cells = dataclasses.replace(nb.cells, budget=4096, min_probes=8, max_probes=64)
    pd.testing.assert_frame_equal(run("nirvana", work, nb, policy=policy)[0], exact)


def test_records_frame_takes_the_buffer_as_it_is() -> None:
    """The frame holds the buffer's own arrays: at millions of records a copy doubles their memory."""
    buf = RecordBuffer("nirvana", 5)
    buf.f["similarity"][:] = [0.9, np.nan, 0.7, 0.8, 0.95]
    buf.i["k_used"][:] = [10, 0, 5, 0, 25]
    buf.outcome[:] = [OUTCOME_CODE[o] for o in ("hit", "miss", "hole", "miss", "hit")]
    df = buf.to_frame()
    assert tuple(df.columns) == COLUMNS and list(df["system"]) == ["nirvana"] * 5
    assert list(df["outcome"]) == ["hit", "miss", "hole", "miss", "hit"]
    assert df["k_used"].tolist() == [10, 0, 5, 0, 25] and df["similarity"].isna().tolist() == [False, True, False, False, False]
    assert np.shares_memory(df["similarity"].to_numpy(), buf.f["similarity"])
    assert np.shares_memory(df["k_used"].to_numpy(), buf.i["k_used"])


@pytest.mark.parametrize(("steps", "dtype"), [(50, np.int8), (200, np.int16)])
def test_k_per_listed_candidate_takes_one_byte_when_every_k_fits(steps: int, dtype, work) -> None:
    """The K map (one K per listed candidate, hundreds of millions at DiffusionDB scale) is int8
    when the profile's N fits it, int16 beyond; both replay paths decide alike on either."""
    arrays, _ = work
    data = strict_yaml.read(PROFILE_DIR / "sdxl-a10g.yaml")
    data["model"]["steps"] = steps
    profile = parse_profile(data, "<test profile>")
    nb = lists(work, 8)
    exp = Experiment(selector=OWN_SPACE, cache=CacheConfig(capacity=150, policy="lcbfu"))
    fast, slow = (build_system("nirvana", exp, arrays, nb, profile) for _ in range(2))
    (kmap,) = nb.derived.values()
    assert kmap.dtype == dtype and len(kmap) == len(nb.ids)
    np.testing.assert_array_equal(kmap, fast.selector.k_array(nb.sims))
    args = (arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    records = replay(fast, *args)
    pd.testing.assert_frame_equal(records, replay(slow, *args, compiled=False))
    assert records["k_used"].max() == max(profile.k_levels)
