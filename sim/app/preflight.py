"""The checks of an experiment that depend on this machine, in one step before anything runs.

``sim.base.config`` checks what a value can get wrong on its own (types, ranges, consistency).
What needs the machine is checked here: plug-in names against their registries (systems,
policies, predictors, queues, routers, admission rules, embedders), each system's ``params``
block against the dataclass the system declares, the profile and what the ladder and tier ask
of it, every replica's profile, and the files a trace reads. ``acsim validate``, ``run`` and ``sweep`` (for every configuration of the grid) call
:func:`preflight`; nothing else validates.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from sim.base.config import Experiment, did_you_mean
from sim.base.errors import ConfigError
from sim.base.profile import Profile, load_profile
from sim.cache.admission import build_admission
from sim.cache.policies import POLICIES
from sim.engine.predictor import PREDICTORS
from sim.engine.queues import QUEUES
from sim.engine.replicas import cache_count, replica_profile_name
from sim.engine.routing import ROUTERS
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
    rate_path = trace.arrival.rate_path
    if trace.arrival.process == "rate" and rate_path and not Path(rate_path).expanduser().is_file():
        raise ConfigError("trace.arrival.rate_path", rate_path, "no such file")


def _check_against_profile(exp: Experiment, profile: Profile) -> None:
    levels = sorted(profile.k_levels)
    for i, (s, k) in enumerate(exp.selector.ladder or []):
        if int(k) not in levels:
            raise ConfigError(f"selector.ladder[{i}]", [s, k], f"K must be one of the profile's cached levels {levels}")
    if exp.cache.tier is not None:
        TierPath(profile, exp.cache.tier)  # a tier name or a hierarchy of them, fastest first


def _check_cluster(exp: Experiment, profile: Profile) -> None:
    """Router and admission names; every replica's profile is the experiment's model on some GPU."""
    _one_of("cluster.router.kind", exp.cluster.router.kind, ROUTERS)
    build_admission(exp.cache.admission, 0, exp.seed)
    if exp.cluster.replicas is None:
        return
    profiles = set()
    for j, rc in enumerate(exp.cluster.replicas):
        field = f"cluster.replicas[{j}]." + ("gpu" if rc.gpu is not None else "profile")
        name = replica_profile_name(exp, rc, field)
        if name is None:
            profiles.add(profile.name)
            continue
        p = load_profile(name)
        if (p.steps, p.k_levels, p.latent_bytes) != (profile.steps, profile.k_levels, profile.latent_bytes):
            raise ConfigError(
                field,
                name,
                f"runs another model than profile {exp.profile!r} (steps, K levels or latent size differ)",
            )
        if exp.cache.tier is not None:
            TierPath(p, exp.cache.tier)
        profiles.add(p.name)
    if exp.mode == "cache-only":
        if cache_count(exp) > 1:
            raise ConfigError(
                "cache.placement",
                exp.cache.placement,
                "a cache per replica needs mode: full (which replica serves a request depends on the queues)",
            )
        if len(profiles) > 1:
            raise ConfigError(
                "cluster.replicas",
                sorted(profiles),
                "mode: cache-only prices GPU time on the experiment's profile; mixed GPU types need mode: full",
            )


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
    profile = load_profile(exp.profile)
    _check_against_profile(exp, profile)
    _check_cluster(exp, profile)
    return exp
