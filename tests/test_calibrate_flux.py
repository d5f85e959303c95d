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


def test_the_zoo_check_runs_its_path_on_a_cpu(tmp_path, capsys) -> None:
    from sim.app import zoo_check

    assert zoo_check.main(["--smoke", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "zoo_check.md").read_text(encoding="utf-8")
    row = table.splitlines()[2].split("|")
    assert row[1].strip() == "tiny-flux" and row[2].strip() == "flux1-schnell-h100"
    measured, shipped = float(row[3]), float(row[4])
    assert shipped == pytest.approx(1.127, abs=1e-3) and 0 < measured < shipped
    assert load_profile(str(tmp_path / "tiny-flux.yaml")).architecture == "dit"
    assert "| tiny-flux |" in capsys.readouterr().out


@pytest.mark.parametrize("gpu", ["h100", "a100"])
def test_the_gpu_form_of_the_zoo_check_is_a_valid_command(tmp_path, gpu: str) -> None:
    """What the GPU run will call parses, and names shipped profiles of that GPU."""
    from sim.app import zoo_check
    from sim.app.cli import build_parser

    runs = zoo_check.commands(tmp_path, gpu, smoke=False)
    assert [m for m, _, _ in runs] == ["flux-dev", "flux-schnell"]
    for model, base, cmd in runs:
        args = build_parser().parse_args(cmd)
        assert args.model == model and args.device == "cuda" and args.dtype == "bf16"
        assert load_profile(base).gpu_name.lower() == gpu
        assert int(args.steps) == load_profile(base).steps
