"""GDSF (GreedyDual-Size-Frequency, Cherkasova 1998) with cost = denoising steps saved.

Priority H = L + frequency x cost / size, lowest H evicted first; L (the inflation value)
becomes the H of each victim, so entries that are not used age out. Every cached entry
of one store has the same size, so size is 1 and the cost is the entry's K level: a
K = 25 latent saves five times the GPU work of a K = 5 latent.

That makes GDSF the same ordering as ``lcbfu`` (K x uses, the store counted as a use, with
dynamic aging). This module is kept as an independent implementation (a float heap rather
than LFU's priority buckets or the compiled replay): tests check that the two decide alike.
"""

from __future__ import annotations

import heapq

from sim.cache.policies.base import Policy, PolicyContext


class GDSF(Policy):
    name = "gdsf"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._mask = ctx.level_mask
        self._inflation = 0.0
        self._heap: list[tuple[float, int, int]] = []  # (H, seq, key); stale items skipped
        self._live: dict[int, tuple[float, int]] = {}  # key -> (H, seq) of its valid heap item
        self._freq: dict[int, int] = {}
        self._seq = 0

    def _push(self, key: int, freq: int) -> None:
        h = self._inflation + freq * (key & self._mask)
        self._seq += 1
        self._live[key] = (h, self._seq)
        heapq.heappush(self._heap, (h, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 1024:
            self._heap = [(h, s, k) for k, (h, s) in self._live.items()]
            heapq.heapify(self._heap)

    def on_insert(self, key: int, i: int) -> None:
        self._freq[key] = 1
        self._push(key, 1)

    def on_hit(self, key: int, i: int, k: int) -> None:
        f = self._freq[key] + 1
        self._freq[key] = f
        self._push(key, f)

    def evict(self, i: int) -> int:
        heap, live = self._heap, self._live
        while True:
            h, seq, key = heapq.heappop(heap)
            if live.get(key, (None, None))[1] == seq:
                break
        del live[key], self._freq[key]
        self._inflation = h
        return key

    def on_remove(self, key: int) -> None:
        del self._live[key], self._freq[key]

    def __len__(self) -> int:
        return len(self._live)
