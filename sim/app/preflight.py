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
import os
from pathlib import Path

from sim.base.config import Experiment, check_simulated_span
from sim.base.errors import ConfigError, unknown_name
from sim.base.io import exists
from sim.base.profile import Profile, load_profile, load_run_profile
from sim.cache.admission import build_admission
from sim.cache.policies import POLICIES
from sim.cache.tiers import TierPath
from sim.engine.autoscaler import SCALING_RULES, scaling_waits
from sim.engine.core import pool_load_times, switch_costs
from sim.engine.pool_split import SPLIT_RULES
from sim.engine.predictor import PREDICTORS
from sim.engine.queues import QUEUES
from sim.engine.replicas import cache_count, elastic, replica_profile_name
from sim.engine.routing import ROUTERS
from sim.systems import SYSTEMS, system_class
from traces.arrivals import get_arrival
from traces.embeddings import check_embedder_name
from traces.load import parse_time
from traces.samples import resolve
from traces.sources import check_trace_config, expected_span_s, get_source, requests_to_make


def _one_of(field: str, value: str, registry: dict) -> None:
    if value not in registry:
        raise unknown_name(field, value, sorted(registry))


def _first_existing(field: str, candidates: list[str]) -> str:
    """The first candidate path that exists (what the resolved config records; a shipped
    ``sample:`` name stays a name)."""
    for candidate in candidates:
        if exists(resolve(candidate, field)):
            return candidate
    raise ConfigError(field, candidates, "none of these files exists")


def _check_trace(exp: Experiment) -> None:
    trace = exp.trace
    if isinstance(trace.path, list):
        trace.path = _first_existing("trace.path", trace.path)
    check_trace_config(trace)
    if trace.path is not None:
        path = resolve(trace.path)
        if not exists(path, "file"):
            problem = "is a directory, not a trace file" if exists(path, "dir") else "no such file"
            raise ConfigError("trace.path", trace.path, problem)
    if exp.reference is not None and not exists(exp.reference, "file"):
        raise ConfigError("reference", exp.reference, "no such file (a CSV of published numbers)")
    rate_path = trace.arrival.rate_path
    if get_arrival(trace.arrival).needs_rate_path and rate_path and not exists(rate_path, "file"):
        raise ConfigError("trace.arrival.rate_path", rate_path, "no such file")
    start = parse_time("trace.start", trace.start)
    end = parse_time("trace.end", trace.end)
    if start is not None and end is not None and end <= start:
        raise ConfigError("trace.end", trace.end, f"must be after trace.start ({trace.start})")


def _check_against_profile(exp: Experiment, profile: Profile) -> None:
    for name in exp.systems:
        SYSTEMS[name].check_profile(exp, profile)
    levels = sorted(profile.k_levels)
    for i, (s, k) in enumerate(exp.selector.ladder or []):
        if int(k) not in levels:
            raise ConfigError(f"selector.ladder[{i}]", [s, k], f"K must be one of the profile's cached levels {levels}")
    if exp.cache.tier is not None:
        TierPath(profile, exp.cache.tier)  # a tier name or a hierarchy of them, fastest first
    for name in exp.systems:
        # What a system asks of the profile (its ladder, the selector's K cap) is checked where it
        # builds its selector; asking for its lowest similarity runs those checks.
        SYSTEMS[name].min_similarity(exp, profile)


# Lower bounds of what one request costs in memory while a run holds it: the trace row (times,
# ids, the prompt text of a mostly unique prompt) and one records row (~20 numeric columns) per
# system. Used only to refuse sizes that cannot fit, before minutes of work end in MemoryError.
TRACE_BYTES_PER_REQUEST = 100
RECORD_BYTES_PER_REQUEST = 160
USER_BYTES = 40  # synthetic generator: activity weight, permutation, name per user
# Measured (2026-12-07, 2,000 and 20,000 requests, 200 and 800 copies): a replica's queue, GPUs and
# counters take ~20 KB; a cache of its own ~30 KB plus ~57 bytes per request of the trace (its
# entry arrays are sized by the trace). Rounded down: these refuse only what cannot fit.
REPLICA_BYTES = 16_000
CACHE_BYTES = 24_000
CACHE_BYTES_PER_REQUEST = 48
TOPIC_BYTES = 200  # synthetic generator: popularity and vocabulary state per topic


def memory_bytes() -> int:
    """The memory this process may use: physical memory, or a smaller cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def check_size(exp: Experiment, requests: int | None, span_s: float | None = None) -> None:
    """Refuse, upfront, a trace that cannot fit in this machine's memory or the engine's clock.

    ``requests`` and ``span_s`` are the trace's (known before loading for generated traces,
    after loading for files); None skips that check. Raises ConfigError naming the field.
    """
    have = memory_bytes()
    need = []
    if requests is not None:
        per = TRACE_BYTES_PER_REQUEST + RECORD_BYTES_PER_REQUEST * len(exp.systems)
        need.append(("trace.requests", requests, requests * per, f"{per} bytes per request"))
    if get_source(exp.trace.source).generated:
        syn = exp.trace.synthetic
        if syn.users:
            need.append(("trace.synthetic.users", syn.users, syn.users * USER_BYTES, f"{USER_BYTES} bytes per user"))
        if syn.topics:
            need.append(("trace.synthetic.topics", syn.topics, syn.topics * TOPIC_BYTES, f"{TOPIC_BYTES} bytes per topic"))
    for field, value, nbytes, per in need:
        if nbytes > have:
            raise ConfigError(
                field,
                value,
                f"needs at least {nbytes / 2**30:,.1f} GiB of memory ({per}) and this machine has "
                f"{have / 2**30:,.1f} GiB",
            )
    if span_s is not None:
        check_simulated_span(exp, span_s)


def check_replica_memory(exp: Experiment, requests: int | None) -> None:
    """Refuse, upfront, a cluster of replicas (and caches of their own) that cannot fit in memory.

    ``requests`` is the trace's size when known (a cache of a replica's own grows with it).
    Raises ConfigError naming the ``copies`` of the largest replica entry.
    """
    replicas = exp.cluster.replicas or []
    if not replicas:
        return
    j = max(range(len(replicas)), key=lambda i: replicas[i].copies)
    count = sum(r.copies for r in replicas)
    nbytes = count * REPLICA_BYTES
    per = f"{REPLICA_BYTES:,} bytes per replica"
    cached = sum(1 for name in exp.systems if SYSTEMS[name].caches)
    if exp.cache.placement == "per-replica" and cached:
        nbytes += count * cached * (CACHE_BYTES + CACHE_BYTES_PER_REQUEST * (requests or 0))
        per += (
            f", and each of {cached} cached system(s) keeps a cache per replica: {CACHE_BYTES:,} bytes"
            + (f" + {CACHE_BYTES_PER_REQUEST} per request" if requests else "")
        )
    have = memory_bytes()
    if nbytes > have:
        raise ConfigError(
            f"cluster.replicas[{j}].copies",
            replicas[j].copies,
            f"needs at least {nbytes / 2**30:,.1f} GiB of memory ({per}; {count:,} replicas in all) and "
            f"this machine has {have / 2**30:,.1f} GiB",
        )


def _check_cluster(exp: Experiment, profile: Profile) -> None:
    """Router and admission names; every replica's profile is the experiment's model on some GPU."""
    _one_of("cluster.router.kind", exp.cluster.router.kind, ROUTERS)
    build_admission(exp.cache.admission, 0, exp.seed)
    _check_autoscale(exp, profile)
    _check_pools(exp, profile)
    _check_request_models(exp, profile)
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


def _check_autoscale(exp: Experiment, profile: Profile) -> None:
    """The scaling rule's name, a full-mode run, and both waits of a new GPU (the profile's written in)."""
    scale = exp.cluster.autoscale
    if scale.rule == "none":
        return
    _one_of("cluster.autoscale.rule", scale.rule, {"none": None, **SCALING_RULES})
    if exp.mode != "full":
        raise ConfigError("cluster.autoscale.rule", scale.rule, "GPUs come and go in time: autoscaling needs mode: full")
    try:
        scale.provision_s, scale.model_load_s = scaling_waits(scale, profile.provision_s, profile.model_load_s)
    except ValueError as exc:
        field = "provision_s" if scale.provision_s is None and profile.provision_s is None else "model_load_s"
        raise ConfigError(f"cluster.autoscale.{field}", None, f"profile {profile.name!r} gives none; set it") from exc


def _check_pools(exp: Experiment, profile: Profile) -> None:
    """A two-model system's pools (``cluster.pools``, one small-model GPU by default, written in) and
    controller; they need mode: full, one pool per model (no replicas), and under an autoscaler no
    controller of their split."""
    cluster = exp.cluster
    _one_of("cluster.controller.rule", cluster.controller.rule, SPLIT_RULES)
    pooled = [name for name in exp.systems if SYSTEMS[name].pool_models]
    if not pooled:
        return
    why = f"system {pooled[0]!r} runs two models on pools of their own"
    if exp.mode != "full":
        raise ConfigError("mode", exp.mode, f"{why}, whose queues need mode: full")
    if cluster.replicas is not None:
        raise ConfigError("cluster.replicas", "...", f"{why} (cluster.pools); leave cluster.replicas out")
    if cluster.autoscale.on:
        if exp.cache.placement == "per-replica":
            raise ConfigError("cache.placement", exp.cache.placement, f"{why}, over one shared cache")
        if cluster.controller.rule != "static":
            raise ConfigError(
                "cluster.controller.rule", cluster.controller.rule, f"{why}, each sized by cluster.autoscale: static"
            )
        if cluster.autoscale.max_gpus < 2:
            raise ConfigError("cluster.autoscale.max_gpus", cluster.autoscale.max_gpus, f"{why}: at least 2")
        try:
            pool_load_times(cluster.autoscale.model_load_s, profile)
        except ValueError:
            raise ConfigError("cluster.autoscale.model_load_s", None, f"profile {profile.name!r} gives none; set it") from None
    if cluster.gpus < 2:
        raise ConfigError("cluster.gpus", cluster.gpus, f"{why}: give it at least 2 GPUs")
    cluster.pool_split()  # the pools share cluster.gpus (as given: a plan or sweep may change gpus)
    if cluster.controller.rule != "static":
        try:
            pool_load_times(cluster.controller.load_s, profile)
        except ValueError:
            raise ConfigError("cluster.controller.load_s", None, f"profile {profile.name!r} gives none; set it") from None


def _check_request_models(exp: Experiment, profile: Profile) -> None:
    """``trace.request_models`` needs mode: full, batches of one, one pool and the profile's loads."""
    if not exp.trace.request_models:
        return
    why = "GPUs that hold one model each and switch"
    if exp.mode != "full":
        raise ConfigError("mode", exp.mode, f"trace.request_models: {why} need mode: full")
    if exp.cluster.batch.max_batch > 1:
        raise ConfigError("cluster.batch.max_batch", exp.cluster.batch.max_batch, f"trace.request_models: {why} run batches of 1")
    if elastic(exp):
        raise ConfigError("cache.placement", exp.cache.placement, f"trace.request_models: {why} serve one shared cache")
    if exp.cluster.affinity_wait_s > 0 and exp.cluster.queue != "fcfs":
        raise ConfigError("cluster.queue", exp.cluster.queue, "cluster.affinity_wait_s reorders a first-come, first-served queue: fcfs")
    pooled = [name for name in exp.systems if SYSTEMS[name].pool_models]
    if pooled:
        raise ConfigError("systems", pooled[0], "trace.request_models: a two-model system's pools run their own two models")
    try:
        switch_costs(profile)
    except ValueError:
        raise ConfigError("trace.request_models", True, f"profile {profile.name!r} gives no scaling.lora_load_s") from None


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
    _check_trace(exp)
    profile = load_run_profile(exp.profile, exp.step_cache)  # a step cache must work on the model
    _check_against_profile(exp, profile)
    _check_cluster(exp, profile)
    source = get_source(exp.trace.source)
    check_size(exp, requests_to_make(exp.trace) if source.uses_arrival else None, expected_span_s(exp.trace))
    check_replica_memory(exp, requests_to_make(exp.trace) if source.uses_arrival else None)
    return exp
