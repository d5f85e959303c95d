"""``ceiling``: the most approximate latent caching can save on a trace. A bound, not a design.

Each request is served at the K the selector gives its best similarity to any earlier prompt
whose generation has completed, as if an unbounded cache held every level of every prompt.
No eviction policy at any cache size can do better: a cached candidate is at most as similar
as the best earlier prompt, the ladder only falls with similarity, and the level a lookup
serves is at most the K of the candidate it comes from (so per request, ``k_used`` of
``nirvana`` never exceeds this system's). ``nirvana`` with an unbounded cache and shared or
copied trajectories decides exactly so (tests hold the two together, and both to an
independent computation on the real DiffusionDB sample).

Belady (``cache.policy: belady``) is not this bound: it is an offline heuristic that evicts
by the listed neighbours' next uses, and for approximate caching it is not optimal.

The system declares ``is_ceiling`` and the system it bounds, so summaries and figures draw
it as the bound (the cache-size figure as a horizontal line). Generations save their latents
as nirvana's do (every level on a miss, the levels above K on a hit), so its GPU time is
nirvana's at the best hit rate; under ``cache.isolation: per-user`` only a user's own
earlier prompts count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.records import OUTCOME_CODE
from sim.reuse.quality import QualityModel
from sim.reuse.selector import Selector
from sim.reuse.similarity_space import run_space
from sim.systems.base import NAN, ChoosesK, Decision, System, TraceArrays, require_neighbours
from sim.systems.nirvana import Nirvana

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

_new = tuple.__new__


class Ceiling(ChoosesK, System):
    """Every request at the K of its best earlier match: an unbounded cache of every level."""

    name = "ceiling"
    lookup_kind = "vector"
    needs_neighbours = True
    saves_latents = True
    is_ceiling = True
    bounds = Nirvana.name

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        self.selector = Selector.from_config(exp, profile)
        require_neighbours(self.name, neighbours, self.selector.min_similarity)
        self.levels = tuple(sorted(profile.k_levels))
        n = profile.steps
        self._pids: list[int] = arrays.prompt_ids.tolist()
        self._n_prompts = int(arrays.prompt_ids.max()) + 1 if len(arrays.prompt_ids) else 1
        self._per_user = exp.cache.isolation == "per-user"
        # Slots as in CachedSystem: (user + 1) * n_prompts + prompt under isolation, else the prompt.
        self._bases: list[int] = (
            ((arrays.user_codes.astype(np.int64) + 1) * self._n_prompts).tolist()
            if self._per_user
            else [0] * len(self._pids)
        )
        self._done: set[int] = set()  # slots whose generation completed: they hold every level
        self._hits_by_k = [0] * (n + 1)
        self._quality = QualityModel(profile, run_space(exp))
        above = {k: tuple(x for x in self.levels if x > k) for k in self.levels}
        self._hit = {k: ("hit", k, k, n - k, above[k]) for k in self.levels}
        self._q_vanilla = profile.quality_vanilla
        self._miss = Decision("miss", -1, NAN, 0, 0, n, self._q_vanilla, self.levels)
        self._nb = neighbours
        self._offsets = np.asarray(neighbours.offsets, dtype=np.int64)
        self._ids = np.asarray(neighbours.ids, dtype=np.int32)
        self._sims = np.asarray(neighbours.sims, dtype=np.float32)
        self._kmap = self.selector.k_array(self._sims)
        self._complete = np.asarray(neighbours.complete, dtype=bool)

    def _best(self, i: int) -> tuple[int, float, int]:
        """(prompt, similarity, K) of request i's most similar completed earlier prompt; prompt -1: none."""
        base = self._bases[i]
        done, ids = self._done, self._ids
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        for j in range(a, b):
            k = int(self._kmap[j])
            if k < 0:
                return -1, NAN, 0
            if base + int(ids[j]) in done:
                return int(ids[j]), float(self._sims[j]), k
        if self._complete[i]:
            return -1, NAN, 0
        # A truncated list ran out: the best of every completed prompt of this partition, exactly.
        hi = base + self._n_prompts
        prompts = np.array(sorted(s - base for s in done if base <= s < hi), dtype=np.int64)
        if not len(prompts):
            return -1, NAN, 0
        sims = np.asarray(self._nb.similarities(i, prompts), dtype=np.float32)
        best = int(np.lexsort((prompts, -sims))[0])
        k = int(self.selector.k_array(sims[best : best + 1])[0])
        return (int(prompts[best]), float(sims[best]), k) if k >= 0 else (-1, NAN, 0)

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        pid, s, k = self._best(i)
        if pid < 0:
            return self._miss
        if boost:
            k = self.selector.k_for(s, boost)
        if k <= 0:
            return _new(Decision, ("miss", -1, s, 0, 0, self.n_steps, self._q_vanilla, self.levels))
        self._hits_by_k[k] += 1
        outcome, k_planned, k_used, steps, store = self._hit[k]
        return _new(Decision, (outcome, pid, s, k_planned, k_used, steps, self._quality.hit(k, s), store))

    def probe(self, i: int, now: float = 0.0, boost: int = 0) -> int:
        pid, s, k = self._best(i)
        if pid >= 0 and boost:
            k = self.selector.k_for(s, boost)
        return max(k, 0) if pid >= 0 else 0

    def miss_decision(self, i: int, now: float) -> Decision:
        return self._miss

    def complete(self, i: int, decision: Decision, now: float) -> None:
        # Every generation holds its whole trajectory: its own levels and those it shares.
        self._done.add(self._bases[i] + self._pids[i])

    def replay_columns(
        self, n: int, arrivals: list[float], stride: int, admit: np.ndarray | None = None
    ) -> dict[str, Any] | None:
        """Vectorised for a shared cache with every generation admitted: in a cache-only replay
        every earlier prompt has then completed, so a request's best earlier match is the head of
        its neighbour list."""
        if self._per_user or (admit is not None and not np.asarray(admit[:n], dtype=bool).all()):
            return None
        offsets = self._offsets[: n + 1]
        head = offsets[:-1]
        listed = offsets[1:] > head
        j = np.where(listed, head, 0)
        k = np.where(listed, self._kmap[j] if len(self._kmap) else 0, -1)
        found = k >= 0
        k = np.maximum(k, 0)
        hit = k > 0
        similarity = np.where(found, self._sims[j].astype(np.float64) if len(self._sims) else NAN, NAN)
        steps = self.n_steps - k
        n_levels = len(self.levels)
        levels = np.asarray(self.levels)
        above = (levels[None, :] > k[:, None]).sum(axis=1)
        quality = np.full(n, self._q_vanilla)
        quality[hit] = self._quality.hit_array(k[hit], similarity[hit])
        self.lookups += n
        for kk, c in zip(*np.unique(k[hit], return_counts=True), strict=True):
            self._hits_by_k[int(kk)] += int(c)
        # Occupancy after each stride: every distinct prompt generated so far holds every level.
        pids = np.asarray(self._pids[:n])
        new_prompt = np.zeros(n, bool)
        new_prompt[np.unique(pids, return_index=True)[1]] = True
        seen = np.cumsum(new_prompt)
        for lo in range(0, n, stride):
            last = min(lo + stride, n) - 1
            self._occupancy.append((arrivals[last], int(seen[last]) * n_levels, int(seen[last])))
        self._done.update(np.unique(pids).tolist())
        miss_c, hit_c = OUTCOME_CODE["miss"], OUTCOME_CODE["hit"]
        return {
            "outcome": np.where(hit, hit_c, miss_c),
            "matched": np.where(hit, self._ids[j] if len(self._ids) else -1, -1),
            "similarity": similarity,
            "k_planned": k,
            "k_used": k,
            "steps": steps,
            "quality": quality,
            "saved_latents": np.where(hit, above, n_levels),
        }

    def cached_prompts(self) -> int:
        return len(self._done)

    def cached_entries(self) -> int:
        return len(self._done) * len(self.levels)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(
            entries=self.cached_entries(),
            prompts=len(self._done),
            bytes=self.cached_entries() * self.profile.latent_bytes,
            hits_by_k={k: c for k, c in enumerate(self._hits_by_k) if c},
            selector=self.selector,
            quality_model=self._quality,
        )
        return out
