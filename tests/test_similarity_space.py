"""One similarity space (issue 26): every published threshold is a CLIP-text cosine, carried to the
run's embedder by the map its ladder was carried with, and never compared with another
embedder's cosine as it stands."""

from __future__ import annotations

import numpy as np
import pytest

from sim.base.config import Experiment, SelectorConfig
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.reuse.ladders import carried_ladder, shipped_ladders
from sim.reuse.selector import Selector
from sim.reuse.similarity_space import similarity_map
from sim.systems import SYSTEMS

PROFILE = load_profile("sdxl-a10g")


@pytest.mark.parametrize("embedder", shipped_ladders())
def test_the_map_passes_through_every_carried_rung(embedder: str) -> None:
    rungs, data = carried_ladder(embedder)
    m = similarity_map(embedder)
    published = sorted(t for t, _ in data["transfer"]["from_thresholds"])
    carried = sorted(t for t, _ in rungs)
    assert m.to_run(np.array(published)) == pytest.approx(carried, abs=1e-12)
    assert m.to_run(1.0) == pytest.approx(1.0)
    grid = np.linspace(-0.5, 1.0, 301)
    there = m.to_run(grid)
    # A cosine stays a cosine: the continued end segments are held to [-1, 1] ...
    assert there.min() >= -1.0 and there.max() <= 1.0
    assert m.to_run(-1.0) >= -1.0 and m.to_clip(-1.0) >= -1.0
    # ... and inside that range the map is increasing and undone by its inverse.
    inside = there > -1.0
    assert inside.sum() > 100
    assert (np.diff(there[inside]) > 0).all(), "the map must be increasing"
    assert m.to_clip(there[inside]) == pytest.approx(grid[inside], abs=1e-9)


@pytest.mark.parametrize("embedder", shipped_ladders())
def test_every_threshold_of_a_run_is_carried(embedder: str) -> None:
    """Each shipped embedder: the ladder, the load-aware floor, GPT-CACHE's gate and PINECONE's
    derived gate, against the carried map (computed here from the definitions)."""
    m = similarity_map(embedder)
    exp = Experiment(embedder=embedder, selector=SelectorConfig(load_aware=True, floor=0.6))
    sel = Selector.from_config(exp, PROFILE)
    assert sel.thresholds == [t for t, _ in carried_ladder(embedder)[0]]
    assert sel.floor == pytest.approx(m.to_run(0.6))
    assert SYSTEMS["gptcache"].min_similarity(exp, PROFILE) == pytest.approx(m.to_run(0.65))
    # PINECONE returns an image whose expected CLIP score is >= 100 * the profile's gate: on the
    # line at_1 - slope * (1 - s) in CLIP-text space that is s >= 1 - (at_1 - 100 * gate) / slope.
    s_clip = 1 - (PROFILE.retrieval_at_1 - 100 * PROFILE.aligned_gate) / PROFILE.retrieval_slope_per_unit_s
    assert SYSTEMS["pinecone"].min_similarity(exp, PROFILE) == pytest.approx(m.to_run(s_clip), abs=2e-4)
    # The library's own gate, stated in the embedder's space, is taken as it stands.
    own = Experiment(embedder=embedder, params={"gptcache": {"threshold": 0.8, "space": "embedder"}})
    assert SYSTEMS["gptcache"].min_similarity(own, PROFILE) == 0.8


def test_retrieval_quality_is_read_in_clip_space() -> None:
    """A retrieved image's score at a MiniLM similarity is the line's at the carried CLIP similarity."""
    from sim.reuse.quality import QualityModel

    m = similarity_map("minilm")
    q = QualityModel(PROFILE, m)
    for s_run in (0.34, 0.58, 0.9):
        s_clip = m.to_clip(s_run)
        assert q.retrieved(s_run) == pytest.approx(PROFILE.retrieval_at_1 - PROFILE.retrieval_slope_per_unit_s * (1 - s_clip))
    assert QualityModel(PROFILE).retrieved(0.58) < q.retrieved(0.58)  # MiniLM runs lower than CLIP


def test_clip_text_embedders_are_the_published_space_and_others_need_a_map() -> None:
    m = similarity_map("clip:/models/clip")
    assert m.identity and m.to_run(0.65) == 0.65
    with pytest.raises(ConfigError, match="no map carries them.*acsim calibrate thresholds --to"):
        similarity_map("sentence-transformers:/models/x")
    # Without carrying, published numbers are read as the embedder's own cosines (the old rule).
    exp = Experiment(embedder="sentence-transformers:/models/x", selector=SelectorConfig(carried=False))
    assert SYSTEMS["gptcache"].min_similarity(exp, PROFILE) == pytest.approx(0.65)


def test_the_run_header_names_each_carried_threshold() -> None:
    from sim.app.run import carried_thresholds

    exp = Experiment(embedder="minilm", systems=["vanilla", "gptcache", "nirvana"])
    m = similarity_map("minilm")
    assert carried_thresholds(exp, PROFILE) == f"gptcache 0.650 -> {m.to_run(0.65):.3f}; nirvana 0.650 -> {m.to_run(0.65):.3f}"
    assert carried_thresholds(Experiment(embedder="minilm", selector=SelectorConfig(carried=False)), PROFILE) == ""


def test_the_summary_reports_each_threshold_in_both_spaces() -> None:
    """A run on MiniLM: GPT-CACHE's row says it compared at MiniLM 0.340, published as CLIP 0.65."""
    from support import causal_lists

    from sim.engine.replay import replay
    from sim.results.metrics import summarize
    from sim.systems import build_system
    from sim.systems.base import TraceArrays

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 24))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids = np.arange(200, dtype=np.int32)
    arrays = TraceArrays(pids, np.zeros(200, np.int32), np.arange(200.0))
    exp = Experiment(embedder="minilm", systems=["gptcache"])
    system = build_system("gptcache", exp, arrays, causal_lists(emb, pids, top_m=4, min_sim=0.0), PROFILE)
    records = replay(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    row = summarize(records, profile=PROFILE, exp=exp, system_stats=system.stats())
    assert row["min_similarity"] == pytest.approx(similarity_map("minilm").to_run(0.65))
    assert row["min_similarity_published"] == pytest.approx(0.65)


@pytest.mark.parametrize("embedder", shipped_ladders())
def test_every_threshold_in_the_resolved_config_is_carried(embedder: str) -> None:
    """The saved config's derived block, read back as YAML: each threshold the run compares equals
    the carried map applied to the number published for it (taken here from the profile and the
    systems' sources, not from the code that wrote the block), and the config still loads."""
    import yaml

    from sim.app.run import derived_block
    from sim.base import config

    m = similarity_map(embedder)
    exp = Experiment(
        embedder=embedder,
        systems=sorted(SYSTEMS),
        selector=SelectorConfig(load_aware=True, floor=0.6),
    )
    saved = yaml.safe_load(config.dump(exp, derived_block(exp, PROFILE)))
    assert config.from_dict(saved) == exp
    block = saved["derived"]["similarity_space"]
    assert block["embedder"] == embedder and block["map"] == "carried"
    published_ladder = [t for t, _ in PROFILE.ladder]  # the artifact's CLIP-text rungs
    pinecone_s = 1 - (PROFILE.retrieval_at_1 - 100 * PROFILE.aligned_gate) / PROFILE.retrieval_slope_per_unit_s
    expected = {
        "gptcache": {"gate": 0.65},
        "pinecone": {"gate": pinecone_s},
        # MoDM's lowest rung, 0.25 CLIP text-image, on the same retrieval line.
        "modm": {"gate": 1 - (PROFILE.retrieval_at_1 - 25.0) / PROFILE.retrieval_slope_per_unit_s},
        **{
            name: {**{f"ladder[{i}] K={k}": t for i, (t, k) in enumerate(PROFILE.ladder)}, "floor": 0.6}
            for name in ("nirvana", "ceiling")
        },
    }
    assert set(block["thresholds"]) == set(expected)
    assert published_ladder == sorted(published_ladder, reverse=True)
    for system, named in expected.items():
        assert set(block["thresholds"][system]) == set(named), system
        for what, published in named.items():
            got = block["thresholds"][system][what]
            tol = 2e-4 if system in ("pinecone", "modm") else 1e-9  # their gates are found on a 1e-4 grid
            assert got["published"] == pytest.approx(published, abs=tol), (system, what)
            assert got["run"] == pytest.approx(float(m.to_run(published)), abs=tol * 3), (system, what)
