"""Every registered system, through one set of checks: one module parametrised over SYSTEMS.

What a system declares on its class (lookup kind, neighbours, latent saving, caching, baseline,
ceiling, parameters, lowest similarity) must match what it does; its decisions must be
self-consistent; its compiled replay (if any) must equal the request-by-request loop; its
summary row must carry the declarations the figures and the report read; and a ceiling must
bound the system it names, request by request, and be what it says (checked against an
independent computation from the similarity matrix).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from support import workload

from sim.base.config import CacheConfig, Experiment
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.base.records import OUTCOMES, REUSE_OUTCOMES
from sim.metrics import summarize
from sim.replay import replay
from sim.systems import LOOKUP_KINDS, SYSTEMS, build_system

PROFILE = load_profile("sdxl-a10g")
N = PROFILE.steps
ALL = sorted(SYSTEMS)
IMAGE_OUTCOMES = ("retrieval", "exact")  # a stored final image is returned: no GPU steps


@pytest.fixture(scope="module")
def work():
    return workload()


def make(name: str, work, **cache: object):
    arrays, lists = work
    exp = Experiment(systems=[name], cache=CacheConfig(**{"capacity": 60, "policy": "lru", **cache}))
    return exp, build_system(name, exp, arrays, lists, PROFILE)


def drive(system, n: int) -> list:
    out = []
    for i in range(n):
        d = system.lookup(i, float(i))
        system.complete(i, d, float(i))
        out.append(d)
    return out


@pytest.mark.parametrize("name", ALL)
def test_declarations_are_well_formed(name: str) -> None:
    cls = SYSTEMS[name]
    assert cls.name == name
    assert cls.lookup_kind in LOOKUP_KINDS
    # Searching by similarity costs an embedding and a vector search; nothing else needs the lists.
    assert cls.needs_neighbours == (cls.lookup_kind == "vector")
    # Latents are saved for a cache to reuse: a real one, or the unbounded one a ceiling assumes.
    assert not (cls.saves_latents and not (cls.caches or cls.is_ceiling))
    # A ceiling is a bound on another registered system, and neither a design nor the baseline.
    assert (cls.bounds is not None) == cls.is_ceiling
    if cls.is_ceiling:
        assert cls.bounds in SYSTEMS and cls.bounds != name and SYSTEMS[cls.bounds].caches
        assert not cls.caches and not cls.is_baseline
    if cls.params_type is not None:
        defaults = cls.params_of(Experiment())
        assert dataclasses.is_dataclass(defaults)
        with pytest.raises(ConfigError, match=rf"params\.{name}\.nonsense"):
            cls.params_of(Experiment(params={name: {"nonsense": 1}}))
    assert sum(c.is_baseline for c in SYSTEMS.values()) == 1


@pytest.mark.parametrize("name", ALL)
def test_decisions_are_consistent_with_the_declarations(name: str, work) -> None:
    exp, system = make(name, work)
    decisions = drive(system, 600)
    levels = set(PROFILE.k_levels) | {N}
    reused = 0
    for d in decisions:
        assert d.outcome in OUTCOMES
        assert 0 <= d.k_used <= d.k_planned <= N or d.outcome == "miss"
        if d.outcome in IMAGE_OUTCOMES:
            assert d.steps == 0
        else:
            assert d.steps == N - d.k_used
        assert math.isfinite(d.quality) and 0 < d.quality <= PROFILE.quality_vanilla
        assert set(d.store_levels) <= levels
        assert (system.saved_latents(d) > 0) == (system.saves_latents and bool(d.store_levels))
        reused += d.outcome in REUSE_OUTCOMES
    cls = SYSTEMS[name]
    assert (reused > 0) == (cls.caches or cls.is_ceiling), "only caching systems (and ceilings) reuse"
    miss = system.miss_decision(0, 0.0)
    assert miss.outcome in ("miss", "bypass") and miss.steps == N and miss.matched == -1


@pytest.mark.parametrize("name", ALL)
def test_nothing_below_the_declared_similarity_is_reused(name: str, work) -> None:
    exp, system = make(name, work)
    floor = SYSTEMS[name].min_similarity(exp, PROFILE)
    for d in drive(system, 600):
        if d.outcome in REUSE_OUTCOMES and SYSTEMS[name].needs_neighbours:
            assert floor is not None and d.similarity >= floor - 1e-6


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("policy", ["lru", "lcbfu", "sieve"])
def test_compiled_replay_equals_the_request_loop(name: str, policy: str, work) -> None:
    arrays, _ = work
    args = (arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    _, fast = make(name, work, policy=policy)
    _, slow = make(name, work, policy=policy)
    pd.testing.assert_frame_equal(replay(fast, *args), replay(slow, *args, compiled=False))
    a, b = fast.stats(), slow.stats()
    pd.testing.assert_frame_equal(a.pop("occupancy"), b.pop("occupancy"))
    assert a == b


@pytest.mark.parametrize("name", ALL)
def test_the_summary_row_carries_the_declarations(name: str, work) -> None:
    arrays, _ = work
    exp, system = make(name, work)
    records = replay(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    row = summarize(records, profile=PROFILE, exp=exp, system_stats=system.stats())
    cls = SYSTEMS[name]
    assert (row["lookup_kind"], row["caches"], row["is_baseline"], row["is_ceiling"], row["bounds"]) == (
        cls.lookup_kind,
        cls.caches,
        cls.is_baseline,
        cls.is_ceiling,
        cls.bounds,
    )
    assert (row["policy"] == "lru") == cls.caches
    assert row["policy_offline"] is False
    if cls.is_baseline:
        assert row["compute_saved"] == 0.0
    # Saving latents costs GPU time: the busy time exceeds plain generation exactly by it.
    plain = N * PROFILE.step_s(1) + PROFILE.text_encoder_s + PROFILE.vae_decode_s
    saving = (records["saved_latents"] > 0).to_numpy()
    run = (records["steps"] > 0).to_numpy()
    expected = np.where(run, PROFILE.text_encoder_s + PROFILE.vae_decode_s, 0.0) + records[
        "steps"
    ].to_numpy() * (PROFILE.step_s(1) + np.where(saving, PROFILE.save_overhead_step_s, 0.0))
    assert row["gpu_busy_s"] == pytest.approx(expected.sum(), rel=1e-9)
    assert row["gpu_busy_s"] <= len(records) * (plain + N * PROFILE.save_overhead_step_s)


def test_an_offline_policy_is_declared_in_the_summary(work) -> None:
    arrays, _ = work
    exp, system = make("nirvana", work, policy="belady")
    records = replay(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    assert summarize(records, profile=PROFILE, exp=exp, system_stats=system.stats())["policy_offline"] is True


def test_a_new_system_needs_one_module_and_one_registry_line(tmp_path, monkeypatch) -> None:
    """ARCHITECTURE.md's example, registered, runs through preflight, run and summary unchanged."""
    from dataclasses import dataclass

    from sim.app.preflight import preflight
    from sim.app.run import run_experiment
    from sim.base import config
    from sim.systems.exact import Exact

    @dataclass
    class OfficeHoursParams:
        open_h: float = 9.0
        close_h: float = 17.0

    class OfficeHours(Exact):
        name = "office-hours"
        params_type = OfficeHoursParams

        def __init__(self, exp, arrays, neighbours, profile):
            super().__init__(exp, arrays, neighbours, profile)
            self.params = self.params_of(exp)

        def lookup(self, i, now, boost=0):
            hour = now / 3600 % 24
            if self.params.open_h <= hour < self.params.close_h:
                return super().lookup(i, now, boost)
            self.lookups += 1
            return self.miss_decision(i, now)

    monkeypatch.setitem(SYSTEMS, OfficeHours.name, OfficeHours)
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    data = {
        "systems": ["vanilla", "exact", "office-hours"],
        "params": {"office-hours": {"open_h": 0.0, "close_h": 6.0}},
        "trace": {"requests": 2000, "arrival": {"rate": 0.05}},
        "embedder": "hashing",
        "mode": "cache-only",
        "plots": False,
    }
    exp = preflight(config.from_dict(data))
    assert exp.params["office-hours"] == {"open_h": 0.0, "close_h": 6.0}
    summary = run_experiment(exp, out_dir=tmp_path / "out", progress=False).set_index("system")
    # Open 6 h of each day (the trace spans ~11 h): it reuses less than exact caching, but something.
    assert 0 < summary.loc["office-hours", "hit_rate"] < summary.loc["exact", "hit_rate"]
    assert summary.loc["office-hours", "caches"] and summary.loc["office-hours", "lookup_kind"] == "hash"
