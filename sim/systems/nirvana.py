"""``nirvana``: approximate latent caching (Nirvana, NSDI 2024).

The latent of a similar earlier prompt after K denoising steps replaces the first K of the N
steps. Lookup: request i's candidates are taken most similar first; the selector maps each
one's similarity to a K, and the candidate offers the largest level it holds at or below
that K. The request is served from the candidate and level that skip the most steps (ties:
the more similar candidate). The walk stops as soon as a candidate's K cannot beat the best
level found (the ladder only falls with similarity), so it rarely looks past the first
cached candidate. ``k_planned`` is the K of the nearest cached candidate (the best match
the index returns); a request served below it is a *hole* (the wanted level of the best
match was evicted, or that match holds nothing usable and a less similar one served);
a request no candidate can serve is a miss. When a truncated list runs out before the walk
settles, the same rule decides over every cached prompt with exact similarities
(:meth:`Nirvana._decide_among`).

What a generation stores (``cache.store_on_hit``, ``cache.trajectory``): a miss stores every
level of the ladder. A hit at K' ran the matched prompt's trajectory up to K', so the new
prompt's latents at levels <= K' are the matched prompt's and those above K' are its own: it
stores the levels above K' (which the GPU computed and saved) and, for the levels <= K' the
matched prompt still holds when the generation completes, either references to the same
bytes (``reference``, no storage), copies (``copy``, a latent each) or nothing
(``computed``). With ``store_on_hit: false`` a hit stores nothing (the artifact's and MoDM's
rule). With an unbounded cache and shared trajectories every generated prompt holds every
level, so each request is served at the K of its best earlier match: the ``ceiling`` system.

The cache-only replay of this system runs compiled (:mod:`sim.cache.kernel`) when the policy
declares a priority rule and the store is the common kind; otherwise ``sim.engine.replay`` drives
:meth:`Nirvana.lookup` and :meth:`Nirvana.complete` request by request. Both make the same
decisions (tests/test_policies.py holds them to it).
"""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.records import OUTCOME_CODE
from sim.cache import kernel
from sim.neighbours.ivf import probe
from sim.reuse.quality import QualityModel
from sim.reuse.selector import Selector
from sim.reuse.similarity_space import run_space
from sim.systems.base import NAN, ChoosesK, Decision, TraceArrays, require_neighbours
from sim.systems.cached import CachedSystem, request_of_entry

if TYPE_CHECKING:
    from collections.abc import Hashable

    from sim.base.config import Experiment
    from sim.base.profile import Profile

_new = tuple.__new__
_NO_MATCH: kernel.Fallback = (-1, NAN, 0, 0, NAN, 0)


class Nirvana(ChoosesK, CachedSystem):
    """Approximate latent caching (Nirvana, NSDI 2024)."""

    name = "nirvana"
    lookup_kind = "vector"
    needs_neighbours = True
    saves_latents = True
    real_lookup = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        self.selector = Selector.from_config(exp, profile)
        require_neighbours(self.name, neighbours, self.selector.min_similarity)
        self.levels = tuple(sorted(profile.k_levels))
        self._levels = np.array(self.levels, np.int64)
        # The lists' partition, which a fallback probes once the cache outgrows its budget (shared
        # slots only: per user, a cell's count would mix users).
        self._cells = getattr(neighbours, "cells", None) if exp.cache.isolation != "per-user" else None
        super().__init__(exp, arrays, neighbours, profile)
        n = profile.steps
        qv = profile.quality_vanilla
        self._q_vanilla = qv
        # Expected quality of a hit at level K from a prompt at similarity s (sim.reuse.quality).
        self._quality_model = QualityModel(profile, run_space(exp))
        self._hit_quality = self._quality_model.hit
        self._store_on_hit = exp.cache.store_on_hit and self.stores
        self.trajectory = exp.cache.trajectory
        # What a hit does with the levels <= K' it shares with the matched prompt.
        self._share = self._store_on_hit and self.trajectory == "reference"
        self._copy = self._store_on_hit and self.trajectory == "copy"
        # Levels a generation computes and saves: all of them on a miss, those above k after a hit at k.
        self._store_all = self.levels if self.stores else ()
        self._above = {
            k: tuple(x for x in self.levels if x > k) if self._store_on_hit else () for k in self.levels
        }
        self._miss = Decision("miss", -1, NAN, 0, 0, n, qv, self._store_all)
        self.fallbacks = 0  # lookups decided over the cached prompts (a truncated list ran out)
        if self._cells is not None:
            self.store.index_groups(self._cells.of_prompt, len(self._cells.centroids))

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(neighbours.offsets)
        reqs = request_of_entry(offsets)
        k = self._entry_k(neighbours.sims)
        use = k > 0
        slots = self._slots_of(arrays, reqs[use], np.asarray(neighbours.ids)[use])
        return slots << self.shift | k[use], reqs[use]

    def _entry_k(self, sims: np.ndarray) -> np.ndarray:
        return self.selector.k_array(sims)

    def _entry_k_key(self) -> Hashable:
        sel = self.selector
        return (tuple(sel.thresholds), tuple(sel.ks), sel.min_similarity)

    def _choose(self, i: int, base: int, boost: int) -> kernel.Fallback | None:
        """The lookup's choice for request i, without side effects: (slot served from or -1, its
        similarity, level used, K planned, similarity of the nearest cached candidate, K asked of
        the one served); None when a truncated list ran out first (:meth:`_choose_exhaustive`)."""
        masks, ids, kmap, sims = self.store.masks, self._ids, self._kmap, self._sims
        best = -1  # CSR index of the candidate served from
        best_u = best_k = near_k = 0
        near_s = NAN
        # The walk (module docstring); this is the replay's hottest loop.
        j, end = self._offsets[i], self._offsets[i + 1]
        while j < end:
            k = kmap[j]
            if boost and k >= 0:
                k = self.selector.k_for(sims[j], boost)
            if k <= best_u:  # below the floor, or no later candidate can beat the best
                break
            m = masks.get(base + ids[j])
            if m is not None:
                if not near_k:
                    near_k, near_s = k, sims[j]
                m &= (2 << k) - 1
                if m:
                    u = m.bit_length() - 1
                    if u > best_u:
                        best, best_u, best_k = j, u, k
            j += 1
        else:
            if not self._complete[i]:
                return None
        if best >= 0:
            return (base + ids[best], sims[best], best_u, near_k, near_s, best_k)
        return (-1, NAN, 0, near_k, near_s, 0)

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        base = self._bases[i]
        choice = self._choose(i, base, boost)
        if choice is None:
            self.fallbacks += 1
            choice = self._choose_exhaustive(i, base, boost)
        return self._apply(i, choice)

    def lookup_among(self, i: int, slots: list[int], sims: np.ndarray, now: float, boost: int = 0) -> Decision:
        if not slots:
            return self._apply(i, _NO_MATCH)
        masks = self.store.masks
        base = self._bases[i]
        held = np.fromiter((masks[s] for s in slots), np.int64, len(slots))
        at, s, u, k_planned, near_s, k_asked = self._rule(
            np.asarray(slots, np.int64) - base, held, np.asarray(sims, np.float32), boost
        )
        return self._apply(i, (slots[at] if at >= 0 else -1, s, u, k_planned, near_s, k_asked))

    def _apply(self, i: int, choice: kernel.Fallback) -> Decision:
        """The lookup's outcome and side effects for the choice made (see :meth:`_choose`)."""
        self.lookups += 1
        slot, s, u, k_planned, near_s, k_asked = choice
        if slot >= 0:
            return self._serve(i, slot, s, u, k_asked, k_planned)
        if k_planned:
            return _new(Decision, ("miss", -1, near_s, k_planned, 0, self.n_steps, self._q_vanilla, self._store_all))
        return self._miss

    def probe(self, i: int, now: float = 0.0, boost: int = 0) -> int:
        base = self._bases[i]
        slot, _, u, *_ = self._choose(i, base, boost) or self._choose_exhaustive(i, base, boost)
        return u if slot >= 0 else 0

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(fallbacks=self.fallbacks, selector=self.selector, quality_model=self._quality_model)
        return out

    def _serve(self, i: int, slot: int, s: float, u: int, k_asked: int, k_planned: int) -> Decision:
        """Request i is served level ``u`` of ``slot`` (similarity ``s``, whose K is ``k_asked``)."""
        store = self.store
        store.hits += 1
        key = slot << self.shift | u
        self._on_hit(store.refs.get(key, key), i, k_asked)
        self._hits_by_k[u] += 1
        if u == k_planned:
            outcome = "hit"
        else:
            outcome = "hole"
            self.holes += 1
        n = self.n_steps
        pid = slot - self._bases[i]
        return _new(Decision, (outcome, pid, s, k_planned, u, n - u, self._hit_quality(u, s), self._above[u]))

    def _choose_exhaustive(self, i: int, base: int, boost: int) -> kernel.Fallback:
        """The lookup's choice over every cached prompt of request i's partition (a truncated list
        ran out), without side effects (see :meth:`_choose`)."""
        store, cells = self.store, self._cells
        masks = store.masks
        take = None
        if cells is not None:  # the store keeps its slots by cell (index_groups, in __init__)
            own = self._nb.embeddings[self._pids[i]]
            take = probe(own, cells.proj, cells.centroids, store.group_sizes, cells.budget, cells.min_probes, cells.max_probes)
        if take is not None and not take.all():
            # More cached than the budget: the cells nearest the request only (sim.neighbours.ivf.probe).
            slots = np.fromiter(chain.from_iterable(map(store.group, np.flatnonzero(take).tolist())), np.int64)
            held = np.fromiter(map(masks.__getitem__, slots.tolist()), np.int64, len(slots))
        else:
            # Keys and values of a dict iterate in the same order: both read at C speed.
            slots = np.fromiter(masks.keys(), np.int64, len(masks))
            held = np.fromiter(masks.values(), np.int64, len(masks))
            if self._per_user:
                mine = (slots >= base) & (slots < base + self._n_prompts)
                slots, held = slots[mine], held[mine]
        if not len(slots):
            return _NO_MATCH
        at, s, u, k_planned, near_s, k_asked = self._decide_among(i, slots - base, held, boost)
        return (int(slots[at]) if at >= 0 else -1, s, u, k_planned, near_s, k_asked)

    def _decide_among(self, i: int, prompts: np.ndarray, held: np.ndarray, boost: int) -> kernel.Fallback:
        """The lookup rule over the cached ``prompts`` (any order; ``held``: their level masks),
        with exact similarities: (position served from or -1, its similarity, level used, K
        planned, similarity of the nearest, K asked of the one served); K planned 0: none of
        them is similar enough to plan a K."""
        return self._rule(prompts, held, np.asarray(self._nb.similarities(i, prompts), dtype=np.float32), boost)

    def _rule(self, prompts: np.ndarray, held: np.ndarray, sims: np.ndarray, boost: int) -> kernel.Fallback:
        """:func:`sim.cache.kernel.decide` over cached ``prompts`` with their level masks and similarities."""
        ks = self._entry_k(sims)
        if boost:
            ks = np.array([self.selector.k_for(float(s), boost) if k >= 0 else -1 for s, k in zip(sims, ks, strict=True)])
        return kernel.decide(
            np.asarray(prompts, np.int64), np.asarray(held, np.int64), sims, np.asarray(ks, np.int64), self._levels
        )

    def complete(self, i: int, decision: Decision, now: float) -> None:
        own = self._bases[i] + self._pids[i]
        levels = decision.store_levels
        store = self.store
        if decision.matched >= 0 and (self._share or self._copy):
            source = self._bases[i] + decision.matched
            if self._copy:
                held = store.masks.get(source, 0) & ((2 << decision.k_used) - 1)
                store.insert(own, tuple(k for k in self.levels if held >> k & 1) + levels, i)
                return
            if levels:
                store.insert(own, levels, i)
            store.link(own, source, decision.k_used, i)
        elif levels:
            store.insert(own, levels, i)

    # -- the cache-only replay's fast paths ----------------------------------------------
    def replay_columns(
        self, n: int, arrivals: list[float], stride: int, admit: np.ndarray | None = None
    ) -> dict[str, Any] | None:
        """The compiled replay (:mod:`sim.cache.kernel`) when the policy declares a priority rule and
        the store is the common kind (latent granularity, capacity in entries, one victim at a time,
        empty); None otherwise. Occupancy is sampled after every ``stride`` requests, as ``replay``
        does; a request whose ``admit`` entry is False stores nothing (``sim.cache.admission``).
        """
        store = self.store
        simple = not store.by_prompts and not store.whole_prompt and store.batch == 1 and store.capacity > 0
        # Its fallback scores the cached prompts from the embeddings (lists loaded without them: the loop).
        scored = getattr(self._nb, "embeddings", None) is not None
        if not (simple and scored and store.policy.rule is not None and not store.masks):
            return None
        admitted = np.ones(n, dtype=bool) if admit is None else np.asarray(admit[:n], dtype=bool)
        return self._columns(*self._compiled_replay(n, arrivals, stride, admitted), admitted)

    def _columns(
        self,
        code: np.ndarray,
        matched: np.ndarray,
        similarity: np.ndarray,
        k_planned: np.ndarray,
        k_used: np.ndarray,
        admitted: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Record columns from the replay's outcome codes, and the counters they imply."""
        miss = code == OUTCOME_CODE["miss"]
        self.lookups += len(code)
        self._store.hits += int((~miss).sum())
        self.holes += int((code == OUTCOME_CODE["hole"]).sum())
        for k, c in enumerate(np.bincount(k_used[~miss], minlength=len(self._hits_by_k)).tolist()):
            self._hits_by_k[k] += c
        # Per K used: the latents the generation saves (a miss: all; not admitted: none).
        saved = np.full(self.n_steps + 1, len(self._store_all))
        for k in self.levels:
            saved[k] = len(self._above[k])
        quality = np.full(len(code), self._q_vanilla)
        hit = ~miss
        quality[hit] = self._quality_model.hit_array(k_used[hit], similarity[hit])
        return {
            "outcome": code,
            "matched": matched,
            "similarity": similarity,
            "k_planned": k_planned,
            "k_used": k_used,
            "steps": self.n_steps - k_used,
            "quality": quality,
            "saved_latents": np.where(admitted, np.where(miss, len(self._store_all), saved[k_used]), 0),
        }

    def _compiled_replay(
        self, n: int, arrivals: list[float], stride: int, admit: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        bases = np.asarray(self._bases, dtype=np.int64)
        own = (bases + np.asarray(self._pids, dtype=np.int64))[:n]
        # Dense slot numbers: only slots some request stores can ever be cached.
        uniq = np.unique(own) if self._per_user else np.flatnonzero(np.bincount(own))
        # Slot = partition * n_prompts + prompt (partition 0: shared; user + 1: per-user).
        exhaustive = kernel.Exhaustive(
            embeddings=self._nb.embeddings,
            slot_prompt=uniq % self._n_prompts,
            slot_part=uniq // self._n_prompts,
            req_prompt=np.asarray(self._pids[:n], dtype=np.int64),
            req_part=bases[:n] // self._n_prompts,
            rule=self.selector.rule,
            cells=self._cells,
        )
        store = self._store
        res = kernel.replay(
            n,
            stride,
            self._candidates(bases, uniq),
            np.searchsorted(uniq, own),
            self.levels,
            self._store_on_hit,
            self.trajectory,
            store.capacity,
            store.policy.rule,
            exhaustive,
            admit,
        )
        self._hand_back(res, uniq)
        self.fallbacks += res.fallbacks
        samples = [min(lo + stride, n) - 1 for lo in range(0, n, stride)]
        for c, last in enumerate(samples):
            self._occupancy.append((arrivals[last], int(res.occ_entries[c]), int(res.occ_prompts[c])))
        codes = np.array([OUTCOME_CODE[o] for o in ("miss", "hit", "hole")], dtype=np.int8)[res.code]
        matched = np.where(res.matched >= 0, uniq[np.maximum(res.matched, 0)] - bases[:n], -1)
        return codes, matched, res.similarity, res.k_planned, res.k_used

    def _candidates(self, bases: np.ndarray, uniq: np.ndarray) -> kernel.Candidates:
        """The neighbour lists as the kernel walks them, with ``uniq`` (the slots ever stored) dense."""
        offsets = np.frombuffer(self._offsets, dtype=np.int64)
        ids = np.frombuffer(self._ids, dtype=np.int32)
        if self._per_user:
            # (user, prompt) slots are too sparse for a lookup table: each listed candidate gets
            # its dense slot directly (id len(uniq) -> -1 when that user never stores the prompt).
            slots = ids.astype(np.int64) + np.repeat(bases, np.diff(offsets))
            pos = np.minimum(np.searchsorted(uniq, slots), len(uniq) - 1)
            ids = np.where(uniq[pos] == slots, pos, len(uniq)).astype(np.int32)
            dense_of = np.append(np.arange(len(uniq), dtype=np.int32), np.int32(-1))
        else:
            # Shared slots are prompt ids: the kernel walks the lists themselves, no copies.
            dense_of = np.full(self._n_prompts, -1, np.int32)
            dense_of[uniq] = np.arange(len(uniq), dtype=np.int32)
        return kernel.Candidates(
            offsets=offsets,
            ids=ids,
            ks=np.asarray(self._kmap),
            sims=np.frombuffer(self._sims, dtype=np.float32),
            complete=np.asarray(self._complete, dtype=bool),
            dense_of=dense_of,
        )

    def _hand_back(self, res: kernel.KernelResult, uniq: np.ndarray) -> None:
        """Give the store the replay's counters now, and its final state (in original slot
        numbers) when the store is next used."""
        store, shift = self._store, self.shift
        live = np.flatnonzero(res.masks)
        n_levels = len(self.levels)
        levels = np.asarray(self.levels, dtype=np.int64)
        counters = (res.entries, res.insertions, res.evictions, res.links)
        store.entries, store.insertions, store.evictions, store.links = counters
        # What the handback needs, and not the per-request columns.
        held, order, shared = res.masks[live], (res.live_keys, res.live_prio, res.live_score), (res.shared, res.shared_latent)
        inflation = res.inflation

        def key_of(entries: np.ndarray) -> list[int]:
            return (uniq[entries // n_levels] << shift | levels[entries % n_levels]).tolist()

        def handback() -> None:
            keys, prio, score = order
            store.load_state(
                dict(zip(uniq[live].tolist(), held.tolist(), strict=True)),
                counters=counters,
                order=(key_of(keys), prio.tolist(), score.tolist(), inflation),
                refs=dict(zip(key_of(shared[0]), key_of(shared[1]), strict=True)),
            )

        self._defer_handback(handback, len(live))
