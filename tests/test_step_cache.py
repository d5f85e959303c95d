"""Step caches (``step_cache:``) against their definition, in the engine, the summary and a sweep.

The reference below walks a run step by step from the definition in README "Step caches": the
first ``w`` steps a run executes cost a full step, every later one ``r`` of it, with ``r`` the
share that makes the kind's published run of ``P`` steps take ``P / S`` full steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.app.preflight import preflight
from sim.app.run import prepare_inputs, run_experiment
from sim.base import config
from sim.base.errors import ConfigError
from sim.base.profile import load_profile, load_run_profile
from sim.base.step_cache import STEP_CACHES, build_step_cache
from sim.engine.workers import job_work

KINDS = sorted(STEP_CACHES)


def reference_work(kind: str, n_model: int, k: int, warmup: int | None = None) -> float:
    """Full-step equivalents of a request resumed at ``k`` of ``n_model`` steps, walked step by step."""
    published = STEP_CACHES[kind]
    w = published.warmup_steps if warmup is None else warmup
    # The per-step share r from the published run: w full steps + (P - w) steps at r = P / S.
    r = (published.published_steps / published.speedup - w) / (published.published_steps - w)
    total = 0.0
    for i, _step in enumerate(range(k, n_model)):  # the steps this request runs, K .. N-1
        total += 1.0 if i < w else r
    return total


@pytest.mark.parametrize("kind", KINDS)
def test_the_published_run_takes_its_published_time(kind: str) -> None:
    sc = build_step_cache(kind)
    p = STEP_CACHES[kind]
    assert sc.work(p.published_steps) == pytest.approx(p.published_steps / p.speedup, rel=1e-12)
    assert sc.quality_factor(p.published_steps) == pytest.approx(1.0 - p.clip_loss, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_model", [4, 28, 50])
def test_a_resumed_run_costs_what_the_definition_says(kind: str, n_model: int) -> None:
    sc = build_step_cache(kind)
    for k in range(n_model):
        assert sc.work(n_model - k) == pytest.approx(reference_work(kind, n_model, k), rel=1e-12), k
    vectorised = sc.work(np.arange(n_model + 1))
    assert vectorised == pytest.approx([reference_work(kind, n_model, n_model - m) for m in range(n_model + 1)])


def test_a_resume_gains_less_from_the_step_cache_than_a_fresh_image() -> None:
    """Skipping K steps removes steps the step cache would have made cheap, and pays its warm-up again."""
    sc = build_step_cache("fbcache")
    n = 28
    fresh_speedup = n / sc.work(n)
    for k in (3, 8, 14):
        assert (n - k) / sc.work(n - k) < fresh_speedup
    # Together they save less than if each acted on the whole run alone: (1 - a)(1 - b) < left over.
    k = 14
    apart = (1 - k / n) * (sc.work(n) / n)
    together = sc.work(n - k) / n
    assert together > apart
    assert together == pytest.approx(reference_work("fbcache", n, k) / n)


def test_quality_loss_grows_with_the_steps_the_cache_acts_on() -> None:
    sc = build_step_cache("teacache")
    assert sc.quality_factor(1) == 1.0  # within the warm-up: computed in full
    kept = [sc.quality_factor(n) for n in range(1, 29)]
    assert kept == sorted(kept, reverse=True)
    assert sc.quality_factor(28) == pytest.approx(1 - STEP_CACHES["teacache"].clip_loss)


def test_overrides_replace_the_published_figures() -> None:
    sc = build_step_cache("teacache", speedup=1.5, warmup_steps=4, clip_loss=0.0)
    assert sc.work(28) == pytest.approx(28 / 1.5)
    assert sc.work(3) == 3.0  # all within the warm-up
    assert sc.quality_factor(28) == 1.0


@pytest.mark.parametrize(
    ("block", "field", "words"),
    [
        ({"kind": "teacach"}, "step_cache.kind", "did you mean 'teacache'"),
        ({"kind": "fbcache", "speedup": 40}, "step_cache.speedup", "must be in 1..28"),
        ({"kind": "fbcache", "speedup": 0.5}, "step_cache.speedup", "must be in 1.."),
        ({"kind": "deepcache", "warmup_steps": 50}, "step_cache.warmup_steps", "0..49"),
        ({"kind": "teacache", "clip_loss": 1.5}, "step_cache.clip_loss", "[0, 1)"),
    ],
)
def test_a_bad_step_cache_block_names_its_field(block: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict({"step_cache": block})
    assert err.value.field == field
    assert words in str(err.value)


def test_a_step_cache_must_work_on_the_model() -> None:
    exp = config.from_dict({"step_cache": {"kind": "deepcache"}, "profile": "flux1-dev-h100"})
    with pytest.raises(ConfigError, match="deepcache works on unet models; this profile's model is a dit"):
        load_run_profile(exp.profile, exp.step_cache)
    exp = config.from_dict({"step_cache": {"kind": "teacache"}, "profile": "sdxl-a10g"})
    with pytest.raises(ConfigError, match="step_cache.kind"):
        preflight(exp)


def test_a_job_with_a_step_cache_costs_its_full_step_equivalents() -> None:
    exp = config.from_dict({"step_cache": {"kind": "fbcache"}})
    plain = load_profile("flux1-dev-h100")
    cached = load_run_profile("flux1-dev-h100", exp.step_cache)
    gpu = cached.gpu_model()
    sc = gpu.step_cache
    for steps in (28, 17, 1):
        expected = gpu.text_encoder_s + sc.work(steps) * gpu.step_s(1) + gpu.vae_decode_s
        assert job_work(gpu, steps, False) == pytest.approx(expected)
        # Saving latents is not skipped: it costs per step run, as without a step cache.
        saving = steps * gpu.save_overhead_step_s
        assert job_work(gpu, steps, True) - job_work(gpu, steps, False) == pytest.approx(saving)
    assert job_work(plain.gpu_model(), 28, False) == pytest.approx(7.11, abs=0.01)  # the published time
    assert plain.gpu_models.get("small_model") is None or cached.gpu_model("small_model").step_cache is None


def _experiment(step_cache: str, **extra: object) -> config.Experiment:
    data = {
        "profile": "flux1-dev-h100",
        "trace": {"requests": 600, "arrival": {"rate": 0.2}},
        "embedder": "hashing",
        "cluster": {"gpus": 2},
        "systems": ["vanilla", "nirvana"],
        "step_cache": {"kind": step_cache},
        "plots": False,
        **extra,
    }
    return preflight(config.from_dict(data))


def test_a_run_reports_the_step_cache_in_compute_gpu_time_and_quality(tmp_path) -> None:
    plain = run_experiment(_experiment("none"), out_dir=tmp_path / "plain", progress=False).set_index("system")
    fb = run_experiment(_experiment("fbcache"), out_dir=tmp_path / "fb", progress=False).set_index("system")
    sc = build_step_cache("fbcache")
    # Vanilla runs every request fresh: compute saved is exactly what the step cache saves on N steps.
    assert fb.loc["vanilla", "compute_saved"] == pytest.approx(1 - sc.work(28) / 28, rel=1e-12)
    assert plain.loc["vanilla", "compute_saved"] == 0.0
    profile = load_profile("flux1-dev-h100")
    one = profile.text_encoder_s + sc.work(28) * profile.step_s(1) + profile.vae_decode_s
    assert fb.loc["vanilla", "gpu_busy_s"] == pytest.approx(600 * one, rel=1e-9)
    # Every decision is the same with and without the step cache; only the work per step differs.
    assert fb.loc["nirvana", "hit_rate"] == plain.loc["nirvana", "hit_rate"]
    assert fb.loc["nirvana", "compute_saved"] > plain.loc["nirvana", "compute_saved"]
    # Together they save less than each would save of the whole run alone (the overlap).
    left = (1 - fb.loc["nirvana", "compute_saved"]) - (1 - plain.loc["nirvana", "compute_saved"]) * sc.work(28) / 28
    assert left > 0
    assert fb.loc["vanilla", "quality_clip"] == pytest.approx(plain.loc["vanilla", "quality_clip"])  # fbcache: no loss


def test_a_sweep_that_shares_inputs_still_applies_each_step_cache(tmp_path) -> None:
    """A sweep prepares inputs once for configurations that differ only in ``step_cache``."""
    inputs = prepare_inputs(_experiment("none"), progress=False)
    summary = run_experiment(_experiment("fbcache"), out_dir=tmp_path / "x", inputs=inputs, progress=False)
    vanilla = summary.set_index("system").loc["vanilla"]
    assert vanilla["compute_saved"] == pytest.approx(1 - build_step_cache("fbcache").work(28) / 28)
    assert math.isfinite(vanilla["mean_latency_s"])


def test_a_router_costs_an_image_with_the_models_step_cache() -> None:
    from sim.engine.routing import ReplicaShape

    sc = build_step_cache("fbcache")
    plain, cached = ReplicaShape(1, 0.13, 0.25, 28), ReplicaShape(1, 0.13, 0.25, 28, sc)
    assert plain.image_s() == pytest.approx(0.13 + 28 * 0.25)
    assert cached.image_s() == pytest.approx(0.13 + sc.work(28) * 0.25)
    assert cached.image_s(14) == pytest.approx(0.13 + sc.work(14) * 0.25)
    assert cached.capacity == pytest.approx(1 / cached.image_s())
