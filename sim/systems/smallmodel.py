"""``smallmodel``: every request generated from scratch by the profile's small, distilled model.

No cache and no lookup: the saving is in the model. Its steps, step times, price and the quality
of its images come from the profile's ``small_model`` block (see the shipped profiles for where
each number comes from); the engine charges its GPU work through :meth:`System.gpu_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.systems.base import NAN, Decision, System, TraceArrays

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


class SmallModel(System):
    """Every request runs the small model's few steps."""

    name = "smallmodel"
    serves_with = "small_model"

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        small = self.gpu_model()
        self._decision = Decision("bypass", -1, NAN, 0, 0, small.steps, small.quality["clip"], ())

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        return self._decision

    def miss_decision(self, i: int, now: float) -> Decision:
        return self._decision
