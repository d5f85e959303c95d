"""The shipped profiles carry the published figures the engine runs on, each with its source."""

from __future__ import annotations

import pytest

from sim.base.profile import PROFILE_DIR, load_profile
from sim.engine.workers import job_work

PROFILES = ("sdxl-a10g", "sdxl-a100")


@pytest.mark.parametrize("name", PROFILES)
def test_every_block_and_tier_says_where_its_numbers_come_from(name):
    profile = load_profile(name)
    raw = profile.raw
    for block in ("model", "gpu", "latency", "ladder", "quality", "cost", "small_model"):
        assert raw[block]["source"] and raw[block]["kind"] in ("measured", "published", "assumed"), block
    for tier in raw["storage"]["tiers"].values():
        assert tier["source"] and tier["kind"] in ("measured", "published", "assumed")
    assert (PROFILE_DIR / f"{name}.yaml").is_file()


def test_a100_matches_the_argus_solver_constants():
    """Argus: 14.29 queries/min per GPU at K = 0 (50 steps), 28.57 at K = 25 (25 steps)."""
    p = load_profile("sdxl-a100")
    assert p.step_s(1) == pytest.approx((60 / 14.29 - 60 / 28.57) / 25, rel=0.01)
    # The solver has no fixed per-image cost; ours (text encoder + VAE) adds under 5%.
    assert job_work(p, 50, False) == pytest.approx(60 / 14.29, rel=0.05)
    assert job_work(p, 25, False) == pytest.approx(60 / 28.57, rel=0.08)
    # Saving latents slows a step by the ratio measured on the A10G (3.30 / 2.84 it/s).
    a10g = load_profile("sdxl-a10g")
    ratio = (p.step_s(1) + p.save_overhead_step_s) / p.step_s(1)
    assert ratio == pytest.approx((a10g.step_s(1) + a10g.save_overhead_step_s) / a10g.step_s(1), rel=0.01)
    assert ratio == pytest.approx(3.30 / 2.84, rel=0.01)


def test_a100_is_over_three_times_faster_and_four_times_dearer_per_hour():
    a100, a10g = load_profile("sdxl-a100"), load_profile("sdxl-a10g")
    assert a100.gpu_price_per_hour_usd == pytest.approx(32.7726 / 8, rel=1e-4)
    per_image = {p.name: job_work(p, 50, True) / 3600 * p.gpu_price_per_hour_usd for p in (a100, a10g)}
    assert job_work(a100, 50, True) < job_work(a10g, 50, True) / 3
    # At list prices an A100 image costs a little more than an A10G one (~$0.0057 vs $0.0050).
    assert per_image["sdxl-a100"] == pytest.approx(0.00573, rel=0.01)
    assert per_image["sdxl-a10g"] == pytest.approx(0.00502, rel=0.01)
    # Quality is the model's, not the GPU's.
    assert a100.quality_relative_by_k == a10g.quality_relative_by_k
    assert a100.ladder == a10g.ladder and a100.k_levels == a10g.k_levels


@pytest.mark.parametrize("name", PROFILES)
def test_the_small_model_block_follows_its_derivation(name):
    """SDXL-Lightning 4-step: the SDXL UNet without classifier-free guidance, so a batch of b images
    costs what SDXL's batch of b/2 costs (one UNet pass per image and step instead of two), a lone
    image 1/1.9 of a guided step; its quality is the paper's SMALLMODEL row."""
    p = load_profile(name)
    small = p.gpu_model("small_model")
    assert small.steps == 4 and small.block == "small_model"
    assert small.step_s(1) == pytest.approx(p.step_s(1) / 1.9, rel=2e-3)
    for b in (2, 4, 8):
        assert small.step_s(b) == pytest.approx(p.step_s(b // 2), rel=1e-3)
    assert (small.text_encoder_s, small.vae_decode_s) == (p.text_encoder_s, p.vae_decode_s)
    assert small.gpu_price_per_hour_usd == p.gpu_price_per_hour_usd
    assert small.quality == {"clip": 25.64, "pickscore": 18.65, "fid": 11.14}
    assert job_work(small, small.steps, False) < job_work(p, p.steps, False) / 10
    assert p.corpus_quality == {"clip": 24.05, "pickscore": 18.84, "fid": 8.43}
