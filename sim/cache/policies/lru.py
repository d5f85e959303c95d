"""LRU: evict the entry whose last use (store or hit) lies furthest in the past."""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import Policy, PolicyContext, PriorityRule


class LRU(Policy):
    name = "lru"
    rule = PriorityRule(on_insert=0, on_hit="requeue")

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._order: OrderedDict[int, None] = OrderedDict()  # least recent first

    def on_insert(self, key: int, i: int) -> None:
        self._order[key] = None

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._order.move_to_end(key)

    def evict(self, i: int) -> int:
        return self._order.popitem(last=False)[0]

    def on_insert_levels(self, base: int, levels: list[int] | tuple[int, ...], i: int) -> None:
        q = self._order
        for k in levels:
            q[base | k] = None

    def evict_n(self, n: int, i: int) -> list[int]:
        pop = self._order.popitem
        return [pop(False)[0] for _ in range(n)]

    def on_remove(self, key: int) -> None:
        del self._order[key]

    def restore(self, keys: list[int], priorities: list[int]) -> None:
        self._order = OrderedDict.fromkeys(keys)

    def __len__(self) -> int:
        return len(self._order)
