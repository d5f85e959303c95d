"""Every registered admission rule, through one set of checks: one module parametrised over ADMISSIONS.

A rule builds from its declared example spec, decides reproducibly for a seed, is obeyed in both
replay paths (a refused generation stores nothing and saves no latents), and, when it reads no
engine state, decides the same in the full engine as in the cache-only replay.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import OWN_SPACE, ExactPrompt, experiment, run, service_only_profile, workload

from sim.base.config import CacheConfig, Experiment, from_dict
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.cache.admission import ADMISSIONS, build_admission
from sim.engine import simulate
from sim.engine.replay import replay
from sim.systems import TraceArrays, build_system

ALL = sorted(ADMISSIONS)
PROFILE = load_profile("sdxl-a10g")


@pytest.mark.parametrize("name", ALL)
def test_declarations_and_reproducible_decisions(name: str) -> None:
    cls = ADMISSIONS[name]
    assert cls.name == name and cls.example.split(":")[0] == name
    a, b = build_admission(cls.example, 500, seed=7), build_admission(cls.example, 500, seed=7)
    assert type(a) is cls
    mask = a.admitted()
    assert mask.dtype == bool and len(mask) == 500 and (mask == b.admitted()).all()
    if cls.admits_all:
        assert mask.all() and all(a.admit(i, 0) for i in range(500))
    if not cls.uses_engine:  # the engine asks, whatever the GPUs, what the mask says
        assert [a.admit(i, g) for i, g in zip(range(500), [0, 1] * 250, strict=True)] == mask.tolist()
    with pytest.raises(ConfigError, match="cache.admission"):
        build_admission(f"{name}:nonsense:1" if cls.example == name else f"{name}:2", 10, seed=1)


def test_unknown_rules_and_malformed_specs_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"cache\.admission.*did you mean 'sample'"):
        build_admission("sampel:0.5", 10, seed=1)
    with pytest.raises(ConfigError, match="cache.admission"):
        from_dict({"cache": {"admission": "sample:"}})


@pytest.mark.parametrize("name", ALL)
def test_full_engine_obeys_the_rule(name: str) -> None:
    """An overloaded GPU: a miss saves its latents exactly when the rule admits it (when-idle: when
    it started at once, nothing having to wait)."""
    n = 400
    rng = np.random.default_rng(1)
    prompts = rng.integers(0, 300, n)
    arrival = np.cumsum(rng.exponential(8.0, n))  # 10 s jobs on one GPU: overloaded
    cls = ADMISSIONS[name]
    exp = experiment(cache__admission=cls.example)
    rec, _ = run(ExactPrompt(prompts), arrival, prompts, exp, profile=service_only_profile(10.0))
    miss = (rec["outcome"] == "miss").to_numpy()
    saved = (rec["saved_latents"] > 0).to_numpy()
    if cls.uses_engine:
        started_at_once = (rec["queue_s"] == 0).to_numpy()
        assert (saved[miss] == started_at_once[miss]).all()
        assert 0 < saved[miss].sum() < miss.sum()
    else:
        admitted = build_admission(cls.example, n, seed=7).admitted()  # run() simulates with seed 7
        assert (saved[miss] == admitted[miss]).all()
    assert rec.attrs["engine"]["not_admitted"] == int((miss & ~saved).sum())


@pytest.mark.parametrize("name", ALL)
def test_both_modes_agree_at_light_load(name: str) -> None:
    arrays, lists = workload()
    slow = TraceArrays(arrays.prompt_ids, arrays.user_codes, arrays.arrival_s * 40.0)  # nothing queues
    exp = Experiment(selector=OWN_SPACE,
        systems=["nirvana"], cache=CacheConfig(capacity=60, policy="lru", admission=ADMISSIONS[name].example)
    )
    exp.cluster.gpus = 16
    admit = build_admission(exp.cache.admission, len(slow.prompt_ids), exp.seed).admitted()
    cache_only = replay(
        build_system("nirvana", exp, slow, lists, PROFILE),
        slow.arrival_s,
        slow.prompt_ids,
        slow.user_codes,
        admit=admit,
    )
    full, _ = simulate(
        build_system("nirvana", exp, slow, lists, PROFILE),
        slow.arrival_s,
        slow.prompt_ids,
        slow.user_codes,
        exp,
        PROFILE,
        seed=exp.seed,
    )
    assert full["queue_s"].max() == 0
    for col in ("outcome", "matched", "k_used", "steps", "saved_latents"):
        assert full[col].tolist() == cache_only[col].tolist(), col
