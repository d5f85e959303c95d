"""``acsim calibrate serve``: a real server (tiny SDXL pipeline in a worker process, MiniLM, hnswlib,
latents on disk) against the simulator on the same trace.

The served runs are real, so their latencies carry this machine's timing noise (and that of the
tests running beside them): latency is bounded only by the test marked ``alone``, which runs with
the machine to itself; the decision agreement is exact everywhere, except where a completion and
an arrival happened in the other order than the simulator's clock puts them (the report flags
those).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from support import assert_one_clean_line, cli

from calibrate.serve import ModelSpec, Server, WorkerPool
from sim.app.preflight import preflight
from sim.app.run import prepare_inputs
from sim.app.serve_check import EXPERIMENT, command
from sim.app.serve_command import STORE_MARKER, claim_store
from sim.base import config
from sim.base.errors import InputError
from sim.base.profile import load_profile
from sim.engine.workers import job_work
from sim.systems import build_system
from traces.embeddings import get_embedder

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {
    "name": "serve-test",
    "seed": 1,
    "trace": {"source": "diffusiondb", "path": "sample:diffusiondb_2m_first1k.csv", "requests": 16, "time_scale": 40.0},
    "embedder": "minilm",
    "profile": "sdxl-a10g",
    "cache": {"capacity": 12, "unit": "latents", "policy": "lru"},
    "cluster": {"gpus": 1},
    "systems": ["nirvana"],
    "mode": "full",
}


def _own_latents(system) -> dict[int, tuple[int, ...]]:
    """Slot -> levels the store holds in bytes (not by reference), from its masks and refs."""
    store, shift = system.store, system.shift
    out = {}
    for slot, mask in store.masks.items():
        levels = tuple(k for k in range(system.n_steps + 1) if mask >> k & 1 and (slot << shift | k) not in store.refs)
        if levels:
            out[slot] = levels
    return dict(sorted(out.items()))


def test_the_store_on_disk_holds_what_the_simulated_store_holds_after_every_request(tmp_path: Path) -> None:
    """After each completion the files on disk are exactly the latents a simulated nirvana holds when
    it sees the same lookups and completions in the same order (its own lists, not the server's index)."""
    exp = preflight(config.from_dict(SMALL))
    inputs = prepare_inputs(exp, progress=False)
    trace = inputs.trace
    served = build_system("nirvana", exp, trace, inputs.neighbours, inputs.profile)
    snapshots: list[tuple[int, dict[int, tuple[int, ...]]]] = []
    with WorkerPool(ModelSpec("tiny-sdxl", steps=50)) as pool:
        server = Server(served, list(trace.prompts), trace.prompt_ids, get_embedder("minilm", "cpu"), pool, tmp_path / "store")
        server.on_complete = lambda i: snapshots.append((i, server.disk.contents()))
        real = server.run(trace.arrival_s)
    assert len(snapshots) == len(trace)
    # The reference: the same lookups and completions, in the order the server applied them (a lookup
    # after the completions it saw: completed_before), decided from the precomputed lists.
    ref = build_system("nirvana", exp, trace, inputs.neighbours, inputs.profile)
    completions = [i for i, _ in snapshots]
    order, done = [], 0
    for i in range(len(trace)):
        while done < real["completed_before"][i]:
            order.append(("complete", completions[done]))
            done += 1
        order.append(("lookup", i))
    order += [("complete", i) for i in completions[done:]]
    decisions = {}
    seen = 0
    for what, i in order:
        if what == "lookup":
            decisions[i] = ref.lookup(i, 0.0)
            assert decisions[i].k_used == real["k_used"][i], i
            assert decisions[i].outcome == real["outcome"][i], i
        else:
            ref.complete(i, decisions[i], 0.0)
            assert snapshots[seen] == (i, _own_latents(ref)), i
            seen += 1
    assert seen == len(trace)
    assert (real["outcome"] == "hit").sum() >= 3  # the trace reuses: the comparison means something
    # The index and the disk agree with the store at the end too.
    assert server.index.members == set(served.store.masks)


def test_the_command_agrees_with_the_simulator(tmp_path: Path, capsys, monkeypatch) -> None:
    """The prepared check, shrunk (`--smoke`): the files, and decisions that agree except where the order
    of a completion and an arrival differs."""
    out = tmp_path / "serve"
    (tmp_path / "elsewhere").mkdir()
    code, stdout, _ = cli(command(str(out), smoke=True), capsys)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    s = summary["nirvana"]
    v = pd.read_csv(out / "validation.csv")
    assert len(v) == 10 and set(v["system"]) == {"nirvana"}
    # Every decision that differs must be one whose lookup saw other completions than the simulator's.
    differs = set(v.loc[~(v["k_agrees"] & v["outcome_agrees"]), "request"])
    assert differs <= set(v.loc[v["order_differs"], "request"])
    assert s["k_agreement_same_order"] == 1.0
    for key in ("k_agreement", "outcome_agreement", "mean_latency_error", "p95_latency_error", "throughput_error"):
        assert key in s and s[key] is not None
    # No bound on the errors here: the suite runs beside other tests on two cores, and the
    # calibration and the served run meet different loads (measured: +187% with the calibration
    # under load). test_the_served_latency_is_what_the_simulator_predicts bounds them, run alone.
    assert all(math.isfinite(s[k]) for k in ("mean_latency_error", "p95_latency_error", "throughput_error"))
    assert (out / "plots" / "validation.png").stat().st_size > 0
    profile = load_profile(str(out / "profiles" / "nirvana.yaml"))
    assert profile.pipeline_overhead_s >= 0 and profile.default_tier == "disk"
    fields = profile.raw["latency"]["fields"]
    for name in ("pipeline_overhead_s", "resume_overhead_s", "image_save_s", "embed_s", "save_overhead_step_s"):
        assert fields[name]["kind"] == "measured", name
    assert "nirvana" in stdout and "results:" in stdout
    # The resolved config reruns as a simulation on the measured profile, from any directory.
    resolved = config.load(out / "config.yaml")
    assert resolved.mode == "full" and resolved.cache.tier == "disk"
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, _ = cli(["run", str(out / "config.yaml"), "--set", f"output={tmp_path / 'rerun'}", "-q"], capsys)
    assert code == 0 and (tmp_path / "rerun" / "summary.csv").exists()


# Bounds of the prediction on 60 requests at 70% utilization, run alone on two cores. Looser than
# the (5% mean, 10% p95 on 200 requests): this machine's speed moves 5-14% from one minute
# to the next, a queue at 0.7 multiplies a service-time error by two to three, and with 60 requests
# p95 is the third largest latency (README, "Held against a real run"; measured here: within 9% and
# 10%). A model without the queue would miss p95 by more than half (vanilla, 200 requests: 0.68 s against 1.83 s).
MEAN_BOUND, P95_BOUND = 0.25, 0.40


@pytest.mark.alone
def test_the_served_latency_is_what_the_simulator_predicts(tmp_path: Path, capsys) -> None:
    # The machine's speed drifts between the calibration and the served run (5-14% a minute): a
    # second measurement is taken when the first falls outside the bounds, and it must hold them.
    for attempt in range(2):
        out = tmp_path / f"serve{attempt}"
        args = ["calibrate", "serve", str(EXPERIMENT), "--out", str(out), "--utilization", "0.7", "--set", "trace.requests=60", "--set", "systems=[vanilla,nirvana]"]
        args += ["--rounds", "8", "--repeats", "3", "--no-plots"]
        code, _, _ = cli(args, capsys)
        assert code == 0
        summary = json.loads((out / "summary.json").read_text())
        if all(
            abs(summary[n]["mean_latency_error"]) <= MEAN_BOUND and abs(summary[n]["p95_latency_error"]) <= P95_BOUND
            for n in ("vanilla", "nirvana")
        ):
            break
    for name in ("vanilla", "nirvana"):
        s = summary[name]
        assert s["k_agreement_same_order"] == 1.0, name
        assert abs(s["mean_latency_error"]) <= MEAN_BOUND, (name, s["mean_latency_error"])
        assert abs(s["p95_latency_error"]) <= P95_BOUND, (name, s["p95_latency_error"])
        assert abs(s["throughput_error"]) <= 0.02, (name, s["throughput_error"])
        assert s["utilization_real"] >= (0.6 if name == "vanilla" else 0.2), name  # a queue formed


def test_the_gpu_check_is_the_same_command_on_cuda() -> None:
    gpu = command("results/serve-gpu", smoke=False)
    assert gpu[:2] == ["calibrate", "serve"] and "--device" in gpu and gpu[gpu.index("--device") + 1] == "cuda"
    assert gpu[gpu.index("--model") + 1] == "sdxl"
    # Its budget (under 8 minutes, sim/app/serve_check.py): few requests, a short measurement per system.
    assert "trace.requests=20" in gpu and gpu[gpu.index("--rounds") + 1] == "3"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("systems=[ceiling]", "systems"),
        ("cache.isolation=per-user", "cache.isolation"),
        ("predictor.kind=oracle", "predictor.kind"),
        ("cache.trajectory=copy", "cache.trajectory"),
        ("cache.admission=sample:0.5", "cache.admission"),
    ],
)
def test_what_the_server_cannot_run_is_refused_before_any_work(override: str, field: str, tmp_path: Path, capsys) -> None:
    src = tmp_path / "e.yaml"
    src.write_text(json.dumps(SMALL))
    out = tmp_path / "out"
    code, _, err = cli(["calibrate", "serve", src, "--set", override, "--out", out], capsys)
    assert_one_clean_line(code, err, field)
    assert not out.exists()


def test_the_store_is_never_one_acsim_did_not_make(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="did not write"):
        claim_store(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    ours = tmp_path / "store"
    claim_store(ours)
    (ours / "latents").mkdir()
    (ours / "latents" / "1.pt").write_bytes(b"x")
    claim_store(ours)  # acsim's own store: emptied for the next run
    assert sorted(p.name for p in ours.iterdir()) == [STORE_MARKER]


def test_the_engine_charges_the_measured_pipeline_overheads() -> None:
    """A fresh job pays the call's fixed cost; a resumed one (fewer than N steps) pays the resume's too."""
    gpu = load_profile("sdxl-a10g").gpu_model("model")
    base = job_work(gpu, gpu.steps, True)
    with_overheads = type(gpu)(**{**gpu.__dict__, "pipeline_overhead_s": 0.25, "resume_overhead_s": 0.125})
    assert math.isclose(job_work(with_overheads, gpu.steps, True), base + 0.25)
    resumed = job_work(gpu, gpu.steps - 10, True)
    assert math.isclose(job_work(with_overheads, gpu.steps - 10, True), resumed + 0.375)
    # By hand: text encoder + steps x (step + save overhead) + VAE, plus the overheads.
    by_hand = 0.25 + 0.125 + gpu.text_encoder_s + 40 * (gpu.denoise_step_s[1] + gpu.save_overhead_step_s) + gpu.vae_decode_s
    assert math.isclose(job_work(with_overheads, 40, True), by_hand)
    assert np.isfinite(by_hand)
