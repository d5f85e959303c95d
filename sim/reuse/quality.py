"""The quality model: what each delivered image is expected to score, and what a trace scores.

Three metrics (:data:`sim.base.profile.QUALITY_METRICS`): CLIP score and PickScore (higher is
better) and FID (lower is better). Each request's image is one of a few kinds, and the profile
says what each kind scores:

* a fresh image: the generating model's values (``GpuModel.quality``; the small model's for
  systems that serve with it);
* an exact-prompt hit: the same image as a fresh one (``quality.exact`` for CLIP);
* a latent reused at K from a prompt at similarity s: CLIP ``vanilla * (1 - loss)`` with the loss
  of s's bin at K when the profile has ``quality.by_similarity_bin`` (measured by ``calibrate
  quality``) and the bin measured that K; otherwise ``vanilla * relative_by_k[K]`` (no similarity
  dependence);
* another prompt's finished image (retrieval) at similarity s: CLIP from the bin's
  ``retrieved_relative_loss`` when present, else the profile's retrieval line (the same for an
  image matched by its alignment with the prompt, ``aligned``);
* an image from an external corpus: the profile's ``quality.corpus_retrieval``.

PickScore and FID of a reused or retrieved image: their measured values (``by_k``, ``retrieved``)
when the profile has them, otherwise ``vanilla * (1 - per_clip_loss * L)`` with ``L`` the image's
relative CLIP loss (see the profile's ``quality.pickscore`` / ``quality.fid`` blocks for where the
ratios come from).

FID is a distribution metric: it belongs to a set of images, not to one. A trace's FID here is
the mean of its images' components, i.e. the FID of a mixture taken as the mixture of the
components' FIDs, weighted by how many images of each kind the trace delivered. That is an
approximation: the Fréchet distance of a mixture is not linear in its components (by convexity,
the mean term of the mixture's distance is at most the weighted mean of the components'), so
read the trace FID as an estimate of where between its components' FIDs the trace lands.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.base.profile import QUALITY_METRICS
from sim.base.records import OUTCOMES

if TYPE_CHECKING:
    from sim.base.profile import GpuModel, MetricValues, Profile
    from sim.reuse.similarity_space import SimilarityMap

# Where a retrieval outcome's image comes from (``System.retrieval_source``): another request's
# generation kept in the system's cache and matched by the two prompts' similarity (``cache``), the
# same matched by the cached image's alignment with the new prompt (``aligned``: its PickScore and
# FID follow their own ratios, ``per_clip_loss.aligned``), or an external corpus (``corpus``).
RETRIEVAL_SOURCES = ("cache", "aligned", "corpus")

_CODE = {name: i for i, name in enumerate(OUTCOMES)}


class QualityModel:
    """Expected quality of each kind of delivered image, from one profile.

    The profile's similarity-dependent numbers (the retrieval line, the calibrated bins) are
    stated in CLIP-text similarity; ``space`` (the run's :class:`sim.reuse.similarity_space.SimilarityMap`)
    reads the run embedder's similarities there first. None: they are taken as they are.
    """

    def __init__(self, profile: Profile, space: SimilarityMap | None = None) -> None:
        self.profile = profile
        self.space = None if space is None or space.identity else space
        self.vanilla = profile.quality_vanilla
        self._rel = dict(profile.quality_relative_by_k)
        self._by_k = {k: self.vanilla * r for k, r in self._rel.items()}
        self._bins = profile.quality_by_bin
        self._lo = [b.lo for b in self._bins]
        self._at1 = profile.retrieval_at_1
        self._slope = profile.retrieval_slope_per_unit_s
        self.metrics: dict[str, MetricValues] = dict(profile.quality_metrics)

    def __eq__(self, other: object) -> bool:
        # A value: built from the same profile and map, two models score every image alike.
        if not isinstance(other, QualityModel):
            return NotImplemented
        return (self.profile, self.space) == (other.profile, other.space)

    __hash__ = None  # type: ignore[assignment]

    def _published(self, similarity: Any) -> Any:
        """A run similarity (or array of them) in the space the profile's numbers are stated in."""
        return similarity if self.space is None else self.space.to_clip(similarity)

    # -- CLIP score of one image -----------------------------------------------------------
    @property
    def by_similarity(self) -> bool:
        """Whether the profile's quality depends on similarity (``quality.by_similarity_bin``)."""
        return bool(self._bins)

    def _bin(self, similarity: float) -> Any:
        """The bin holding ``similarity`` (the last bin is closed on the right), or None."""
        if not self._bins or similarity != similarity:
            return None
        s = min(similarity, 1.0)
        j = bisect.bisect_right(self._lo, s) - 1
        if j < 0:
            return None
        b = self._bins[j]
        return b if s < b.hi or (j == len(self._bins) - 1 and s <= b.hi) else None

    def hit(self, k: int, similarity: float) -> float:
        """Expected CLIP score of an image whose first ``k`` steps came from a latent of a prompt at
        ``similarity``: the bin's measured loss at K when there is one, else the per-K table."""
        if self._bins and k:
            b = self._bin(self._published(similarity))
            if b is not None:
                loss = b.relative_loss_by_k.get(k)
                if loss is not None:
                    return self.vanilla * (1.0 - loss)
        return self._by_k[k]

    def hit_array(self, k: np.ndarray, similarity: np.ndarray) -> np.ndarray:
        """:meth:`hit` of every (K, similarity) pair (vectorised when the profile has no bins)."""
        k = np.asarray(k, dtype=np.int64)
        if not self._bins:
            table = np.full(int(k.max(initial=0)) + 1, np.nan)
            for level, q in self._by_k.items():
                if level < len(table):
                    table[level] = q
            return table[k]
        return np.array([self.hit(int(a), float(s)) for a, s in zip(k.tolist(), np.asarray(similarity).tolist(), strict=True)])

    def retrieved(self, similarity: float) -> float:
        """Expected CLIP score of another prompt's finished image returned for a prompt at ``similarity``.

        Similarities are float32 cosines, so an identical prompt may score a hair above 1: it
        counts as 1 (a retrieved image is never better than the prompt's own).
        """
        return self._retrieved_published(float(self._published(similarity)))

    def _retrieved_published(self, s: float) -> float:
        if self._bins:
            b = self._bin(s)
            if b is not None and b.retrieved_relative_loss is not None:
                return self.vanilla * (1.0 - b.retrieved_relative_loss)
        return self._at1 - self._slope * (1.0 - min(s, 1.0))

    def retrieved_array(self, similarity: np.ndarray) -> np.ndarray:
        """:meth:`retrieved` of every element."""
        return self._retrieved_published_array(np.asarray(self._published(np.asarray(similarity, dtype=np.float64))))

    def _retrieved_published_array(self, s: np.ndarray) -> np.ndarray:
        if not self._bins:
            return self._at1 - self._slope * (1.0 - np.minimum(s, 1.0))
        return np.array([self._retrieved_published(float(x)) for x in s.ravel()]).reshape(s.shape)

    def retrieval_floor(self, min_clip: float, resolution: float = 1e-4) -> float:
        """The lowest run similarity whose retrieved image is expected to score at least
        ``min_clip``: found on a grid of ``resolution`` over [0, 1] in the published space, then
        carried to the run's; 1.0 when none does."""
        grid = np.linspace(0.0, 1.0, round(1.0 / resolution) + 1)
        ok = np.flatnonzero(self._retrieved_published_array(grid) >= min_clip - 1e-12)
        if not len(ok):
            return 1.0
        floor = float(grid[ok[0]])
        return floor if self.space is None else float(self.space.to_run(floor))

    # -- the three metrics of a trace ----------------------------------------------------------
    def per_request(
        self,
        records: pd.DataFrame,
        *,
        model: GpuModel,
        retrieval_source: str = "cache",
        pool_models: tuple[GpuModel, ...] = (),
    ) -> dict[str, np.ndarray]:
        """Each request's expected value of every metric in :data:`QUALITY_METRICS` (FID: its component).

        ``model`` generated the fresh images, or with ``pool_models`` (a two-model system's), the
        one the records' ``model`` column names per request; ``retrieval_source`` says where a
        ``retrieval`` outcome's image came from (one of :data:`RETRIEVAL_SOURCES`). CLIP is the
        records' ``quality`` column, which the system computed per request.
        """
        if retrieval_source not in RETRIEVAL_SOURCES:
            raise ValueError(f"retrieval_source {retrieval_source!r} not in {RETRIEVAL_SOURCES}")
        code = np.asarray(pd.Categorical(records["outcome"].astype(str), categories=list(OUTCOMES)).codes)
        clip = records["quality"].to_numpy(dtype=float)
        k_used = records["k_used"].to_numpy()
        fresh = np.isin(code, [_CODE["bypass"], _CODE["miss"]])
        reuse = np.isin(code, [_CODE["hit"], _CODE["hole"]])
        retrieval = code == _CODE["retrieval"]
        exact = code == _CODE["exact"]
        loss = 1.0 - clip / self.vanilla
        out = {"clip": clip}
        for name in QUALITY_METRICS[1:]:
            m = self.metrics.get(name)
            v = np.full(len(clip), math.nan)
            if pool_models and "model" in records:
                by_model = np.array([m_.quality.get(name, math.nan) for m_ in pool_models])
                v[fresh] = by_model[records["model"].to_numpy()[fresh]]
            else:
                v[fresh] = model.quality.get(name, math.nan)
            if m is None:
                out[name] = v
                continue
            v[exact] = m.vanilla
            if m.by_k:
                v[reuse] = [m.by_k.get(int(k), math.nan) for k in k_used[reuse]]
            else:
                v[reuse] = m.vanilla * (1.0 - m.per_clip_loss_reuse * loss[reuse])
            if retrieval_source == "corpus":
                v[retrieval] = self.profile.corpus_quality.get(name, math.nan)
            elif m.retrieved is not None:
                v[retrieval] = m.retrieved
            else:
                ratio = m.per_clip_loss_aligned if retrieval_source == "aligned" else m.per_clip_loss_retrieval
                v[retrieval] = m.vanilla * (1.0 - ratio * loss[retrieval])
            out[name] = v
        return out

    def summary(
        self,
        records: pd.DataFrame,
        *,
        model: GpuModel,
        retrieval_source: str = "cache",
        pool_models: tuple[GpuModel, ...] = (),
    ) -> dict[str, float]:
        """``quality_clip``, ``quality_pickscore`` and ``quality_fid`` of a trace (means over its requests;
        FID as the mixture of its images' components, see the module docstring)."""
        if not len(records):
            return {f"quality_{m}": math.nan for m in QUALITY_METRICS}
        values = self.per_request(records, model=model, retrieval_source=retrieval_source, pool_models=pool_models)
        return {f"quality_{m}": float(np.mean(values[m])) for m in QUALITY_METRICS}
