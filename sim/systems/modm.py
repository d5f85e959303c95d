"""``modm``: MoDM's image cache (ASPLOS '26, github.com/stsxxx/MoDM): a hit refines the retrieved
image with the small model, a miss generates with the large one.

MoDM's rule (``serving/serving_system_MoDM.py``, ``retrieve_best_image``): the cached image whose
CLIP image embedding is most aligned with the new prompt's CLIP text embedding is taken; its
text-image cosine ``a`` picks an img2img strength,

    a >= 0.30: 0.4    a >= 0.29: 0.5    a >= 0.28: 0.7    a >= 0.27: 0.8    a >= 0.25: 0.9

and below 0.25 the request misses. (MoDM logs ``k = N (1 - strength)`` of its N = 50 steps as
saved: 30, 25, 15, 10, 5; the records' ``k_used`` carries the same in the profile's schedule.) A
hit runs diffusers' img2img on the small model: ``int(steps x strength)`` of its schedule, at least
one. Both a hit's refined image and a miss's fresh one join the cache under the new prompt.

In a trace simulator the alignment of a cached image with a new prompt is the retrieval-quality
model's expected CLIP score of that image (:meth:`sim.reuse.quality.QualityModel.retrieved`, /100),
as for ``pinecone``, which rises with the prompts' similarity: the most aligned image is the most
similar cached prompt's. The refined image's CLIP score is assumed to lie between the retrieved
image's (strength 0 returns it unchanged) and a fresh small-model image's (strength 1 is a fresh
generation), linearly in the strength; PickScore and FID follow the aligned-retrieval ratios of
its CLIP loss. Hits run in the small model's pool, misses in the main model's
(``cluster.pools``, :mod:`sim.engine.pool_split`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.base.errors import ConfigError
from sim.reuse.quality import QualityModel
from sim.reuse.similarity_space import run_space
from sim.systems.base import Decision, TraceArrays
from sim.systems.gptcache import GptCache

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

# MoDM's rungs, lowest first: (CLIP text-image cosine, img2img strength).
MODM_RUNGS = ((0.25, 0.9), (0.27, 0.8), (0.28, 0.7), (0.29, 0.5), (0.30, 0.4))


@dataclass
class ModmParams:
    """``params.modm``.

    ``rungs``: published, MoDM's alignment-to-strength table (stsxxx/MoDM ``serving_system_MoDM.py``),
    as ``[[cosine, strength], ...]``. ``refine_steps``: the small model's img2img schedule, of which a
    hit runs ``int(refine_steps x strength)``; None: the profile's small-model steps (MoDM ran its
    small models at 50).
    """

    rungs: list[list[float]] = field(default_factory=lambda: [list(r) for r in MODM_RUNGS])
    refine_steps: int | None = None

    def check(self) -> None:
        if not self.rungs:
            raise ConfigError("rungs", self.rungs, "list at least one [cosine, strength] pair")
        last = -2.0
        for j, rung in enumerate(self.rungs):
            if len(rung) != 2:
                raise ConfigError(f"rungs[{j}]", rung, "must be a [cosine, strength] pair")
            a, s = rung
            if not last < a <= 1:
                raise ConfigError(f"rungs[{j}]", rung, "cosines must rise and stay <= 1")
            if not 0 < s <= 1:
                raise ConfigError(f"rungs[{j}]", rung, "strength must be in (0, 1]")
            last = a
        if self.refine_steps is not None and self.refine_steps < 1:
            raise ConfigError("refine_steps", self.refine_steps, "must be >= 1")


class Modm(GptCache):
    """MoDM: cached images refined by the small model on a hit, the large model on a miss."""

    name = "modm"
    params_type = ModmParams
    retrieval_source = "aligned"
    pool_models = ("model", "small_model")
    refines_retrievals = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        small = profile.gpu_model("small_model")
        self._small_clip = small.quality["clip"]
        steps = self.params.refine_steps or small.steps
        self._gates = [a * 100.0 for a, _ in self.params.rungs]
        # By rung: the small model's steps, the K logged as saved, the strength.
        self._rungs = [
            (max(1, int(steps * s)), round(self.n_steps * (1.0 - s)), s) for _, s in self.params.rungs
        ]

    @classmethod
    def min_similarity(cls, exp: Experiment, profile: Profile) -> float | None:
        """The prompt similarity at which a cached image's expected alignment reaches the lowest rung."""
        lowest = cls.params_of(exp).rungs[0][0]
        return QualityModel(profile, run_space(exp)).retrieval_floor(100.0 * lowest)

    def _batch(self, exp: Experiment, capacity: int) -> int:
        return 1

    def pool_of(self, decision: Decision) -> int:
        return 1 if decision.outcome == "retrieval" else 0

    def _rung(self, retrieved: float) -> int:
        """MoDM's rung for a cached image expected to score ``retrieved``; -1 below the lowest (the
        similarity floor's grid lets a hair below it through)."""
        return bisect.bisect_right(self._gates, retrieved + 1e-9) - 1

    def _steps_skipped(self, slot: int, similarity: float, k: int, boost: int) -> int:
        rung = self._rung(self._retrieved(similarity))
        return self.n_steps - self._rungs[rung][0] if rung >= 0 else 0

    def _retrieve(self, i: int, slot: int, s: float) -> Decision:
        self.lookups += 1
        if slot < 0:
            return self._miss
        retrieved = self._retrieved(s)
        rung = self._rung(retrieved)
        if rung < 0:
            return self._miss
        steps, k, strength = self._rungs[rung]
        self.store.hit(slot, self.n_steps, i)
        self._hits_by_k[k] += 1
        quality = retrieved + strength * (self._small_clip - retrieved)
        keep = (self.n_steps,) if self.stores else ()
        return tuple.__new__(Decision, ("retrieval", slot - self._bases[i], s, k, k, steps, quality, keep))
