"""Systems: vanilla, exact, gptcache and nirvana decisions, isolation, fallbacks and stats."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from support import OWN_SPACE

from sim.base.config import CacheConfig, Experiment
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.systems import SYSTEMS, Decision, TraceArrays, build_system

PROFILE = load_profile("sdxl-a10g")
N = PROFILE.steps
LEVELS = PROFILE.k_levels


@dataclass
class Lists:
    """Hand-written causal neighbour lists (NeighbourLists layout); ``extra`` answers ``more``."""

    rows: list[list[tuple[int, float]]]
    complete_rows: list[bool] | None = None
    extra: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    min_similarity: float = 0.65
    more_calls: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.offsets = np.cumsum([0] + [len(r) for r in self.rows])
        self.ids = np.array([p for r in self.rows for p, _ in r], np.int32)
        self.sims = np.array([s for r in self.rows for _, s in r], np.float32)
        self.complete = np.array(self.complete_rows or [True] * len(self.rows))

    def more(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.more_calls.append((i, k))
        full = (self.rows[i] + self.extra.get(i, []))[:k]
        return np.array([p for p, _ in full], np.int32), np.array([s for _, s in full], np.float32)

    def similarities(self, i: int, prompts: np.ndarray) -> np.ndarray:
        self.more_calls.append((i, len(prompts)))
        known = dict(self.rows[i] + self.extra.get(i, []))
        return np.array([known.get(int(p), 0.0) for p in prompts], np.float32)


def arrays(pids: list[int], users: list[int] | None = None) -> TraceArrays:
    n = len(pids)
    return TraceArrays(
        np.array(pids, np.int32), np.array(users or [0] * n, np.int32), np.arange(n, dtype=float)
    )


def exp_with(**cache: object) -> Experiment:
    return Experiment(selector=OWN_SPACE, cache=CacheConfig(**{"capacity": 100, "policy": "lru", **cache}))


def run(sys_, n: int) -> list[Decision]:
    out = []
    for i in range(n):
        d = sys_.lookup(i, float(i))
        sys_.complete(i, d, float(i))
        out.append(d)
    return out


def test_registry_and_unknown_name() -> None:
    assert set(SYSTEMS) == {"vanilla", "exact", "gptcache", "nirvana", "ceiling", "pinecone", "crs", "smallmodel", "modm", "cascade"}
    with pytest.raises(ConfigError, match="allowed: cascade, ceiling, crs, exact, gptcache, modm, nirvana, pinecone, smallmodel, vanilla"):
        build_system("nirvanna", Experiment(selector=OWN_SPACE), arrays([0]), None, PROFILE)


def test_vanilla_runs_every_step() -> None:
    sys_ = build_system("vanilla", Experiment(selector=OWN_SPACE), arrays([0, 0, 1]), None, PROFILE)
    ds = run(sys_, 3)
    assert all(d.outcome == "bypass" and d.steps == N and d.quality == PROFILE.quality_vanilla for d in ds)
    assert sys_.cached_prompts() == 0 and sys_.stats()["lookups"] == 3


def test_exact_hits_identical_prompts_only() -> None:
    sys_ = build_system("exact", exp_with(), arrays([0, 1, 0, 2, 1]), None, PROFILE)
    ds = run(sys_, 5)
    assert [d.outcome for d in ds] == ["miss", "miss", "exact", "miss", "exact"]
    assert (ds[2].matched, ds[2].steps, ds[2].k_used, ds[2].quality) == (0, 0, N, PROFILE.quality_exact)
    assert ds[0].store_levels == (N,) and ds[2].store_levels == ()
    assert sys_.cached_prompts() == 3 and sys_.stats()["entries"] == 3


def test_gptcache_threshold_is_inclusive_and_returns_image() -> None:
    lists = Lists([[], [(0, 0.80)], [(0, 0.79)], [(1, 0.95), (0, 0.9)]])
    exp = Experiment(selector=OWN_SPACE, params={"gptcache": {"threshold": 0.8}}, cache=CacheConfig(capacity=10, policy="lru"))
    ds = run(build_system("gptcache", exp, arrays([0, 1, 2, 3]), lists, PROFILE), 4)
    assert [d.outcome for d in ds] == ["miss", "retrieval", "miss", "retrieval"]
    assert ds[1].steps == 0 and ds[1].quality == pytest.approx(PROFILE.quality_retrieval(0.80))
    assert math.isnan(ds[2].similarity)  # 0.79 is below the threshold: not a candidate at all
    # Request 1 was served, so prompt 1 stored nothing: request 3's nearest cached one is prompt 0.
    assert (ds[3].matched, ds[3].similarity) == (0, pytest.approx(0.9))


def test_gptcache_batch_evicts_a_fraction() -> None:
    exp = Experiment(selector=OWN_SPACE,
        params={"gptcache": {"evict_fraction": 0.2}}, cache=CacheConfig(capacity=10, policy="fifo")
    )
    lists = Lists([[] for _ in range(11)])
    sys_ = build_system("gptcache", exp, arrays(list(range(11))), lists, PROFILE)
    run(sys_, 11)
    st = sys_.stats()
    assert st["evictions"] == 2 and st["entries"] == 9 and st["insertions"] == 11


def test_nirvana_miss_stores_all_levels_hit_shares_its_trajectory() -> None:
    lists = Lists([[], [(0, 0.91)], [(1, 0.97), (0, 0.9)]])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 1, 2]), lists, PROFILE)
    ds = run(sys_, 3)
    assert ds[0].outcome == "miss" and ds[0].store_levels == LEVELS and math.isnan(ds[0].similarity)
    assert (ds[1].outcome, ds[1].matched, ds[1].k_planned, ds[1].k_used, ds[1].steps) == (
        "hit",
        0,
        20,
        20,
        30,
    )
    # The generation computed (and saved) level 25 only; levels 5..20 are prompt 0's, shared.
    assert ds[1].similarity == pytest.approx(0.91) and ds[1].store_levels == (25,)
    assert ds[1].quality == pytest.approx(PROFILE.quality_for_k(20))
    # Prompt 1 holds every level (25 its own): request 2 is served K=25 from it and stores nothing.
    assert (ds[2].outcome, ds[2].matched, ds[2].k_used, ds[2].store_levels) == ("hit", 1, 25, ())
    st = sys_.stats()
    assert st["hits_by_k"] == {20: 1, 25: 1}
    # 6 latents stored; prompt 1 shares 4 of prompt 0's, prompt 2 all 5 of prompt 1's levels.
    assert st["entries"] == 6 and st["bytes"] == 6 * PROFILE.latent_bytes and st["references"] == 9


def cached(sys_, contents: dict[int, tuple[int, ...]]) -> None:
    """Put the given levels of each prompt into the system's store (as stored latents)."""
    for i, (prompt, levels) in enumerate(contents.items()):
        sys_.store.insert(prompt, levels, i)


def test_nirvana_serves_the_candidate_that_skips_most_steps() -> None:
    # K by similarity: 0.96 -> 25, 0.93 -> 20, 0.88 -> 15. Prompt 0 offers 5 (all it holds <= 25),
    # prompt 1 offers 20, prompt 2 offers 15: request 3 takes 20 from prompt 1, below the 25
    # planned for the nearest cached prompt: a hole.
    lists = Lists([[], [], [], [(0, 0.96), (1, 0.93), (2, 0.88)]])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 1, 2, 3]), lists, PROFILE)
    cached(sys_, {0: (5,), 1: (20, 25), 2: (15,)})
    d = sys_.lookup(3, 3.0)
    assert (d.outcome, d.matched, d.k_planned, d.k_used, d.steps) == ("hole", 1, 25, 20, 30)
    assert d.similarity == pytest.approx(0.93) and sys_.stats()["holes"] == 1


def test_nirvana_ties_go_to_the_more_similar_candidate_and_a_full_k_is_a_hit() -> None:
    lists = Lists([[], [], [(0, 0.96), (1, 0.91)], [(0, 0.80), (1, 0.79)]])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 1, 2, 3]), lists, PROFILE)
    cached(sys_, {0: (10,), 1: (10, 20)})
    # Request 2: prompt 0 (K=25) offers 10, prompt 1 (K=20) offers 20: a hole below the 25 planned.
    d = sys_.lookup(2, 2.0)
    assert (d.outcome, d.matched, d.k_planned, d.k_used) == ("hole", 1, 25, 20)
    # Request 3: both offer K=10: the more similar prompt 0 serves, at the planned K: a hit.
    d = sys_.lookup(3, 3.0)
    assert (d.outcome, d.matched, d.k_planned, d.k_used) == ("hit", 0, 10, 10)
    assert d.similarity == pytest.approx(0.80)


def test_nirvana_nearest_prompt_that_cannot_serve_falls_back_to_the_next() -> None:
    # trajectory: computed (the levels a generation computed, only). Request 1 hits prompt 0 at
    # K=15 and stores 20 and 25 for prompt 1. Request 2's nearest cached prompt is 1 (s=0.80 ->
    # K=10), which holds nothing <= 10; prompt 0, next, offers 10: served at the planned K.
    lists = Lists([[], [(0, 0.87)], [(1, 0.80), (0, 0.79)]])
    ds = run(build_system("nirvana", exp_with(trajectory="computed"), arrays([0, 1, 2]), lists, PROFILE), 3)
    assert ds[1].k_used == 15 and ds[1].store_levels == (20, 25)
    assert (ds[2].outcome, ds[2].k_planned, ds[2].k_used, ds[2].matched) == ("hit", 10, 10, 0)
    assert ds[2].similarity == pytest.approx(0.79)


def test_nirvana_miss_records_the_nearest_cached_candidate() -> None:
    # Prompt 0 (0.80 -> K=10) holds only 15 and 20; prompt 1 (0.70 -> K=5) only 10: nothing usable.
    lists = Lists([[], [], [(0, 0.80), (1, 0.70)]])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 1, 2]), lists, PROFILE)
    cached(sys_, {0: (15, 20), 1: (10,)})
    d = sys_.lookup(2, 2.0)
    assert (d.outcome, d.matched, d.k_planned, d.k_used, d.steps) == ("miss", -1, 10, 0, N)
    assert d.similarity == pytest.approx(0.80)


def test_nirvana_walk_stops_when_nothing_later_can_beat_the_best() -> None:
    # A truncated list whose first candidate serves its full K: nothing less similar can do
    # better, so the exhaustive search is never asked.
    lists = Lists([[], [], [(0, 0.97), (1, 0.96)]], complete_rows=[True, True, False])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 1, 2]), lists, PROFILE)
    cached(sys_, {0: LEVELS, 1: LEVELS})
    d = sys_.lookup(2, 2.0)
    assert (d.outcome, d.matched, d.k_used) == ("hit", 0, 25) and lists.more_calls == []


@pytest.mark.parametrize(
    ("trajectory", "held", "entries"),
    [
        ("reference", (5, 10, 15, 20, 25), 6),  # levels <= 20 shared with prompt 0: no storage
        ("copy", (5, 10, 15, 20, 25), 10),  # copied: a latent each
        ("computed", (25,), 6),  # only what the generation computed
    ],
)
def test_nirvana_trajectory_options(trajectory: str, held: tuple[int, ...], entries: int) -> None:
    lists = Lists([[], [(0, 0.91)]])
    sys_ = build_system("nirvana", exp_with(trajectory=trajectory), arrays([0, 1]), lists, PROFILE)
    ds = run(sys_, 2)
    st = sys_.store
    assert [k for k in LEVELS if st.masks[1] >> k & 1] == list(held)
    stats = sys_.stats()
    assert stats["entries"] == stats["insertions"] == entries
    assert stats["bytes"] == entries * PROFILE.latent_bytes
    # The GPU saves only the level it computed (25); copies are made by the store.
    assert sys_.saved_latents(ds[1]) == 1


def test_shared_latents_are_one_latent() -> None:
    # LRU, room for 6 latents. Prompt 1 (hit at 20) shares prompt 0's levels <= 20.
    lists = Lists([[], [(0, 0.91)], [(1, 0.80)], []])
    sys_ = build_system("nirvana", exp_with(capacity=6), arrays([0, 1, 2, 3]), lists, PROFILE)
    ds = run(sys_, 3)
    st = sys_.store
    # Request 2 is served prompt 1's level 10, which is prompt 0's latent: that latent is used.
    assert (ds[2].matched, ds[2].k_used) == (1, 10)
    assert st.latent_of(1, 10) == st.latent_of(2, 10) == 0 << st.shift | 10
    # Its 3 new latents evicted the 3 least recently used, 0/5, 0/15 and 0/25, and prompt 1
    # lost the references to 5 and 15 with them; 0/10 (just used) and 0/20 stayed.
    assert st.masks[0] == 1 << 10 | 1 << 20
    assert st.masks[1] == 1 << 10 | 1 << 20 | 1 << 25
    assert st.masks[2] == 1 << 10 | 1 << 15 | 1 << 20 | 1 << 25
    assert st.entries == len(st.policy) == 6
    # A miss's 5 latents evict 0/20, 1/25, 0/10, 2/15 and 2/20: every reference goes with them.
    sys_.complete(3, sys_.lookup(3, 3.0), 3.0)
    assert 0 not in st.masks and 1 not in st.masks and st.masks[2] == 1 << 25 and not st.refs
    assert st.entries == 6


def test_nirvana_store_on_hit_off() -> None:
    lists = Lists([[], [(0, 0.91)]])
    for trajectory in ("reference", "copy", "computed"):
        sys_ = build_system(
            "nirvana", exp_with(store_on_hit=False, trajectory=trajectory), arrays([0, 1]), lists, PROFILE
        )
        ds = run(sys_, 2)
        assert ds[1].outcome == "hit" and ds[1].store_levels == () and 1 not in sys_.store.masks


def test_nirvana_falls_back_to_the_exhaustive_search_when_the_list_runs_out() -> None:
    # Request 2's truncated list names only prompt 1, which is not cached (its generation has
    # not completed), so the cached prompts are scored exactly and prompt 0 (0.92) serves.
    lists = Lists(
        [[], [], [(1, 0.99)]],
        complete_rows=[True, True, False],
        extra={2: [(0, 0.92)]},
    )
    sys_ = build_system("nirvana", exp_with(capacity=10, policy="fifo"), arrays([0, 1, 2]), lists, PROFILE)
    d0 = sys_.lookup(0, 0.0)
    sys_.complete(0, d0, 0.0)
    sys_.lookup(1, 1.0)  # request 1 has not completed: prompt 1 is not cached yet
    d2 = sys_.lookup(2, 2.0)
    assert lists.more_calls == [(2, 1)]  # one cached prompt scored
    assert (d2.outcome, d2.matched, d2.k_planned) == ("hit", 0, 20)


def test_lookup_does_not_assume_immediate_complete() -> None:
    # Two requests look up before either completes (the engine interleaves them).
    lists = Lists([[], [(0, 1.0)], [(0, 1.0)]])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 0, 0]), lists, PROFILE)
    d0 = sys_.lookup(0, 0.0)
    d1 = sys_.lookup(1, 0.1)
    assert d1.outcome == "miss"  # prompt 0's generation is still running
    sys_.complete(0, d0, 5.0)
    sys_.complete(1, d1, 5.1)  # stores the same levels again: nothing changes
    assert sys_.stats()["insertions"] == len(LEVELS)
    d2 = sys_.lookup(2, 6.0)
    assert (d2.outcome, d2.k_used, d2.steps) == ("hit", 25, 25)


def test_per_user_isolation_hides_other_users_entries() -> None:
    lists = Lists([[], [(0, 0.96)], [(0, 0.96)], [(0, 1.0)]])
    ar = arrays([0, 1, 2, 0], users=[7, 8, 7, 8])
    shared = run(build_system("nirvana", exp_with(), ar, lists, PROFILE), 4)
    isolated_sys = build_system("nirvana", exp_with(isolation="per-user"), ar, lists, PROFILE)
    isolated = run(isolated_sys, 4)
    assert [d.outcome for d in shared] == ["miss", "hit", "hit", "hit"]
    # User 8 cannot reuse user 7's prompt 0, not even the identical prompt; user 7 can.
    assert [d.outcome for d in isolated] == ["miss", "miss", "hit", "miss"]
    assert isolated[2].matched == 0
    # The same prompt 0 is now cached twice, once per user (and user 7's prompt 2 shares its
    # trajectory with user 7's prompt 0, within that user's partition).
    assert isolated_sys.cached_prompts() == 4
    st = isolated_sys.store
    assert st.latent_of(isolated_sys._bases[2] + 2, 25) == st.latent_of(isolated_sys._bases[0] + 0, 25)


def test_neighbour_lists_must_reach_the_lowest_threshold() -> None:
    lists = Lists([[]], min_similarity=0.8)
    with pytest.raises(ConfigError, match="neighbours.min_similarity"):
        build_system("nirvana", exp_with(), arrays([0]), lists, PROFILE)
    with pytest.raises(ValueError, match="needs causal neighbour lists"):
        build_system("gptcache", exp_with(), arrays([0]), None, PROFILE)


def test_capacity_units() -> None:
    lists = Lists([[], [], []])
    ar = arrays([0, 1, 2])
    by_bytes = build_system("nirvana", exp_with(capacity=7 * 131072 + 5, unit="bytes"), ar, lists, PROFILE)
    run(by_bytes, 3)
    assert by_bytes.stats()["capacity_entries"] == 7 and by_bytes.stats()["entries"] == 7
    by_prompts = build_system("nirvana", exp_with(capacity=2, unit="prompts"), ar, lists, PROFILE)
    run(by_prompts, 3)
    st = by_prompts.stats()
    assert st["capacity_prompts"] == 2 and st["prompts"] == 2 and st["entries"] == 10


def test_stats_and_occupancy() -> None:
    lists = Lists([[], [(0, 0.96)]])
    sys_ = build_system("nirvana", exp_with(), arrays([0, 1]), lists, PROFILE)
    d = sys_.lookup(0, 0.0)
    sys_.record_occupancy(0.0)
    sys_.complete(0, d, 1.0)
    sys_.record_occupancy(1.0)
    st = sys_.stats()
    assert st["policy"] == "lru" and st["entries"] == 5 and st["bytes"] == 5 * PROFILE.latent_bytes
    occ = st["occupancy"]
    assert occ["entries"].tolist() == [0, 5] and occ["prompts"].tolist() == [0, 1]
    assert occ["bytes"].tolist() == [0, 5 * PROFILE.latent_bytes]


def test_load_aware_boost_asks_for_more_k() -> None:
    lists = Lists([[], [(0, 0.80)], [(0, 0.80)]])
    exp = exp_with()
    exp.selector.load_aware = True
    sys_ = build_system("nirvana", exp, arrays([0, 1, 2]), lists, PROFILE)
    d0 = sys_.lookup(0, 0.0)
    sys_.complete(0, d0, 0.0)
    assert sys_.lookup(1, 1.0).k_used == 10
    assert sys_.lookup(2, 2.0, boost=2).k_used == 20
