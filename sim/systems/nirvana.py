"""``nirvana``: approximate latent caching (Nirvana, NSDI 2024).

The nearest cached neighbour's latent at level K replaces K of the N denoising steps. The walk
takes request i's candidates most similar first and stops at the first one with anything
cached (see :mod:`sim.systems.cached`); the selector maps its similarity to K; the latent of
level K is served, or on a hole the largest cached K' <= K; with no level <= K cached the
request misses. A miss stores every level of the ladder, a hit at K' the levels above K'
(``cache.store_on_hit``).

The cache-only replay of this system runs compiled (:mod:`sim.cache.kernel`) when the policy
declares a priority rule and the store is the common kind; otherwise ``sim.replay`` drives
:meth:`Nirvana.lookup` and :meth:`Nirvana.complete` request by request. Both make the same
decisions (tests/test_policies.py holds them to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.records import OUTCOME_CODE
from sim.cache import kernel
from sim.quality import QualityModel
from sim.selector import Selector
from sim.systems.base import NAN, Decision, TraceArrays, require_neighbours
from sim.systems.cached import CachedSystem, request_of_entry

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

_new = tuple.__new__


class Nirvana(CachedSystem):
    """Approximate latent caching (Nirvana, NSDI 2024)."""

    name = "nirvana"
    lookup_kind = "vector"
    needs_neighbours = True
    saves_latents = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        self.selector = Selector.from_config(exp, profile)
        require_neighbours(self.name, neighbours, self.selector.min_similarity)
        self.levels = tuple(sorted(profile.k_levels))
        super().__init__(exp, arrays, neighbours, profile)
        n = profile.steps
        qv = profile.quality_vanilla
        self._q_vanilla = qv
        # Expected CLIP score of a hit at (K, similarity): by similarity bin when the profile has them.
        self._hit_quality = QualityModel(profile).hit
        self._store_on_hit = exp.cache.store_on_hit and self.stores
        # Levels a generation passes and stores: all of them on a miss, those above k after a hit at k.
        self._store_all = self.levels if self.stores else ()
        self._above = {
            k: tuple(x for x in self.levels if x > k) if self._store_on_hit else () for k in self.levels
        }
        self._miss = Decision("miss", -1, NAN, 0, 0, n, qv, self._store_all)

    @classmethod
    def min_similarity(cls, exp: Experiment, profile: Profile) -> float | None:
        return Selector.from_config(exp, profile).min_similarity

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(neighbours.offsets)
        reqs = request_of_entry(offsets)
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
            return _new(Decision, ("miss", -1, s, 0, 0, n, self._q_vanilla, self._store_all))
        # Largest cached level <= k (LatentStore.best_level, inlined).
        ku = (masks[slot] & ((2 << k) - 1)).bit_length() - 1
        if ku < 0:
            return _new(Decision, ("miss", -1, s, k, 0, n, self._q_vanilla, self._store_all))
        store.hits += 1
        self._on_hit(slot << self.shift | ku, i, k)
        self._hits_by_k[ku] += 1
        if ku == k:
            outcome = "hit"
        else:
            outcome = "hole"
            self.holes += 1
        return _new(Decision, (outcome, slot - base, s, k, ku, n - ku, self._hit_quality(ku, s), self._above[ku]))

    def _steps_skipped(self, slot: int, similarity: float, k: int, boost: int) -> int:
        if boost:
            k = self.selector.k_for(similarity, boost)
        return max((self.store.masks[slot] & ((2 << k) - 1)).bit_length() - 1, 0) if k else 0

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

    def replay_columns(
        self, n: int, arrivals: list[float], stride: int, admit: np.ndarray | None = None
    ) -> dict[str, list] | None:
        """The compiled replay (:mod:`sim.cache.kernel`) when the policy declares a priority rule and
        the store is the common kind (latent granularity, capacity in entries, one victim at a time,
        empty); None otherwise. Occupancy is sampled after every ``stride`` requests, as ``replay``
        does.
        """
        store = self.store
        simple = not store.by_prompts and not store.whole_prompt and store.batch == 1 and store.capacity > 0
        if not (simple and store.policy.rule is not None and not store.masks):
            return None
        admitted = np.ones(n, dtype=bool) if admit is None else np.asarray(admit[:n], dtype=bool)
        return self._columns(*self._compiled_replay(n, arrivals, stride, admitted), admitted.tolist())

    def _columns(
        self,
        code: list[int],
        matched: list[int],
        similarity: list[float],
        k_planned: list[int],
        k_used: list[int],
        admitted: list[bool],
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
        hit_quality = self._hit_quality
        saved = {k: len(levels) for k, levels in self._above.items()}
        n_all = len(self._store_all)
        return {
            "outcome": code,
            "matched": matched,
            "similarity": similarity,
            "k_planned": k_planned,
            "k_used": k_used,
            "steps": [n_steps - ku for ku in k_used],
            "quality": [
                q_miss if c == miss_c else hit_quality(ku, s) for c, ku, s in zip(code, k_used, similarity, strict=True)
            ],
            "saved_latents": [
                (n_all if c == miss_c else saved[ku]) if a else 0
                for c, ku, a in zip(code, k_used, admitted, strict=True)
            ],
        }

    def _compiled_replay(
        self, n: int, arrivals: list[float], stride: int, admit: np.ndarray
    ) -> tuple[list, ...]:
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
            admit,
        )
        # Hand the final state back to the store and the policy, in original slot numbers.
        shift = self.shift
        live = np.flatnonzero(res.masks)
        n_levels = len(self.levels)
        levels = np.asarray(self.levels, dtype=np.int64)
        keys = uniq[res.live_keys // n_levels] << shift | levels[res.live_keys % n_levels]
        store.load_state(
            dict(zip(uniq[live].tolist(), res.masks[live].tolist(), strict=True)),
            counters=(res.entries, res.insertions, res.evictions),
            order=(keys.tolist(), res.live_prio.tolist()),
        )
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
