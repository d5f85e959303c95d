"""SIEVE (Zhang et al., NSDI 2024): a FIFO queue with a visited bit and a moving hand.

Hits only set the bit. To evict, the hand walks from the oldest entry towards the
newest, clearing set bits, and evicts the first unvisited entry; it resumes there next
time and wraps around to the oldest entry at the end of the queue.
"""

from __future__ import annotations

from sim.cache.policies.base import Policy, PolicyContext


class Sieve(Policy):
    name = "sieve"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        # A doubly linked queue in two dicts: the neighbour towards the newest / oldest end.
        self._newer: dict[int, int | None] = {}
        self._older: dict[int, int | None] = {}
        self._head: int | None = None  # newest
        self._tail: int | None = None  # oldest
        self._hand: int | None = None
        self._visited: set[int] = set()

    def on_insert(self, key: int, i: int) -> None:
        head = self._head
        self._older[key] = head
        self._newer[key] = None
        if head is None:
            self._tail = key
        else:
            self._newer[head] = key
        self._head = key

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._visited.add(key)

    def evict(self, i: int) -> int:
        visited, newer = self._visited, self._newer
        node = self._hand if self._hand is not None else self._tail
        while node in visited:
            visited.discard(node)
            node = newer[node]
            if node is None:
                node = self._tail
        self._hand = newer[node]
        self._unlink(node)
        return node

    def on_remove(self, key: int) -> None:
        if self._hand == key:
            self._hand = self._newer[key]
        self._visited.discard(key)
        self._unlink(key)

    def _unlink(self, key: int) -> None:
        older = self._older.pop(key)
        newer = self._newer.pop(key)
        if older is None:
            self._tail = newer
        else:
            self._newer[older] = newer
        if newer is None:
            self._head = older
        else:
            self._older[newer] = older

    def __len__(self) -> int:
        return len(self._newer)
