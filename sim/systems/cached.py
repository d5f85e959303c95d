"""What every caching system shares: the store, tenant slots and the walk over neighbour candidates.

The retrieval walk (:meth:`CachedSystem._scan`, for caches whose every entry serves a request
whole, such as GPTCache's images): take request i's first listed candidate (most similar
first) that has anything cached; when every listed candidate is gone and the list is not
complete, ask ``neighbours.more(i, k)`` with k doubling (the exact search over every earlier
prompt). Latent caches, where a candidate may hold only levels too deep to use, walk further:
see :mod:`sim.systems.nirvana`.

Tenant isolation (``cache.isolation: per-user``): each user only sees entries its own
requests produced. Partitions are namespaces in one store: a slot is the (user, prompt)
pair, so two users who generate the same prompt keep two copies. Capacity and the
eviction order stay global (no fixed split: with thousands of users an equal split would
leave each a few entries and strand the capacity of idle users). Requests without a user
share one partition. The cost of isolation is the cross-user reuse it forbids plus the
duplicate copies; compare hit rates of the two settings on the same trace.

Entry keys are ``slot << shift | level`` (see :mod:`sim.cache.store`); image caches store
the final result at level N. A cache of capacity 0 stores nothing, so its generations offer
nothing to store (and pay nothing for saving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sim.cache.policies import POLICIES, FutureUses, PolicyContext
from sim.cache.store import LatentStore
from sim.systems.base import NAN, Decision, System, TraceArrays

_K_BLOCK = 1 << 22  # listed candidates mapped to K per step (bounds the temporaries)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from sim.base.config import Experiment
    from sim.base.profile import Profile


def request_of_entry(offsets: np.ndarray) -> np.ndarray:
    """For every CSR entry of the neighbour lists, the request it belongs to."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


class CachedSystem(System):
    """Shared machinery of the systems with a cache: the store, tenant slots and the neighbour walk."""

    caches = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        cache = exp.cache
        self.policy_name = cache.policy
        self.configured_capacity = cache.capacity  # in its unit, as the experiment states it
        self._pids: list[int] = arrays.prompt_ids.tolist()
        self._n_prompts = int(arrays.prompt_ids.max()) + 1 if len(arrays.prompt_ids) else 1
        self._per_user = cache.isolation == "per-user"
        # Slot of (user, prompt) = (user + 1) * n_prompts + prompt; users unknown (-1) share slot 0..
        self._bases: list[int] = (
            ((arrays.user_codes.astype(np.int64) + 1) * self._n_prompts).tolist()
            if self._per_user
            else [0] * len(self._pids)
        )
        self.shift = profile.steps.bit_length()
        self._store = self._make_store(exp, arrays, neighbours, profile)
        # A compiled replay's final contents, handed to the store when first needed (see store).
        self._handback: Callable[[], None] | None = None
        self._handback_prompts = 0
        self.stores = self._store.capacity > 0  # whether generations have anywhere to store
        self._on_hit = self._store.policy.on_hit
        self.holes = 0
        self._hits_by_k = [0] * (profile.steps + 1)
        self._nb = neighbours
        if neighbours is not None:
            self._offsets = memoryview(np.ascontiguousarray(neighbours.offsets, dtype=np.int64))
            self._ids = memoryview(np.ascontiguousarray(neighbours.ids, dtype=np.int32))
            sims = np.ascontiguousarray(neighbours.sims, dtype=np.float32)
            self._sims = memoryview(sims)
            self._kmap = memoryview(self._k_map(neighbours, sims))
            self._complete = np.asarray(neighbours.complete, dtype=bool).tolist()

    @property
    def store(self) -> LatentStore:
        """The cache contents. A compiled replay leaves its final state as arrays; they become the
        store's dicts (millions of keys at DiffusionDB scale, about 1 GB) only when something
        asks for the store, and most replays end with nothing but their counters read."""
        if self._handback is not None:
            handback, self._handback = self._handback, None
            handback()
        return self._store

    def _defer_handback(self, handback: Callable[[], None], prompts: int) -> None:
        """Run ``handback`` (which loads the store's contents, ``prompts`` slots) when the store is
        next asked for; the store's counters must already be set."""
        self._handback, self._handback_prompts = handback, prompts

    # -- construction -------------------------------------------------------------------
    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        """(entry key, request) pairs: request j would use entry key (for offline policies)."""
        raise NotImplementedError

    def _slots_of(self, arrays: TraceArrays, requests: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        slots = prompts.astype(np.int64)
        if self._per_user:
            slots = slots + (arrays.user_codes[requests].astype(np.int64) + 1) * self._n_prompts
        return slots

    def _make_store(
        self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile
    ) -> LatentStore:
        cache = exp.cache
        if cache.unit == "bytes":
            # Every entry of one store has the same size, so a byte budget is an entry count.
            capacity, unit = int(cache.capacity // profile.latent_bytes), "entries"
        else:
            capacity, unit = int(cache.capacity), ("prompts" if cache.unit == "prompts" else "entries")
        cls = POLICIES[cache.policy]
        future = None
        if cls.offline:
            keys, reqs = self._future_pairs(arrays, neighbours)
            future = FutureUses.from_pairs(keys, reqs)
        ctx = PolicyContext(level_mask=(1 << self.shift) - 1, capacity=capacity, future=future)
        return LatentStore(
            cls(ctx),
            self.shift,
            capacity,
            unit=unit,
            granularity=cache.granularity,
            batch=self._batch(exp, capacity),
        )

    def _batch(self, exp: Experiment, capacity: int) -> int:
        """Entries evicted at once when the cache is full."""
        return 1

    def _image_miss(self, profile: Profile) -> Decision:
        """A fresh generation whose final image (level N) goes into an image cache."""
        n = profile.steps
        return Decision("miss", -1, NAN, 0, 0, n, profile.quality_vanilla, (n,) if self.stores else ())

    # -- the neighbour walk -------------------------------------------------------------
    def _entry_k(self, sims: np.ndarray) -> np.ndarray:
        """For listed candidates at ``sims``: the K to reuse (0: none), -1 below the floor."""
        raise NotImplementedError

    def _entry_k_key(self) -> Hashable | None:
        """What :meth:`_entry_k` depends on besides the similarities (systems that agree on it
        share one K per listed candidate); None: nothing to share."""
        return None

    def _k_map(self, neighbours: Any, sims: np.ndarray) -> np.ndarray:
        """:meth:`_entry_k` of every listed candidate, computed a block at a time (the lists can
        hold hundreds of millions of entries) and kept with the lists for the next system that
        maps them the same way (a sweep builds one system per policy and size). One byte per
        entry when every K fits (N < 128 steps), else two: at 2M requests that is 0.38 GB."""
        key = self._entry_k_key()
        memo: dict[Hashable, np.ndarray] = {}
        if key is not None and isinstance(getattr(neighbours, "derived", None), dict):
            memo = neighbours.derived
        if (type(self), key) not in memo:
            out = np.empty(len(sims), np.int8 if self.n_steps <= np.iinfo(np.int8).max else np.int16)
            for lo in range(0, len(sims), _K_BLOCK):
                out[lo : lo + _K_BLOCK] = self._entry_k(sims[lo : lo + _K_BLOCK])
            memo[type(self), key] = out
        return memo[type(self), key]

    def _scan(self, i: int, base: int) -> int:
        """CSR index of request i's first listed candidate with anything cached.

        -1: none can be reused; -2: every listed one is gone and the list is truncated.
        """
        masks, ids, kmap = self.store.masks, self._ids, self._kmap
        j, b = self._offsets[i], self._offsets[i + 1]
        while j < b:
            if kmap[j] < 0:  # the rest lies below the floor
                return -1
            if base + ids[j] in masks:
                return j
            j += 1
        return -1 if self._complete[i] else -2

    def _more(self, i: int, base: int) -> tuple[int, float, int]:
        """(slot, similarity, K) of the nearest cached candidate from the exhaustive search; slot -1: none."""
        masks = self.store.masks
        k = max(2 * (self._offsets[i + 1] - self._offsets[i]), 16)
        while True:
            more_ids, more_sims = self._nb.more(i, k)
            sims = np.asarray(more_sims, dtype=np.float32)
            ks = self._entry_k(sims).tolist()
            sims = sims.tolist()
            for p, s, kp in zip(np.asarray(more_ids).tolist(), sims, ks, strict=True):
                if kp < 0:
                    return -1, NAN, 0
                if base + p in masks:
                    return base + p, s, kp
            if len(sims) < k:
                return -1, NAN, 0
            k *= 2

    # -- System API ---------------------------------------------------------------------
    def miss_decision(self, i: int, now: float) -> Decision:
        return self._miss

    def probe(self, i: int, now: float = 0.0, boost: int = 0) -> int:
        """The walk of the lookup, read-only (see ``System.probe``): the steps its candidate would
        skip. A system without neighbour lists looks up the request's own prompt."""
        base = self._bases[i]
        if self._nb is None:
            return self.n_steps if base + self._pids[i] in self.store.masks else 0
        j = self._scan(i, base)
        if j >= 0:
            return self._steps_skipped(base + self._ids[j], self._sims[j], self._kmap[j], boost)
        if j == -1:
            return 0
        slot, s, k = self._more(i, base)
        return self._steps_skipped(slot, s, k, boost) if slot >= 0 else 0

    def _steps_skipped(self, slot: int, similarity: float, k: int, boost: int) -> int:
        """Steps the walk's candidate (cached, at ``similarity``, entry K ``k``) would save: an image
        cache returns the stored image, all N of them."""
        return self.n_steps

    def complete(self, i: int, decision: Decision, now: float) -> None:
        levels = decision.store_levels
        if levels:
            self.store.insert(self._bases[i] + self._pids[i], levels, i)

    def cached_prompts(self) -> int:
        return self._handback_prompts if self._handback is not None else len(self._store.masks)

    def cached_entries(self) -> int:
        return self._store.entries

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        st = self._store  # counters only: a pending handback stays pending
        out.update(
            policy=self.policy_name,
            policy_offline=st.policy.offline,
            insertions=st.insertions,
            references=st.links,
            evictions=st.evictions,
            holes=self.holes,
            entries=st.entries,
            prompts=self.cached_prompts(),
            bytes=st.entries * self.entry_bytes(),
            hits_by_k={k: n for k, n in enumerate(self._hits_by_k) if n},
            cache_capacity=self.configured_capacity,
        )
        out["capacity_prompts" if st.by_prompts else "capacity_entries"] = st.capacity
        return out
