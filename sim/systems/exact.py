"""``exact``: an exact-match cache of final images; an identical earlier prompt costs 0 steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sim.systems.base import Decision, TraceArrays
from sim.systems.cached import CachedSystem

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


class Exact(CachedSystem):
    """Exact-match cache of final images: an identical prompt costs 0 steps."""

    name = "exact"
    lookup_kind = "hash"
    real_lookup = True
    stores_images = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, None, profile)
        self._miss = self._image_miss(profile)
        self._q = profile.quality_exact

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        reqs = np.arange(len(arrays.prompt_ids), dtype=np.int64)
        return self._slots_of(arrays, reqs, arrays.prompt_ids) << self.shift | self.n_steps, reqs

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        return self._decide(i, self._bases[i] + self._pids[i] in self.store.masks)

    def lookup_among(self, i: int, slots: list[int], sims: np.ndarray, now: float, boost: int = 0) -> Decision:
        return self._decide(i, self._bases[i] + self._pids[i] in slots)

    def _decide(self, i: int, cached: bool) -> Decision:
        self.lookups += 1
        if not cached:
            return self._miss
        pid = self._pids[i]
        n = self.n_steps
        self.store.hit(self._bases[i] + pid, n, i)
        self._hits_by_k[n] += 1
        return tuple.__new__(Decision, ("exact", pid, 1.0, n, n, 0, self._q, ()))
