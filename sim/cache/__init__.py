"""The approximate cache: a store of latents by (prompt, K level) and pluggable eviction policies."""

from sim.cache.store import LatentStore

__all__ = ["LatentStore"]
