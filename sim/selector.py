"""Similarity -> K: how many denoising steps a cached latent of a neighbour may replace.

The ladder is a list of (threshold, K) rungs, thresholds descending; the first threshold
that the similarity strictly exceeds gives K (the artifact's ``heuristics_K``), no rung
means a miss (K = 0). The load-aware variant (Argus-like) takes a ``boost``: under load
the engine asks for ``boost`` rungs more K, for any similarity above ``floor``, capped at
``max_k``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.base.errors import ConfigError
from sim.ladders import ladder_for

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


class Selector:
    """Maps a similarity to the K level to reuse (0: do not reuse)."""

    __slots__ = ("thresholds", "ks", "floor", "max_k", "min_similarity")

    def __init__(
        self, ladder: list[tuple[float, int]], floor: float | None = None, max_k: int | None = None
    ) -> None:
        rungs = sorted(((float(s), int(k)) for s, k in ladder), reverse=True)
        if not rungs:
            raise ValueError("a ladder needs at least one rung")
        self.thresholds = [s for s, _ in rungs]
        self.max_k = max(k for _, k in rungs) if max_k is None else int(max_k)
        # Rungs above max_k are capped, so a boost can never ask for more than max_k.
        self.ks = [min(k, self.max_k) for _, k in rungs]
        self.floor = self.thresholds[-1] if floor is None else float(floor)
        # Below this similarity no candidate can ever be reused.
        self.min_similarity = min(self.floor, self.thresholds[-1])

    @classmethod
    def from_config(cls, exp: Experiment, profile: Profile) -> Selector:
        """The experiment's ladder (or the carried one, or the profile's), validated against the cached K levels."""
        cfg = exp.selector
        ladder = ladder_for(exp, profile)
        levels = set(profile.k_levels)
        if not ladder:
            raise ConfigError(
                "selector.ladder",
                None,
                f"the profile {profile.name} has an empty ladder (its calibration accepted no K at any "
                "similarity); give selector.ladder to reuse latents",
            )
        for i, (s, k) in enumerate(ladder):
            if k not in levels:
                raise ConfigError(
                    f"selector.ladder[{i}]",
                    [s, k],
                    f"K must be one of the profile's cached levels {sorted(levels)}",
                )
        if cfg.load_aware:
            # Rungs above max_k are capped to it, so it must be a K the cache holds.
            if cfg.max_k < max(k for _, k in ladder) and cfg.max_k not in levels:
                raise ConfigError(
                    "selector.max_k",
                    cfg.max_k,
                    f"caps the ladder's K at {cfg.max_k}, which the profile does not cache; "
                    f"use one of its cached levels {sorted(levels)}",
                )
            return cls(ladder, floor=cfg.floor, max_k=cfg.max_k)
        return cls(ladder)

    def k_for(self, similarity: float, boost: int = 0) -> int:
        """K for a neighbour at ``similarity``; ``boost`` rungs more under load; 0 = miss."""
        thresholds = self.thresholds
        r = 0
        for t in thresholds:
            if similarity > t:
                break
            r += 1
        else:
            if not boost or similarity <= self.floor:
                return 0
            # r == len(thresholds): below the ladder but above the floor, one rung under the lowest
        if boost:
            r = max(r - boost, 0)
        return self.ks[r]

    def k_array(self, similarities: np.ndarray) -> np.ndarray:
        """:meth:`k_for` (no boost) of every similarity, and -1 below ``min_similarity``, where no
        boost can make a candidate reusable (int64)."""
        sims = np.asarray(similarities, dtype=np.float32).astype(np.float64)
        k = np.where(sims >= self.min_similarity, 0, -1)
        for t, kk in zip(reversed(self.thresholds), reversed(self.ks), strict=True):
            k[sims > t] = kk
        return k
