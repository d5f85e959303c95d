"""Integer-priority buckets with FIFO order inside a bucket: O(1) LFU-style bookkeeping.

Shared by the frequency policies (LFU, LCBFU and their variants, with or without aging).
Within one priority the entry that reached it first leaves first, which is libCacheSim's LFU
rule. ``last`` is the priority of the key popped last (the inflation value of an aging policy).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict


class PriorityBuckets:
    """Keys grouped by int priority; ``pop_min`` removes the oldest key of the lowest priority."""

    __slots__ = ("_buckets", "_heap", "_in_heap", "_prio", "last")

    def __init__(self) -> None:
        self._buckets: dict[int, OrderedDict[int, None]] = {}
        self._heap: list[int] = []  # priorities that have (or had) a bucket; lazily cleaned
        self._in_heap: set[int] = set()  # no duplicates, so the heap stays as small as the priorities
        self._prio: dict[int, int] = {}
        self.last = 0  # priority of the key popped last

    def __len__(self) -> int:
        return len(self._prio)

    @classmethod
    def of(cls, keys: list[int], priorities: list[int]) -> PriorityBuckets:
        """Buckets holding ``keys`` with their priorities, added in the order given."""
        out = cls()
        groups: dict[int, list[int]] = {}
        for key, prio in zip(keys, priorities, strict=True):
            groups.setdefault(prio, []).append(key)
        out._prio = dict(zip(keys, priorities, strict=True))
        out._buckets = {prio: OrderedDict.fromkeys(group) for prio, group in groups.items()}
        out._heap = sorted(groups)  # a sorted list is a heap
        out._in_heap = set(groups)
        return out

    def __contains__(self, key: int) -> bool:
        return key in self._prio

    def priority(self, key: int) -> int:
        return self._prio[key]

    def add(self, key: int, prio: int) -> None:
        """Insert ``key`` (not present) at priority ``prio``, behind keys already there."""
        self._prio[key] = prio
        bucket = self._buckets.get(prio)
        if bucket is None:
            bucket = self._buckets[prio] = OrderedDict()
            if prio not in self._in_heap:
                self._in_heap.add(prio)
                heapq.heappush(self._heap, prio)
        bucket[key] = None

    def add_levels(self, base: int, levels: list[int] | tuple[int, ...], prio: int) -> None:
        """:meth:`add` of keys ``base | k`` for each level k, all at priority ``prio``."""
        bucket = self._buckets.get(prio)
        if bucket is None:
            self.add(base | levels[0], prio)
            levels = levels[1:]
            bucket = self._buckets[prio]
        p = self._prio
        for k in levels:
            key = base | k
            p[key] = prio
            bucket[key] = None

    def pop_min_n(self, n: int) -> list[int]:
        """``pop_min`` n times (one call per eviction batch: the store's hot path)."""
        heap, buckets, prio_of = self._heap, self._buckets, self._prio
        out: list[int] = []
        append = out.append
        while n:
            prio = heap[0]
            bucket = buckets.get(prio)
            if not bucket:
                self._in_heap.discard(heapq.heappop(heap))
                continue
            pop = bucket.popitem
            while n and bucket:
                key = pop(False)[0]
                del prio_of[key]
                append(key)
                n -= 1
            if not bucket:
                del buckets[prio]
            self.last = prio
        return out

    def bump(self, key: int, delta: int) -> None:
        """Add ``delta`` to the priority of ``key``; it queues behind that bucket's keys (a hit's bookkeeping)."""
        prio_of, buckets = self._prio, self._buckets
        old = prio_of[key]
        bucket = buckets[old]
        del bucket[key]
        if not bucket:
            del buckets[old]
        prio = prio_of[key] = old + delta
        bucket = buckets.get(prio)
        if bucket is None:
            bucket = buckets[prio] = OrderedDict()
            if prio not in self._in_heap:
                self._in_heap.add(prio)
                heapq.heappush(self._heap, prio)
        bucket[key] = None

    def discard(self, key: int) -> None:
        prio = self._prio.pop(key)
        bucket = self._buckets[prio]
        del bucket[key]
        if not bucket:
            # Dropping empty buckets keeps the heap small; the heap entry is cleaned lazily.
            del self._buckets[prio]

    def pop_min(self) -> int:
        heap, buckets = self._heap, self._buckets
        while True:
            bucket = buckets.get(heap[0])
            if bucket:
                break
            self._in_heap.discard(heapq.heappop(heap))
        key = bucket.popitem(last=False)[0]
        prio = self._prio.pop(key)
        if not bucket:
            del buckets[prio]
        self.last = prio
        return key
