"""What every eviction policy implements, and the context it is built with.

A policy only orders entry keys; the :class:`~sim.cache.store.LatentStore` owns the
entries and the capacity. Keys are ints ``slot << shift | level`` (see the store), so a
policy that weighs entries by the steps they save reads the level as ``key & level_mask``.
Time is the logical clock ``i`` (request index), which is what offline policies need and
what keeps every policy independent of wall-clock units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np


@dataclass(frozen=True)
class FutureUses:
    """Offline knowledge for Belady: when each key will next be used.

    ``keys`` and ``requests`` are parallel int64 arrays sorted by (key, request): every
    (key, request) pair means request ``request`` would use entry ``key``.
    """

    keys: np.ndarray
    requests: np.ndarray

    @classmethod
    def from_pairs(cls, keys: np.ndarray, requests: np.ndarray) -> FutureUses:
        """Sort (key, request) pairs; duplicates are harmless."""
        keys = np.asarray(keys, dtype=np.int64)
        requests = np.asarray(requests, dtype=np.int64)
        order = np.lexsort((requests, keys))
        return cls(keys=keys[order], requests=requests[order])

    def next_use(self, key: int, after: int) -> float:
        """The first request index > ``after`` that uses ``key`` (inf when none)."""
        lo = int(np.searchsorted(self.keys, key, side="left"))
        hi = int(np.searchsorted(self.keys, key, side="right"))
        j = lo + int(np.searchsorted(self.requests[lo:hi], after, side="right"))
        return float(self.requests[j]) if j < hi else float("inf")


class PriorityRule(NamedTuple):
    """How a policy that evicts by (priority, age) sets priorities.

    Such a policy evicts the entry of lowest priority, the one that reached its priority
    first among equals. It keeps a *score* per entry: ``on_insert`` when stored (plus the
    entry's level K when ``insert_level``: the store counts as one use worth K), changed by
    each hit as ``on_hit`` says: ``keep`` (nothing), ``requeue`` (same priority, newest
    again), ``add-one``, ``add-level`` (the entry's K) or ``add-asked`` (the K the request
    asked of the candidate it was served from).

    Without ``aging`` the priority is the score, and a score once earned is kept forever.
    With ``aging`` (dynamic aging: LFU-DA, Arlitt et al. 2000; GDSF, Cherkasova 1998) the
    cache keeps an inflation value L, starting at 0, which rises to the priority of every
    victim; an entry that is stored or hit gets priority L + score. Entries that stop being
    used fall behind newcomers, so the cache cannot freeze on what was popular long ago.
    Policies that declare a rule run in the compiled replay (:mod:`sim.cache.kernel`).
    """

    on_insert: int
    on_hit: str
    insert_level: bool = False
    aging: bool = False


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may know about the cache it orders."""

    level_mask: int  # key & level_mask = the entry's K level = denoising steps it saves
    capacity: int  # capacity in entries (informational; the store enforces it)
    future: FutureUses | None = None  # only offline policies use it


class Policy:
    """Base class: the store calls these hooks with int entry keys.

    ``on_insert`` when an entry is stored, ``on_hit`` when a lookup serves it (``k``: the
    K the request asked of the candidate it was served from, which exceeds the entry's
    level when it fills a hole),
    ``evict`` to pick a victim (the policy forgets it and returns it), ``on_remove``
    when the store drops an entry the policy did not pick (a whole prompt's levels at
    prompt granularity).
    """

    name: ClassVar[str] = ""
    offline: ClassVar[bool] = False  # True: needs PolicyContext.future
    rule: ClassVar[PriorityRule | None] = None  # set: the compiled replay can run this policy

    def __init__(self, ctx: PolicyContext) -> None:
        self.ctx = ctx

    def on_insert(self, key: int, i: int) -> None:
        raise NotImplementedError

    def on_hit(self, key: int, i: int, k: int) -> None:
        raise NotImplementedError

    def evict(self, i: int) -> int:
        raise NotImplementedError

    def on_remove(self, key: int) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def on_insert_levels(self, base: int, levels: list[int] | tuple[int, ...], i: int) -> None:
        """``on_insert`` of keys ``base | k`` for each level k, in order (one call per generation)."""
        on_insert = self.on_insert
        for k in levels:
            on_insert(base | k, i)

    def evict_n(self, n: int, i: int) -> list[int]:
        """Evict ``n`` victims in order (one call per batch keeps the store's loop short)."""
        evict = self.evict
        return [evict(i) for _ in range(n)]

    def restore(self, keys: list[int], priorities: list[int], scores: list[int], inflation: int) -> None:
        """Replace the state by ``keys`` in eviction order, with their priorities and scores under
        ``rule`` and the inflation value L (0 without aging).

        Policies with a :attr:`rule` implement it: the compiled replay hands its final
        state back through it, so the policy continues exactly where the replay stopped.
        """
        raise NotImplementedError
