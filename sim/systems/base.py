"""What every serving system is: the decision it makes per request, and the class it subclasses.

A system is a plug-in (registered in :data:`sim.systems.SYSTEMS`). It declares what it is with
class attributes, which the engine, the metrics, the run and the figures ask instead of its name:
what a lookup costs (``lookup_kind``), whether it needs the causal neighbour lists, whether its
generations save intermediate latents, whether it keeps a cache whose policy and size matter,
whether it is the baseline others are compared with, whether it is a ceiling (a reference
bound on what the system named by ``bounds`` can save, not a design to deploy), the dataclass of
its parameters (``params.<name>`` in an experiment file), which profile model generates its
images (``serves_with``) and where its retrieved images come from (``retrieval_source``). What
its GPU work, its lookup and its fetches cost, the engine asks the system
(:meth:`System.gpu_model`, :meth:`System.lookup_seconds`, :meth:`System.fetch_seconds`). Adding a
system is one module plus one registry line (see ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from sim.base import config
from sim.base.errors import ConfigError, InputError
from sim.reuse.selector import Selector
from sim.reuse.similarity_space import run_space

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import GpuModel, Profile

NAN = float("nan")

# What a lookup costs before the GPU: nothing (no cache), a key-value lookup (identical prompts
# only) or an embedding plus a vector-index search.
LOOKUP_KINDS = ("none", "hash", "vector")


class Decision(NamedTuple):
    """What the cache gives one request (see ARCHITECTURE.md, Systems). Immutable.

    A named tuple rather than a dataclass: systems build one per request, and
    ``tuple.__new__(Decision, (...))`` costs a third of a dataclass ``__init__``.
    """

    outcome: str  # "bypass" | "miss" | "hit" | "hole" | "retrieval" | "exact"
    matched: int  # prompt id served from, -1 when none
    similarity: float  # of the candidate served from (on a miss: the nearest cached one); nan when none
    k_planned: int  # K the selector asked for
    k_used: int  # K actually reused (largest cached K' <= K on a hole)
    steps: int  # denoising steps to run (0 for retrieval/exact hits)
    quality: float  # expected CLIP score of the delivered image
    store_levels: tuple[int, ...]  # K levels this generation offers the cache when it completes


@dataclass(frozen=True)
class TraceArrays:
    """The per-request arrays a system needs from a trace."""

    prompt_ids: np.ndarray  # int32
    user_codes: np.ndarray  # int32, -1 = unknown user
    arrival_s: np.ndarray  # float64

    @classmethod
    def of(cls, trace: Any) -> TraceArrays:
        """From a ``traces.schema.Trace`` or anything with the same three array attributes."""
        return cls(
            np.asarray(trace.prompt_ids, dtype=np.int32),
            np.asarray(trace.user_codes, dtype=np.int32),
            np.asarray(trace.arrival_s, dtype=np.float64),
        )


class System:
    """Base class of every serving system.

    Subclasses implement :meth:`lookup` (what request ``i`` gets at time ``now``),
    :meth:`complete` (store what its generation produced, called when the GPU work ends) and
    :meth:`miss_decision` (what a request gets when the match predictor skips its lookup).
    """

    name: ClassVar[str] = ""
    lookup_kind: ClassVar[str] = "none"  # one of LOOKUP_KINDS
    needs_neighbours: ClassVar[bool] = False  # looks up similar prompts in the causal neighbour lists
    saves_latents: ClassVar[bool] = False  # its generations save intermediate latents (GPU time per step)
    caches: ClassVar[bool] = False  # keeps a cache whose policy and capacity matter
    is_baseline: ClassVar[bool] = False  # the reference every other system is compared with
    is_ceiling: ClassVar[bool] = False  # an upper bound on what system ``bounds`` can save, not a design
    bounds: ClassVar[str | None] = None  # the system a ceiling bounds
    params_type: ClassVar[type | None] = None  # dataclass of its ``params.<name>`` block, if any
    serves_with: ClassVar[str] = "model"  # profile block of the model that generates its images
    # Where its ``retrieval`` outcomes' images come from: "cache" (earlier generations it kept,
    # matched by prompt similarity), "aligned" (the same, matched by the image's alignment with the
    # new prompt) or "corpus" (an external image collection); see sim.reuse.quality.RETRIEVAL_SOURCES.
    retrieval_source: ClassVar[str] = "cache"
    # Its cache keeps final images (a miss writes one: latency.image_save_s), not latents.
    stores_images: ClassVar[bool] = False
    # Implements lookup_among: a real server (``acsim calibrate serve``) can decide with it.
    real_lookup: ClassVar[bool] = False
    # Profile blocks of the models it runs in pools of their own (cluster.pools), the main model's
    # first; empty: one model (``serves_with``) on every GPU. Its decisions say which pool serves them.
    pool_models: ClassVar[tuple[str, ...]] = ()
    # Its retrieved images are refined on a GPU (a few steps of the model of ``pool_of``), not
    # returned as they are.
    refines_retrievals: ClassVar[bool] = False
    # Its lookup takes load-aware boosts (more rungs of the selector's K, selector.load_aware): the
    # engine asks for them only for a system that can use them.
    takes_boost: ClassVar[bool] = False

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        self.profile = profile
        self.n_steps = profile.steps
        self.n_requests = len(arrays.prompt_ids)
        self.lookups = 0
        # The lowest similarity it acts on, in the run embedder's cosines and in the published
        # (CLIP-text) space: what it decided, reported in the summary rather than re-derived there.
        low = type(self).min_similarity(exp, profile)
        self.acts_from = low
        self.acts_from_published = None if low is None else float(run_space(exp).to_clip(low))
        self._occupancy: list[tuple[float, int, int]] = []

    # -- what the class declares ----------------------------------------------------------
    @classmethod
    def params_of(cls, exp: Experiment) -> Any:
        """This system's typed parameters from ``exp.params[name]`` (defaults filled in), or None."""
        if cls.params_type is None:
            return None
        return config.build(cls.params_type, exp.params.get(cls.name) or {}, f"params.{cls.name}")

    @classmethod
    def min_similarity(cls, exp: Experiment, profile: Profile) -> float | None:
        """The lowest similarity this system acts on (neighbour lists must reach it); None: none."""
        return None

    @classmethod
    def thresholds(cls, exp: Experiment, profile: Profile) -> dict[str, float]:
        """Every similarity threshold it compares, by name, in the run embedder's cosines (what the
        resolved config reports beside the published values); by default its lowest one as ``gate``."""
        low = cls.min_similarity(exp, profile)
        return {} if low is None else {"gate": low}

    @classmethod
    def check_profile(cls, exp: Experiment, profile: Profile) -> None:
        """Raise ConfigError (naming ``systems``) when ``profile`` lacks what this system needs."""
        for block in cls.pool_models or (cls.serves_with,):
            try:
                profile.gpu_model(block)
            except InputError:
                raise ConfigError(
                    "systems",
                    cls.name,
                    f"system {cls.name!r} generates with the profile's {block!r} block, "
                    f"which profile {profile.name!r} does not have",
                ) from None

    # -- what the engine asks ---------------------------------------------------------------
    def gpu_model(self) -> GpuModel:
        """The model whose step times, steps and price this system's generations cost."""
        return self.profile.gpu_model(self.serves_with)

    def pool_of(self, decision: Decision) -> int:
        """Index in ``pool_models`` of the pool that runs ``decision``'s first GPU job."""
        return 0

    def follow_up_steps(self, i: int, decision: Decision) -> int:
        """Steps of a second job in the main model's pool once the first ends (a cascade's
        escalation); 0: none."""
        return 0

    def delivered_by(self, i: int, decision: Decision) -> int:
        """Index in ``pool_models`` of the model whose image request ``i`` receives."""
        return self.pool_of(decision)

    def lookup_seconds(self) -> float:
        """Seconds one lookup takes before the GPU (the prompt's embedding is charged apart).

        By ``lookup_kind``: nothing; a key-value lookup; or a vector-index search whose time grows
        with the logarithm of the number of cached prompts (``profile.index_lookup_*``).
        """
        p = self.profile
        if self.lookup_kind == "none":
            return 0.0
        if self.lookup_kind == "hash":
            return p.index_lookup_base_s
        return p.index_lookup_base_s + p.index_lookup_per_decade_s * math.log10(max(self.cached_prompts(), 1))

    def fetch_seconds(self, decision: Decision) -> float | None:
        """Seconds to fetch what ``decision`` reuses, or None: the engine's storage-tier model."""
        return None

    def entry_bytes(self) -> int:
        """Bytes one cached entry occupies (storage cost)."""
        return self.profile.latent_bytes

    # -- the request path ---------------------------------------------------------------------
    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        """Decide what request ``i`` gets from the cache at time ``now`` (``boost``: load-aware rungs)."""
        raise NotImplementedError

    def lookup_among(self, i: int, slots: list[int], sims: np.ndarray, now: float, boost: int = 0) -> Decision:
        """What :meth:`lookup` decides, from the candidates a real server's own index found instead of
        the precomputed lists: ``slots`` are cached slots (any order; for a ``hash`` lookup, the
        request's own slot when it is cached), ``sims`` their similarities to request ``i``'s prompt
        (float32 dot products of unit rows). The same side effects as :meth:`lookup` (counters, the
        policy's bookkeeping). Systems that implement it say so with ``real_lookup``; one without a
        lookup (``lookup_kind: none``) has nothing to look among."""
        if self.lookup_kind == "none":
            return self.lookup(i, now, boost)
        raise NotImplementedError(f"system {self.name!r} cannot decide from a real index")

    def complete(self, i: int, decision: Decision, now: float) -> None:
        """Store what request ``i``'s generation produced (called when its GPU work ends)."""

    def miss_decision(self, i: int, now: float) -> Decision:
        """What request ``i`` gets when the match predictor skips its lookup: a fresh generation."""
        raise NotImplementedError

    def probe(self, i: int, now: float = 0.0, boost: int = 0) -> int:
        """Denoising steps a lookup of request ``i`` at ``now`` would skip (0: nothing to reuse).

        Without side effects: no hit or lookup is counted and the eviction policy does not hear
        of it. A cache-affinity router asks every replica's cache before choosing one; the engine
        asks it for requests a blind match predictor skipped, to count the hits it lost.
        """
        return 0

    def saved_latents(self, decision: Decision) -> int:
        """Intermediate latents the generation of ``decision`` saves (each costs GPU time per step)."""
        return len(decision.store_levels) if self.saves_latents else 0

    def replay_columns(
        self, n: int, arrivals: list[float], stride: int, admit: np.ndarray | None = None
    ) -> dict[str, Any] | None:
        """A compiled cache-only replay of requests 0..n-1, or None when this system has none.

        When not None: the record columns of ``sim.engine.replay.replay`` (lists or arrays) with exactly
        the decisions, cache contents and counters of calling :meth:`lookup` then
        :meth:`complete` per request, where a request whose ``admit`` entry is False stores
        nothing (``sim.cache.admission``).
        """
        return None

    # -- state --------------------------------------------------------------------------------
    def cached_prompts(self) -> int:
        """Number of prompts (slots) with something cached; sizes the lookup latency."""
        return 0

    def cached_entries(self) -> int:
        """Number of cached entries (latents or images)."""
        return 0

    def record_occupancy(self, now: float) -> None:
        """Append a (time, entries, prompts) sample to the occupancy series in :meth:`stats`."""
        self._occupancy.append((now, self.cached_entries(), self.cached_prompts()))

    def stats(self) -> dict[str, Any]:
        """Counters after a replay, and what the class declares.

        Scalars: ``lookups, insertions, evictions, holes, entries, prompts, bytes`` (and
        ``capacity_entries`` or ``capacity_prompts`` for caching systems); ``hits_by_k``:
        {K used: hits}; ``occupancy``: DataFrame ``time_s, entries, prompts, bytes`` of the
        samples taken with :meth:`record_occupancy`; ``lookup_kind, serves_with,
        retrieval_source, caches, is_baseline, is_ceiling, bounds, policy, policy_offline``;
        ``cache_capacity``: the capacity in the experiment's unit (None without a cache);
        ``min_similarity`` (run cosines) and ``min_similarity_published`` (CLIP-text): the lowest
        similarity it acts on, None when it matches nothing; ``selector`` and ``quality_model``:
        the :class:`sim.reuse.selector.Selector` and :class:`sim.reuse.quality.QualityModel` its K choices
        were made and scored with (None when it chooses no K).
        """
        occ = pd.DataFrame(self._occupancy, columns=["time_s", "entries", "prompts"])
        occ["bytes"] = occ["entries"] * self.entry_bytes()
        return {
            "system": self.name,
            "lookup_kind": self.lookup_kind,
            "serves_with": self.serves_with,
            "pool_models": self.pool_models,
            "retrieval_source": self.retrieval_source,
            "caches": self.caches,
            "is_baseline": self.is_baseline,
            "is_ceiling": self.is_ceiling,
            "bounds": self.bounds,
            "policy": None,
            "policy_offline": False,
            "cache_capacity": None,
            "selector": None,
            "quality_model": None,
            "min_similarity": self.acts_from,
            "min_similarity_published": self.acts_from_published,
            "lookups": self.lookups,
            "insertions": 0,
            "evictions": 0,
            "holes": 0,
            "entries": 0,
            "prompts": 0,
            "bytes": 0,
            "hits_by_k": {},
            "occupancy": occ,
        }


_SUMMED = ("lookups", "insertions", "evictions", "holes", "entries", "prompts", "bytes", "capacity_entries", "capacity_prompts")


def combined_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The :meth:`System.stats` of several instances of one system (one cache per replica) as one:
    counters and capacities summed, hits by K merged, occupancy samples added up (by sample time
    when the caches were not all there for the whole run)."""
    if len(stats) == 1:
        return stats[0]
    out = dict(stats[0])
    for key in _SUMMED:
        if key in out:
            out[key] = sum(s[key] for s in stats)
    hits: dict[int, int] = {}
    for s in stats:
        for k, v in s["hits_by_k"].items():
            hits[k] = hits.get(k, 0) + v
    out["hits_by_k"] = dict(sorted(hits.items()))
    occ = [s["occupancy"] for s in stats]
    times = occ[0]["time_s"].to_numpy()
    if all(np.array_equal(o["time_s"].to_numpy(), times) for o in occ):
        total = occ[0].copy()
        for col in ("entries", "prompts", "bytes"):
            total[col] = sum(o[col].to_numpy() for o in occ)
        out["occupancy"] = total
    else:
        # Caches that came and went (an autoscaled cluster's replicas): each was sampled while it
        # was there, so the cluster's occupancy at a sample time is the sum of those sampled then.
        frames = [o for o in occ if len(o)]
        out["occupancy"] = pd.concat(frames).groupby("time_s", as_index=False, sort=True).sum() if frames else occ[0]
    return out


def require_neighbours(system: str, neighbours: Any, needed: float) -> None:
    """Raise unless ``neighbours`` exist and reach down to similarity ``needed``."""
    if neighbours is None:
        raise ValueError(f"system {system!r} needs causal neighbour lists")
    have = getattr(neighbours, "min_similarity", None)
    if have is not None and not math.isnan(have) and have > needed + 1e-9:
        raise ConfigError(
            "neighbours.min_similarity",
            have,
            f"system {system!r} acts on similarities down to {needed}; build the lists at or below it",
        )


class ChoosesK:
    """Mixin of a system whose K comes from the selector's ladder (:class:`sim.reuse.selector.Selector`):
    the lowest similarity it acts on and the thresholds it compares are the selector's, and a
    load-aware boost moves it along the ladder."""

    takes_boost: ClassVar[bool] = True

    @classmethod
    def min_similarity(cls, exp: Experiment, profile: Profile) -> float | None:
        return Selector.from_config(exp, profile).min_similarity

    @classmethod
    def thresholds(cls, exp: Experiment, profile: Profile) -> dict[str, float]:
        return Selector.from_config(exp, profile).named_thresholds()
