"""Admission: which generations offer what they produced to the cache (``cache.admission``).

A rule decides per request whether its generation stores its latents (or image). A generation
that is not admitted stores nothing (its decision's ``store_levels`` are emptied), so it saves no
latents and pays none of the saving overhead on the GPU: under overload that overhead (16% per
step on an A10G) is what makes a latent cache slower than no cache, and admission is the lever
an operator has. The rules (``ADMISSIONS``; a spec is ``NAME`` or ``NAME:ARGUMENT``):

* ``all``: every generation (the published systems' behaviour, the default);
* ``sample:P``: each generation with probability P, a seeded Bernoulli draw per request, the same
  in both replay paths;
* ``when-idle``: only a generation whose replica has an idle GPU when the request is looked up
  (it starts at once, so saving delays nobody waiting). It reads the engine's state; the
  cache-only replay has no queue, hence always an idle GPU, so there it admits everything.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sim.base.config import split_spec
from sim.base.errors import ConfigError, unknown_name

FIELD = "cache.admission"


class Admission:
    """Base class: admit everything.

    ``admitted()`` is the per-request decision where no engine state is needed (what the
    cache-only replay uses); ``admit(i, idle_gpus)`` is the engine's question for request ``i``
    given the idle GPUs of the replica serving it. ``admits_all`` lets the engine skip asking.
    """

    name: ClassVar[str] = ""
    example: ClassVar[str] = ""  # a spec that builds this rule (docs and tests)
    admits_all: ClassVar[bool] = False
    uses_engine: ClassVar[bool] = False  # decides from the serving replica's state (full mode)

    def __init__(self, arg: str | None, n: int, seed: int) -> None:
        if arg is not None:
            raise ConfigError(FIELD, f"{self.name}:{arg}", f"{self.name!r} takes no argument")
        self.n = n

    def admitted(self) -> np.ndarray:
        """Whether each of the ``n`` requests' generations is admitted, without engine state."""
        return np.ones(self.n, dtype=bool)

    def admit(self, i: int, idle_gpus: int) -> bool:
        """Whether request ``i``'s generation is admitted, its replica having ``idle_gpus`` idle GPUs."""
        return True


class AdmitAll(Admission):
    """Every generation stores what it produced."""

    name = "all"
    example = "all"
    admits_all = True


class Sample(Admission):
    """Each generation with probability P (a seeded Bernoulli draw per request)."""

    name = "sample"
    example = "sample:0.5"

    def __init__(self, arg: str | None, n: int, seed: int) -> None:
        try:
            p = float(arg) if arg is not None else float("nan")
        except ValueError:
            p = float("nan")
        if not 0 <= p <= 1:
            raise ConfigError(
                FIELD, f"sample:{arg}", "sample:P needs a probability P in [0, 1], e.g. sample:0.5"
            )
        self.n = n
        self.p = p
        # Its own stream of the seed, so other seeded draws (the match predictor) stay as they were.
        self._mask = np.random.default_rng([seed, 0xAD]).random(n) < p

    def admitted(self) -> np.ndarray:
        return self._mask.copy()

    def admit(self, i: int, idle_gpus: int) -> bool:
        return bool(self._mask[i])


class WhenIdle(Admission):
    """Only generations that start at once on an idle GPU of their replica (all in cache-only mode)."""

    name = "when-idle"
    example = "when-idle"
    uses_engine = True

    def admit(self, i: int, idle_gpus: int) -> bool:
        return idle_gpus > 0


ADMISSIONS: dict[str, type[Admission]] = {cls.name: cls for cls in (AdmitAll, Sample, WhenIdle)}


def build_admission(spec: str, n: int, seed: int) -> Admission:
    """The rule ``spec`` names (``all``, ``sample:0.5``, ``when-idle``) for ``n`` requests."""
    name, arg = split_spec(FIELD, spec)
    cls = ADMISSIONS.get(name)
    if cls is None:
        raise unknown_name(FIELD, spec, ADMISSIONS, name)
    return cls(arg, n, seed)
