"""``acsim calibrate latency`` on the tiny presets writes a profile the simulator accepts."""

from __future__ import annotations

import pytest
import yaml
from support import calibrate_cli

from calibrate import latency, writer
from calibrate.latency import Stat
from calibrate.pipelines import load_model
from sim.base.errors import ConfigError, InputError
from sim.base.profile import load_profile, parse_profile

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_stat_median_and_spread():
    s = Stat.of([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.min, s.max, s.n) == (2.5, 1.0, 10.0, 4)
    assert s.p25 <= s.median <= s.p75


def test_latency_cli_on_tiny_preset_writes_a_valid_measured_profile(tmp_path, capsys):
    out = tmp_path / "tiny-cpu.yaml"
    rc = calibrate_cli(
        [
            "calibrate",
            "latency",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--batch",
            "1,2",
            "--steps",
            "30",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out
    profile = load_profile(str(out))  # the engine's own loader and validator
    raw = yaml.safe_load(out.read_text())
    assert parse_profile(raw).denoise_step_s == profile.denoise_step_s
    assert sorted(profile.denoise_step_s) == [1, 2]
    assert all(v > 0 for v in profile.denoise_step_s.values())
    assert profile.steps == 30 and profile.name == "tiny-cpu"
    # tiny latent: 4 x 16 x 16 fp32
    assert profile.latent_bytes == 4 * 16 * 16 * 4
    lat = raw["latency"]
    assert (
        lat["kind"] == "measured" and raw["model"]["kind"] == "measured" and raw["gpu"]["kind"] == "measured"
    )
    assert lat["denoise_step_spread_s"][1]["n"] == 2 * 29  # 29 gaps between 30 step ends, 2 repeats
    spread = lat["denoise_step_spread_s"][2]
    assert spread["min"] <= lat["denoise_step_s"][2] <= spread["max"]
    assert profile.text_encoder_s > 0 and profile.vae_decode_s > 0 and lat["latent_load_s"] > 0
    # Measured fields are marked so; fields not measured keep the base's kind and source.
    assert lat["fields"]["denoise_step_s"]["kind"] == "measured"
    assert lat["fields"]["embed_s"]["kind"] == "published"
    assert "sdxl-a10g" in lat["fields"]["embed_s"]["source"]
    assert raw["gpu"]["name"].startswith("CPU (")
    assert raw["gpu"]["fields"]["price_per_hour_usd"]["kind"] == "published"
    assert raw["ladder"] == load_profile("sdxl-a10g").raw["ladder"]
    run = raw["calibration_runs"][-1]
    assert run["command"] == "latency" and run["versions"]["torch"] and run["versions"]["diffusers"]
    assert run["device"] == "cpu" and run["date"].endswith("Z")
    assert run["options"]["model"] == "tiny" and run["options"]["batch"] == "1,2"


def test_latency_on_tiny_sdxl_and_base_from_an_earlier_calibration(tmp_path):
    model = load_model("tiny-sdxl", "cpu", "fp32")
    result = latency.measure(model, [1], steps=30, repeats=1, warmup=0, scratch=tmp_path)
    assert result.latent_shape == (4, 16, 16) and result.timer == "perf_counter"
    assert result.latent_file_bytes > result.latent_bytes  # torch.save adds a header
    env = writer.environment("cpu")
    first = writer.finish(
        latency.to_profile(writer.load_base("sdxl-a10g"), result, model, env), "a", "d", {"x": 1}
    )
    path = tmp_path / "a.yaml"
    writer.write_profile(path, first)
    # A second calibration on top keeps the first one's provenance for carried fields.
    again = latency.to_profile(writer.load_base(str(path)), result, model, env)
    assert again["latency"]["fields"]["embed_s"] == first["latency"]["fields"]["embed_s"]
    assert "denoise_step_spread_s" not in {
        k for k, v in again["latency"]["fields"].items() if v["kind"] != "measured"
    }
    final = writer.finish(again, "b", "d", {"x": 2})
    assert len(final["calibration_runs"]) == 2


def test_steps_must_exceed_the_carried_ladder(tmp_path):
    model = load_model("tiny", "cpu", "fp32")
    result = latency.measure(model, [1], steps=10, repeats=1, warmup=0, scratch=tmp_path)
    with pytest.raises(ConfigError, match="ladder K"):
        latency.to_profile(writer.load_base("sdxl-a10g"), result, model, writer.environment("cpu"))
    with pytest.raises(ConfigError, match="at least 2"):
        latency.measure(model, [1], steps=1, repeats=1, warmup=0, scratch=tmp_path)


@pytest.mark.parametrize(
    ("argv", "error", "match"),
    [
        (["--model", "nope"], ConfigError, "preset"),
        (["--model", "tiny", "--batch", "1,x"], ConfigError, "integers"),
        (["--model", "tiny", "--batch", "0"], ConfigError, "positive"),
        (["--model", "tiny", "--device", "tpu"], ConfigError, "cuda"),
        (["--model", "tiny", "--base", "no-such-profile"], InputError, "not found"),
        (["--model", "tiny", "--steps", "20"], ConfigError, "ladder K"),
    ],
)
def test_bad_latency_arguments_are_user_errors(tmp_path, argv, error, match):
    with pytest.raises(error, match=match):
        calibrate_cli(["calibrate", "latency", *argv, "--repeats", "1", "--out", str(tmp_path / "p.yaml")])
    assert not (tmp_path / "p.yaml").exists()


def test_profile_must_be_written_as_yaml(tmp_path):
    with pytest.raises(InputError, match="YAML"):
        writer.write_profile(tmp_path / "p.json", writer.load_base("sdxl-a10g"))
