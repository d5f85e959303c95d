"""The SimPy serving engine (``mode: full``): arrivals, lookups, storage tiers, GPU workers.

Registries: :data:`sim.engine.predictor.PREDICTORS` and :data:`sim.engine.queues.QUEUES`.
"""

from sim.engine.core import simulate

__all__ = ["simulate"]
