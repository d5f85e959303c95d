"""Match predictors on every real system that looks something up: a skipped lookup is a fresh
generation that stores exactly what that system's own misses store (regression: gptcache once
stored latent levels), and the predictor's lost hits and recall are reported."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sim.app.run import prepare_inputs
from sim.base import config
from sim.engine import simulate
from sim.systems import SYSTEMS, build_system

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("system", sorted(name for name, cls in SYSTEMS.items() if cls.lookup_kind != "none"))
def test_model_predictor_runs_on_every_system_that_looks_up(system: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    exp = config.from_dict(
        {
            "seed": 1,
            "trace": {"source": "synthetic", "requests": 6000,
                      "arrival": {"process": "diurnal", "rate": 0.16, "diurnal_amplitude": 0.3}},
            "embedder": "hashing",
            "cache": {"capacity": 1500, "policy": "lcbfu"},
            "predictor": {"kind": "model", "precision": 0.9, "recall": 0.9},
            "systems": [system],
        }
    )
    inputs = prepare_inputs(exp, progress=False)
    trace = inputs.trace
    sys_ = build_system(system, exp, trace, inputs.neighbours, inputs.profile)
    records, _ = simulate(sys_, trace.arrival_s, trace.prompt_ids, trace.user_codes, exp, inputs.profile,
                          seed=exp.seed, embeddings=inputs.embeddings)
    eng = records.attrs["engine"]
    assert eng["lost_hits"] > 0, "a 0.9-recall predictor must skip some real hits"
    assert (records.loc[records["outcome"] == "miss", "steps"] == 50).all()
    hits = int(records["outcome"].isin(["hit", "hole", "retrieval", "exact"]).sum())
    assert hits / (hits + eng["lost_hits"]) == pytest.approx(0.9, abs=0.03)  # the configured recall
    if not SYSTEMS[system].caches:
        return
    # What a skipped lookup stores is what this system's misses store: final images (level N) for
    # the image caches, the ladder's latent levels for a latent cache.
    wanted = set(inputs.profile.k_levels) if SYSTEMS[system].saves_latents else {50}
    levels = {lv for mask in sys_.store.masks.values() for lv in range(64) if mask >> lv & 1}
    assert levels and levels <= wanted
