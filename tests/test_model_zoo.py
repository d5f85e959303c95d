"""The 2026 model zoo: every shipped profile loads, says where each number comes from, follows
its stated derivation, and runs the quickstart experiment."""

from __future__ import annotations

import io

import numpy as np
import pytest

from sim.app.preflight import preflight
from sim.app.report import profile_rows
from sim.app.run import describe_inputs, prepare_inputs, run_experiment
from sim.base import config
from sim.base.profile import gpu_types, load_profile, shipped_profiles

ZOO = [
    "flux1-dev-a100",
    "flux1-dev-h100",
    "flux1-schnell-a100",
    "flux1-schnell-h100",
    "sd35-large-a100",
    "sd35-large-h100",
    "sdxl-lightning-a100",
]
KINDS = ("measured", "published", "assumed", "fitted")
# SDXL's published figures the zoo carries (sdxl-a100.yaml: Argus constants, artifact heuristics_K).
SDXL_SHARE = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
SDXL_RELATIVE = [1.0, 0.9705, 0.9581, 0.9438, 0.9324, 0.9152]
SDXL_LADDER = [(0.95, 25), (0.90, 20), (0.85, 15), (0.75, 10), (0.65, 5)]


def test_the_zoo_ships() -> None:
    assert set(ZOO) <= set(shipped_profiles())


@pytest.mark.parametrize("name", shipped_profiles())
def test_every_profile_loads_and_sources_every_block(name: str) -> None:
    p = load_profile(name)
    raw = p.raw
    for block in ("model", "gpu", "latency", "ladder", "quality", "cost"):
        assert raw[block]["kind"] in KINDS and raw[block]["source"].strip(), block
    for tier in raw["storage"]["tiers"].values():
        assert tier["kind"] in KINDS and tier["source"].strip()
    assert raw["model"].get("architecture") in ("unet", "dit")


@pytest.mark.parametrize("name", ZOO)
def test_unpublished_quality_is_sdxls_at_the_same_share_of_the_schedule(name: str) -> None:
    p = load_profile(name)
    assert p.quality_extrapolated  # the profile says its quality is carried
    for k in p.k_levels:
        assert p.quality_relative_by_k[k] == pytest.approx(np.interp(k / p.steps, SDXL_SHARE, SDXL_RELATIVE), abs=5e-5)
    # Each rung: one of SDXL's thresholds, its K the same share of this schedule (rounded, >= 1).
    expected = {}
    for s, k in SDXL_LADDER:
        kk = round(k * p.steps / 50)
        if kk >= 1:
            expected[kk] = s  # rungs listed from the top: the lowest threshold of a K wins
    assert sorted(p.ladder) == sorted((s, k) for k, s in expected.items())


@pytest.mark.parametrize(("name", "published_s"), [("flux1-dev-h100", 7.11), ("flux1-dev-a100", 15.65)])
def test_published_end_to_end_times_are_what_one_image_costs(name: str, published_s: float) -> None:
    p = load_profile(name)
    assert p.text_encoder_s + p.steps * p.step_s(1) + p.vae_decode_s == pytest.approx(published_s, abs=0.005)
    assert p.raw["latency"]["kind"] == "published"


def test_derived_profiles_follow_their_derivation() -> None:
    dev, schnell = load_profile("flux1-dev-h100"), load_profile("flux1-schnell-h100")
    assert schnell.step_s(1) == dev.step_s(1)  # the same transformer, one pass per step
    assert load_profile("sd35-large-h100").step_s(1) == pytest.approx(2 * 8.1 / 12 * dev.step_s(1), abs=1e-4)
    assert load_profile("sd35-large-a100").step_s(1) == pytest.approx(
        2 * 8.1 / 12 * load_profile("flux1-dev-a100").step_s(1), abs=1e-3
    )
    assert load_profile("sdxl-lightning-a100").step_s(1) == pytest.approx(load_profile("sdxl-a100").step_s(1) / 1.9, abs=1e-4)
    for name in ZOO:
        if "dev" not in name:
            assert load_profile(name).raw["latency"]["kind"] == "assumed", name


def test_a_model_on_two_gpus_can_be_planned_on_either() -> None:
    assert gpu_types("flux1-dev-h100") == {"h100": "flux1-dev-h100", "a100": "flux1-dev-a100"}
    assert gpu_types("flux1-schnell-a100") == {"h100": "flux1-schnell-h100", "a100": "flux1-schnell-a100"}


def test_the_listing_names_model_gpu_steps_and_kind() -> None:
    text = profile_rows([load_profile(n) for n in shipped_profiles()], sources=True)
    assert "black-forest-labs/FLUX.1-dev" in text and "BenchmarkFlux" in text
    row = next(line for line in text.splitlines() if line.startswith("flux1-schnell-h100"))
    assert row.split()[2:5] == ["H100", "4", "1.13"] and row.endswith("assumed    extrapolated")


@pytest.mark.parametrize("name", ZOO)
def test_the_quickstart_runs_on_every_zoo_profile(name: str, tmp_path) -> None:
    data = config.read_yaml("experiments/quickstart.yaml")
    data.update(profile=name, embedder="hashing", plots=False)
    data["trace"]["requests"] = 400
    exp = preflight(config.from_dict(data))
    inputs = prepare_inputs(exp, progress=False)
    out = io.StringIO()
    describe_inputs(exp, inputs, stream=out)
    assert f"note: {name}'s quality figures are extrapolated" in out.getvalue()
    summary = run_experiment(exp, out_dir=tmp_path / "out", inputs=inputs, progress=False).set_index("system")
    assert summary.loc["nirvana", "hit_rate"] > 0
    assert 0 < summary.loc["nirvana", "compute_saved"] < 1
    assert f"profile: {name}" in (tmp_path / "out" / "config.yaml").read_text(encoding="utf-8")


def test_the_carried_ladder_keeps_the_models_own_k_levels() -> None:
    from sim.reuse.ladders import carried_ladder, ladder_for

    sdxl_rungs = dict((k, t) for t, k in carried_ladder("minilm-onnx")[0])  # K of 50 -> carried threshold
    exp = config.from_dict({"embedder": "minilm-onnx", "profile": "flux1-dev-a100"})
    p = load_profile("flux1-dev-a100")
    got = ladder_for(exp, p)
    assert [k for _, k in got] == [14, 11, 8, 6, 3]
    # Each K of 28 sits at the carried threshold of the SDXL rung it was scaled from.
    assert [t for t, _ in got] == [sdxl_rungs[k] for k in (25, 20, 15, 10, 5)]
    assert ladder_for(exp, load_profile("sdxl-a10g")) == list(carried_ladder("minilm-onnx")[0])
