"""``crs``: a CLIP retrieval system; every prompt gets the nearest image of an external corpus.

What is modelled (the paper's definition of its CRS baseline could not be read; this is acsim's
reading, see README "Baselines"): a content retrieval system in the style of clip-retrieval
(rom1504/clip-retrieval: a kNN index over the CLIP ViT-L/14 image embeddings of LAION-5B, 5.85
billion images, queried with the prompt's CLIP text embedding) returns the nearest corpus image
for every prompt. It never runs the diffusion model and keeps no cache of its own: the corpus
is fixed, so nothing about the trace (repeats, similar prompts) changes what it returns, and its
expected quality is the profile's ``quality.corpus_retrieval`` (the paper's CRS row) for every
request. What the simulation adds is its cost and latency: an embedding, a kNN search
(``search_s``) and an image download (``fetch_s``) per request, and no GPU time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.base.errors import ConfigError
from sim.systems.base import NAN, Decision, System, TraceArrays

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


@dataclass
class CrsParams:
    """``params.crs``.

    ``search_s``: published, the average kNN search time that autofaiss (the index builder of
    clip-retrieval) records in ``index_infos.json`` for a 9.25M-vector CLIP index
    (fondant-ai/datacomp-small-clip: avg 9.85 ms, p99 26.5 ms); a LAION-5B index is larger, so
    this is a lower bound. ``fetch_s``: assumed, downloading one corpus image from its URL (LAION
    stores URLs, not images).
    """

    search_s: float = 0.0099  # seconds per kNN query over the corpus index
    fetch_s: float = 0.2  # seconds to fetch the returned image

    def check(self) -> None:
        for name in ("search_s", "fetch_s"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "must be >= 0")


class Crs(System):
    """Nearest image of an external corpus for every prompt; no GPU, no cache of its own."""

    name = "crs"
    lookup_kind = "vector"
    retrieval_source = "corpus"
    params_type = CrsParams

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        self.params = self.params_of(exp)
        n = profile.steps
        self._retrieved = Decision("retrieval", -1, NAN, n, n, 0, profile.corpus_quality["clip"], ())
        self._fresh = Decision("miss", -1, NAN, 0, 0, n, profile.quality_vanilla, ())

    @classmethod
    def check_profile(cls, exp: Experiment, profile: Profile) -> None:
        super().check_profile(exp, profile)
        if not math.isfinite(profile.corpus_quality.get("clip", NAN)):
            raise ConfigError(
                "systems", cls.name, f"profile {profile.name!r} needs quality.corpus_retrieval.clip_score for crs"
            )

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        return self._retrieved

    def miss_decision(self, i: int, now: float) -> Decision:
        return self._fresh

    def probe(self, i: int, now: float = 0.0, boost: int = 0) -> int:
        return self.n_steps  # every request retrieves a corpus image

    def lookup_seconds(self) -> float:
        return self.params.search_s

    def fetch_seconds(self, decision: Decision) -> float | None:
        return self.params.fetch_s
