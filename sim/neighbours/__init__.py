"""Who is similar to whom: causal neighbour lists over a trace's prompts, and what builds them.

``lists`` (the lists, built once per trace and cached), ``index`` (the vector indexes a build may
use), ``ivf`` (the partitioned join and the cells a fallback probes), ``similarity`` (exact cosine
similarities, the one scoring both replay paths share).
"""

from sim.neighbours.lists import INDEX_KINDS, NeighbourLists, build_neighbours

__all__ = ["INDEX_KINDS", "NeighbourLists", "build_neighbours"]
