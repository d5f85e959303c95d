"""Selector: similarity -> K ladder, strict thresholds, load-aware boost, validation."""

from __future__ import annotations

import numpy as np
import pytest

from sim.base.config import Experiment, SelectorConfig
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.reuse.selector import Selector

PUBLISHED = [(0.95, 25), (0.90, 20), (0.85, 15), (0.75, 10), (0.65, 5)]


@pytest.mark.parametrize(
    ("s", "k"),
    [
        (1.0, 25),
        (0.951, 25),
        (0.95, 20),
        (0.93, 20),
        (0.90, 15),
        (0.86, 15),
        (0.80, 10),
        (0.75, 5),
        (0.70, 5),
        (0.65, 0),
        (0.3, 0),
    ],
)
def test_published_ladder_first_threshold_strictly_exceeded(s: float, k: int) -> None:
    assert Selector(PUBLISHED).k_for(s) == k


def test_rung_order_does_not_matter() -> None:
    assert Selector(list(reversed(PUBLISHED))).k_for(0.91) == 20


def test_boost_moves_up_rungs_and_caps() -> None:
    sel = Selector(PUBLISHED, floor=0.6, max_k=20)
    assert sel.k_for(0.80) == 10
    assert sel.k_for(0.80, boost=1) == 15
    assert sel.k_for(0.80, boost=9) == 20  # capped at max_k
    assert sel.k_for(0.97) == 20  # max_k caps the ladder too
    assert sel.k_for(0.62, boost=1) == 5  # below the ladder, above the floor: lowest rung
    assert sel.k_for(0.62) == 0
    assert sel.k_for(0.55, boost=3) == 0  # below the floor: never reused
    assert sel.min_similarity == 0.6


def test_from_config_carries_the_profile_ladder_by_default() -> None:
    """The published ladder is in CLIP-text similarity: by default it is carried to the run's
    embedder (minilm: its shipped ladder); read as it stands only with carried: false."""
    from sim.reuse.ladders import carried_ladder

    profile = load_profile("sdxl-a10g")
    sel = Selector.from_config(Experiment(), profile)
    assert list(zip(sel.thresholds, sel.ks, strict=True)) == list(carried_ladder("minilm")[0])
    sel = Selector.from_config(Experiment(selector=SelectorConfig(carried=False)), profile)
    assert list(zip(sel.thresholds, sel.ks, strict=True)) == PUBLISHED
    assert sel.min_similarity == 0.65


def test_from_config_custom_ladder_and_load_aware() -> None:
    profile = load_profile("sdxl-a10g")
    exp = Experiment(selector=SelectorConfig(ladder=[[0.9, 20], [0.8, 15], [0.7, 10]]))
    sel = Selector.from_config(exp, profile)
    assert [sel.k_for(s) for s in (0.95, 0.85, 0.75, 0.7)] == [20, 15, 10, 0]
    exp = Experiment(selector=SelectorConfig(load_aware=True, floor=0.5, max_k=15, carried=False))
    sel = Selector.from_config(exp, profile)
    assert sel.k_for(0.99) == 15 and sel.k_for(0.6, boost=1) == 5
    # Carried, the floor (published, CLIP-text) moves with the ladder to the embedder's cosines.
    from sim.reuse.similarity_space import similarity_map

    exp = Experiment(selector=SelectorConfig(load_aware=True, floor=0.5, max_k=15))
    assert Selector.from_config(exp, profile).floor == pytest.approx(similarity_map("minilm").to_run(0.5))


def test_ladder_k_must_be_a_cached_level() -> None:
    exp = Experiment(selector=SelectorConfig(ladder=[[0.9, 30]]))
    with pytest.raises(ConfigError, match=r"selector\.ladder\[0\].*cached levels"):
        Selector.from_config(exp, load_profile("sdxl-a10g"))


@pytest.mark.parametrize("floor", [None, 0.6])
def test_k_array_is_k_for_of_every_similarity(floor: float | None) -> None:
    """The compiled rule (shared with the compiled replay's fallback) against ``k_for``: the
    published thresholds exactly, their float32 neighbours, and random similarities; -1 only
    below the floor."""
    sel = Selector(PUBLISHED, floor=floor, max_k=25 if floor else None)
    rng = np.random.default_rng(0)
    edges = np.array([t for t, _ in PUBLISHED] + [0.6, 1.0], np.float32)
    sims = np.concatenate(
        [edges, np.nextafter(edges, np.float32(2)), np.nextafter(edges, np.float32(-2)), rng.uniform(0.4, 1, 2000)]
    ).astype(np.float32)
    got = sel.k_array(sims)
    assert got.dtype == np.int64
    for s, k in zip(sims.tolist(), got.tolist(), strict=True):
        assert k == (sel.k_for(s) if s >= sel.min_similarity else -1), s
    assert {-1, 5, 25} <= set(got.tolist())
    assert (0 in got) == (floor is not None)  # between the floor and the ladder's last rung
