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
from support import OWN_SPACE, workload

from sim.base.config import CacheConfig, Experiment
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.base.records import OUTCOMES, REUSE_OUTCOMES
from sim.engine.replay import replay
from sim.neighbours.similarity import similarities_to
from sim.results.metrics import summarize
from sim.reuse.quality import RETRIEVAL_SOURCES
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
    # The hand-made workload was laid out for GPTCache's library gate (0.8 on its own cosines) and
    # PINECONE's gate at 0.822 (min_alignment 0.2715 on the fitted retrieval line).
    exp = Experiment(
        selector=OWN_SPACE,
        systems=[name],
        cache=CacheConfig(**{"capacity": 60, "policy": "lru", **cache}),
        params={"gptcache": {"threshold": 0.8, "space": "embedder"}, "pinecone": {"min_alignment": 0.2715}},
    )
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
    # Searching the trace's earlier prompts by similarity costs an embedding and a vector search
    # (a vector search over a fixed external corpus needs no neighbour lists).
    assert not cls.needs_neighbours or cls.lookup_kind == "vector"
    # Latents are saved for a cache to reuse: a real one, or the unbounded one a ceiling assumes.
    assert not (cls.saves_latents and not (cls.caches or cls.is_ceiling))
    assert cls.retrieval_source in RETRIEVAL_SOURCES
    # The model it generates with is a block of the shipped profile, with a price and a quality.
    gpu = PROFILE.gpu_model(cls.serves_with)
    assert gpu.steps >= 1 and gpu.gpu_price_per_hour_usd > 0 and math.isfinite(gpu.quality["clip"])
    cls.check_profile(Experiment(selector=OWN_SPACE), PROFILE)
    # A ceiling is a bound on another registered system, and neither a design nor the baseline.
    assert (cls.bounds is not None) == cls.is_ceiling
    if cls.is_ceiling:
        assert cls.bounds in SYSTEMS and cls.bounds != name and SYSTEMS[cls.bounds].caches
        assert not cls.caches and not cls.is_baseline
    if cls.params_type is not None:
        defaults = cls.params_of(Experiment(selector=OWN_SPACE))
        assert dataclasses.is_dataclass(defaults)
        with pytest.raises(ConfigError, match=rf"params\.{name}\.nonsense"):
            cls.params_of(Experiment(selector=OWN_SPACE, params={name: {"nonsense": 1}}))
    assert sum(c.is_baseline for c in SYSTEMS.values()) == 1


@pytest.mark.parametrize("name", ALL)
def test_decisions_are_consistent_with_the_declarations(name: str, work) -> None:
    exp, system = make(name, work)
    decisions = drive(system, 600)
    levels = set(PROFILE.k_levels) | {N}
    steps = system.gpu_model().steps  # its own model's steps (the small model runs fewer)
    reused = 0
    for d in decisions:
        assert d.outcome in OUTCOMES
        assert 0 <= d.k_used <= d.k_planned <= N or d.outcome == "miss"
        if d.outcome in IMAGE_OUTCOMES and SYSTEMS[name].refines_retrievals:
            refiner = PROFILE.gpu_model(SYSTEMS[name].pool_models[system.pool_of(d)])
            assert 1 <= d.steps <= refiner.steps
        elif d.outcome in IMAGE_OUTCOMES:
            assert d.steps == 0
        else:
            assert d.steps == steps - d.k_used
        assert math.isfinite(d.quality) and 0 < d.quality <= PROFILE.quality_vanilla
        assert set(d.store_levels) <= levels
        assert (system.saved_latents(d) > 0) == (system.saves_latents and bool(d.store_levels))
        reused += d.outcome in REUSE_OUTCOMES
    # Systems that look something up (a cache or a corpus) reuse on this workload; the others never.
    assert (reused > 0) == (SYSTEMS[name].lookup_kind != "none")
    miss = system.miss_decision(0, 0.0)
    assert miss.outcome in ("miss", "bypass") and miss.steps == steps and miss.matched == -1


@pytest.mark.parametrize("name", ALL)
def test_probe_foretells_the_lookup_and_changes_nothing(name: str, work) -> None:
    """``probe`` (used to count hits a blind match predictor lost) says whether the lookup would
    reuse something, and leaves the cache exactly as it was."""
    _, system = make(name, work)
    _, twin = make(name, work)  # driven without probes: must end in the same state
    agree = 0
    for i in range(600):
        if i % 10 == 0:  # counters unchanged by a probe (the twin checks the whole state at the end)
            before = system.stats()
            before.pop("occupancy")
        foretold = system.probe(i, float(i))
        if i % 10 == 0:
            after = system.stats()
            after.pop("occupancy")
            assert before == after
        d = system.lookup(i, float(i))
        system.complete(i, d, float(i))
        t = twin.lookup(i, float(i))
        twin.complete(i, t, float(i))
        assert d._replace(similarity=0.0) == t._replace(similarity=0.0), i  # the same decisions ...
        assert d.similarity == t.similarity or math.isnan(d.similarity) and math.isnan(t.similarity)
        assert (foretold > 0) == (d.outcome in REUSE_OUTCOMES), i
        agree += foretold > 0
    assert (agree > 0) == (SYSTEMS[name].lookup_kind != "none")
    a, b = system.stats(), twin.stats()
    a.pop("occupancy"), b.pop("occupancy")
    assert a == b


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
    # What the system compared similarities with, from the system itself (NaN: it matches nothing).
    low = cls.min_similarity(exp, PROFILE)
    assert row["min_similarity"] == pytest.approx(low) if low is not None else row["min_similarity"] != row["min_similarity"]
    assert row["serves_with"] == cls.serves_with
    if cls.is_baseline:
        assert row["compute_saved"] == 0.0
    # Saving latents costs GPU time: the busy time exceeds plain generation exactly by it. Steps
    # are charged at the step time of the system's own model.
    gpu = PROFILE.gpu_model(cls.serves_with)
    plain = N * PROFILE.step_s(1) + PROFILE.text_encoder_s + PROFILE.vae_decode_s
    saving = (records["saved_latents"] > 0).to_numpy()
    run = (records["steps"] > 0).to_numpy()
    expected = np.where(run, gpu.text_encoder_s + gpu.vae_decode_s, 0.0) + records[
        "steps"
    ].to_numpy() * (gpu.step_s(1) + np.where(saving, gpu.save_overhead_step_s, 0.0))
    assert row["gpu_busy_s"] == pytest.approx(expected.sum(), rel=1e-9)
    assert row["gpu_busy_s"] <= len(records) * (plain + N * PROFILE.save_overhead_step_s)
    # Compute saved counts the steps run in steps of the main model.
    main_steps = records["steps"].sum() * gpu.step_s(1) / PROFILE.step_s(1)
    assert row["compute_saved"] == pytest.approx(1 - main_steps / (len(records) * N))
    # Three quality metrics, each between the best and the worst kind of image the profile knows.
    for metric, lo, hi in (("clip", 20, 30.28), ("pickscore", 18, 20.86), ("fid", 3, 12)):
        assert lo <= row[f"quality_{metric}"] <= hi + 1e-9, metric


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


@pytest.mark.parametrize("name", ALL)
def test_probe_foretells_the_lookup_without_side_effects(name: str, work) -> None:
    """``probe(i)`` (what a cache-affinity router asks every replica) is the K the lookup would use,
    and asking it changes nothing: counters, cache contents and the eviction order stay as they were."""
    _, system = make(name, work)
    _, twin = make(name, work)  # the same requests, never probed
    agreed = 0
    for i in range(600):
        skipped = system.probe(i)
        system.probe(i)  # asking twice changes nothing either
        d = system.lookup(i, float(i))
        twin_d = twin.lookup(i, float(i))
        assert d == twin_d, f"request {i}: probing changed the lookup's decision"
        reuse_steps = N - d.steps if d.outcome in REUSE_OUTCOMES else 0
        assert skipped == reuse_steps, (i, d)
        agreed += skipped > 0
        system.complete(i, d, float(i))
        twin.complete(i, twin_d, float(i))
    assert (agreed > 0) == (SYSTEMS[name].lookup_kind != "none")
    a, b = system.stats(), twin.stats()
    pd.testing.assert_frame_equal(a.pop("occupancy"), b.pop("occupancy"))
    assert a == b


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("policy", ["lru", "lcbfu"])
def test_admission_mask_in_both_cache_only_paths(name: str, policy: str, work) -> None:
    """A request the admission rule refuses stores nothing and saves no latents, in the compiled
    replay and in the request loop alike; the admitted ones still store."""
    from sim.cache.admission import build_admission

    arrays, _ = work
    n = len(arrays.prompt_ids)
    admit = build_admission("sample:0.4", n, seed=3).admitted()
    assert 0.3 < admit.mean() < 0.5
    args = (arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    _, fast = make(name, work, policy=policy)
    _, slow = make(name, work, policy=policy)
    _, everything = make(name, work, policy=policy)
    a = replay(fast, *args, admit=admit)
    b = replay(slow, *args, admit=admit, compiled=False)
    pd.testing.assert_frame_equal(a, b)
    assert (a["saved_latents"].to_numpy()[~admit] == 0).all()
    replay(everything, *args)
    if SYSTEMS[name].caches:
        # (Reuse need not fall: in a small cache fewer insertions also mean fewer evictions.)
        assert fast.stats()["insertions"] < everything.stats()["insertions"]
    if SYSTEMS[name].saves_latents:
        assert (a["saved_latents"].to_numpy()[admit] > 0).any()


SERVABLE = sorted(n for n, cls in SYSTEMS.items() if cls.real_lookup)


def _same(a, b) -> bool:
    """The same decision: similarities (and the quality they imply) agree to float32 rounding, as
    a BLAS product and a dot product of the same unit rows do."""
    exact = ("outcome", "matched", "k_planned", "k_used", "steps", "store_levels")
    return all(getattr(a, f) == getattr(b, f) for f in exact) and all(
        np.isclose(getattr(a, f), getattr(b, f), rtol=1e-5, atol=1e-6, equal_nan=True) for f in ("similarity", "quality")
    )


def test_the_real_server_can_run_the_papers_systems() -> None:
    assert {"vanilla", "exact", "gptcache", "nirvana"} <= set(SERVABLE)


@pytest.mark.parametrize("name", SERVABLE)
def test_lookup_among_every_cached_slot_decides_as_lookup(name: str, work) -> None:
    """A real server finds its candidates with its own index: given every cached slot with its exact
    similarity, ``lookup_among`` must decide as ``lookup`` does from the precomputed lists, with the
    same cache contents after every request (the lists here are truncated, so fallbacks happen)."""
    arrays, lists = work
    _, by_lists = make(name, work)
    _, by_index = make(name, work)
    emb = lists.embeddings
    pids = arrays.prompt_ids
    for i in range(len(pids)):
        a = by_lists.lookup(i, float(i))
        if by_index.lookup_kind == "hash":
            own = int(pids[i])
            slots = [own] if own in by_index.store.masks else []
        else:
            slots = sorted(by_index.store.masks) if by_index.caches else []
        sims = similarities_to(emb, np.asarray(slots, dtype=np.int64), int(pids[i]))
        b = by_index.lookup_among(i, slots, sims, float(i))
        assert _same(a, b), (i, a, b)
        by_lists.complete(i, a, float(i))
        by_index.complete(i, b, float(i))
        if by_lists.caches:
            assert by_lists.store.masks == by_index.store.masks, i
    assert by_lists.stats()["lookups"] == by_index.stats()["lookups"]
