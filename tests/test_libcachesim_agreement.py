"""The exact-match system agrees with libCacheSim (its Python bindings) hit for hit.

Capacity in prompts, every object of size 1: FIFO, LRU, LFU and SIEVE hit ratios must be
equal, not close. LFU ties: libCacheSim evicts, among the least-used objects, the one that
reached that count first, and forgets counts on eviction; ``sim.cache.policies.lfu``'s
``lfu-noaging`` follows the same rules, so it is held to equality too. S3-FIFO and GDSF are
not compared: libCacheSim's variants differ in details (its current S3-FIFO; GDSF's cost),
and hit counts differ by < 1% on this stream.

The aging ``lfu`` is LFU-DA (Arlitt et al. 2000: priority = L + use count, set on every use;
L = priority of the last victim). libCacheSim's ``LFUDA`` is another rule: a hit adds L to the
priority it already has (``cache_obj->lfu.freq += params->min_freq`` in
libCacheSim/cache/eviction/LFUDA.c), so priorities compound, and a new object enters at the
current minimum + 1; its minimum search walks every integer up to the largest priority, and on
this stream it slows to seconds per hundred requests within 1,400 requests. So ``lfu`` is held
instead to an LFU-DA written below from the definition, hit for hit.
"""

from __future__ import annotations

import numpy as np
import pytest

libcachesim = pytest.importorskip("libcachesim")

from sim.base.config import CacheConfig, Experiment  # noqa: E402
from sim.base.profile import load_profile  # noqa: E402
from sim.replay import replay  # noqa: E402
from sim.systems import TraceArrays, build_system  # noqa: E402

PROFILE = load_profile("sdxl-a10g")
REFERENCE = {
    "fifo": libcachesim.FIFO,
    "lru": libcachesim.LRU,
    "lfu-noaging": libcachesim.LFU,
    "sieve": libcachesim.Sieve,
}


def request_stream(n: int = 20000, seed: int = 11) -> np.ndarray:
    """Zipf popularity plus bursts of recent repeats: LFU, LRU and FIFO all differ on it."""
    rng = np.random.default_rng(seed)
    popular = rng.zipf(1.2, n) % 3000
    recent = np.maximum(np.arange(n) - rng.geometric(0.05, n), 0)
    ids = np.where(rng.random(n) < 0.5, popular, 0)
    for i in np.flatnonzero(ids == 0):
        ids[i] = ids[recent[i]] if recent[i] < i else 5000 + i
    # Dense prompt ids in order of first appearance, as a trace has them.
    _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inv].astype(np.int32)


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    return request_stream()


def libcachesim_hits(policy: str, capacity: int, ids: np.ndarray) -> int:
    cache = REFERENCE[policy](cache_size=capacity)
    req = libcachesim.Request()
    req.obj_size = 1
    hits = 0
    for p in ids.tolist():
        req.obj_id = p
        hits += cache.get(req)
    return hits


def exact_hits(policy: str, capacity: int, stream: np.ndarray) -> int:
    n = len(stream)
    arrays = TraceArrays(stream, np.full(n, -1, np.int32), np.arange(n, dtype=float))
    exp = Experiment(cache=CacheConfig(policy=policy, capacity=capacity, unit="prompts"))
    system = build_system("exact", exp, arrays, None, PROFILE)
    return int((replay(system, arrays.arrival_s, stream, arrays.user_codes)["outcome"] == "exact").sum())


@pytest.mark.parametrize("policy", sorted(REFERENCE))
@pytest.mark.parametrize("capacity", [10, 100, 1000, 5000])
def test_exact_hit_ratio_equals_libcachesim(policy: str, capacity: int, stream: np.ndarray) -> None:
    n = len(stream)
    ours = exact_hits(policy, capacity, stream)
    theirs = libcachesim_hits(policy, capacity, stream)
    assert 0 < theirs < n
    assert ours == theirs, f"{policy} at {capacity}: {ours} hits vs libcachesim {theirs}"


def test_policies_differ_on_this_stream(stream: np.ndarray) -> None:
    """Guards the agreement test's power: the policies really diverge here."""
    assert len({libcachesim_hits(p, 100, stream) for p in REFERENCE}) == len(REFERENCE)


def lfu_da_hits(capacity: int, ids: np.ndarray) -> int:
    """LFU with dynamic aging from its definition (Arlitt et al. 2000), for objects of size 1.

    Each cached object has a use count and a priority; a use sets priority = L + count; the
    victim is the lowest priority (among equals, the one that got its priority first) and L
    becomes its priority.
    """
    count: dict[int, int] = {}
    prio: dict[int, tuple[int, int]] = {}  # object -> (priority, when it got it)
    inflation, hits = 0, 0
    for t, p in enumerate(ids.tolist()):
        if p in count:
            hits += 1
            count[p] += 1
        else:
            if len(count) >= capacity:
                victim = min(prio, key=prio.__getitem__)
                inflation = prio.pop(victim)[0]
                del count[victim]
            count[p] = 1
        prio[p] = (inflation + count[p], t)
    return hits


@pytest.mark.parametrize("capacity", [10, 100, 1000])
def test_aging_lfu_equals_lfu_da_from_its_definition(capacity: int, stream: np.ndarray) -> None:
    ids = stream[:8000]
    ours, theirs = exact_hits("lfu", capacity, ids), lfu_da_hits(capacity, ids)
    assert 0 < theirs < len(ids)
    assert ours == theirs, f"lfu at {capacity}: {ours} hits vs LFU-DA {theirs}"
    if capacity <= 100:  # aging matters when the cache is small: the rule without it hits differently
        assert exact_hits("lfu-noaging", capacity, ids) != ours
