"""``pinecone``: a semantic image cache in a managed vector database, matched text to image.

What is modelled (the paper's definition of its PINECONE baseline could not be read; this is
acsim's reading, see README "Baselines"): Pinecone's own recipe for "Making Stable Diffusion
Faster with Intelligent Caching" (pinecone.io/learn/faster-stable-diffusion, 2023) keeps every
generated image in a Pinecone index and returns a stored image for a new prompt instead of
generating one. Its canonical image search matches a prompt's CLIP *text* embedding against the
stored images' CLIP *image* embeddings, so the match rule here is the stored image's alignment
with the new prompt, not the two prompts' similarity (GPTCache's rule):

* a cached image is returned when its expected CLIP text-image cosine with the new prompt is at
  least the gate. In a trace simulator that alignment is the retrieval-quality model
  (:meth:`sim.reuse.quality.QualityModel.retrieved` / 100), which rises with the prompts' similarity,
  so the rule is a similarity threshold derived from the gate and the best candidate is the most
  similar cached prompt. The paper does not publish its PINECONE's gate: the profile carries
  one fitted to the paper's PINECONE row (``quality.aligned_gate``, ``acsim calibrate
  fit-quality``); ``params.pinecone.min_alignment`` overrides it (0.25 is MoDM's lowest reuse rung);
* a lookup is one remote query (``query_s``, the same at any index size: a managed service);
* a miss generates with the main model and stores its final image (``image_bytes`` each); the
  cache's capacity and policy are the experiment's (Pinecone itself does not evict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.base.errors import ConfigError
from sim.reuse.quality import QualityModel
from sim.reuse.similarity_space import run_space
from sim.systems.gptcache import GptCache

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


# MoDM's lowest CLIP text-image reuse rung on DiffusionDB (stsxxx/MoDM serving_system.py): the gate
# of a profile that carries no fitted one.
MODM_LOWEST_RUNG = 0.25


@dataclass
class PineconeParams:
    """``params.pinecone``.

    ``min_alignment``: None (default) takes the profile's ``quality.aligned_gate``, fitted by
    ``acsim calibrate fit-quality`` to the paper's PINECONE row, whose gate the paper does not give;
    a profile without one falls back to 0.25, the one published rung for this kind of match: MoDM's
    lowest CLIP ViT-L/14 text-image rung on DiffusionDB (stsxxx/MoDM ``serving_system.py``: cosine
    >= 0.25 reuses a cached image).
    ``query_s``: measured by a third party, the median round trip of a top-k query to a Pinecone
    serverless index (aws-us-east-1, 550k 1024-d vectors, one client: p50 111 ms; repository
    unrealshape/bachelor-db-benchmark, run pinecone-S0-latency). ``image_bytes``: assumed, a
    1024x1024 PNG (1-2 MB; its 768-d embedding adds 3 KB).
    """

    min_alignment: float | None = None  # CLIP text-image cosine at or above which a cached image is returned
    query_s: float = 0.111  # seconds per query to the managed index
    image_bytes: int = 1_500_000  # bytes one stored image occupies

    def check(self) -> None:
        if self.min_alignment is not None and not -1 <= self.min_alignment <= 1:
            raise ConfigError("min_alignment", self.min_alignment, "must be a cosine in [-1, 1]")
        if self.query_s < 0:
            raise ConfigError("query_s", self.query_s, "must be >= 0")
        if self.image_bytes <= 0:
            raise ConfigError("image_bytes", self.image_bytes, "must be > 0")


class Pinecone(GptCache):
    """A semantic image cache in a managed vector DB, matched by prompt-to-image alignment."""

    name = "pinecone"
    params_type = PineconeParams
    retrieval_source = "aligned"

    @classmethod
    def gate(cls, exp: Experiment, profile: Profile) -> float:
        """The CLIP text-image cosine a cached image must reach: the params', else the profile's."""
        own = cls.params_of(exp).min_alignment
        if own is not None:
            return own
        return MODM_LOWEST_RUNG if profile.aligned_gate is None else profile.aligned_gate

    @classmethod
    def min_similarity(cls, exp: Experiment, profile: Profile) -> float | None:
        """The prompt similarity at which a cached image's expected alignment reaches the gate."""
        return QualityModel(profile, run_space(exp)).retrieval_floor(100.0 * cls.gate(exp, profile))

    def _batch(self, exp: Experiment, capacity: int) -> int:
        return 1

    def lookup_seconds(self) -> float:
        return self.params.query_s

    def entry_bytes(self) -> int:
        return self.params.image_bytes
