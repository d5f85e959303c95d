"""What every serving system is: the decision it makes per request, and the class it subclasses.

A system is a plug-in (registered in :data:`sim.systems.SYSTEMS`). It declares what it is with
class attributes, which the engine, the metrics, the run and the figures ask instead of its name:
what a lookup costs (``lookup_kind``), whether it needs the causal neighbour lists, whether its
generations save intermediate latents, whether it keeps a cache whose policy and size matter,
whether it is the baseline others are compared with, whether it is a ceiling (a reference
bound on what the system named by ``bounds`` can save, not a design to deploy), and the
dataclass of its parameters (``params.<name>`` in an experiment file). Adding a system is one module plus one registry line
(see ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from sim.base import config
from sim.base.errors import ConfigError

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

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

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        self.profile = profile
        self.n_steps = profile.steps
        self.n_requests = len(arrays.prompt_ids)
        self.lookups = 0
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

    # -- the request path ---------------------------------------------------------------------
    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        """Decide what request ``i`` gets from the cache at time ``now`` (``boost``: load-aware rungs)."""
        raise NotImplementedError

    def complete(self, i: int, decision: Decision, now: float) -> None:
        """Store what request ``i``'s generation produced (called when its GPU work ends)."""

    def miss_decision(self, i: int, now: float) -> Decision:
        """What request ``i`` gets when the match predictor skips its lookup: a fresh generation."""
        raise NotImplementedError

    def saved_latents(self, decision: Decision) -> int:
        """Intermediate latents the generation of ``decision`` saves (each costs GPU time per step)."""
        return len(decision.store_levels) if self.saves_latents else 0

    def replay_columns(self, n: int, arrivals: list[float], stride: int) -> dict[str, Any] | None:
        """A compiled cache-only replay of requests 0..n-1, or None when this system has none.

        When not None: the record columns of ``sim.replay.replay`` (lists or arrays) with exactly
        the decisions, cache contents and counters of calling :meth:`lookup` then
        :meth:`complete` per request.
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
        samples taken with :meth:`record_occupancy`; ``lookup_kind, caches, is_baseline,
        is_ceiling, bounds, policy, policy_offline``.
        """
        occ = pd.DataFrame(self._occupancy, columns=["time_s", "entries", "prompts"])
        occ["bytes"] = occ["entries"] * self.profile.latent_bytes
        return {
            "system": self.name,
            "lookup_kind": self.lookup_kind,
            "caches": self.caches,
            "is_baseline": self.is_baseline,
            "is_ceiling": self.is_ceiling,
            "bounds": self.bounds,
            "policy": None,
            "policy_offline": False,
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
