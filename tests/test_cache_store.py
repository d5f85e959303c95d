"""LatentStore: level bitmasks, capacity units, holes, granularity and batch eviction."""

from __future__ import annotations

import numpy as np
import pytest

from sim.cache.policies import POLICIES, PolicyContext
from sim.cache.store import LatentStore

SHIFT = 6  # levels up to 63, as for N = 50
LEVELS = (5, 10, 15, 20, 25)


def make_store(capacity: int, policy: str = "fifo", **kw: object) -> LatentStore:
    ctx = PolicyContext(level_mask=(1 << SHIFT) - 1, capacity=capacity)
    return LatentStore(POLICIES[policy](ctx), SHIFT, capacity, **kw)


def keys(store: LatentStore) -> set[tuple[int, int]]:
    """(slot, level) of every cached entry, read from the bitmasks."""
    return {(slot, k) for slot, m in store.masks.items() for k in range(64) if m >> k & 1}


def test_insert_sets_levels_and_counts() -> None:
    st = make_store(100)
    st.insert(7, LEVELS, i=0)
    assert keys(st) == {(7, k) for k in LEVELS}
    assert st.entries == 5 and st.insertions == 5 and st.prompts() == 1
    assert (7 << SHIFT | 15) in st and (7 << SHIFT | 30) not in st and (8 << SHIFT | 15) not in st
    st.insert(7, (20, 25), i=1)  # already cached: nothing changes
    assert st.entries == 5 and st.insertions == 5


def test_best_level_is_largest_cached_at_or_below_k() -> None:
    st = make_store(100)
    st.insert(1, (5, 15, 25), i=0)
    assert st.best_level(1, 25) == 25
    assert st.best_level(1, 20) == 15  # a hole at 20 falls back to 15
    assert st.best_level(1, 10) == 5
    assert st.best_level(1, 4) == -1  # only levels above K: nothing usable
    assert st.best_level(2, 25) == -1  # slot not cached


def test_fifo_eviction_in_latent_units() -> None:
    st = make_store(7)
    st.insert(1, LEVELS, i=0)
    st.insert(2, LEVELS, i=1)  # needs 3 free entries: evicts 1's three oldest levels
    assert st.entries == 7 and st.evictions == 3
    assert keys(st) == {(1, 20), (1, 25)} | {(2, k) for k in LEVELS}


def test_new_levels_are_never_their_own_victims() -> None:
    # LCBFU scores a fresh K=5 latent lowest; space is made before inserting, so the
    # generation's own new levels survive and older ones go.
    st = make_store(5, "lcbfu")
    st.insert(1, LEVELS, i=0)
    st.insert(2, (5, 10), i=1)
    assert {(2, 5), (2, 10)} <= keys(st)
    assert keys(st) == {(1, 15), (1, 20), (1, 25), (2, 5), (2, 10)}


def test_prompt_units_count_slots() -> None:
    st = make_store(2, unit="prompts")
    st.insert(1, LEVELS, i=0)
    st.insert(2, LEVELS, i=1)
    assert st.entries == 10 and st.prompts() == 2
    st.insert(3, (5,), i=2)
    # Latent granularity: FIFO evicts slot 1's levels one by one until a slot is free.
    assert st.prompts() == 2 and 1 not in st.masks and st.evictions == 5


def test_prompt_granularity_drops_whole_slot() -> None:
    st = make_store(7, "lru", granularity="prompt")
    st.insert(1, LEVELS, i=0)
    st.insert(2, (20, 25), i=1)
    st.hit(1, 25, i=2)  # slot 1 level 25 is now most recent; its level 5 is still LRU
    st.insert(3, (20,), i=3)
    assert 1 not in st.masks  # the victim (1, 5) took every level of slot 1 along
    assert st.evictions == 5 and st.entries == 3
    assert len(st.policy) == st.entries


def test_batch_eviction_frees_a_fraction_at_once() -> None:
    st = make_store(10, "fifo", batch=4)
    for slot in range(10):
        st.insert(slot, (50,), i=slot)
    st.insert(10, (50,), i=10)
    assert st.evictions == 4 and st.entries == 7
    assert sorted(st.masks) == [4, 5, 6, 7, 8, 9, 10]


def test_zero_capacity_stores_nothing_and_tiny_capacity_keeps_high_levels() -> None:
    st = make_store(0)
    st.insert(1, LEVELS, i=0)
    assert st.entries == 0 and not st.masks
    st = make_store(2)
    st.insert(1, LEVELS, i=0)
    assert keys(st) == {(1, 20), (1, 25)}


@pytest.mark.parametrize("bad", [{"unit": "bytes"}, {"granularity": "user"}])
def test_bad_options_are_rejected(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        make_store(10, **bad)


def test_link_shares_latents_without_storing_them() -> None:
    st = make_store(7, "lru")
    st.insert(1, LEVELS, i=0)
    st.link(2, 1, 15, i=1)  # slot 2 shares slot 1's levels <= 15
    assert keys(st) >= {(2, 5), (2, 10), (2, 15)} and (2, 20) not in keys(st)
    assert st.entries == len(st.policy) == 5 and st.links == 3
    assert st.latent_of(2, 10) == 1 << SHIFT | 10 and st.latent_of(1, 10) == 1 << SHIFT | 10
    st.hit(2, 5, i=2)  # a use of slot 1's latent: it becomes the most recently used
    st.insert(3, (20, 25, 30), i=3)  # 3 new latents need 1 victim: LRU (1, 10), shared by slot 2
    assert (1, 10) not in keys(st) and (2, 10) not in keys(st) and (2, 5) in keys(st)
    assert st.entries == 7 and st.evictions == 1
    st.link(2, 1, 25, i=4)  # only what slot 2 lacks and slot 1 still holds: 20 and 25
    assert {(2, 20), (2, 25)} <= keys(st) and (2, 10) not in keys(st) and st.links == 5


def test_a_reference_made_after_a_restore_still_follows_its_latent() -> None:
    st = make_store(5, "fifo")
    st.insert(1, LEVELS, i=0)
    st.link(2, 1, 25, i=1)
    masks, refs = dict(st.masks), dict(st.refs)
    other = make_store(5, "fifo")
    other.load_state(masks, (5, 5, 0, 5), (sorted(st.policy._queue), [0] * 5, [0] * 5, 0), refs)
    other.insert(3, LEVELS, i=2)  # evicts all of slot 1's latents: slot 2 loses every level
    assert 1 not in other.masks and 2 not in other.masks and not other.refs and other.entries == 5


def test_prompt_granularity_lets_go_of_references() -> None:
    st = make_store(6, "fifo", granularity="prompt")
    st.insert(1, (5, 10), i=0)
    st.insert(2, (20, 25), i=1)
    st.link(2, 1, 10, i=2)  # slot 2: its own 20, 25 and slot 1's 5, 10
    st.insert(3, (5, 10, 15), i=3)  # victim (1, 5): slot 1 leaves, and slot 2's references with it
    assert keys(st) == {(2, 20), (2, 25), (3, 5), (3, 10), (3, 15)} and not st.refs
    st.insert(4, (5, 10), i=4)  # victim (2, 20) takes slot 2's own 25 along
    assert 2 not in st.masks and st.entries == len(st.policy) == 5


def test_in_prompt_units_a_reference_needs_room_for_its_slot() -> None:
    st = make_store(2, "fifo", unit="prompts")
    st.insert(1, LEVELS, i=0)
    st.insert(2, LEVELS, i=1)
    st.link(3, 2, 25, i=2)  # slot 3 is a third prompt: slot 1's levels go first
    assert sorted(st.masks) == [2, 3] and st.masks[3] == st.masks[2] and st.entries == 5


@pytest.mark.parametrize("opts", [{}, {"granularity": "prompt"}, {"unit": "prompts"}])
@pytest.mark.parametrize("policy", ["fifo", "lru", "lcbfu"])
def test_groups_index_exactly_the_cached_slots(policy: str, opts: dict) -> None:
    """With ``index_groups``, every insert, link, eviction and restore keeps each group's slots
    equal to the cached slots of that group (what a probed fallback reads instead of the cache)."""
    rng = np.random.default_rng(4)
    group_of = rng.integers(0, 7, 200)
    st = make_store(12 if opts.get("unit") else 40, policy, **opts)
    st.index_groups(group_of, 7)

    def check() -> None:
        for g in range(7):
            want = {s for s in st.masks if group_of[s] == g}
            assert st.group(g) == want and st.group_sizes[g] == len(want), g

    for i in range(600):
        slot = int(rng.integers(0, 200))
        if i and rng.random() < 0.4 and st.masks:
            source = int(rng.choice(list(st.masks)))
            if source != slot:
                st.link(slot, source, int(rng.choice(LEVELS)), i)
        else:
            st.insert(slot, tuple(sorted(rng.choice(LEVELS, int(rng.integers(1, 4)), replace=False).tolist())), i)
        check()
    assert st.evictions > 50 and st.links > 20
    masks = dict(st.masks)
    st.load_state(masks, (st.entries, st.insertions, st.evictions, st.links), ([], [], [], 0), dict(st.refs))
    check()
