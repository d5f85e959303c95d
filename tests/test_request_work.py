"""Per-request steps and resolution (``trace.request_steps`` / ``request_resolution``) against a hand
computation on a 10-request trace, in both replay paths and in the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.app.preflight import preflight
from sim.app.run import run_experiment
from sim.base import config
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.base.request_work import RequestWork

# Ten requests, one per 400 s (so no request waits): repeats and edits of two prompts, with the
# step counts and sizes DiffusionDB shows (50 and 150 steps, 512^2 and 768x512).
ROWS = [
    ("a red fox in the snow", 50, 512, 512),
    ("a red fox in the snow", 150, 512, 512),
    ("a red fox in the snow, oil painting", 50, 768, 512),
    ("a castle on a hill", 50, 1024, 1024),
    ("a castle on a hill", 25, 512, 512),
    ("a castle on a hill at night", 150, 768, 768),
    ("a red fox in the snow", 50, 512, 768),
    ("a castle on a hill", 100, 512, 512),
    ("a red fox in the snow, oil painting", 50, 512, 512),
    ("a castle on a hill at night", 50, 1024, 1024),
]


def _exp(tmp_path, mode: str, on: bool = True) -> config.Experiment:
    df = pd.DataFrame(ROWS, columns=["prompt", "steps", "width", "height"])
    df.insert(0, "ts", np.arange(len(ROWS)) * 400.0)
    df.to_csv(tmp_path / "ten.csv", index=False)
    data = {
        "trace": {
            "source": "table",
            "path": str(tmp_path / "ten.csv"),
            "columns": {"prompt": "prompt", "timestamp": "ts"},
            "request_steps": on,
            "request_resolution": on,
        },
        "embedder": "hashing",
        "profile": "sdxl-a10g",
        "systems": ["vanilla", "nirvana"],
        "cluster": {"gpus": 1},
        "mode": mode,
        "plots": False,
    }
    return preflight(config.from_dict(data))


def hand_steps(k: int, own: int, n: int = 50) -> int:
    """Steps a request of ``own`` steps runs when the cache resumes it at K of the profile's ``n``."""
    skipped = int(k * own / n + 0.5)  # K as the same share of its own schedule, rounded half up
    return own - skipped


def test_the_rule_by_hand() -> None:
    work = RequestWork.of(50, 1024, steps=np.array([50, 150, 25, np.nan]), width=np.array([512, 768, np.nan, 1024]),
                          height=np.array([512, 512, 512, 1024]), n=4)
    assert work.full_steps.tolist() == [50, 150, 25, 50]  # a missing count is the profile's
    assert work.area.tolist() == [0.25, 0.375, 1.0, 1.0]  # a missing size is the profile's
    # Fresh (50 of 50), resumed at K = 15 (35 of 50), retrieved (0).
    assert work.steps_run(np.array([50, 50, 50, 50])).tolist() == [50, 150, 25, 50]
    assert work.steps_run(np.array([35, 35, 35, 35])).tolist() == [35, 105, 17, 35]  # 25 - round(7.5) = 17
    assert work.steps_run(np.array([0, 0, 0, 0])).tolist() == [0, 0, 0, 0]
    assert [work.one(i, 35) for i in range(4)] == [35, 105, 17, 35]


@pytest.mark.parametrize("mode", ["full", "cache-only"])
def test_ten_requests_cost_their_own_steps_and_sizes(tmp_path, mode: str) -> None:
    exp = _exp(tmp_path, mode)
    summary = run_experiment(exp, out_dir=tmp_path / "out", progress=False).set_index("system")
    p = load_profile("sdxl-a10g")
    full = np.array([r[1] for r in ROWS])
    area = np.array([r[2] * r[3] / 1024**2 for r in ROWS])
    for system in ("vanilla", "nirvana"):
        rec = pd.read_parquet(tmp_path / "out" / "records" / f"{system}.parquet")
        assert rec["full_steps"].tolist() == full.tolist()
        assert rec["area"].tolist() == pytest.approx(area.tolist())
        k = rec["k_used"].clip(lower=0).to_numpy()
        ran = [hand_steps(int(kk), int(f)) if s > 0 else 0 for kk, f, s in zip(k, full, rec["steps"], strict=True)]
        assert rec["steps"].tolist() == ran
        # Compute saved: the share of the requests' own work (steps x area) not run.
        expected = 1 - np.sum(rec["steps"] * area) / np.sum(full * area)
        assert summary.loc[system, "compute_saved"] == pytest.approx(expected, rel=1e-12)
        if mode == "full":
            saves = rec["saved_latents"].to_numpy() > 0
            per = p.step_s(1) + np.where(saves, p.save_overhead_step_s, 0.0)
            hand = p.text_encoder_s + area * (rec["steps"] * per + p.vae_decode_s)
            gpu = rec["steps"].to_numpy() > 0
            assert rec["gpu_s"].to_numpy()[gpu] == pytest.approx(hand.to_numpy()[gpu], rel=1e-9)
            # Nothing waits (one request per 400 s), so latency is lookup + fetch + GPU time.
            assert rec["queue_s"].max() == pytest.approx(0.0, abs=1e-9)
    assert summary.loc["vanilla", "compute_saved"] == pytest.approx(0.0, abs=1e-12)
    assert summary.loc["nirvana", "hit_rate"] > 0  # the repeats and edits are reused


def test_without_the_flags_every_request_costs_the_profiles_schedule(tmp_path) -> None:
    exp = _exp(tmp_path, "full", on=False)
    run_experiment(exp, out_dir=tmp_path / "out", progress=False)
    rec = pd.read_parquet(tmp_path / "out" / "records" / "vanilla.parquet")
    assert "full_steps" not in rec and set(rec["steps"]) == {50}


def test_a_trace_without_the_columns_is_refused_by_name(tmp_path) -> None:
    exp = config.from_dict({"trace": {"source": "synthetic", "requests": 50, "request_steps": True},
                            "embedder": "hashing", "systems": ["vanilla"], "plots": False})
    from sim.app.run import prepare_inputs, request_work_of

    inputs = prepare_inputs(preflight(exp), progress=False)
    del inputs.trace.df["steps"]
    with pytest.raises(ConfigError, match="trace.request_steps: True is not valid; the trace has no steps column"):
        request_work_of(exp, inputs)


def test_the_plans_lower_bound_counts_each_requests_own_work() -> None:
    """``acsim plan`` starts its search at the GPUs the mean work needs: with small images it is fewer."""
    from sim.app.plan import stability_bound
    from sim.engine.workers import job_work

    arrival = np.linspace(0.0, 3600.0, 1000)
    p = load_profile("sdxl-a10g")
    plain = stability_bound(arrival, "sdxl-a10g", 1.0)
    assert plain == int(np.ceil(1000 * job_work(p, 50, False) / 3600.0))
    quarter = RequestWork.of(50, 1024, steps=np.full(1000, 50.0), width=np.full(1000, 512.0),
                             height=np.full(1000, 512.0), n=1000)
    small = stability_bound(arrival, "sdxl-a10g", 1.0, own=quarter)
    one = p.text_encoder_s + 0.25 * (50 * p.step_s(1) + p.vae_decode_s)
    assert small == int(np.ceil(1000 * one / 3600.0)) and small < plain


@pytest.mark.parametrize("mode", ["full", "cache-only"])
def test_a_small_model_keeps_its_own_few_steps_and_pays_for_the_size(tmp_path, mode: str) -> None:
    exp = _exp(tmp_path, mode)
    exp = preflight(config.from_dict({**config.to_dict(exp), "systems": ["smallmodel"]}))
    run_experiment(exp, out_dir=tmp_path / "out", progress=False)
    rec = pd.read_parquet(tmp_path / "out" / "records" / "smallmodel.parquet")
    small = load_profile("sdxl-a10g").gpu_model("small_model")
    assert set(rec["steps"]) == {small.steps}  # a request's 150 steps do not make the small model run more
    assert rec["full_steps"].tolist() == [r[1] for r in ROWS]
    if mode == "full":
        area = rec["area"].to_numpy()
        hand = small.text_encoder_s + area * (small.steps * small.step_s(1) + small.vae_decode_s)
        assert rec["gpu_s"].to_numpy() == pytest.approx(hand, rel=1e-9)


@pytest.mark.parametrize("mode", ["full", "cache-only"])
def test_every_system_runs_with_its_own_work_and_a_step_cache(tmp_path, mode: str) -> None:
    """Per-request work and a step cache compose with every registered system."""
    from sim.base.step_cache import build_step_cache
    from sim.systems import SYSTEMS

    exp = _exp(tmp_path, mode)
    # Two-model systems need mode: full and 2 GPUs (tests/test_pools.py runs them).
    one_model = sorted(n for n, cls in SYSTEMS.items() if not cls.pool_models)
    data = {**config.to_dict(exp), "systems": one_model, "step_cache": {"kind": "deepcache"}}
    summary = run_experiment(preflight(config.from_dict(data)), out_dir=tmp_path / "out", progress=False)
    summary = summary.set_index("system")
    assert set(summary.index) == set(one_model)
    assert summary["compute_saved"].between(0.0, 1.0).all()
    sc = build_step_cache("deepcache")
    full = np.array([r[1] for r in ROWS])
    area = np.array([r[2] * r[3] / 1024**2 for r in ROWS])
    # Vanilla runs every request's own schedule with the step cache: exactly its work saved.
    vanilla = 1 - np.sum(sc.work(full) * area) / np.sum(full * area)
    assert summary.loc["vanilla", "compute_saved"] == pytest.approx(vanilla, rel=1e-12)


def test_a_request_of_several_images_costs_them_all_and_counts_them_in_the_bill(tmp_path) -> None:
    # Three requests, one per 400 s: one image, four, and one that does not say (one). Each costs its
    # images' denoising and decoding, and the cost per 1,000 images divides by the 6 images made.
    df = pd.DataFrame({"ts": [0.0, 400.0, 800.0], "prompt": ["a fox", "a castle", "a boat"], "n": [1, 4, None]})
    df.to_csv(tmp_path / "three.csv", index=False)
    data = {
        "trace": {"source": "table", "path": str(tmp_path / "three.csv"), "columns": {"timestamp": "ts", "images": "n"},
                  "request_images": True},
        "embedder": "hashing", "systems": ["vanilla"], "cluster": {"gpus": 1}, "mode": "full", "plots": False,
    }
    summary = run_experiment(preflight(config.from_dict(data)), out_dir=tmp_path / "out", progress=False).iloc[0]
    rec = pd.read_parquet(tmp_path / "out" / "records" / "vanilla.parquet")
    p = load_profile("sdxl-a10g")
    one = p.text_encoder_s + p.steps * p.step_s(1) + p.vae_decode_s
    assert rec["images"].tolist() == [1, 4, 1] and rec["area"].tolist() == [1.0, 4.0, 1.0]
    assert rec["gpu_s"].tolist() == pytest.approx([one, p.text_encoder_s + 4 * (one - p.text_encoder_s), one], rel=1e-9)
    assert summary["images"] == 6
    assert summary["cost_per_1k_images_usd"] == pytest.approx(1000 * summary["cost_usd"] / 6, rel=1e-12)
    # A trace without the column is refused by name.
    with pytest.raises(ConfigError, match="trace.request_images: True is not valid; the trace has no images column"):
        from sim.app.run import prepare_inputs, request_work_of

        exp = preflight(config.from_dict({**data, "trace": {"source": "synthetic", "requests": 20, "request_images": True}}))
        inputs = prepare_inputs(exp, progress=False)
        del inputs.trace.df["images"]
        request_work_of(exp, inputs)
