"""``cascade``: DiffServe-style model cascade (MLSys '25): the small model answers every request
first, and the prompts its confidence rule escalates are generated again by the large model.

DiffServe's discriminator scores each small-model image and escalates those below a threshold it
tunes to the load. acsim has no images to score: each prompt carries a fixed score, uniform on
[0, 1) and drawn from the run's seed (a property of the prompt, so a repeated prompt escalates
alike), and a prompt escalates when its score is below ``escalation_rate`` (a set escalation rate,
the threshold on the uniform score that gives it). An escalated request's latency holds both
generations and the queue before each; it receives the large model's image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.errors import ConfigError
from sim.systems.base import NAN, Decision, System, TraceArrays

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile


@dataclass
class CascadeParams:
    """``params.cascade``.

    ``escalation_rate``: assumed, the share of prompts the large model generates again. DiffServe
    tunes its threshold so that 10-50% escalate across its loads (its Fig. 7 range); 0.3 is the
    middle of it, not a published operating point.
    """

    escalation_rate: float = 0.3

    def check(self) -> None:
        if not 0 <= self.escalation_rate <= 1:
            raise ConfigError("escalation_rate", self.escalation_rate, "must be in [0, 1]")


class Cascade(System):
    """Small model first; escalated prompts are generated again by the large model."""

    name = "cascade"
    serves_with = "small_model"
    params_type = CascadeParams
    pool_models = ("model", "small_model")

    def __init__(self, exp: Experiment, arrays: TraceArrays, neighbours: Any, profile: Profile) -> None:
        super().__init__(exp, arrays, neighbours, profile)
        rate = self.params_of(exp).escalation_rate
        n_prompts = int(arrays.prompt_ids.max()) + 1 if len(arrays.prompt_ids) else 0
        score = np.random.default_rng([exp.seed, 0xCA5CADE]).random(n_prompts)
        self._escalated = (score[arrays.prompt_ids] < rate).tolist()
        small = profile.gpu_model("small_model")
        self._first = Decision("bypass", -1, NAN, 0, 0, small.steps, small.quality["clip"], ())
        self._escalate = self._first._replace(outcome="miss", quality=profile.quality_vanilla)
        self.escalations = 0

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.lookups += 1
        return self._escalate if self._escalated[i] else self._first

    def miss_decision(self, i: int, now: float) -> Decision:
        return self.lookup(i, now)

    def pool_of(self, decision: Decision) -> int:
        return 1

    def follow_up_steps(self, i: int, decision: Decision) -> int:
        if decision.outcome != "miss":
            return 0
        self.escalations += 1
        return self.n_steps

    def delivered_by(self, i: int, decision: Decision) -> int:
        return 0 if decision.outcome == "miss" else 1

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["escalations"] = self.escalations
        return out
