"""Small real systems and profiles that the engine tests drive the SimPy model with.

Each is a complete, if tiny, implementation of the ``sim.systems`` contract whose
behaviour a test can predict exactly (the real systems are exercised in
test_engine_integration.py).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import yaml

from sim.base.profile import PROFILE_DIR, Profile, parse_profile
from sim.systems import Decision

_BASE = yaml.safe_load((PROFILE_DIR / "sdxl-a10g.yaml").read_text(encoding="utf-8"))


def make_profile(*, tiers: dict | None = None, **latency: object) -> Profile:
    """The shipped A10G profile with some ``latency`` fields (e.g. step times) and storage tiers
    (name -> fields to change) replaced."""
    data = copy.deepcopy(_BASE)
    data["latency"].update(latency)
    for name, fields in (tiers or {}).items():
        data["storage"]["tiers"][name].update(fields)
    return parse_profile(data, "<test profile>")


def service_only_profile(service_s: float, steps: int = 50) -> Profile:
    """A profile whose ``steps`` plain steps take exactly ``service_s`` and nothing else costs time."""
    return make_profile(
        denoise_step_s={1: service_s / steps},
        save_overhead_step_s=0.0,
        text_encoder_s=0.0,
        vae_decode_s=0.0,
        embed_s=0.0,
        index_lookup_base_s=0.0,
        index_lookup_per_decade_s=0.0,
    )


class Vanilla:
    """No cache: every request runs ``steps`` (a number, or an array per request)."""

    name = "vanilla"

    def __init__(self, steps: int | np.ndarray = 50) -> None:
        self.steps = steps
        self.completed: list[tuple[int, float]] = []

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        s = int(self.steps) if np.isscalar(self.steps) else int(self.steps[i])
        return Decision("miss", -1, math.nan, 0, 0, s, 30.28, ())

    def complete(self, i: int, decision: Decision, now: float) -> None:
        self.completed.append((i, now))

    def cached_prompts(self) -> int:
        return 0

    def stats(self) -> dict:
        return {}


class ExactPrompt:
    """A prompt seen (and completed) before is reused at K=25; storing happens on completion,
    so a repeat that arrives before its first generation finished misses, as in a real cache."""

    name = "nirvana"

    def __init__(self, prompt_ids: np.ndarray, n_steps: int = 50, k: int = 25) -> None:
        self.prompt_ids = prompt_ids
        self.n_steps, self.k = n_steps, k
        self.cached: set[int] = set()
        self.boosts: list[int] = []
        self.log: list[tuple[str, int, float]] = []

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.log.append(("lookup", i, now))
        self.boosts.append(boost)
        p = int(self.prompt_ids[i])
        if p in self.cached:
            k = min(self.k + 5 * boost, self.n_steps - 5)
            return Decision("hit", p, 1.0, k, k, self.n_steps - k, 30.28 * 0.9152, ())
        return Decision("miss", -1, math.nan, 0, 0, self.n_steps, 30.28, (5, 10, 15, 20, 25))

    def complete(self, i: int, decision: Decision, now: float) -> None:
        self.log.append(("complete", i, now))
        if decision.store_levels:
            self.cached.add(int(self.prompt_ids[i]))

    def cached_prompts(self) -> int:
        return len(self.cached)

    def stats(self) -> dict:
        return {"cached_bytes": len(self.cached) * 5 * 131072}


class Retrieval(ExactPrompt):
    """Like :class:`ExactPrompt` but a repeat returns the stored image: no GPU at all."""

    name = "gptcache"

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        p = int(self.prompt_ids[i])
        if p in self.cached:
            return Decision("retrieval", p, 1.0, 0, 0, 0, 30.28, ())
        return Decision("miss", -1, math.nan, 0, 0, self.n_steps, 30.28, (50,))
