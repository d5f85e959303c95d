"""Multi-model traffic (trace.request_models): GPUs that hold one base model each, pay its load to
switch and a load per LoRA, checked against event logs worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import experiment

from sim.app.preflight import preflight
from sim.app.run import request_models, run_experiment
from sim.base import config
from sim.base.errors import ConfigError
from sim.base.profile import load_profile
from sim.base.request_work import RequestWork
from sim.engine.core import simulate
from sim.engine.workers import job_work
from sim.systems import TraceArrays, build_system

PROFILE = load_profile("sdxl-a10g")
FULL = job_work(PROFILE.gpu_model(), PROFILE.steps, False)
LOAD = PROFILE.model_load_s
LORA = PROFILE.lora_load_s


def run(arrival, models, loras, gpus=1, affinity_wait_s=0.0):
    n = len(arrival)
    exp = experiment(systems=["vanilla"], cluster__gpus=gpus, cluster__affinity_wait_s=affinity_wait_s)
    arrays = TraceArrays(np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.asarray(arrival, float))
    work = RequestWork.of(PROFILE.steps, None, n=n).with_models(np.array(models), np.array(loras))
    system = build_system("vanilla", exp, arrays, None, PROFILE)
    return simulate(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 1, request_work=work)[0]


def test_a_request_whose_model_is_not_loaded_pays_the_load_once():
    assert LOAD == 8.5 and LORA == 1.0  # the shipped profile's (assumed) loads
    # One GPU holding model 0: model 1 loads once, model 1 again is free, model 0 with two LoRAs
    # loads back and pays both adapters, a request naming no model runs on what is there.
    rec = run([0.0, 100.0, 200.0, 300.0], [1, 1, 0, -1], [0, 0, 2, 0])
    assert rec["gpu_s"].tolist() == pytest.approx([FULL + LOAD, FULL, FULL + LOAD + 2 * LORA, FULL])
    assert rec["latency_s"].tolist() == pytest.approx(rec["gpu_s"].tolist())
    engine = rec.attrs["engine"]
    assert (engine["model_loads"], engine["lora_loads"]) == (2, 2)


def test_each_gpu_loads_a_model_once_and_keeps_it():
    # Two GPUs hold model 0. Two requests of model 1 at once: each GPU loads it (one each); a third
    # later finds an idle GPU holding it; a model-0 request then takes the GPU... both hold 1: it loads.
    rec = run([0.0, 0.0, 100.0, 200.0], [1, 1, 1, 0], [0, 0, 0, 0], gpus=2)
    assert rec["gpu_s"].tolist() == pytest.approx([FULL + LOAD, FULL + LOAD, FULL, FULL + LOAD])
    assert rec.attrs["engine"]["model_loads"] == 3
    # Work waiting for a GPU keeps first come, first served: a queued job pays on the GPU it gets.
    rec = run([0.0, 1.0, 2.0], [0, 1, 0], [0, 0, 0])
    assert rec["start_s"].tolist() == pytest.approx([0.0, FULL, 2 * FULL + LOAD])
    assert rec["gpu_s"].tolist() == pytest.approx([FULL, FULL + LOAD, FULL + LOAD])


def test_model_codes_put_the_most_requested_first():
    df = pd.DataFrame({"model": ["b", "a", None, "b", "c", "a", "b"], "loras": [0, 1, None, 2, 0, 0, 0]})
    models, loras = request_models(df)
    assert models.tolist() == [0, 1, -1, 0, 2, 1, 0] and loras.tolist() == [0, 1, 0, 2, 0, 0, 0]
    with pytest.raises(ConfigError, match="trace.request_models"):
        request_models(pd.DataFrame({"model": [None, None]}))


def test_a_run_on_a_table_with_models(tmp_path):
    rows = 60
    table = pd.DataFrame(
        {
            "ts": np.arange(rows) * 40.0,
            "text": [f"prompt {i % 7}" for i in range(rows)],
            "base": [f"M{i % 3}" for i in range(rows)],
            "n_lora": [i % 2 for i in range(rows)],
        }
    )
    path = tmp_path / "log.csv"
    table.to_csv(path, index=False)
    data = {
        "trace": {
            "source": "table",
            "path": str(path),
            "columns": {"timestamp": "ts", "prompt": "text", "model": "base", "loras": "n_lora"},
            "request_models": True,
        },
        "systems": ["vanilla", "exact"],
        "cluster": {"gpus": 2},
        "embedder": "hashing",
        "mode": "full",
        "plots": False,
    }
    exp = preflight(config.from_dict(data))
    summary = run_experiment(exp, out_dir=tmp_path / "out", progress=False).set_index("system")
    rec = pd.read_parquet(tmp_path / "out" / "records" / "vanilla.parquet")
    # Every request pays its LoRA; every GPU-second is billed.
    assert rec["gpu_s"].min() >= FULL - 1e-9 and (rec["gpu_s"] > FULL + 0.5).sum() >= rows // 2
    assert summary.loc["exact", "hit_rate"] > 0.5
    with pytest.raises(ConfigError, match="cluster.batch.max_batch"):
        preflight(config.from_dict({**data, "cluster": {"gpus": 2, "batch": {"max_batch": 4}}}))
    with pytest.raises(ConfigError, match="mode"):
        preflight(config.from_dict({**data, "mode": "cache-only"}))


def test_a_log_without_prompts_imports_with_placeholders(tmp_path):
    from sim.app.cli import main
    from traces.schema import read_parquet

    log = tmp_path / "log.csv"
    pd.DataFrame(
        {"t": ["2024-11-15 16:57:50", "2024-11-15 16:57:51", "2024-11-15 16:57:49"], "m": ["A", "B", "A"], "n": [0, 2, 1]}
    ).to_csv(log, index=False)
    out = tmp_path / "t.parquet"
    args = ["trace", "import", "--source", "table", "--path", str(log), "--columns", "timestamp=t,model=m,loras=n"]
    assert main([*args, "--out", str(out)]) == 2  # without the flag: the missing prompt column is an error
    assert main([*args, "--placeholder-prompts", "--out", str(out)]) == 0
    df = read_parquet(out).df
    # Sorted by time; each request keeps its own prompt (its data row), model and LoRAs.
    assert df["prompt"].tolist() == ["<request 3>", "<request 1>", "<request 2>"]
    assert df["model"].tolist() == ["A", "A", "B"] and df["loras"].tolist() == [1, 0, 2]
    assert df["prompt_id"].nunique() == 3
    # Or the prompts of a shipped list, in time order: a log's times and models, real prompts.
    out2 = tmp_path / "t2.parquet"
    with pytest.warns(UserWarning, match="empty prompt"):  # the list's line 3,972
        assert main([*args, "--prompts-from", "sample:diffusiondb_2m_first5k_prompts.txt", "--out", str(out2)]) == 0
    listed = read_parquet(out2).df
    first = Path(__file__).resolve().parents[1].joinpath("traces/data/diffusiondb_2m_first5k_prompts.txt")
    assert listed["prompt"].tolist() == first.read_text(encoding="utf-8").splitlines()[:3]
    assert listed["model"].tolist() == ["A", "A", "B"]


@pytest.mark.external_data
def test_the_production_trace_replays_its_models(external_data, tmp_path):
    """GenTD26: 86 named base models (25 requests name none) over 26,823 requests; on 4 GPUs every
    switch is a load."""
    from traces.table import load_table

    trace = load_table(
        external_data / "gentd26_request_trace.csv",
        {"timestamp": "gmt_create", "user": "groupId", "model": "checkpoint_model_version_id", "loras": "num_lora"},
        placeholder_prompts=True,
    )
    assert len(trace) == 26_823 and trace.df["model"].nunique() == 86 and trace.df["model"].isna().sum() == 25
    models, loras = request_models(trace.df)
    assert float((models == 0).mean()) == pytest.approx(0.31, abs=0.01)  # the top model's share
    assert float((loras > 0).mean()) == pytest.approx(0.17, abs=0.01)
    rec = run(trace.arrival_s, models, loras, gpus=4)
    engine = rec.attrs["engine"]
    assert engine["lora_loads"] == int(loras.sum())
    # At least one load per model beyond the first; never more than one per request.
    assert 85 <= engine["model_loads"] <= len(rec)
    extra = rec["gpu_s"].sum() - len(rec) * FULL
    assert extra == pytest.approx(engine["model_loads"] * LOAD + engine["lora_loads"] * LORA, rel=1e-9)


def test_affinity_lets_a_gpu_take_its_own_models_request_first_but_not_for_ever():
    # One GPU holding model 0 runs r0; r1 (model 1) and r2 (model 0) wait. First come, first served
    # loads model 1 for r1 and model 0 back for r2; with affinity r2 goes first and one load is paid.
    fcfs = run([0.0, 1.0, 2.0], [0, 1, 0], [0, 0, 0])
    assert fcfs.attrs["engine"]["model_loads"] == 2
    rec = run([0.0, 1.0, 2.0], [0, 1, 0], [0, 0, 0], affinity_wait_s=1000.0)
    assert rec.attrs["engine"]["model_loads"] == 1
    assert rec["start_s"].tolist() == pytest.approx([0.0, 2 * FULL, FULL])
    # The head has waited longer than the bound when the GPU frees up: it keeps its turn.
    rec = run([0.0, 1.0, 2.0], [0, 1, 0], [0, 0, 0], affinity_wait_s=FULL - 1.5)
    assert rec["start_s"].tolist() == pytest.approx(fcfs["start_s"].tolist())


def test_a_pool_that_grows_and_shrinks_keeps_track_of_each_gpus_model():
    # One GPU holding model 0; a load costs 10 s and a job 100 s. t=0: A (model 1) loads and runs to
    # 110; B (model 0) waits. t=50: a GPU joins holding model 0 and takes B (50-150). t=60: one GPU is
    # to leave: A's, at 110, with model 1. t=120: C (model 1) waits for B's GPU, loads: 150-260.
    # t=200: two GPUs join (model 0). t=300: two idle GPUs leave, those whose model most idle GPUs
    # hold: both model-0 ones. t=310: D (model 1) finds C's GPU, which holds model 1: 310-410.
    import simpy

    from sim.base.config import BatchConfig
    from sim.engine.model_switch import ModelSwitchingPool, SwitchCosts
    from sim.engine.queues import FCFSQueue, Job

    env = simpy.Environment()
    pool = ModelSwitchingPool(env, 1, FCFSQueue(), BatchConfig(), PROFILE.gpu_model(), SwitchCosts(10.0, 0.0))
    done: dict[str, tuple[float, float]] = {}
    pool.on_finish = lambda job, s: done.__setitem__("ABCD"[job.i], (job.start, env.now))
    left: list[float] = []
    pool.on_release = left.append

    def idle_models() -> dict[int, int]:
        return {m: c for m, c in pool.held.items() if c}

    def job(i: int, model: int) -> Job:
        j = Job(i, env.now, 50, False, 100.0)
        j.model = model
        return j

    def script():
        pool.push(job(0, 1))
        pool.push(job(1, 0))
        yield env.timeout(50)
        pool.add_gpus(1)
        yield env.timeout(10)
        pool.retiring += 1
        yield env.timeout(60)
        pool.push(job(2, 1))
        yield env.timeout(80)
        pool.add_gpus(2)
        assert idle_models() == {0: 2}
        yield env.timeout(100)
        assert pool.release_idle(2) == 2
        assert idle_models() == {1: 1}
        yield env.timeout(10)
        pool.push(job(3, 1))

    env.process(script())
    env.run()
    assert done == {"A": (0.0, 110.0), "B": (50.0, 150.0), "C": (150.0, 260.0), "D": (310.0, 410.0)}
    assert left == [110.0]
    assert pool.model_loads == 2
    assert (pool.gpus, pool.idle, idle_models()) == (1, 1, {1: 1})


def test_an_autoscaled_multi_model_pool_keeps_its_bounds_and_pays_each_load():
    rng = np.random.default_rng(3)
    n = 600
    models, loras = rng.integers(0, 6, n), rng.integers(0, 3, n)
    exp = experiment(
        systems=["vanilla"],
        cluster__gpus=3,
        cluster__autoscale={"rule": "queue-delay", "min_gpus": 1, "max_gpus": 6, "interval_s": 30},
    )
    arrays = TraceArrays(np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.arange(n) * 6.0)
    work = RequestWork.of(PROFILE.steps, None, n=n).with_models(models, loras)
    system = build_system("vanilla", exp, arrays, None, PROFILE)
    rec = simulate(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes, exp, PROFILE, 1, request_work=work)[0]
    engine = rec.attrs["engine"]
    log = engine["gpus_log"]
    assert min(log["held"]) >= 1 and max(log["held"]) <= 6 and len(set(log["held"])) > 1
    assert engine["lora_loads"] == int(loras.sum())
    extra = rec["gpu_s"].sum() - n * FULL
    assert extra == pytest.approx(engine["model_loads"] * LOAD + engine["lora_loads"] * LORA, rel=1e-9)
    # Preflight lets trace.request_models autoscale.
    preflight(config.from_dict({"trace": {"request_models": True}, "cluster": {"autoscale": {"rule": "pid"}}}))


@pytest.mark.external_data
def test_the_production_day_experiment_autoscales_the_production_trace(external_data, tmp_path):
    """experiments/production_day.yaml on GenTD26: its models autoscaled by the queue-delay rule stay
    within 1..8 GPUs, hold fewer GPU-hours than the 3 provisioned ones, and bill what they held."""
    overrides = [
        f"trace.path={external_data / 'gentd26_request_trace.csv'}",
        "cluster.autoscale.rule=queue-delay",
        "trace.request_models=true",
        "plots=false",
    ]
    exp = preflight(config.load("experiments/production_day.yaml", overrides))
    exp.sweep = None
    row = run_experiment(exp, out_dir=tmp_path / "out", progress=False).set_index("system").loc["vanilla"]
    rec = pd.read_parquet(tmp_path / "out" / "records" / "vanilla.parquet")
    assert len(rec) == 26_823 and row["requests"] == 26_823
    assert 1 <= row["gpus_mean"] < 3 and row["gpus_peak"] <= 8
    span_h = (rec["finish_s"].max() - rec["arrival_s"].min()) / 3600
    assert row["gpu_hours_provisioned"] == pytest.approx(row["gpus_mean"] * span_h, rel=1e-6)
    assert row["gpu_hours_provisioned"] < 3 * span_h
    assert 0.9 < row["slo_attainment"] < 1.0
