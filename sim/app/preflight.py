"""The checks of an experiment that depend on this machine, in one step before anything runs.

``sim.base.config`` checks what a value can get wrong on its own (types, ranges, consistency).
What needs the machine is checked here: plug-in names against their registries (systems,
policies, predictors, queues, embedders), each system's ``params`` block against the dataclass
the system declares, the profile and what the ladder and tier ask of it, and the files a trace
reads. ``acsim validate``, ``run`` and ``sweep`` (for every configuration of the grid) call
:func:`preflight`; nothing else validates.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from sim.base.config import Experiment, did_you_mean
from sim.base.errors import ConfigError
from sim.base.profile import Profile, load_profile
from sim.cache.policies import POLICIES
from sim.engine.predictor import PREDICTORS
from sim.engine.queues import QUEUES
from sim.systems import SYSTEMS, system_class
from sim.tiers import TierPath
from traces.embeddings import check_embedder_name


def _one_of(field: str, value: str, registry: dict) -> None:
    if value not in registry:
        names = sorted(registry)
        raise ConfigError(field, value, "allowed: " + ", ".join(names), did_you_mean(value, names))


def _first_existing(field: str, candidates: list[str]) -> str:
    """The first candidate path that exists (what the resolved config records)."""
    for candidate in candidates:
        if Path(candidate).expanduser().exists():
            return candidate
    raise ConfigError(field, candidates, "none of these files exists")


def _check_files(exp: Experiment) -> None:
    trace = exp.trace
    if isinstance(trace.path, list):
        trace.path = _first_existing("trace.path", trace.path)
    if trace.path is not None and not Path(trace.path).expanduser().exists():
        raise ConfigError("trace.path", trace.path, "no such file")
    if exp.reference is not None and not Path(exp.reference).expanduser().is_file():
        raise ConfigError("reference", exp.reference, "no such file (a CSV of published numbers)")
    rate_path = trace.arrival.rate_path
    if trace.arrival.process == "rate" and rate_path and not Path(rate_path).expanduser().is_file():
        raise ConfigError("trace.arrival.rate_path", rate_path, "no such file")


def _check_against_profile(exp: Experiment, profile: Profile) -> None:
    for name in exp.systems:
        SYSTEMS[name].check_profile(exp, profile)
    levels = sorted(profile.k_levels)
    for i, (s, k) in enumerate(exp.selector.ladder or []):
        if int(k) not in levels:
            raise ConfigError(f"selector.ladder[{i}]", [s, k], f"K must be one of the profile's cached levels {levels}")
    if exp.cache.tier is not None:
        TierPath(profile, exp.cache.tier)  # a tier name or a hierarchy of them, fastest first


def preflight(exp: Experiment) -> Experiment:
    """A copy of ``exp`` checked against this machine, with what it resolves written in.

    Resolved: a ``trace.path`` list becomes the first file that exists; ``params`` holds every
    parameter (defaults included) of each system in ``systems``. Raises ConfigError naming the
    field, or InputError naming the file (a missing or malformed profile).
    """
    exp = copy.deepcopy(exp)
    for i, name in enumerate(exp.systems):
        system_class(name, f"systems[{i}]")
    for name in exp.params:
        _one_of(f"params.{name}", name, SYSTEMS)
    for name in exp.systems:
        cls = SYSTEMS[name]
        if cls.params_type is not None:
            exp.params[name] = dataclasses.asdict(cls.params_of(exp))
    _one_of("cache.policy", exp.cache.policy, POLICIES)
    _one_of("predictor.kind", exp.predictor.kind, PREDICTORS)
    _one_of("cluster.queue", exp.cluster.queue, QUEUES)
    problem = check_embedder_name(exp.embedder)
    if problem:
        raise ConfigError("embedder", exp.embedder, problem)
    _check_files(exp)
    _check_against_profile(exp, load_profile(exp.profile))
    return exp
