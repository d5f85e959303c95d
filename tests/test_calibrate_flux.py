"""FLUX.1 in the calibration harness: the presets' architectures are the published ones, and a
FLUX pipeline is timed into a profile of a DiT (run on CPU with the miniature preset)."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel
from transformers import T5Config, T5EncoderModel

from calibrate import latency, writer
from calibrate.pipelines import PRESETS, load_model
from sim.base.profile import load_profile, parse_profile


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["flux-dev", "flux-schnell"])
def test_the_flux_presets_have_the_published_size(name: str) -> None:
    """FLUX.1 is "a 12 billion parameter rectified flow transformer" (model cards); T5-XXL's encoder 4.76B."""
    preset = PRESETS[name]
    with torch.device("meta"):  # the architecture only: no memory, no weights
        transformer = FluxTransformer2DModel.from_config(preset.transformer)
        t5 = T5EncoderModel(T5Config(**preset.text_encoder_2))
    assert 11.8e9 < _params(transformer) < 12.0e9
    assert 4.7e9 < _params(t5) < 4.8e9
    assert preset.steps == (28 if name == "flux-dev" else 4)


def test_a_flux_pipeline_is_timed_into_a_dit_profile(tmp_path) -> None:
    model = load_model("tiny-flux", "cpu", "fp32")
    assert model.family == "flux" and model.latent_channels == 16
    result = latency.measure(model, [1, 2], steps=4, repeats=2, scratch=tmp_path, guidance=3.5)
    assert set(result.step_s) == {1, 2} and all(s.median > 0 for s in result.step_s.values())
    assert result.text_encoder.median > 0 and result.vae_decode.median > 0
    f = model.vae_scale_factor
    assert result.latent_shape == (16, 32 // f, 32 // f)
    env = writer.environment(model.device)
    base = dict(load_profile("flux1-schnell-h100").raw, _base_name="flux1-schnell-h100")
    data = latency.to_profile(base, result, model, env)
    data.pop("_base_name", None)
    profile = parse_profile(data, tmp_path / "p.yaml")
    assert profile.architecture == "dit"
    assert profile.step_s(1) == pytest.approx(result.step_s[1].median)
    assert profile.quality_extrapolated  # carried from the base with the rest of its quality block
