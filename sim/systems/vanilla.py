"""``vanilla``: no cache; every request runs all N denoising steps. The baseline of every comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.systems.base import NAN, Decision, System, TraceArrays

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


class Vanilla(System):
    """No cache: every request runs all N steps."""

    name = "vanilla"
    is_baseline = True
    real_lookup = True

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        self._decision = Decision("bypass", -1, NAN, 0, 0, profile.steps, profile.quality_vanilla, ())

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        return self._decision

    def miss_decision(self, i: int, now: float) -> Decision:
        return self._decision
