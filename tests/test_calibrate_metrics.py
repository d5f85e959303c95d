"""Calibration of the paper's comparison: the small model's latency, PickScore and FID (tiny models)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from support import calibrate_cli

from calibrate.fid import frechet_distance, read_images
from calibrate.scorers import get_scorer
from sim.base.errors import ConfigError, InputError
from sim.base.profile import load_profile
from sim.reuse.quality import QualityModel

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_frechet_distance_against_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    # Same distribution: ~0; a mean shift of (2, 0, 0) with unchanged covariance: |dmu|^2 = 4.
    assert frechet_distance(a, rng.normal(size=(4000, 3))) == pytest.approx(0.0, abs=0.02)
    assert frechet_distance(a, rng.normal(size=(4000, 3)) + [2.0, 0, 0]) == pytest.approx(4.0, rel=0.03)
    # Two independent 1-D Gaussians N(0, 1) and N(0, 4): (1 - 2)^2 = 1 (sigma terms 1 + 4 - 2*2).
    x, y = rng.normal(size=(20000, 1)), 2 * rng.normal(size=(20000, 1))
    assert frechet_distance(x, y) == pytest.approx(1.0, rel=0.05)
    # Fewer images than feature dimensions: still finite (regularised), and symmetric.
    small_a, small_b = rng.normal(size=(5, 16)), rng.normal(size=(6, 16))
    assert np.isfinite(frechet_distance(small_a, small_b))
    assert frechet_distance(small_a, small_b) == pytest.approx(frechet_distance(small_b, small_a), rel=1e-6)
    with pytest.raises(ValueError, match="two images"):
        frechet_distance(a[:1], a)


def test_pickscore_uses_its_own_formula():
    img = Image.new("RGB", (32, 32), (10, 200, 30))
    clip, pick = get_scorer("tiny"), get_scorer("tiny-pickscore")
    assert not clip.pickscore and pick.pickscore
    # PickScore = logit_scale.exp() * cos (not clipped at 0), the CLIP score 100 * max(cos, 0).
    cos = float((pick._image([img]) * pick._text(["a green square"])).sum())
    scale = float(pick.model.logit_scale.detach().exp())
    assert pick.score([img], ["a green square"])[0] == pytest.approx(scale * cos, rel=1e-5)
    assert clip.image_features([img, img]).shape == (2, 16)
    with pytest.raises(ConfigError, match="pickscore:PATH"):
        get_scorer("pickscore")


def test_reference_images_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="directory"):
        read_images(tmp_path / "nope")
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(InputError, match="at least two"):
        read_images(tmp_path)


def test_quality_with_pickscore_and_fid_writes_measured_blocks_the_simulator_reads(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "cached_prompt,new_prompt,similarity\n"
        "a red fox in the snow,a red fox in a snowy forest,0.93\n"
        "a lighthouse at dusk,a castle on a hill,0.70\n"
        "a bowl of ramen,a bowl of noodle soup,0.88\n"
    )
    ref = tmp_path / "ref"
    ref.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(ref / f"r{i}.png")
    out = tmp_path / "q"
    argv = ["calibrate", "quality", "--model", "tiny-sdxl", "--pairs", str(pairs), "--scorer", "tiny"]
    argv += ["--pickscore", "tiny-pickscore", "--fid", str(ref), "--k", "3,6", "--steps", "10"]
    assert calibrate_cli([*argv, "--out", str(out)]) == 0
    assert "FID" in capsys.readouterr().err
    scores = pd.read_csv(out / "scores.csv")
    assert scores["pickscore"].notna().all()
    fid = pd.read_csv(out / "fid_by_method.csv").set_index("method")["fid"]
    assert set(fid.index) == {"retrieved", "vanilla", "k3", "k6"} and (fid >= 0).all()

    raw = yaml.safe_load((out / "profile.yaml").read_text())
    q = raw["quality"]
    assert q["fields"]["pickscore"]["kind"] == q["fields"]["fid"]["kind"] == "measured"
    assert q["fields"]["corpus_retrieval"]["kind"] == "published"  # not measurable here: carried
    vanilla_pick = scores.loc[scores["method"] == "vanilla", "pickscore"].mean()
    assert q["pickscore"]["vanilla"] == pytest.approx(vanilla_pick, rel=1e-5)
    assert q["fid"]["by_k"][3] == pytest.approx(fid["k3"], rel=1e-5)
    # The by-bin table carries PickScore means beside the CLIP scores.
    table = pd.read_csv(out / "quality_by_bin_k.csv")
    assert {"pickscore_mean", "pickscore_vanilla_mean"} <= set(table.columns)

    # The simulator uses the measured values for a hit at K instead of the published ratios.
    profile = load_profile(str(out / "profile.yaml"))
    model = QualityModel(profile)
    records = pd.DataFrame(
        {
            "outcome": pd.Categorical(["hit", "miss", "retrieval"]),
            "k_used": [3, 0, 10],
            "similarity": [0.9, np.nan, 0.8],
            "quality": [model.hit(3, 0.9), profile.quality_vanilla, model.retrieved(0.8)],
        }
    )
    per = model.per_request(records, model=profile.gpu_model())
    assert per["pickscore"][0] == pytest.approx(q["pickscore"]["by_k"][3], rel=1e-5)
    assert per["fid"][0] == pytest.approx(fid["k3"], rel=1e-5)
    assert per["fid"][1] == pytest.approx(fid["vanilla"], rel=1e-5)
    assert per["pickscore"][2] == pytest.approx(q["pickscore"]["retrieved"], rel=1e-5)


def test_small_model_latency_fills_the_small_model_block_only(tmp_path):
    out = tmp_path / "small.yaml"
    argv = ["calibrate", "latency", "--small-model", "--model", "tiny", "--batch", "1,2", "--steps", "4"]
    assert calibrate_cli([*argv, "--repeats", "2", "--warmup", "0", "--out", str(out)]) == 0
    raw = yaml.safe_load(out.read_text())
    base = load_profile("sdxl-a10g")
    for block in ("model", "gpu", "latency", "ladder"):
        assert raw[block] == base.raw[block], block  # the main model is untouched
    sm = raw["small_model"]
    assert sm["kind"] == "measured" and sm["steps"] == 4 and sm["guidance"] == 0.0
    assert sm["fields"]["quality"]["kind"] == "published" and sm["fields"]["price_per_hour_usd"]
    small = load_profile(str(out)).gpu_model("small_model")
    assert small.steps == 4 and sorted(small.denoise_step_s) == [1, 2]
    assert small.denoise_step_s == {int(b): v for b, v in sm["latency"]["denoise_step_s"].items()}
    assert small.quality == base.gpu_model("small_model").quality
    # The simulator charges the measured small model for the smallmodel system.
    from sim.base.config import Experiment
    from sim.engine import simulate
    from sim.systems import TraceArrays, build_system

    profile = load_profile(str(out))
    arrays = TraceArrays(np.arange(5, dtype=np.int32), np.zeros(5, np.int32), np.arange(5) * 100.0)
    exp = Experiment(systems=["smallmodel"])
    rec, _ = simulate(
        build_system("smallmodel", exp, arrays, None, profile), arrays.arrival_s, arrays.prompt_ids,
        arrays.user_codes, exp, profile, seed=1,
    )
    job = small.text_encoder_s + 4 * small.step_s(1) + small.vae_decode_s
    assert rec["gpu_s"].tolist() == pytest.approx([job] * 5) and (rec["steps"] == 4).all()
