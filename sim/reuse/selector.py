"""Similarity -> K: how many denoising steps a cached latent of a neighbour may replace.

The ladder is a list of (threshold, K) rungs, thresholds descending; the first threshold
that the similarity strictly exceeds gives K (the artifact's ``heuristics_K``), no rung
means a miss (K = 0). The load-aware variant (Argus-like) takes a ``boost``: under load
the engine asks for ``boost`` rungs more K, for any similarity above ``floor``, capped at
``max_k``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from sim.base.errors import ConfigError
from sim.reuse.ladders import ladder_for
from sim.reuse.similarity_space import threshold_in_run

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


class Selector:
    """Maps a similarity to the K level to reuse (0: do not reuse)."""

    __slots__ = ("thresholds", "ks", "floor", "max_k", "min_similarity", "rule")

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
        # The ladder as :func:`k_of` takes it (no boost): thresholds, their K, the floor.
        self.rule = (np.array(self.thresholds, np.float64), np.array(self.ks, np.int64), float(self.min_similarity))

    def __eq__(self, other: object) -> bool:
        # A value: two selectors built from the same ladder decide alike (replicas, replays).
        if not isinstance(other, Selector):
            return NotImplemented
        return (self.thresholds, self.ks, self.floor, self.max_k) == (other.thresholds, other.ks, other.floor, other.max_k)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not a dict key

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
            return cls(ladder, floor=threshold_in_run(exp, cfg.floor, "clip"), max_k=cfg.max_k)
        return cls(ladder)

    def named_thresholds(self) -> dict[str, float]:
        """Each rung as ``ladder[i] K=<k>`` and, when it differs from the last rung, the ``floor``."""
        out = {f"ladder[{i}] K={k}": t for i, (t, k) in enumerate(zip(self.thresholds, self.ks, strict=True))}
        if self.floor != self.thresholds[-1]:
            out["floor"] = self.floor
        return out

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
        return k_of(np.ascontiguousarray(similarities, dtype=np.float32), *self.rule)


@numba.njit(cache=True, nogil=True)
def k_of(sims: np.ndarray, thresholds: np.ndarray, ks: np.ndarray, min_similarity: float) -> np.ndarray:  # pragma: no cover - compiled
    """K of each (float32) similarity under a ladder (``Selector.rule``): the K of the first
    threshold it strictly exceeds, 0 when none but it reaches ``min_similarity``, -1 below that
    (int64). The one implementation of the rule, shared by the selector and the compiled replay."""
    out = np.empty(len(sims), np.int64)
    for i in range(len(sims)):
        s = np.float64(sims[i])
        k = -1
        if s >= min_similarity:
            k = 0
            for r in range(len(thresholds)):
                if s > thresholds[r]:
                    k = ks[r]
                    break
        out[i] = k
    return out
