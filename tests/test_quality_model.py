"""The quality model (sim/reuse/quality.py): per-K and by-similarity CLIP, three metrics, trace FID."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from support import OWN_SPACE, causal_lists

from sim.base.config import CacheConfig, Experiment, SelectorConfig
from sim.base.errors import InputError
from sim.base.profile import PROFILE_DIR, load_profile, parse_profile
from sim.engine.replay import replay
from sim.reuse.quality import QualityModel
from sim.systems import SYSTEMS, TraceArrays, build_system

PROFILE = load_profile("sdxl-a10g")
V = PROFILE.quality_vanilla

# A calibration-style table where reuse costs more the less similar the prompts are: what
# `calibrate quality` writes as quality.by_similarity_bin (losses made up for the test).
BINS = [
    {"bin": [0.65, 0.75], "pairs": 20, "relative_loss_by_k": {5: 0.08, 10: 0.12}, "retrieved_relative_loss": 0.30},
    {"bin": [0.75, 0.85], "pairs": 20, "relative_loss_by_k": {5: 0.05, 10: 0.07, 15: 0.10}},
    {"bin": [0.85, 0.95], "pairs": 20, "relative_loss_by_k": {5: 0.04, 10: 0.05, 15: 0.07, 20: 0.09}},
    {"bin": [0.95, 1.0], "pairs": 20, "relative_loss_by_k": {5: 0.02, 10: 0.03, 15: 0.05, 20: 0.06, 25: 0.085}},
]


def with_bins(bins=BINS):
    data = copy.deepcopy(PROFILE.raw)
    data["quality"]["by_similarity_bin"] = bins
    return parse_profile(data, "<binned>")


def records(outcomes, k_used, quality):
    return pd.DataFrame(
        {"outcome": pd.Categorical(outcomes), "k_used": k_used, "similarity": np.nan, "quality": quality}
    )


def test_without_bins_a_hit_depends_on_k_only():
    q = QualityModel(PROFILE)
    assert not q.by_similarity
    for k in PROFILE.k_levels:
        assert q.hit(k, 0.70) == q.hit(k, 0.99) == pytest.approx(V * PROFILE.quality_relative_by_k[k])
    # The retrieval line: s = 1 gives vanilla, `slope` CLIP points per unit of similarity below.
    slope = PROFILE.retrieval_slope_per_unit_s
    assert q.retrieved(1.0) == pytest.approx(30.28) and q.retrieved(0.85) == pytest.approx(30.28 - 0.15 * slope)
    assert q.retrieved(1.0000001) == q.retrieved(1.0)


def test_with_bins_a_hit_depends_on_its_similarity_bin():
    q = QualityModel(with_bins())
    assert q.by_similarity
    assert q.hit(5, 0.70) == pytest.approx(V * 0.92)  # first bin
    assert q.hit(5, 0.75) == pytest.approx(V * 0.95)  # a lower edge belongs to its bin
    assert q.hit(10, 0.80) == pytest.approx(V * 0.93)
    assert q.hit(25, 1.0) == q.hit(25, 1.00001) == pytest.approx(V * 0.915)  # the last bin is closed
    # Falls back to the per-K table where the bins say nothing: K not measured in the bin, or s
    # outside every bin.
    assert q.hit(20, 0.80) == pytest.approx(V * PROFILE.quality_relative_by_k[20])
    assert q.hit(5, 0.50) == pytest.approx(V * PROFILE.quality_relative_by_k[5])
    assert q.hit(0, 0.9) == V
    # Retrieval: the bin's measured loss where there is one, the line elsewhere.
    assert q.retrieved(0.70) == pytest.approx(V * 0.70)
    assert q.retrieved(0.90) == pytest.approx(30.28 - 0.10 * PROFILE.retrieval_slope_per_unit_s)


def test_bad_bins_name_the_field():
    with pytest.raises(InputError, match=r"by_similarity_bin\[0\]"):
        with_bins([{"bin": [0.9, 0.8], "relative_loss_by_k": {5: 0.1}}])
    with pytest.raises(InputError, match="must not overlap"):
        with_bins([{"bin": [0.6, 0.9], "relative_loss_by_k": {}}, {"bin": [0.8, 1.0], "relative_loss_by_k": {}}])


def test_the_published_ratios_give_back_the_papers_rows():
    """The profile's PickScore/FID ratios are derived from the paper's table under the linear-mixture
    rule; worked by hand here: any mixture of fresh images and one kind of reused (or retrieved)
    image whose average CLIP equals the paper's row has the paper's PickScore and FID too."""
    q = QualityModel(PROFILE)
    gpu = PROFILE.gpu_model()
    for outcome, clip_row, pick_row, fid_row in (("hit", 28.81, 20.41, 4.68), ("retrieval", 25.84, 19.04, 7.98)):
        for share in (0.3, 0.6, 0.9):  # the hit share does not matter
            reused = V - (V - clip_row) / share  # each reused image's CLIP
            n = 1000
            m = int(share * n)
            recs = records(["miss"] * (n - m) + [outcome] * m, [0] * (n - m) + [10] * m, [V] * (n - m) + [reused] * m)
            s = q.summary(recs, model=gpu)
            assert s["quality_clip"] == pytest.approx(clip_row, abs=0.01)
            assert s["quality_pickscore"] == pytest.approx(pick_row, abs=0.01)
            assert s["quality_fid"] == pytest.approx(fid_row, abs=0.01)


def test_each_kind_of_image_gets_its_own_values():
    q = QualityModel(PROFILE)
    small = PROFILE.gpu_model("small_model")
    recs = records(["bypass", "exact", "retrieval"], [0, 50, 50], [small.quality["clip"], V, 24.05])
    fresh_small = q.per_request(recs.iloc[:1], model=small)
    assert (fresh_small["pickscore"][0], fresh_small["fid"][0]) == (18.65, 11.14)
    corpus = q.per_request(recs, model=PROFILE.gpu_model(), retrieval_source="corpus")
    assert corpus["pickscore"][1] == 20.86 and corpus["fid"][1] == 6.52  # an exact hit is the vanilla image
    assert (corpus["pickscore"][2], corpus["fid"][2]) == (18.84, 8.43)  # the paper's CRS row
    with pytest.raises(ValueError, match="retrieval_source"):
        q.per_request(recs, model=small, retrieval_source="web")


def test_a_profile_without_the_extra_metrics_reports_nan():
    data = copy.deepcopy(PROFILE.raw)
    for key in ("pickscore", "fid"):
        del data["quality"][key]
    p = parse_profile(data, "<clip only>")
    s = QualityModel(p).summary(records(["miss", "hit"], [0, 10], [V, 29.0]), model=p.gpu_model())
    assert s["quality_clip"] == pytest.approx((V + 29.0) / 2)
    assert np.isnan(s["quality_pickscore"]) and np.isnan(s["quality_fid"])


def spread_workload(n: int = 1500, seed: int = 4):
    """Prompts around topic centres at widely varying distances: neighbours at every similarity."""
    rng = np.random.default_rng(seed)
    n_prompts = n * 3 // 4
    centres = rng.normal(size=(30, 24))
    noise = rng.uniform(0.2, 0.9, n_prompts)[:, None]
    emb = centres[rng.integers(0, 30, n_prompts)] + noise * rng.normal(size=(n_prompts, 24))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids = np.concatenate([np.arange(n_prompts), rng.integers(0, n_prompts, n - n_prompts)])
    pids = np.sort(pids).astype(np.int32)  # prompt ids in order of first appearance, repeats right after
    arrays = TraceArrays(pids, np.zeros(n, np.int32), np.arange(n, dtype=float))
    return arrays, causal_lists(emb, pids, top_m=8)


def _nirvana_quality(profile, ladder=None):
    arrays, lists = spread_workload()
    exp = Experiment(
        systems=["nirvana"],
        cache=CacheConfig(capacity=2000, policy="lru"),
        selector=SelectorConfig(ladder=ladder, carried=False),
    )
    rec = replay(build_system("nirvana", exp, arrays, lists, profile), arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    hits = rec["outcome"].isin(["hit", "hole"])
    return float(rec["quality"].mean()), rec[hits]


def test_similarity_bins_change_what_nirvana_delivers():
    """The difference the by-similarity table makes: hits at low similarity cost more than the
    per-K table says, so reusing down to lower similarities costs visibly more quality."""
    high_only = [[0.95, 25], [0.9, 20]]
    plain, hits = _nirvana_quality(PROFILE)
    binned, hits_b = _nirvana_quality(with_bins())
    # Same decisions (quality does not steer the cache), different expected quality.
    assert hits["k_used"].tolist() == hits_b["k_used"].tolist() and len(hits) > 100
    assert (hits["similarity"] < 0.85).sum() > 50  # the trace has low-similarity hits
    expected = [QualityModel(with_bins()).hit(int(k), float(s)) for k, s in zip(hits_b["k_used"], hits_b["similarity"], strict=True)]
    assert hits_b["quality"].to_numpy() == pytest.approx(expected)
    high_plain, _ = _nirvana_quality(PROFILE, high_only)
    high_binned, _ = _nirvana_quality(with_bins(), high_only)
    assert binned < plain
    # Extending reuse from s > 0.9 down to 0.65 costs more quality with bins than the per-K table admits.
    assert (high_binned - binned) > (high_plain - plain) + 0.05


def test_both_replay_paths_use_the_bins():
    """The compiled replay's columns and the request loop agree on a binned profile."""
    arrays, lists = spread_workload(n=800)
    exp = Experiment(selector=OWN_SPACE, systems=["nirvana"], cache=CacheConfig(capacity=400, policy="lcbfu"))
    args = (arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
    fast = replay(build_system("nirvana", exp, arrays, lists, with_bins()), *args)
    slow = replay(build_system("nirvana", exp, arrays, lists, with_bins()), *args, compiled=False)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["quality"].nunique() > len(PROFILE.k_levels) + 1  # more values than the per-K table has


def test_pinecone_threshold_comes_from_the_alignment_model():
    q = QualityModel(PROFILE)
    floor = SYSTEMS["pinecone"].min_similarity(Experiment(selector=OWN_SPACE), PROFILE)
    # The lowest similarity whose retrieved image reaches 100 * the profile's fitted gate, on a 1e-4 grid.
    gate = 100 * PROFILE.aligned_gate
    assert floor == pytest.approx(1 - (30.28 - gate) / PROFILE.retrieval_slope_per_unit_s, abs=1e-4)
    assert q.retrieved(floor) >= gate > q.retrieved(floor - 1e-3)
    # MoDM's rung, set in the params, is stricter than the fitted gate; so is any higher one.
    modm = Experiment(selector=OWN_SPACE, params={"pinecone": {"min_alignment": 0.25}})
    assert SYSTEMS["pinecone"].min_similarity(modm, PROFILE) == pytest.approx(1 - 5.28 / PROFILE.retrieval_slope_per_unit_s, abs=1e-4)
    strict = Experiment(selector=OWN_SPACE, params={"pinecone": {"min_alignment": 0.29}})
    assert SYSTEMS["pinecone"].min_similarity(strict, PROFILE) > SYSTEMS["pinecone"].min_similarity(modm, PROFILE) > floor
    assert q.retrieval_floor(40.0) == 1.0  # nothing reaches it: only exact repeats qualify
    assert (PROFILE_DIR / "sdxl-a10g.yaml").is_file()
