"""A calibrated profile drives a simulation: latency (tiny preset) -> thresholds (hashing) -> ``acsim run``."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from support import calibrate_cli, write_match_log

from sim.base.profile import load_profile


@pytest.fixture(autouse=True)
def private_embedding_cache(tmp_path, monkeypatch):
    # Embeddings are cached on disk; a test must not read or fill the user's cache.
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))


def test_calibrated_profile_runs_a_simulation(tmp_path):
    from sim.app.run import run_experiment
    from sim.base import config

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lat = tmp_path / "tiny-latency.yaml"
        assert (
            calibrate_cli(
                [
                    "calibrate",
                    "latency",
                    "--model",
                    "tiny",
                    "--batch",
                    "1",
                    "--steps",
                    "30",
                    "--repeats",
                    "1",
                    "--out",
                    str(lat),
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(before)
    prof = tmp_path / "tiny-hashing.yaml"
    assert (
        calibrate_cli(
            [
                "calibrate",
                "thresholds",
                "--pairs",
                str(write_match_log(tmp_path / "log.csv", n=1300)),
                "--to",
                "hashing",
                "--limit",
                "1000",
                "--base",
                str(lat),
                "--out",
                str(prof),
            ]
        )
        == 0
    )
    profile = load_profile(str(prof))
    raw = yaml.safe_load(prof.read_text())
    # Both runs are recorded, and the latency measured by the first survives the second.
    assert [r["command"] for r in raw["calibration_runs"]] == ["latency", "thresholds"]
    assert profile.denoise_step_s == load_profile(str(lat)).denoise_step_s

    exp = config.from_dict(
        {
            "name": "calibrated",
            "trace": {"source": "synthetic", "requests": 400},
            "embedder": "hashing",
            "profile": str(prof),
            "systems": ["vanilla", "nirvana"],
            "mode": "full",
            "plots": False,
            "output": str(tmp_path / "run"),
        }
    )
    summary = run_experiment(exp, out_dir=tmp_path / "run", progress=False)
    assert set(summary["system"]) == {"vanilla", "nirvana"}
    used = yaml.safe_load((tmp_path / "run" / "profile.yaml").read_text())
    assert used["name"] == "tiny-hashing" and used["ladder"]["embedder"] == "hashing"
    vanilla = pd.read_parquet(tmp_path / "run" / "records" / "vanilla.parquet")
    # Every vanilla request runs all 30 steps at no less than the measured step time.
    assert (vanilla["steps"] == 30).all()
    assert (vanilla["gpu_s"] >= 30 * profile.step_s(1) * 0.999).all()
