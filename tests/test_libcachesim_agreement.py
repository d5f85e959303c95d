"""The exact-match system agrees with libCacheSim (its Python bindings) hit for hit.

Capacity in prompts, every object of size 1: FIFO, LRU, LFU, SIEVE and S3-FIFO hit ratios must be
equal, not close. LFU ties: libCacheSim evicts, among the least-used objects, the one that
reached that count first, and forgets counts on eviction; ``sim.cache.policies.lfu``'s
``lfu-noaging`` follows the same rules, so it is held to equality too. ``s3fifo`` is the SOSP '23
algorithm with the paper's parameters, which libCacheSim ships as ``S3FIFOv0`` (its ``S3FIFO`` is
a later revision that differs by under 0.2% here); it is held to ``S3FIFOv0`` where the
parameters mean the same (a small queue of at least 2 objects: libCacheSim admits nothing to a
small queue of 1).

The aging ``lfu`` is LFU-DA (Arlitt et al. 2000: priority = L + use count, set on every use;
L = priority of the last victim). libCacheSim's ``LFUDA`` is another rule, transcribed below from
libCacheSim/cache/eviction/LFUDA.c and held to libCacheSim hit for hit: a hit adds the current
minimum priority to the priority it already has (``cache_obj->lfu.freq += params->min_freq``), so
priorities compound, and before the first eviction (minimum 0) a hit adds nothing. On this stream
that gives 2,289 hits at 100 objects where LFU-DA gives 2,313 (3,000 requests). So ``lfu`` is held
to an LFU-DA written below from the definition, hit for hit, and not to libCacheSim's ``LFUDA``.

``gdsf`` (cost = the entry's K, every size 1) is held to GreedyDual-Size-Frequency written from
its definition (Cherkasova 1998: H = L + frequency x cost / size, L = the victim's H, first come
first out among equals), hit for hit. libCacheSim's ``GDSF`` (cost 1, priority L + frequency x
1e6 / size) orders the same objects alike in exact arithmetic but hits up to 0.7% differently on
this stream: the difference is in the compiled core the bindings ship (a libCacheSim newer than
its public GDSF.cpp, whose rule the definition below follows), so it is bounded, not equated.
"""

from __future__ import annotations

import numpy as np
import pytest

libcachesim = pytest.importorskip("libcachesim")

from sim.base.config import CacheConfig, Experiment  # noqa: E402
from sim.base.profile import load_profile  # noqa: E402
from sim.engine.replay import replay  # noqa: E402
from sim.systems import TraceArrays, build_system  # noqa: E402

PROFILE = load_profile("sdxl-a10g")


def s3fifo_v0(cache_size: int) -> libcachesim.CacheBase:
    """libCacheSim's S3FIFOv0: the published S3-FIFO (its bindings build it, but name no class)."""
    from libcachesim.cache import CacheBase, _create_common_params
    from libcachesim.libcachesim_python import S3FIFOv0_init

    return CacheBase(_cache=S3FIFOv0_init(_create_common_params(cache_size, 86400 * 300, 24, False, None), ""))


REFERENCE = {
    "fifo": libcachesim.FIFO,
    "lru": libcachesim.LRU,
    "lfu-noaging": libcachesim.LFU,
    "sieve": libcachesim.Sieve,
    "s3fifo": s3fifo_v0,
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
    return reference_hits(REFERENCE[policy](cache_size=capacity), ids)


def reference_hits(cache: libcachesim.CacheBase, ids: np.ndarray) -> int:
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


# Not S3-FIFO at 10: its small queue of one object admits nothing in libCacheSim's S3FIFOv0.
CASES = [(c, p) for c in (10, 20, 100, 1000, 5000) for p in sorted(REFERENCE) if not (p == "s3fifo" and c < 20)]


@pytest.mark.parametrize(("capacity", "policy"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
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
    """LFU with dynamic aging from its definition (Arlitt et al. 2000), for objects of size 1:
    a use sets priority = L + use count, the victim is the lowest priority and L becomes it. That
    is GDSF (below) with every cost and size 1, as Arlitt et al. define it."""
    return gdsf_hits(capacity, ids, 1.0)


@pytest.mark.parametrize("capacity", [10, 100, 1000])
def test_aging_lfu_equals_lfu_da_from_its_definition(capacity: int, stream: np.ndarray) -> None:
    ids = stream[:8000]
    ours, theirs = exact_hits("lfu", capacity, ids), lfu_da_hits(capacity, ids)
    assert 0 < theirs < len(ids)
    assert ours == theirs, f"lfu at {capacity}: {ours} hits vs LFU-DA {theirs}"
    if capacity <= 100:  # aging matters when the cache is small: the rule without it hits differently
        assert exact_hits("lfu-noaging", capacity, ids) != ours


def libcachesim_lfuda_hits(capacity: int, ids: np.ndarray) -> int:
    """libCacheSim's LFUDA, transcribed from libCacheSim/cache/eviction/LFUDA.c (objects of size 1).

    Objects sit in per-priority FIFO lists; ``min_f`` is the lowest priority present (0 until the
    first eviction). A new object enters at ``min_f + 1``; a hit sets priority += ``min_f``; the
    victim is the oldest object of priority ``min_f`` (1 while ``min_f`` is 0); when the lowest
    list empties, ``min_f`` moves to the next non-empty list up to the largest priority a hit set.
    """
    from collections import OrderedDict

    prio: dict[int, int] = {}
    lists: dict[int, OrderedDict[int, None]] = {1: OrderedDict()}
    min_f = max_f = hits = 0

    def next_min() -> int:
        return next((f for f in range(min_f + 1, max_f + 1) if lists.get(f)), min_f)

    for p in ids.tolist():
        if p in prio:
            hits += 1
            old = prio[p]
            new = prio[p] = old + min_f
            max_f = max(max_f, new)
            del lists[old][p]
            if min_f == old and not lists[old]:
                min_f = next_min()
            lists.setdefault(new, OrderedDict())[p] = None
            continue
        while len(prio) >= capacity:
            min_f = max(min_f, 1)
            lowest = lists[min_f]
            victim = next(iter(lowest))
            del lowest[victim], prio[victim]
            if not lowest:
                min_f = next_min()
        prio[p] = min_f + 1
        lists.setdefault(min_f + 1, OrderedDict())[p] = None
    return hits


# Not 10: libcachesim 0.3.5's LFUDA never returns from get() at capacity 10 on this stream
# after about 1,000 requests (an endless loop in its C code, seen 2026-12-07).
@pytest.mark.parametrize("capacity", [50, 100, 300])
def test_libcachesims_lfuda_is_the_rule_transcribed_and_not_lfu_da(capacity: int, stream: np.ndarray) -> None:
    ids = stream[:3000]
    theirs = reference_hits(libcachesim.LFUDA(cache_size=capacity), ids)
    assert libcachesim_lfuda_hits(capacity, ids) == theirs
    # acsim's lfu is LFU-DA as defined; libCacheSim's LFUDA hits less on this stream.
    assert exact_hits("lfu", capacity, ids) == lfu_da_hits(capacity, ids) > theirs


def gdsf_hits(capacity: int, ids: np.ndarray, cost: float) -> int:
    """GDSF from its definition (Cherkasova 1998) for objects of size 1 and one cost: a use sets
    H = L + frequency x cost; the victim has the lowest H (among equals, the one that got it first);
    L becomes the victim's H."""
    freq: dict[int, int] = {}
    prio: dict[int, tuple[float, int]] = {}
    inflation, hits = 0.0, 0
    for t, p in enumerate(ids.tolist()):
        if p in freq:
            hits += 1
            freq[p] += 1
        else:
            if len(freq) >= capacity:
                victim = min(prio, key=prio.__getitem__)
                inflation = prio.pop(victim)[0]
                del freq[victim]
            freq[p] = 1
        prio[p] = (inflation + freq[p] * cost, t)
    return hits


@pytest.mark.parametrize("capacity", [10, 50, 1000])
def test_gdsf_equals_its_definition_and_is_near_libcachesims(capacity: int, stream: np.ndarray) -> None:
    ids = stream[:6000]
    ours = exact_hits("gdsf", capacity, ids)
    # An exact cache stores images at level N: every entry costs N steps.
    assert ours == gdsf_hits(capacity, ids, float(PROFILE.steps))
    theirs = reference_hits(libcachesim.GDSF(cache_size=capacity), ids)
    assert abs(ours - theirs) <= 0.01 * theirs


def test_current_s3fifo_of_libcachesim_is_a_revision(stream: np.ndarray) -> None:
    """libCacheSim's S3FIFO differs from S3FIFOv0 (the published algorithm acsim implements) on
    this stream, by little: the agreement test above compares the right one."""
    ours = exact_hits("s3fifo", 100, stream)
    current = reference_hits(libcachesim.S3FIFO(cache_size=100), stream)
    assert ours == libcachesim_hits("s3fifo", 100, stream) != current
    assert abs(ours - current) <= 0.002 * len(stream)
