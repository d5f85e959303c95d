"""Sweeps: grid/zip/seed expansion, local pool and Ray executors, resume, failures, merged summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import USER_DATA

from sim.app.sweep import EXECUTORS, expand_sweep, run_sweep
from sim.base import config as cfg
from sim.base.errors import ConfigError
from sim.base.io import atomic_write_csv, atomic_write_parquet

ROOT = Path(__file__).resolve().parents[1]
PREPARED: list[int] = []  # seeds prepare_lru_trace was called with (it runs in the parent process)


def prepare_lru_trace(exp: cfg.Experiment, progress: bool = True) -> dict:
    """Shared inputs of the toy run: a seeded Zipf stream of object ids."""
    PREPARED.append(exp.seed)
    rng = np.random.default_rng(exp.seed)
    return {"ids": (rng.zipf(1.3, 4000) % 700).astype(np.int64), "seed": exp.seed}


def run_lru(
    exp: cfg.Experiment, out_dir: Path, inputs: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """A small real run: an LRU cache of ``cache.capacity`` objects over the prepared stream.

    Capacity 13 fails while the environment variable LRU_FAIL_13 is not "0" (to test failures).
    """
    if exp.cache.capacity == 13 and os.environ.get("LRU_FAIL_13", "1") != "0":
        raise ValueError("capacity 13 is not supported by this toy")
    assert inputs is not None and inputs["seed"] == exp.seed, "the sweep must hand over the prepared inputs"
    cache: OrderedDict[int, None] = OrderedDict()
    hit = np.zeros(len(inputs["ids"]), bool)
    for i, x in enumerate(inputs["ids"].tolist()):
        if x in cache:
            hit[i] = True
            cache.move_to_end(x)
        else:
            cache[x] = None
            if len(cache) > exp.cache.capacity:
                cache.popitem(last=False)
    out = Path(out_dir)
    atomic_write_parquet(out / "records" / "toy.parquet", pd.DataFrame({"hit": hit}))
    summary = pd.DataFrame(
        [
            {
                "system": "toy",
                "policy": exp.cache.policy,
                "cache_capacity": exp.cache.capacity,
                "requests": len(hit),
                "hit_rate": hit.mean(),
                "pid": os.getpid(),
            }
        ]
    )
    atomic_write_csv(out / "summary.csv", summary)
    return summary


def _exp(sweep: dict, **fields) -> cfg.Experiment:
    data = {"name": "toy", "systems": ["vanilla"], "mode": "cache-only", "sweep": sweep, **fields}
    return cfg.from_dict(data)


def test_grid_zip_and_seeds_expand_to_every_combination():
    exp = _exp(
        {
            "grid": {"cache.capacity": [100, 1000]},
            "zip": {"cache.policy": ["lru", "lfu"], "cache.granularity": ["latent", "prompt"]},
            "seeds": [1, 2],
        }
    )
    points = expand_sweep(exp)
    assert len(points) == 2 * 2 * 2
    combos = {(p.exp.cache.capacity, p.exp.cache.policy, p.exp.cache.granularity, p.exp.seed) for p in points}
    assert combos == {
        (c, pol, g, s)
        for c in (100.0, 1000.0)
        for pol, g in (("lru", "latent"), ("lfu", "prompt"))
        for s in (1, 2)
    }
    assert all(
        set(p.values) == {"cache.capacity", "cache.policy", "cache.granularity", "seed"} for p in points
    )
    assert all(p.exp.sweep is None and p.exp.plots is False for p in points)
    names = [p.name for p in points]
    assert len(set(names)) == len(names)
    assert names == [p.name for p in expand_sweep(exp)]  # stable across invocations
    assert names[0].startswith("capacity-100_policy-lru_granularity-latent_seed-1-")
    # Seeds change the inputs, capacities do not.
    assert len({p.inputs_key for p in points}) == 2


def test_plain_grid_is_a_cartesian_product_and_base_edits_rename_runs():
    exp = _exp({"cache.capacity": [10, 20, 30], "cache.policy": ["fifo", "lru"]})
    points = expand_sweep(exp)
    assert [(p.exp.cache.capacity, p.exp.cache.policy) for p in points][:3] == [
        (10, "fifo"),
        (10, "lru"),
        (20, "fifo"),
    ]
    assert len(points) == 6
    edited = expand_sweep(
        _exp({"cache.capacity": [10, 20, 30], "cache.policy": ["fifo", "lru"]}, trace={"requests": 777})
    )
    assert not {p.name for p in points} & {
        p.name for p in edited
    }  # a changed base config never reuses old runs
    assert len(expand_sweep(_exp(None))) == 1  # no sweep: the base configuration once


def test_bad_sweep_values_name_the_field():
    with pytest.raises(ConfigError, match=r"sweep\.cache\.policy.*nope"):
        expand_sweep(_exp({"cache.policy": ["lru", "nope"]}))
    with pytest.raises(ConfigError, match="sweep.zip"):
        _exp({"zip": {"cache.capacity": [1, 2], "cache.policy": ["lru"]}})
    with pytest.raises(ConfigError, match="--executor"):
        run_sweep(_exp({"cache.capacity": [1]}), executor="slurm")
    assert set(EXECUTORS) == {"local", "ray"}


def test_local_pool_runs_resumes_and_reports_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("LRU_FAIL_13", "1")
    PREPARED.clear()
    exp = _exp({"cache.capacity": [10, 13, 100, 1000], "seeds": [1, 2]}, output=str(tmp_path / "sw"))
    res = run_sweep(exp, jobs=2, run_fn=run_lru, prepare_fn=prepare_lru_trace, progress=False)
    out = tmp_path / "sw-sweep"  # beside where `acsim run` of the same file writes
    assert sorted(PREPARED) == [1, 2]  # shared inputs prepared once per seed, not per configuration
    assert not res.ok and len(res.failed) == 2 and len(res.completed) == 6
    for name, msg in res.failed.items():
        assert "capacity 13 is not supported" in msg
        assert "Traceback" in (out / "runs" / name / "error.txt").read_text()
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == 6 and list(s.columns[:3]) == ["run", "cache.capacity", "seed"]
    assert (s["pid"] != os.getpid()).all()  # ran in the pool's worker processes
    for _, g in s.groupby("seed"):
        assert g.sort_values("cache.capacity")[
            "hit_rate"
        ].is_monotonic_increasing  # LRU has no Belady anomaly
        assert g["hit_rate"].iloc[-1] > g["hit_rate"].iloc[0]
    runs = pd.read_csv(out / "runs.csv")
    assert runs["status"].value_counts().to_dict() == {"done": 6, "failed": 2}
    assert (out / "runs" / res.completed[0] / "records" / "toy.parquet").is_file()

    # Second invocation: nothing finished is recomputed; the failures are retried (and fail again).
    markers = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/done")}
    PREPARED.clear()
    again = run_sweep(exp, jobs=1, run_fn=run_lru, prepare_fn=prepare_lru_trace, progress=False)
    assert again.completed == [] and sorted(again.skipped) == sorted(res.completed)
    assert set(again.failed) == set(res.failed)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/done")} == markers
    index = pd.read_csv(out / "runs.csv")
    assert index.loc[index["status"] == "done", "elapsed_s"].notna().all()  # kept from the first invocation

    # An interrupted run (files written, no done marker) is redone; fixed failures now finish.
    lost = res.completed[0]
    (out / "runs" / lost / "done").unlink()
    monkeypatch.setenv("LRU_FAIL_13", "0")
    third = run_sweep(exp, jobs=1, run_fn=run_lru, prepare_fn=prepare_lru_trace, progress=False)
    assert third.ok and sorted(third.completed) == sorted([lost, *res.failed])
    assert not list(out.glob("runs/*/error.txt"))
    assert len(pd.read_csv(out / "summary.csv")) == 8
    assert set(pd.read_csv(out / "runs.csv")["status"]) == {"done"}


def test_failing_input_preparation_fails_only_its_configurations(tmp_path):
    exp = _exp({"cache.capacity": [10, 100], "seeds": [1, 2]}, output=str(tmp_path / "out"))
    res = run_sweep(exp, jobs=1, run_fn=run_lru, prepare_fn=prepare_unless_seed_2, progress=False)
    assert len(res.completed) == 2 and len(res.failed) == 2
    assert all("preparing inputs failed" in m and "seed 2" in m for m in res.failed.values())


def prepare_unless_seed_2(exp: cfg.Experiment, progress: bool = True) -> dict:
    """Like prepare_lru_trace, but the trace of seed 2 is 'missing'."""
    if exp.seed == 2:
        raise FileNotFoundError("no trace for seed 2")
    return prepare_lru_trace(exp)


def test_experiment_files_expand(tmp_path):
    files = sorted((ROOT / "experiments").glob("*.yaml"))
    assert {f.name for f in files} >= {
        "policies_vs_cache_size.yaml",
        "baselines.yaml",
        "bursty_load.yaml",
        "isolation.yaml",
        "embedders.yaml",
        "diffusiondb.yaml",
    }
    for f in files:
        data = USER_DATA.get(f"experiments/{f.name}")
        if data is None:
            exp = cfg.load(f)
        else:  # on data acsim cannot ship: a stand-in file with its columns (and one request)
            stand_in = tmp_path / Path(data[0]).name
            stand_in.write_text(data[1] + "\n" + ",".join(["2024-11-15 16:57:50"] + ["1"] * (data[1].count(","))) + "\n")
            exp = cfg.load(f, [f"trace.path={stand_in}"])
        assert len(expand_sweep(exp)) >= 1, f
    big = cfg.load(ROOT / "experiments" / "policies_vs_cache_size.yaml")
    points = expand_sweep(big)
    assert {p.exp.cache.capacity for p in points} >= {1500, 1_500_000}
    assert "belady" in {p.exp.cache.policy for p in points}
    assert len({p.inputs_key for p in points}) == 1  # one trace and neighbour list serve the whole grid


@pytest.mark.xdist_group("ray")
def test_ray_executor_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    exp = _exp({"cache.capacity": [10, 1000]}, output=str(tmp_path / "out"))
    res = run_sweep(exp, executor="ray", jobs=1, run_fn=run_lru, prepare_fn=prepare_lru_trace, progress=False)
    assert res.ok and len(res.completed) == 2
    out = tmp_path / "out-sweep"
    s = pd.read_csv(out / "summary.csv").sort_values("cache.capacity")
    assert (s["pid"] != os.getpid()).all()
    assert s["hit_rate"].iloc[1] > s["hit_rate"].iloc[0]
    for name in res.completed:  # the run's files were shipped back from the Ray worker
        assert (out / "runs" / name / "records" / "toy.parquet").is_file()
        assert (out / "runs" / name / "done").is_file()


def run_slow(
    exp: cfg.Experiment, out_dir: Path, inputs: dict | None = None, progress: bool = True
) -> pd.DataFrame:
    """run_lru after a pause of capacity/1000 seconds (long enough to interrupt a sweep)."""
    time.sleep(exp.cache.capacity / 1000)
    return run_lru(exp, out_dir, inputs, progress)


_INTERRUPTED_SWEEP = """
import signal
import sys
# A shell that starts jobs in the background (nohup, &) hands them SIGINT ignored, and Python
# keeps an inherited SIG_IGN: restore Ctrl-C, the behaviour this test is about.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
from test_sweep import _exp, prepare_lru_trace, run_slow
from sim.app.sweep import run_sweep
if __name__ == "__main__":
    exp = _exp({{"cache.capacity": [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007]}}, output={out!r})
    run_sweep(exp, jobs=2, run_fn=run_slow, prepare_fn=prepare_lru_trace, progress=False)
"""


def test_interrupted_sweep_keeps_finished_runs_and_resumes(tmp_path):
    out = tmp_path / "sw-sweep"
    script = tmp_path / "sweep_script.py"
    script.write_text(_INTERRUPTED_SWEEP.format(tests=str(Path(__file__).parent), out=str(tmp_path / "sw")))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("runs/*/done"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the parent and its pool workers
    log = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0, log
    finished = {p.parent.name for p in out.glob("runs/*/done")}
    assert 2 <= len(finished) < 8, log
    assert set(pd.read_csv(out / "summary.csv")["run"]) == finished  # merged on the way out
    exp = _exp({"cache.capacity": [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007]}, output=str(tmp_path / "sw"))
    res = run_sweep(exp, jobs=1, run_fn=run_lru, prepare_fn=prepare_lru_trace, progress=False)
    assert set(res.skipped) == finished and len(res.completed) == 8 - len(finished) and res.ok
    assert len(pd.read_csv(out / "summary.csv")) == 8


def test_acsim_sweep_runs_the_real_pipeline_and_draws_figures(tmp_path, monkeypatch, capsys):
    from sim.app.cli import main

    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"""
name: tiny
trace: {{source: synthetic, requests: 1500, arrival: {{process: poisson, rate: 0.5}}}}
embedder: hashing
systems: [nirvana]
mode: cache-only
output: {tmp_path / "out"}
sweep:
  cache.policy: [lru, belady]
  cache.capacity: [100, 100000]
""")
    assert main(["sweep", str(spec), "--jobs", "1", "--quiet"]) == 0
    s = pd.read_csv(tmp_path / "out-sweep" / "summary.csv")
    assert len(s) == 4 and set(s["system"]) == {"nirvana"}
    assert {"run", "cache.policy", "cache.capacity", "hit_rate", "compute_saved"} <= set(s.columns)
    cap = s.pivot(index="cache.policy", columns="cache.capacity", values="compute_saved")
    assert cap.loc["lru", 100000] >= cap.loc["lru", 100] and cap.loc["lru", 100000] > 0
    assert (tmp_path / "out-sweep" / "plots" / "cache_size.png").is_file()
    capsys.readouterr()
    assert main(["sweep", str(spec), "--jobs", "1", "--quiet", "--no-plots"]) == 0
    assert "4 already done, 0 to run" in capsys.readouterr().err


def test_sweep_runs_carry_the_embedding_recipe(monkeypatch):
    """A finished run embedded by an older recipe of the same embedder is not reused (the
    embedding cache's key changes with the recipe; a run's name must too)."""
    from sim.app.sweep import run_name
    from sim.base import config
    from traces.embeddings import MiniLMOnnxEmbedder

    onnx = config.from_dict({"embedder": "minilm-onnx", "trace": {"source": "synthetic", "requests": 100}})
    plain = config.from_dict({"embedder": "minilm", "trace": {"source": "synthetic", "requests": 100}})
    before, other = run_name({}, onnx), run_name({}, plain)
    monkeypatch.setattr(MiniLMOnnxEmbedder, "name", MiniLMOnnxEmbedder.name + "-next")
    assert run_name({}, onnx) != before and run_name({}, plain) == other
