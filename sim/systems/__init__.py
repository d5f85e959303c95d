"""Serving systems: what one request gets from the cache, and what it stores afterwards.

One module per system, each a subclass of :class:`~sim.systems.base.System` that declares what it
is in class attributes; :data:`SYSTEMS` is the registry of names. Every system is built by
:func:`build_system` from the experiment, the trace's arrays, the causal neighbour lists and the
profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.base.errors import unknown_name
from sim.systems.base import LOOKUP_KINDS, Decision, System, TraceArrays, combined_stats
from sim.systems.cascade import Cascade
from sim.systems.ceiling import Ceiling
from sim.systems.crs import Crs
from sim.systems.exact import Exact
from sim.systems.gptcache import GptCache
from sim.systems.modm import Modm
from sim.systems.nirvana import Nirvana
from sim.systems.pinecone import Pinecone
from sim.systems.smallmodel import SmallModel
from sim.systems.vanilla import Vanilla

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

SYSTEMS: dict[str, type[System]] = {
    cls.name: cls for cls in (Vanilla, Exact, GptCache, Nirvana, Ceiling, Pinecone, Crs, SmallModel, Modm, Cascade)
}

__all__ = [
    "LOOKUP_KINDS",
    "SYSTEMS",
    "Decision",
    "System",
    "TraceArrays",
    "build_system",
    "combined_stats",
    "system_class",
]


def system_class(name: str, field: str = "systems") -> type[System]:
    """The registered class of system ``name``; ConfigError naming ``field`` when there is none."""
    cls = SYSTEMS.get(name)
    if cls is None:
        raise unknown_name(field, name, sorted(SYSTEMS))
    return cls


def build_system(name: str, exp: Experiment, trace_arrays: Any, neighbours: Any, profile: Profile) -> System:
    """Build system ``name`` (a key of :data:`SYSTEMS`) for one trace.

    ``trace_arrays``: a :class:`TraceArrays` or a ``Trace`` (its ``prompt_ids``,
    ``user_codes`` and ``arrival_s`` are read); ``neighbours``: the trace's
    ``NeighbourLists`` (may be None for systems that do not need them).
    """
    cls = system_class(name)
    arrays = trace_arrays if isinstance(trace_arrays, TraceArrays) else TraceArrays.of(trace_arrays)
    return cls(exp, arrays, neighbours, profile)
