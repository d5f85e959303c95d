"""Serving systems: what one request gets from the cache, and what it stores afterwards.

``vanilla`` (no cache: N steps), ``exact`` (an identical prompt returns its stored image:
0 steps), ``gptcache`` (a neighbour at similarity >= threshold returns its stored image:
0 steps, retrieval quality; batch eviction of a fraction of the entries when full) and
``nirvana`` (approximate latent caching: the nearest cached neighbour's latent at level K
replaces K of the N steps). Each is built by :func:`build_system` from the experiment,
the trace's arrays, the causal neighbour lists and the profile.

Lookup rule (gptcache, nirvana): walk request i's neighbour candidates (most similar
first) and take the first one that has anything cached; when every listed candidate is
gone and the list is not complete, ask ``neighbours.more(i, k)`` with k doubling (the
compiled cache-only replay asks ``neighbours.nearest_among`` over the cached prompts instead:
the same answer, from a smaller product). The
selector maps its similarity to K; the latent of level K is served, or on a hole the
largest cached K' <= K; with no level <= K cached the request misses. A miss stores
every level of the ladder, a hit at K' the levels above K' (``cache.store_on_hit``).

Tenant isolation (``cache.isolation: per-user``): each user only sees entries its own
requests produced. Partitions are namespaces in one store: a slot is the (user, prompt)
pair, so two users who generate the same prompt keep two copies. Capacity and the
eviction order stay global (no fixed split: with thousands of users an equal split would
leave each a few entries and strand the capacity of idle users). Requests without a user
share one partition. The cost of isolation is the cross-user reuse it forbids plus the
duplicate copies; compare hit rates of the two settings on the same trace.

Entry keys are ``slot << shift | level`` (see :mod:`sim.cache.store`); image caches store
the final result at level N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from sim.base.config import Experiment
from sim.base.errors import ConfigError
from sim.base.profile import Profile
from sim.base.records import OUTCOME_CODE
from sim.cache.policies import POLICIES, FutureUses, PolicyContext
from sim.cache.store import LatentStore
from sim.selector import Selector

NAN = float("nan")


class Decision(NamedTuple):
    """What the cache gives one request (see ARCHITECTURE.md, Systems). Immutable.

    A named tuple rather than a dataclass: systems build one per request, and
    ``_new(Decision, (...))`` costs a third of a dataclass ``__init__``.
    """

    outcome: str  # "bypass" | "miss" | "hit" | "hole" | "retrieval" | "exact"
    matched: int  # prompt id served from, -1 when none
    similarity: float  # similarity of the nearest cached candidate; nan when none
    k_planned: int  # K the selector asked for
    k_used: int  # K actually reused (largest cached K' <= K on a hole)
    steps: int  # denoising steps to run (0 for retrieval/exact hits)
    quality: float  # expected CLIP score of the delivered image
    store_levels: tuple[int, ...]  # K levels this generation saves when it completes


_new = tuple.__new__


@dataclass(frozen=True)
class TraceArrays:
    """The per-request arrays a system needs from a trace."""

    prompt_ids: np.ndarray  # int32
    user_codes: np.ndarray  # int32, -1 = unknown user
    arrival_s: np.ndarray  # float64

    @classmethod
    def of(cls, trace: Any) -> TraceArrays:
        """From a ``traces.schema.Trace`` or anything with the same three array attributes."""
        return cls(
            np.asarray(trace.prompt_ids, dtype=np.int32),
            np.asarray(trace.user_codes, dtype=np.int32),
            np.asarray(trace.arrival_s, dtype=np.float64),
        )


class System:
    """Base class; subclasses implement :meth:`lookup` and :meth:`complete`."""

    name: ClassVar[str] = ""

    def __init__(self, exp: Experiment, arrays: TraceArrays, profile: Profile) -> None:
        self.profile = profile
        self.n_steps = profile.steps
        self.n_requests = len(arrays.prompt_ids)
        self.lookups = 0
        self._occupancy: list[tuple[float, int, int]] = []

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        """Decide what request ``i`` gets from the cache at time ``now``."""
        raise NotImplementedError

    def complete(self, i: int, decision: Decision, now: float) -> None:
        """Store what request ``i``'s generation produced (called when its GPU work ends)."""

    def cached_prompts(self) -> int:
        """Number of prompts (slots) with something cached; sizes the lookup latency."""
        return 0

    def cached_entries(self) -> int:
        return 0

    def record_occupancy(self, now: float) -> None:
        """Append a (time, entries, prompts) sample to the occupancy series in :meth:`stats`."""
        self._occupancy.append((now, self.cached_entries(), self.cached_prompts()))

    def stats(self) -> dict[str, Any]:
        """Counters after a replay.

        Scalars: ``lookups, insertions, evictions, holes, entries, prompts, bytes,
        capacity_entries`` (or ``capacity_prompts``); ``hits_by_k``: {K used: hits};
        ``occupancy``: DataFrame ``time_s, entries, prompts, bytes`` of the samples taken
        with :meth:`record_occupancy`.
        """
        occ = pd.DataFrame(self._occupancy, columns=["time_s", "entries", "prompts"])
        occ["bytes"] = occ["entries"] * self.profile.latent_bytes
        return {
            "system": self.name,
            "lookups": self.lookups,
            "insertions": 0,
            "evictions": 0,
            "holes": 0,
            "entries": 0,
            "prompts": 0,
            "bytes": 0,
            "hits_by_k": {},
            "occupancy": occ,
        }


class Vanilla(System):
    """No cache: every request runs all N steps."""

    name = "vanilla"

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, profile)
        self._decision = Decision("bypass", -1, NAN, 0, 0, profile.steps, profile.quality_vanilla, ())

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        return self._decision


class CachedSystem(System):
    """Shared machinery: the store, tenant slots and the neighbour walk."""

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, profile)
        cache = exp.cache
        self.policy_name = cache.policy
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
        self.store = self._make_store(exp, arrays, neighbours, profile)
        self._on_hit = self.store.policy.on_hit
        self.holes = 0
        self._hits_by_k = [0] * (profile.steps + 1)
        self._nb = neighbours
        if neighbours is not None:
            self._offsets = memoryview(np.ascontiguousarray(neighbours.offsets, dtype=np.int64))
            self._ids = memoryview(np.ascontiguousarray(neighbours.ids, dtype=np.int32))
            sims = np.ascontiguousarray(neighbours.sims, dtype=np.float32)
            self._sims = memoryview(sims)
            self._kmap = memoryview(self._entry_k(sims).astype(np.int16))
            self._complete = np.asarray(neighbours.complete, dtype=bool).tolist()

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
        return 1

    # -- the neighbour walk -------------------------------------------------------------
    def _entry_k(self, sims: np.ndarray) -> np.ndarray:
        """For listed candidates at ``sims``: the K to reuse (0: none), -1 below the floor."""
        raise NotImplementedError

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
        """What request ``i`` gets when the match predictor skips its lookup: a fresh generation."""
        return self._miss

    def complete(self, i: int, decision: Decision, now: float) -> None:
        levels = decision.store_levels
        if levels:
            self.store.insert(self._bases[i] + self._pids[i], levels, i)

    def cached_prompts(self) -> int:
        return len(self.store.masks)

    def cached_entries(self) -> int:
        return self.store.entries

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        st = self.store
        out.update(
            policy=self.policy_name,
            insertions=st.insertions,
            evictions=st.evictions,
            holes=self.holes,
            entries=st.entries,
            prompts=len(st.masks),
            bytes=st.entries * self.profile.latent_bytes,
            hits_by_k={k: n for k, n in enumerate(self._hits_by_k) if n},
        )
        out["capacity_prompts" if st.by_prompts else "capacity_entries"] = st.capacity
        return out


class Exact(CachedSystem):
    """Exact-match cache of final images: an identical prompt costs 0 steps."""

    name = "exact"

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, None, profile)
        n = profile.steps
        self._miss = Decision("miss", -1, NAN, 0, 0, n, profile.quality_vanilla, (n,))
        self._q = profile.quality_exact

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        reqs = np.arange(len(arrays.prompt_ids), dtype=np.int64)
        return self._slots_of(arrays, reqs, arrays.prompt_ids) << self.shift | self.n_steps, reqs

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        pid = self._pids[i]
        slot = self._bases[i] + pid
        if slot not in self.store.masks:
            return self._miss
        n = self.n_steps
        self.store.hit(slot, n, i)
        self._hits_by_k[n] += 1
        return _new(Decision, ("exact", pid, 1.0, n, n, 0, self._q, ()))


def _request_of_entry(offsets: np.ndarray) -> np.ndarray:
    """For every CSR entry of the neighbour lists, the request it belongs to."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


class GptCache(CachedSystem):
    """GPTCache-style retrieval: a neighbour at similarity >= threshold returns its image."""

    name = "gptcache"

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        _require_neighbours(self.name, neighbours, exp.gptcache.threshold)
        self.threshold = exp.gptcache.threshold
        super().__init__(exp, arrays, neighbours, profile)
        n = profile.steps
        self._miss = Decision("miss", -1, NAN, 0, 0, n, profile.quality_vanilla, (n,))

    def _batch(self, exp: Experiment, capacity: int) -> int:
        return max(1, int(exp.gptcache.evict_fraction * capacity))

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(neighbours.offsets)
        reqs = _request_of_entry(offsets)
        use = np.asarray(neighbours.sims) >= self.threshold
        slots = self._slots_of(arrays, reqs[use], np.asarray(neighbours.ids)[use])
        return slots << self.shift | self.n_steps, reqs[use]

    def _entry_k(self, sims: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(sims, dtype=np.float32) >= self.threshold, self.n_steps, -1)

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        base = self._bases[i]
        j = self._scan(i, base)
        if j >= 0:
            slot, s = base + self._ids[j], self._sims[j]
        elif j == -1:
            return self._miss
        else:
            slot, s, _ = self._more(i, base)
            if slot < 0:
                return self._miss
        n = self.n_steps
        self.store.hit(slot, n, i)
        self._hits_by_k[n] += 1
        pid = slot - base
        return _new(Decision, ("retrieval", pid, s, n, n, 0, self.profile.quality_retrieval(s), ()))


class Nirvana(CachedSystem):
    """Approximate latent caching (Nirvana, NSDI 2024)."""

    name = "nirvana"

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        self.selector = Selector.from_config(exp, profile)
        _require_neighbours(self.name, neighbours, self.selector.min_similarity)
        self.levels = tuple(sorted(profile.k_levels))
        super().__init__(exp, arrays, neighbours, profile)
        n = profile.steps
        qv = profile.quality_vanilla
        self._q_vanilla = qv
        self._quality = {k: profile.quality_for_k(k) for k in (0, *self.levels)}
        self._store_on_hit = exp.cache.store_on_hit
        # Levels a generation that started from level k passes and stores.
        self._above = {
            k: tuple(x for x in self.levels if x > k) if self._store_on_hit else () for k in self.levels
        }
        self._miss = Decision("miss", -1, NAN, 0, 0, n, qv, self.levels)

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(neighbours.offsets)
        reqs = _request_of_entry(offsets)
        k = self._entry_k(neighbours.sims)
        use = k > 0
        slots = self._slots_of(arrays, reqs[use], np.asarray(neighbours.ids)[use])
        return slots << self.shift | k[use], reqs[use]

    def _entry_k(self, sims: np.ndarray) -> np.ndarray:
        sel = self.selector
        sims = np.asarray(sims, dtype=np.float32).astype(np.float64)
        k = np.where(sims >= sel.min_similarity, 0, -1)
        for t, kk in zip(reversed(sel.thresholds), reversed(sel.ks), strict=True):
            k[sims > t] = kk
        return k

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        base = self._bases[i]
        store = self.store
        masks, ids, kmap = store.masks, self._ids, self._kmap
        # The walk of CachedSystem._scan, inlined: this is the replay's hottest loop.
        j, end = self._offsets[i], self._offsets[i + 1]
        while j < end:
            k = kmap[j]
            if k < 0:
                return self._miss
            slot = base + ids[j]
            if slot in masks:
                s = self._sims[j]
                if boost:
                    k = self.selector.k_for(s, boost)
                break
            j += 1
        else:
            if self._complete[i]:
                return self._miss
            slot, s, k = self._more(i, base)
            if slot < 0:
                return self._miss
            if boost:
                k = self.selector.k_for(s, boost)
        n = self.n_steps
        if not k:
            return _new(Decision, ("miss", -1, s, 0, 0, n, self._q_vanilla, self.levels))
        # Largest cached level <= k (LatentStore.best_level, inlined).
        ku = (masks[slot] & ((2 << k) - 1)).bit_length() - 1
        if ku < 0:
            return _new(Decision, ("miss", -1, s, k, 0, n, self._q_vanilla, self.levels))
        store.hits += 1
        self._on_hit(slot << self.shift | ku, i, k)
        self._hits_by_k[ku] += 1
        if ku == k:
            outcome = "hit"
        else:
            outcome = "hole"
            self.holes += 1
        return _new(Decision, (outcome, slot - base, s, k, ku, n - ku, self._quality[ku], self._above[ku]))

    # -- the cache-only replay's fast paths ----------------------------------------------
    def _candidate_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bool]]:
        """Listed candidates that can be reused: (row offsets, slots, CSR index, fallback allowed).

        Each row is cut at its first candidate below the selector's floor (the walk stops
        there), so the fallback is allowed only for rows that are neither cut nor complete.
        The CSR index points into the neighbour lists (for the candidate's K and similarity).
        """
        offsets = np.frombuffer(self._offsets, dtype=np.int64)
        n = len(offsets) - 1
        counts = np.diff(offsets)
        row = np.repeat(np.arange(n), counts)
        below = np.frombuffer(self._kmap, dtype=np.int16) < 0
        # A row's walk stops at its first below-floor entry: keep the entries before it.
        cum = np.cumsum(below, dtype=np.int64)
        keep = (cum - below == (cum - below)[offsets[:-1][row]]) & ~below
        cut = np.bincount(row[below], minlength=n) > 0
        slots = np.frombuffer(self._ids, dtype=np.int32).astype(np.int64)
        if self._per_user:
            slots += np.repeat(np.asarray(self._bases, dtype=np.int64), counts)
        kept = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(row[keep], minlength=n), out=kept[1:])
        fallback = (~cut & ~np.asarray(self._complete, dtype=bool)).tolist()
        return kept, slots[keep], np.flatnonzero(keep), fallback

    def replay_columns(self, n: int, arrivals: list[float], stride: int) -> dict[str, list]:
        """``lookup(i, now)`` then ``complete(i, decision, now)`` for requests 0..n-1, fast.

        The cache-only replay's hot loop: the same decisions, cache contents and counters as
        the two public calls (the tests hold it to that), without building a Decision per
        request; compiled (:mod:`sim.cache.kernel`) when the policy declares a priority rule
        and the store is the common kind. Occupancy is sampled after every ``stride``
        requests, as ``replay`` does. Returns record columns: ``outcome`` (codes of
        ``sim.base.records.OUTCOMES``), ``matched``, ``similarity``, ``k_planned``, ``k_used``,
        ``steps``, ``quality``.
        """
        store = self.store
        simple = not store.by_prompts and not store.whole_prompt and store.batch == 1 and store.capacity > 0
        if simple and store.policy.rule is not None and not store.masks:
            return self._columns(*self._compiled_replay(n, arrivals, stride))
        return self._columns(*self._python_replay(n, arrivals, stride))

    def _columns(
        self,
        code: list[int],
        matched: list[int],
        similarity: list[float],
        k_planned: list[int],
        k_used: list[int],
    ) -> dict[str, list]:
        """Record columns from the replay's outcome codes, and the counters they imply."""
        miss_c, hole_c = OUTCOME_CODE["miss"], OUTCOME_CODE["hole"]
        self.lookups += len(code)
        reused = [ku for c, ku in zip(code, k_used, strict=True) if c != miss_c]
        self.store.hits += len(reused)
        self.holes += sum(1 for c in code if c == hole_c)
        for ku in reused:
            self._hits_by_k[ku] += 1
        n_steps = self.n_steps
        q_miss = self._q_vanilla
        quality = self._quality
        return {
            "outcome": code,
            "matched": matched,
            "similarity": similarity,
            "k_planned": k_planned,
            "k_used": k_used,
            "steps": [n_steps - ku for ku in k_used],
            "quality": [q_miss if c == miss_c else quality[ku] for c, ku in zip(code, k_used, strict=True)],
        }

    def _compiled_replay(self, n: int, arrivals: list[float], stride: int) -> tuple[list, ...]:
        from sim.cache import kernel

        bases = np.asarray(self._bases, dtype=np.int64)
        own = (bases + np.asarray(self._pids, dtype=np.int64))[:n]
        # Dense slot numbers: only slots some request stores can ever be cached.
        uniq = np.unique(own) if self._per_user else np.flatnonzero(np.bincount(own))
        if self._per_user:
            # (user, prompt) slots are too sparse for a lookup table: list them densely.
            kept, slots, csr, fallback = self._candidate_csr()
            pos = np.minimum(np.searchsorted(uniq, slots), len(uniq) - 1)
            storable = uniq[pos] == slots
            row_of = np.repeat(np.arange(len(kept) - 1), np.diff(kept))
            offsets = np.zeros(n + 1, np.int64)
            np.cumsum(np.bincount(row_of[storable], minlength=len(kept) - 1)[:n], out=offsets[1:])
            csr = csr[storable][: offsets[-1]]
            cand = kernel.Candidates(
                offsets=offsets,
                ids=pos[storable][: offsets[-1]].astype(np.int32),
                ks=np.frombuffer(self._kmap, dtype=np.int16)[csr],
                sims=np.frombuffer(self._sims, dtype=np.float32)[csr],
                complete=~np.asarray(fallback[:n], dtype=bool),
                dense_of=np.arange(len(uniq), dtype=np.int32),
            )
        else:
            # Shared slots are prompt ids: the kernel walks the lists themselves, no copies.
            dense_of = np.full(self._n_prompts, -1, np.int32)
            dense_of[uniq] = np.arange(len(uniq), dtype=np.int32)
            cand = kernel.Candidates(
                offsets=np.frombuffer(self._offsets, dtype=np.int64),
                ids=np.frombuffer(self._ids, dtype=np.int32),
                ks=np.frombuffer(self._kmap, dtype=np.int16),
                sims=np.frombuffer(self._sims, dtype=np.float32),
                complete=np.asarray(self._complete, dtype=bool),
                dense_of=dense_of,
            )

        def more(i: int, masks: np.ndarray) -> tuple[int, float, int]:
            # Every listed candidate is gone: the nearest of what is cached now, exactly.
            cached = np.flatnonzero(masks)
            base = int(bases[i])
            prompts = uniq[cached] - base
            if self._per_user:
                mine = (prompts >= 0) & (prompts < self._n_prompts)  # this user's partition
                cached, prompts = cached[mine], prompts[mine]
            at, s = self._nb.nearest_among(i, prompts)
            if at < 0:
                return -1, NAN, 0
            k = int(self._entry_k(np.array([s], dtype=np.float32))[0])
            return (int(cached[at]), s, k) if k >= 0 else (-1, NAN, 0)

        store = self.store
        res = kernel.replay(
            n,
            stride,
            cand,
            np.searchsorted(uniq, own),
            self.levels,
            self._store_on_hit,
            store.capacity,
            store.policy.rule,
            more,
        )
        # Hand the final state back to the store and the policy, in original slot numbers.
        shift = self.shift
        live = np.flatnonzero(res.masks)
        store.masks = dict(zip(uniq[live].tolist(), res.masks[live].tolist(), strict=True))
        store.entries, store.insertions, store.evictions = res.entries, res.insertions, res.evictions
        n_levels = len(self.levels)
        levels = np.asarray(self.levels, dtype=np.int64)
        keys = uniq[res.live_keys // n_levels] << shift | levels[res.live_keys % n_levels]
        store.policy.restore(keys.tolist(), res.live_prio.tolist())
        samples = [min(lo + stride, n) - 1 for lo in range(0, n, stride)]
        for c, last in enumerate(samples):
            self._occupancy.append((arrivals[last], int(res.occ_entries[c]), int(res.occ_prompts[c])))
        codes = np.array([OUTCOME_CODE[o] for o in ("miss", "hit", "hole")], dtype=np.int64)[res.code]
        matched = np.where(res.matched >= 0, uniq[np.maximum(res.matched, 0)] - bases[:n], -1)
        return (
            codes.tolist(),
            matched.tolist(),
            res.similarity.tolist(),
            res.k_planned.tolist(),
            res.k_used.tolist(),
        )

    def _python_replay(self, n: int, arrivals: list[float], stride: int) -> tuple[list, ...]:
        """The interpreted fast path, for policies without a priority rule and uncommon stores."""
        kept, slots, _, fallback = self._candidate_csr()
        flat = slots.tolist()
        rows = [tuple(flat[a:b]) for a, b in zip(kept[:-1].tolist(), kept[1:].tolist(), strict=True)]
        starts = np.frombuffer(self._offsets, dtype=np.int64)[:-1].tolist()
        store = self.store
        masks = store.masks
        masks_get = masks.get
        policy = store.policy
        on_hit, insert_levels, evict_n = policy.on_hit, policy.on_insert_levels, policy.evict_n
        shift = self.shift
        level_mask = (1 << shift) - 1
        kmap, sims = self._kmap, self._sims
        bases = self._bases
        own_slots = [b + p for b, p in zip(bases, self._pids, strict=True)] if self._per_user else self._pids
        above, all_levels, n_all = self._above, self.levels, len(self.levels)
        more = self._more
        miss_c, hit_c, hole_c = (OUTCOME_CODE[o] for o in ("miss", "hit", "hole"))
        # Latent granularity, entry capacity, one victim per missing entry: the store's insert,
        # inlined with its counters in locals. Anything else goes through LatentStore.insert.
        inline = not store.by_prompts and not store.whole_prompt and store.batch == 1 and store.capacity > 0
        capacity = store.capacity
        entries, insertions, evictions = store.entries, store.insertions, store.evictions
        insert = store.insert

        code = [miss_c] * n
        matched = [-1] * n
        similarity = [NAN] * n
        k_planned = [0] * n
        k_used = [0] * n
        for lo in range(0, n, stride):
            hi = min(lo + stride, n)
            for i in range(lo, hi):
                row = rows[i]
                for slot in row:
                    if slot in masks:
                        j = starts[i] + row.index(slot)
                        k = kmap[j]
                        s = sims[j]
                        break
                else:
                    if not fallback[i]:
                        levels, nl = all_levels, n_all
                        slot = -1
                    else:
                        slot, s, k = more(i, bases[i])
                        if slot < 0:
                            levels, nl = all_levels, n_all
                if slot >= 0:
                    similarity[i] = s
                    if not k:
                        levels, nl = all_levels, n_all
                    else:
                        k_planned[i] = k
                        ku = (masks[slot] & ((2 << k) - 1)).bit_length() - 1
                        if ku < 0:
                            levels, nl = all_levels, n_all
                        else:
                            on_hit(slot << shift | ku, i, k)
                            code[i] = hit_c if ku == k else hole_c
                            matched[i] = slot - bases[i]
                            k_used[i] = ku
                            levels = above[ku]
                            nl = len(levels)
                # complete(i, decision): store the levels the generation passed.
                if not nl:
                    continue
                own = own_slots[i]
                if not inline:
                    insert(own, levels, i)
                    continue
                m = masks_get(own, 0)
                if m:
                    levels = [x for x in levels if not m >> x & 1]
                    nl = len(levels)
                    if not nl:
                        continue
                if entries + nl > capacity:
                    if nl > capacity:
                        levels = sorted(levels)[-capacity:]
                        nl = len(levels)
                    if entries + nl > capacity:
                        victims = evict_n(entries + nl - capacity, i)
                        for key in victims:
                            vs = key >> shift
                            vm = masks[vs] & ~(1 << (key & level_mask))
                            if vm:
                                masks[vs] = vm
                            else:
                                del masks[vs]
                        entries -= len(victims)
                        evictions += len(victims)
                        m = masks_get(own, 0)
                for x in levels:
                    m |= 1 << x
                insert_levels(own << shift, levels, i)
                masks[own] = m
                entries += nl
                insertions += nl
            if inline:
                store.entries, store.insertions, store.evictions = entries, insertions, evictions
            self.record_occupancy(arrivals[hi - 1])

        return code, matched, similarity, k_planned, k_used


def _require_neighbours(system: str, neighbours: Any, needed: float) -> None:
    if neighbours is None:
        raise ValueError(f"system {system!r} needs causal neighbour lists")
    have = getattr(neighbours, "min_similarity", None)
    if have is not None and not math.isnan(have) and have > needed + 1e-9:
        raise ConfigError(
            "neighbours.min_similarity",
            have,
            f"system {system!r} acts on similarities down to {needed}; build the lists at or below it",
        )


SYSTEMS: dict[str, type[System]] = {cls.name: cls for cls in (Vanilla, Exact, GptCache, Nirvana)}


def build_system(name: str, exp: Experiment, trace_arrays: Any, neighbours: Any, profile: Profile) -> System:
    """Build system ``name`` (a key of :data:`SYSTEMS`) for one trace.

    ``trace_arrays``: a :class:`TraceArrays` or a ``Trace`` (its ``prompt_ids``,
    ``user_codes`` and ``arrival_s`` are read); ``neighbours``: the trace's
    ``NeighbourLists`` (may be None for vanilla and exact).
    """
    if name not in SYSTEMS:
        raise ConfigError("systems", name, "allowed: " + ", ".join(sorted(SYSTEMS)))
    arrays = trace_arrays if isinstance(trace_arrays, TraceArrays) else TraceArrays.of(trace_arrays)
    return SYSTEMS[name](exp, arrays, neighbours, profile)
