"""LRU: evict the entry whose last use (store or hit) lies furthest in the past.

The queue of :class:`~sim.cache.policies.fifo.FIFO` where a hit moves the entry to the back.
"""

from __future__ import annotations

from sim.cache.policies.base import PriorityRule
from sim.cache.policies.fifo import FIFO


class LRU(FIFO):
    name = "lru"
    rule = PriorityRule(on_insert=0, on_hit="requeue")

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._queue.move_to_end(key)
