"""FIFO: evict the entry stored longest ago; hits change nothing. LRU reuses this queue."""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import Policy, PolicyContext, PriorityRule


class FIFO(Policy):
    """A queue of keys, oldest first; the victim is the head."""

    name = "fifo"
    rule = PriorityRule(on_insert=0, on_hit="keep")

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._queue: OrderedDict[int, None] = OrderedDict()

    def on_insert(self, key: int, i: int) -> None:
        self._queue[key] = None

    def on_hit(self, key: int, i: int, k: int) -> None:
        pass

    def evict(self, i: int) -> int:
        return self._queue.popitem(last=False)[0]

    def on_insert_levels(self, base: int, levels: list[int] | tuple[int, ...], i: int) -> None:
        q = self._queue
        for k in levels:
            q[base | k] = None

    def evict_n(self, n: int, i: int) -> list[int]:
        pop = self._queue.popitem
        return [pop(False)[0] for _ in range(n)]

    def on_remove(self, key: int) -> None:
        del self._queue[key]

    def restore(self, keys: list[int], priorities: list[int], scores: list[int], inflation: int) -> None:
        self._queue = OrderedDict.fromkeys(keys)

    def __len__(self) -> int:
        return len(self._queue)
