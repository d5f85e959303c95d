"""Carried ladders: shipped per embedder, chosen with selector.carried, written by calibrate thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import sim.reuse.ladders as ladders
from calibrate.fidelity import best_earlier, k_agreement, k_for, pairwise_pearson
from calibrate.thresholds import extrapolate_floor_rungs, write_ladder
from sim.app.run import min_similarity
from sim.base import config
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.reuse.selector import Selector


def exp_for(embedder: str, **selector):
    return config.from_dict({"embedder": embedder, "selector": selector, "systems": ["nirvana"]})


@pytest.mark.parametrize("embedder", ["minilm-onnx", "minilm-static"])
def test_shipped_ladders_carry_provenance(embedder: str) -> None:
    rungs, data = ladders.carried_ladder(embedder)
    assert embedder in ladders.shipped_ladders()
    assert data["kind"] == "measured" and "accuscale_match_log_20k.csv" in data["source"]
    assert data["command"].startswith("acsim calibrate thresholds --pairs") and f"--to {embedder}" in data["command"]
    assert [k for _, k in rungs] == [25, 20, 15, 10, 5]
    t = [s for s, _ in rungs]
    assert t == sorted(t, reverse=True) and t[-1] >= -1 and t[0] <= 1
    assert data["transfer"]["extrapolated"]["rungs"] == [[0.65, 5]]


def test_selector_uses_the_carried_ladder_unless_told_not_to() -> None:
    profile = load_profile("sdxl-a10g")
    carried = list(ladders.carried_ladder("minilm-static")[0])
    exp = exp_for("minilm-static", carried=True)
    assert ladders.ladder_for(exp, profile) == carried
    sel = Selector.from_config(exp, profile)
    assert sel.thresholds == [t for t, _ in carried]
    assert min_similarity(exp, profile) == pytest.approx(carried[-1][0])
    assert ladders.ladder_for(exp_for("minilm-static"), profile) == carried  # the default
    assert ladders.ladder_for(exp_for("minilm-static", carried=False), profile) == list(profile.ladder)
    explicit = exp_for("minilm-static", carried=True, ladder=[[0.9, 20]])
    assert ladders.ladder_for(explicit, profile) == [(0.9, 20)]
    with pytest.raises(ConfigError, match="shipped for: .*minilm-onnx"):
        ladders.ladder_for(exp_for("sentence-transformers:/nowhere", carried=True), profile)


def test_write_ladder_extrapolates_rungs_the_log_cannot_place(tmp_path, monkeypatch) -> None:
    block = {
        "embedder": "toy",
        "thresholds": [[0.9, 20], [0.7, 10], [0.2, 5]],
        "kind": "measured",
        "source": "test",
        "transfer": {"from_thresholds": [[0.9, 20], [0.8, 10], [0.6, 5]], "rungs_at_log_floor": [[0.6, 5]]},
    }
    out = extrapolate_floor_rungs(block)
    # The line through (0.8 -> 0.7) and (0.9 -> 0.9) gives 0.7 + (0.6 - 0.8) * 2 = 0.3 at 0.6.
    assert out["thresholds"] == [[0.9, 20], [0.7, 10], [pytest.approx(0.3), 5]]
    assert block["thresholds"][2] == [0.2, 5]  # the input is not modified
    monkeypatch.setattr(ladders, "LADDER_DIR", tmp_path)
    write_ladder(ladders.ladder_path("toy"), block, "acsim calibrate thresholds --to toy")
    rungs, data = ladders.carried_ladder("toy")
    assert rungs == ((0.9, 20), (0.7, 10), (pytest.approx(0.3), 5))
    assert data["command"] == "acsim calibrate thresholds --to toy"
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump({"schema": "acsim-ladder/1", "embedder": "broken", "thresholds": [[0.5, 5]]}))
    with pytest.raises(Exception, match="kind and source"):
        ladders.carried_ladder("broken")


def test_fidelity_measures_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((60, 8)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a + 0.3 * rng.standard_normal(a.shape).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    iu = np.triu_indices(60, 1)
    # float32 products summed in float64: equal to a relative 1e-6 on any BLAS (rounding differs by CPU).
    assert pairwise_pearson(a, b, block=7) == pytest.approx(np.corrcoef((a @ a.T)[iu], (b @ b.T)[iu])[0, 1], rel=1e-6)
    pids = np.array([0, 1, 0, 2, 3, 1, 4])
    best = best_earlier(a, pids)
    for i, p in enumerate(pids.tolist()):  # the definition, one request at a time
        earlier = set(pids[:i].tolist())
        want = max([1.0 if q == p else float(a[p] @ a[q]) for q in earlier], default=-np.inf)
        assert best[i] == pytest.approx(want, abs=1e-6)
    ladder = [(0.95, 25), (0.9, 20), (0.85, 15), (0.75, 10), (0.65, 5)]
    sel = Selector(ladder)
    sims = rng.uniform(0.5, 1.0, 500)
    assert k_for(sims, ladder).tolist() == [sel.k_for(s) for s in sims]
    share, table = k_agreement(np.array([5, 5, 10, 0]), np.array([5, 10, 10, 0]))
    assert share == 0.75
    assert table.set_index("k").loc[5, "same_k"] == 0.5
