"""``gptcache``: GPTCache-style retrieval; a neighbour at similarity >= threshold returns its final image.

The retrieved image belongs to another prompt, so it costs no GPU steps and scores lower
(:meth:`sim.reuse.quality.QualityModel.retrieved`). When the cache is full, GPTCache evicts a fraction
of its entries at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.errors import ConfigError
from sim.reuse.quality import QualityModel
from sim.reuse.similarity_space import SPACES, run_space, threshold_in_run
from sim.systems.base import NAN, Decision, TraceArrays, require_neighbours
from sim.systems.cached import CachedSystem, request_of_entry

if TYPE_CHECKING:
    from collections.abc import Hashable

    from sim.base.config import Experiment
    from sim.base.profile import Profile


@dataclass
class GptCacheParams:
    """``params.gptcache``.

    ``threshold``: published, the gate of the paper's GPT-CACHE baseline as its authors' artifact
    sets it (Argus_T2I: the top-1 cached image is returned for a query at CLIP-text similarity
    >= 0.65; 77.5% of the 20,000 queries of its match log carry one), stated in CLIP-text
    similarity (``space: clip``) and carried to the run's embedder. The GPTCache library's own
    default is ``Config(similarity_threshold=0.8)`` (zilliztech/GPTCache ``gptcache/config.py``)
    on its own embedder's cosines: ``threshold: 0.8, space: embedder``.
    ``evict_fraction``: published, GPTCache's ``get_data_manager(clean_size=None)``, "defaults to
    ``max_size * 0.2``" entries evicted at once (``gptcache/manager/factory.py``).
    """

    threshold: float = 0.65  # similarity at or above which the cached image is returned
    space: str = "clip"  # the space `threshold` is stated in: clip (carried to the run's embedder) or embedder
    evict_fraction: float = 0.2  # share of the entries evicted at once when the cache is full

    def check(self) -> None:
        if not -1 <= self.threshold <= 1:
            raise ConfigError("threshold", self.threshold, "must be a cosine in [-1, 1]")
        if self.space not in SPACES:
            raise ConfigError("space", self.space, "allowed: " + ", ".join(SPACES))
        if not 0 < self.evict_fraction <= 1:
            raise ConfigError("evict_fraction", self.evict_fraction, "must be in (0, 1]")


class GptCache(CachedSystem):
    """GPTCache-style retrieval: a neighbour at similarity >= threshold returns its image."""

    name = "gptcache"
    lookup_kind = "vector"
    needs_neighbours = True
    params_type = GptCacheParams
    real_lookup = True
    stores_images = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        self.params = self.params_of(exp)
        self.threshold = self.min_similarity(exp, profile)
        require_neighbours(self.name, neighbours, self.threshold)
        super().__init__(exp, arrays, neighbours, profile)
        self._miss = self._image_miss(profile)
        self._retrieved = QualityModel(profile, run_space(exp)).retrieved

    @classmethod
    def min_similarity(cls, exp: Experiment, profile: Profile) -> float | None:
        """The gate in the run embedder's cosines (carried from CLIP-text unless ``space: embedder``)."""
        params = cls.params_of(exp)
        return threshold_in_run(exp, params.threshold, params.space)

    def _batch(self, exp: Experiment, capacity: int) -> int:
        return max(1, int(self.params.evict_fraction * capacity))

    def _future_pairs(self, arrays: TraceArrays, neighbours: Any) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(neighbours.offsets)
        reqs = request_of_entry(offsets)
        use = np.asarray(neighbours.sims) >= self.threshold
        slots = self._slots_of(arrays, reqs[use], np.asarray(neighbours.ids)[use])
        return slots << self.shift | self.n_steps, reqs[use]

    def _entry_k(self, sims: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(sims, dtype=np.float32) >= self.threshold, self.n_steps, -1)

    def _entry_k_key(self) -> Hashable:
        return (self.threshold, self.n_steps)

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        base = self._bases[i]
        j = self._scan(i, base)
        if j >= 0:
            return self._retrieve(i, base + self._ids[j], self._sims[j])
        if j == -1:
            return self._retrieve(i, -1, NAN)
        slot, s, _ = self._more(i, base)
        return self._retrieve(i, slot, s)

    def lookup_among(self, i: int, slots: list[int], sims: np.ndarray, now: float, boost: int = 0) -> Decision:
        # The most similar at or above the gate; ties to the lower slot, as the lists order them.
        best, best_s = -1, NAN
        for slot, s in zip(slots, np.asarray(sims, dtype=np.float32).tolist(), strict=True):
            if s >= self.threshold and (best < 0 or s > best_s or (s == best_s and slot < best)):
                best, best_s = slot, s
        return self._retrieve(i, best, best_s)

    def _retrieve(self, i: int, slot: int, s: float) -> Decision:
        """Request i gets ``slot``'s image (at similarity ``s``); slot -1: a miss."""
        self.lookups += 1
        if slot < 0:
            return self._miss
        n = self.n_steps
        self.store.hit(slot, n, i)
        self._hits_by_k[n] += 1
        pid = slot - self._bases[i]
        return tuple.__new__(Decision, ("retrieval", pid, s, n, n, 0, self._retrieved(s), ()))
