"""Belady's MIN, offline: evict the entry whose next use lies farthest in the future.

It needs the future, given as :class:`~sim.cache.policies.base.FutureUses` that the
system derives from the whole trace before the replay (see ``sim.systems``): request j
"uses" entry (p, K) when j's (top-m) neighbour list names prompt p with a similarity the
selector maps to exactly K (image caches: when j would be served p's image; exact: when
j repeats p). Hole fallbacks, candidates beyond the list and uses through a latent shared by
another prompt's trajectory are not counted as uses.

For exact-match caching this is the optimal offline policy. For approximate caching it is
an offline heuristic, neither an optimum nor a bound: whether j really uses (p, K) depends on
which other candidates are cached and on K' <= K fallbacks, which depend on the eviction
choices themselves, so an online policy can beat it. The bound on what any policy can save is
the ``ceiling`` system (an unbounded cache).
"""

from __future__ import annotations

import heapq

from sim.cache.policies.base import Policy, PolicyContext

INF = float("inf")


class Belady(Policy):
    name = "belady"
    offline = True

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        if ctx.future is None:
            raise ValueError("belady needs the future uses of every entry (PolicyContext.future)")
        self._future = ctx.future
        self._heap: list[tuple[float, int, int]] = []  # (-next use, seq, key); stale items skipped
        self._live: dict[int, tuple[float, int]] = {}  # key -> (next use, seq)
        self._due: list[tuple[float, int]] = []  # heap of (recorded next use, key)
        self._clock = -1
        self._seq = 0

    def _schedule(self, key: int, after: int) -> None:
        nxt = self._future.next_use(key, after)
        self._seq += 1
        self._live[key] = (nxt, self._seq)
        heapq.heappush(self._heap, (-nxt, self._seq, key))
        if nxt != INF:
            heapq.heappush(self._due, (nxt, key))
        if len(self._heap) > 2 * len(self._live) + 1024:
            self._heap = [(-n, s, k) for k, (n, s) in self._live.items()]
            heapq.heapify(self._heap)

    def _advance(self, i: int) -> None:
        # A recorded next use that has passed is refreshed to the one after it, whether or
        # not the request really used the entry (a nearer neighbour may have served it).
        live, due = self._live, self._due
        while due and due[0][0] <= i:
            t, key = heapq.heappop(due)
            entry = live.get(key)
            if entry is not None and entry[0] == t:
                self._schedule(key, int(t))
        self._clock = max(self._clock, i)

    def on_insert(self, key: int, i: int) -> None:
        self._advance(i)
        self._schedule(key, self._clock)

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._advance(i)
        self._schedule(key, self._clock)

    def evict(self, i: int) -> int:
        self._advance(i)
        heap, live = self._heap, self._live
        while True:
            _, seq, key = heapq.heappop(heap)
            entry = live.get(key)
            if entry is not None and entry[1] == seq:
                break
        del live[key]
        return key

    def on_remove(self, key: int) -> None:
        del self._live[key]

    def __len__(self) -> int:
        return len(self._live)
