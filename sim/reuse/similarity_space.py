"""One similarity space: every published threshold is a CLIP-text cosine, carried to the run's embedder.

The paper's ladder, the artifact's retrieval gate (0.65), the retrieval quality line and the
calibrated quality bins are all stated in CLIP-text similarity (the Argus_T2I artifact matches
prompts with CLIP's text tower). Another embedder puts the same pair of prompts at another
cosine: MiniLM's is lower (the artifact's 0.75 rung is MiniLM 0.581). A run therefore compares a
threshold with its own embedder's cosines only after carrying it across, by the same quantile
map that carries the ladder (``calibrate/ladders/<embedder>.yaml``, written by ``acsim calibrate
thresholds``): the knots are the ladder's rungs in both spaces, with 1 -> 1 (identical prompts)
at the top, joined by straight lines and extended past the lowest rung along the last segment.

An embedder whose class declares ``similarity_space = "clip"`` (``clip:PATH``) measures in the
published space itself: its map is the identity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sim.base.errors import ConfigError
from sim.reuse.ladders import carried_ladder, embedder_space, ladder_path

if TYPE_CHECKING:
    from sim.base.config import Experiment

__all__ = ["PUBLISHED", "SPACES", "SimilarityMap", "run_space", "similarity_map", "threshold_in_run"]

PUBLISHED = "clip"  # the space every shipped threshold is stated in
SPACES = (PUBLISHED, "embedder")  # where a user-set threshold lives: published, or the run's own


@dataclass(frozen=True)
class SimilarityMap:
    """A monotone piecewise-linear map between CLIP-text similarity and one embedder's."""

    embedder: str
    clip: tuple[float, ...]  # knots in CLIP-text similarity, ascending
    run: tuple[float, ...]  # the same knots in the embedder's similarity, ascending
    source: str

    @property
    def identity(self) -> bool:
        """Whether the embedder measures in the published space itself."""
        return self.clip == self.run

    def to_run(self, s_clip: float | np.ndarray) -> float | np.ndarray:
        """A CLIP-text similarity in the run embedder's space."""
        return s_clip if self.identity else _interp(s_clip, self.clip, self.run)

    def to_clip(self, s_run: float | np.ndarray) -> float | np.ndarray:
        """A similarity of the run's embedder in CLIP-text space (what published numbers are read at)."""
        return s_run if self.identity else _interp(s_run, self.run, self.clip)


def _interp(x: float | np.ndarray, xs: tuple[float, ...], ys: tuple[float, ...]) -> float | np.ndarray:
    """Straight lines through the knots, continued past both ends along the end segments, and
    held to [-1, 1]: a continued segment can run past what a cosine can be."""
    lo_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    hi_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    if np.ndim(x) == 0:  # one similarity per lookup: no arrays on that path
        v = float(x)
        if v < xs[0]:
            return max(-1.0, ys[0] + (v - xs[0]) * lo_slope)
        if v > xs[-1]:
            return min(1.0, ys[-1] + (v - xs[-1]) * hi_slope)
        return float(np.interp(v, xs, ys))
    v = np.asarray(x, dtype=np.float64)
    out = np.interp(v, xs, ys)
    out = np.where(v < xs[0], ys[0] + (v - xs[0]) * lo_slope, out)
    return np.clip(np.where(v > xs[-1], ys[-1] + (v - xs[-1]) * hi_slope, out), -1.0, 1.0)


_IDENTITY_KNOTS = (-1.0, 1.0)


@functools.lru_cache(maxsize=64)
def similarity_map(embedder: str) -> SimilarityMap:
    """The map of ``embedder`` (a registry name, or ``KIND:PATH``); ConfigError when none is shipped.

    Read once per process (the shipped ladder files do not change while acsim runs)."""
    if embedder_space(embedder) == PUBLISHED:
        return SimilarityMap(embedder, _IDENTITY_KNOTS, _IDENTITY_KNOTS, "CLIP text tower: the published space")
    if not ladder_path(embedder).is_file():
        raise ConfigError(
            "embedder",
            embedder,
            f"published thresholds are CLIP-text similarities and no map carries them to this embedder; "
            f"make one with `acsim calibrate thresholds --to {embedder} --ladder-out {ladder_path(embedder)}` "
            "or state every threshold in the embedder's own space (space: embedder)",
        )
    rungs, data = carried_ladder(embedder)
    published = sorted(float(t) for t, _ in data["transfer"]["from_thresholds"])
    carried = sorted(t for t, _ in rungs)
    knots = sorted({*zip(published, carried, strict=True), (1.0, 1.0)})
    clip, run = (tuple(float(a) for a in col) for col in zip(*knots, strict=True))
    if any(b <= a for a, b in zip(run, run[1:], strict=False)):
        raise ConfigError("embedder", embedder, f"the carried map in {ladder_path(embedder)} is not increasing")
    return SimilarityMap(embedder, clip, run, str(data.get("source", ladder_path(embedder).name)))


def run_space(exp: Experiment) -> SimilarityMap:
    """The map a run reads published similarities through: its embedder's, or with
    ``selector.carried: false`` the identity (published numbers taken as the embedder's cosines)."""
    if not exp.selector.carried:
        return SimilarityMap(exp.embedder, _IDENTITY_KNOTS, _IDENTITY_KNOTS, "selector.carried: false")
    return similarity_map(exp.embedder)


def threshold_in_run(exp: Experiment, value: float, space: str) -> float:
    """``value``, a similarity stated in ``space`` (one of :data:`SPACES`), in the run embedder's space."""
    if space == "embedder":
        return float(value)
    return float(run_space(exp).to_run(value))
