"""LFU: evict the least used entry; ties go to the entry that reached that count first.

An entry starts at count 1 when stored and gains 1 per hit; its count is forgotten when
it leaves. These are libCacheSim's LFU rules, so hit ratios agree exactly with it.

The bookkeeping (integer priorities, FIFO among equals) is shared by the LCBFU policies,
which start entries at ``rule.on_insert`` and add other amounts per hit.
"""

from __future__ import annotations

from sim.cache.policies.base import Policy, PolicyContext, PriorityRule
from sim.cache.policies.buckets import PriorityBuckets


class LFU(Policy):
    """Entries in priority buckets; a new entry gets ``rule.on_insert``, a hit adds 1."""

    name = "lfu"
    rule = PriorityRule(on_insert=1, on_hit="add-one")

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._b = PriorityBuckets()

    def on_insert(self, key: int, i: int) -> None:
        self._b.add(key, self.rule.on_insert)

    def on_insert_levels(self, base: int, levels: list[int] | tuple[int, ...], i: int) -> None:
        self._b.add_levels(base, levels, self.rule.on_insert)

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._b.bump(key, 1)

    def evict(self, i: int) -> int:
        return self._b.pop_min()

    def evict_n(self, n: int, i: int) -> list[int]:
        return self._b.pop_min_n(n)

    def on_remove(self, key: int) -> None:
        self._b.discard(key)

    def restore(self, keys: list[int], priorities: list[int]) -> None:
        self._b = PriorityBuckets.of(keys, priorities)

    def __len__(self) -> int:
        return len(self._b)
