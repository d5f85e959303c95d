"""``acsim calibrate serve``: serve a trace for real, simulate the same trace, and report how far apart they are.

Three phases, in one command on one device:

1. **measure** the serving profile (:func:`calibrate.validation.serving_profile`): ``calibrate
   latency`` on the pipeline, whole pipeline calls as the server makes them, the embedder, an index
   search and a latent read; measured again before each system is served (``OUT/profiles/``), so
   that the machine's speed drifting over a long run does not pass from one system to the next;
2. **serve** the experiment's trace with each system for real (:mod:`calibrate.serve`), at the
   trace's ``time_scale`` (or the one ``--utilization`` asks for, computed from the profile);
3. **simulate** the same trace with the same systems on that profile (``mode: full``, one GPU per
   worker, the store's tier measured) and compare request by request
   (:func:`calibrate.validation.compare`).

``OUT`` is a result directory of its own kind (``serve``): ``validation.csv`` (one row per request
and system, real and simulated columns), ``summary.json`` (agreement and relative errors per
system), ``config.yaml`` (the resolved experiment the simulator ran), ``profiles/`` (each system's), ``real/``
(each system's real records) and ``plots/validation.png``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.app import outputs
from sim.app.preflight import preflight
from sim.app.run import prepare_inputs, run_system
from sim.base import config
from sim.base.errors import ConfigError, InputError
from sim.base.io import atomic_write_csv, atomic_write_text
from sim.base.profile import parse_profile
from sim.cache.admission import build_admission
from sim.engine.predictor import PREDICTORS, NoPredictor
from sim.engine.workers import job_work
from sim.systems import SYSTEMS, build_system

if TYPE_CHECKING:
    import argparse

    from calibrate.serve import ModelSpec

STORE_MARKER = ".acsim-store"


def check_servable(exp: config.Experiment, workers: int) -> None:
    """Refuse, naming the field, what the real server does not implement."""
    for name in exp.systems:
        if not SYSTEMS[name].real_lookup:
            servable = sorted(n for n, c in SYSTEMS.items() if c.real_lookup)
            raise ConfigError("systems", name, "a system the real server can run: " + ", ".join(servable))
    rules = (
        ("cache.isolation", exp.cache.isolation, exp.cache.isolation == "shared", "shared (one partition)"),
        ("cache.admission", exp.cache.admission, build_admission(exp.cache.admission, 1, exp.seed).admits_all, "all"),
        ("predictor.kind", exp.predictor.kind, PREDICTORS[exp.predictor.kind] is NoPredictor, "none (every lookup runs)"),
        ("selector.load_aware", exp.selector.load_aware, not exp.selector.load_aware, "false"),
        ("cluster.batch.max_batch", exp.cluster.batch.max_batch, exp.cluster.batch.max_batch == 1, "1 (one request per call)"),
    )
    for field, value, ok, allowed in rules:
        if not ok:
            raise ConfigError(field, value, f"acsim calibrate serve supports {allowed}")
    if exp.cache.trajectory == "copy":
        raise ConfigError("cache.trajectory", "copy", "acsim calibrate serve supports reference and computed")
    if exp.cluster.replicas is not None:
        raise ConfigError("cluster.replicas", len(exp.cluster.replicas), "one pool: leave cluster.replicas out")
    if workers < 1:
        raise ConfigError("--workers", workers, "at least 1")


def claim_store(store: Path) -> None:
    """``store`` must be missing, empty or a store acsim made (then emptied): never anything else."""
    if store.exists():
        if not store.is_dir():
            raise InputError(store, "--store must be a directory")
        entries = [p for p in store.iterdir() if p.name != STORE_MARKER]
        if entries and not (store / STORE_MARKER).exists():
            raise InputError(store, "--store holds files acsim did not write; give an empty or new directory")
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    store.mkdir(parents=True, exist_ok=True)
    (store / STORE_MARKER).write_text("latents and images of `acsim calibrate serve`\n", encoding="utf-8")


def time_scale_for(exp: config.Experiment, profile: Any, arrival_s: np.ndarray, utilization: float, workers: int) -> float:
    """The trace.time_scale at which fresh generations alone would keep the workers ``utilization`` busy."""
    span = float(arrival_s[-1] - arrival_s[0]) if len(arrival_s) > 1 else 0.0
    if span <= 0:
        raise ConfigError("--utilization", utilization, "needs a trace whose arrivals span some time")
    work = job_work(profile.gpu_model("model"), profile.steps, True)
    # arrival_s is at the file's time scale already: scale it further by the ratio.
    return exp.trace.time_scale * utilization * workers * span / (len(arrival_s) * work)


def _spec(args: argparse.Namespace, steps: int) -> ModelSpec:
    from calibrate.serve import ModelSpec

    dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    return ModelSpec(args.model, args.device, dtype, args.seed, steps, args.resolution, args.guidance, args.threads or 1)


def measure_profile(
    base: dict[str, Any], exp: config.Experiment, args: argparse.Namespace, pool: Any, prompts: list[str], scratch: Path, say: Any
) -> dict[str, Any]:
    """Phase 1: the serving profile, as a profile mapping (see the module docstring); the embedder is
    timed on ``prompts`` (the trace's: its cost grows with a prompt's length)."""
    import torch

    from calibrate import latency, validation, writer
    from calibrate.pipelines import load_model
    from traces.embeddings import get_embedder

    spec = pool.spec
    say(f"measuring {args.model} on {args.device} ({spec.dtype}), {spec.steps} steps ...")
    model = load_model(spec.model, spec.device, spec.dtype, spec.seed)
    if model.family != "sdxl":
        raise ConfigError("--model", args.model, "an SDXL-architecture pipeline (resuming at K needs denoising_start)")
    result = latency.measure(model, [1], spec.steps, spec.resolution, args.repeats, 1, spec.seed, scratch=scratch, progress=say, guidance=spec.guidance)
    env = writer.environment(model.device)
    data = latency.to_profile(base, result, model, env)
    del model
    levels = tuple(sorted(int(k) for k in data.get("k_levels") or ()))
    calls = validation.pipeline_times(pool, levels, args.rounds, scratch, prompts)
    say(
        f"whole jobs ({args.rounds} rounds): fresh {calls['plain_s'] * 1000:.1f} ms, saving every level "
        f"{calls['saving_s'] * 1000:.1f} ms, resumed at K={calls['resume_k']:.0f} {calls['resume_s'] * 1000:.1f} ms"
    )
    torch.set_num_threads(1)  # the front end's share of the CPU while the workers run
    embedder = get_embedder(exp.embedder, "cpu")
    front = validation.front_end_times(embedder, prompts, int(exp.cache.capacity), max(args.repeats, 20), exp.seed)
    parsed = parse_profile(writer.finish(data, "serve", "check", {"command": "serve"}), Path("profile.yaml"))
    data = validation.serving_profile(data, parsed, front, calls, env)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    return writer.finish(data, "serve", f"serving profile of {args.model} on {writer.hardware_name(env)}", {"command": "serve", "options": options, **env})


def _simulated(exp: config.Experiment, args: argparse.Namespace, profile: Any, arrival_s: np.ndarray, say: Any) -> config.Experiment:
    """The experiment the simulator runs (and the server serves): full mode, a GPU per worker, the
    store's tier on disk, and the time scale ``--utilization`` asks for (from ``profile``, the first
    one measured: every system meets the same arrivals). Each system's profile is set before it runs."""
    sim_exp = config.replace_path(exp, "mode", "full")
    sim_exp = config.replace_path(sim_exp, "cluster.gpus", args.workers)
    sim_exp = config.replace_path(sim_exp, "cache.tier", "disk")
    if args.utilization is not None:
        scale = time_scale_for(exp, profile, arrival_s, args.utilization, args.workers)
        sim_exp = config.replace_path(sim_exp, "trace.time_scale", scale)
        say(f"trace.time_scale {scale:.4g} (utilization {args.utilization:g} of fresh generations)")
    return sim_exp


def _profile_path(out: Path, system: str) -> Path:
    """Where the serving profile measured before ``system`` was served goes in result directory ``out``."""
    return out / "profiles" / f"{system}.yaml"


def _records_of(records: pd.DataFrame) -> pd.DataFrame:
    out = records.copy()
    out["outcome"] = out["outcome"].astype(str)
    return out


def serve_and_simulate(
    exp: config.Experiment, args: argparse.Namespace, pool: Any, out: Path, store: Path, say: Any, first_profile: Path, measure: Any
) -> tuple[dict[str, Any], config.Experiment]:
    """Phases 2 and 3 for every system, written into ``out``: each system is served right after its
    profile is measured (the first system's is ``first_profile``, measured already; the others'
    ``measure()``, a profile mapping, written to ``out/profiles/``), so that a drift of the
    machine's speed over the run touches the prediction of each system only for the minutes it is
    served. The summary per system, and the experiment the first system was simulated with."""
    from calibrate import serve, validation, writer
    from traces.embeddings import get_embedder

    embedder = get_embedder(exp.embedder, "cpu")
    rows, summary, first = [], {}, None
    (out / "real").mkdir(exist_ok=True)
    for n, name in enumerate(exp.systems):
        profile_path = first_profile if n == 0 else _profile_path(out, name)
        if n:
            writer.write_profile(profile_path, measure())
        sys_exp = preflight(config.replace_path(exp, "profile", str(profile_path)))
        first = first or sys_exp
        inputs = prepare_inputs(sys_exp, progress=not args.quiet)
        trace = inputs.trace
        say(f"serving {len(trace)} requests with {name} for real ({args.workers} worker(s)) ...")
        system = build_system(name, sys_exp, trace, inputs.neighbours, inputs.profile)
        server = serve.Server(system, list(trace.prompts), trace.prompt_ids, embedder, pool, store / name, exp.seed)
        real = server.run(trace.arrival_s)
        atomic_write_csv(out / "real" / f"{name}.csv", real)
        sim_records, _, _ = run_system(name, sys_exp, inputs)
        v, s = validation.compare(real, _records_of(sim_records), inputs.profile.embed_s, args.workers)
        v.insert(0, "system", name)
        rows.append(v)
        summary[name] = s
        say(_line(name, s))
    atomic_write_csv(out / "validation.csv", pd.concat(rows, ignore_index=True))
    assert first is not None  # preflight refuses an experiment without systems
    return summary, first


def _line(name: str, s: dict[str, Any]) -> str:
    spread = s["service_ratio_spread"]
    windows = f" (real/simulated, 20 jobs at a time, spans {spread:.2f})" if math.isfinite(spread) else ""
    return (
        f"{name:10s} decisions agree {100 * s['k_agreement']:5.1f}% (K) {100 * s['outcome_agreement']:5.1f}% (outcome); "
        f"latency error mean {100 * s['mean_latency_error']:+.1f}%, p95 {100 * s['p95_latency_error']:+.1f}%; "
        f"throughput {100 * s['throughput_error']:+.1f}%; GPU busy {100 * s['gpu_busy_error']:+.1f}%\n"
        f"{'':10s} the queue given the real service times: mean {100 * s['replayed_mean_latency_error']:+.1f}%, "
        f"p95 {100 * s['replayed_p95_latency_error']:+.1f}%; simulated service time {100 * s['mean_gpu_s_error']:+.1f}%{windows}"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an experiment's trace for real with a diffusers pipeline, simulate it, and compare."""
    from calibrate import writer

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    exp = preflight(config.load(args.file, args.overrides))
    check_servable(exp, args.workers)
    out = Path(args.out)
    outputs.check_target(out, "serve", "--out")  # before minutes of measuring
    from calibrate import latency
    from calibrate.serve import WorkerPool
    from traces.load import load_trace

    base = writer.load_base(exp.profile)
    base_steps = int(base["model"]["steps"])
    latency.check_steps(base, args.steps or base_steps)
    spec = _spec(args, args.steps or base_steps)
    trace = load_trace(exp.trace, exp.seed)
    with outputs.staging_dir(out, "serve", "--out") as tmp:
        say(f"starting {args.workers} worker(s) with {args.model} on {args.device} ...")
        with WorkerPool(spec, args.workers) as pool:
            scratch = Path(tempfile.mkdtemp(prefix=".serve-scratch-", dir=tmp))
            sample = [trace.prompts[p] for p in trace.prompt_ids[:50].tolist()]

            def measure() -> dict[str, Any]:
                return measure_profile(base, exp, args, pool, sample, scratch, say)

            first_profile = _profile_path(tmp, exp.systems[0])
            profile = writer.write_profile(first_profile, measure())
            sim_exp = _simulated(exp, args, profile, trace.arrival_s, say)
            store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="acsim-store-"))
            claim_store(store)
            try:
                summary, ran = serve_and_simulate(sim_exp, args, pool, tmp, store, say, first_profile, measure)
            finally:
                if not args.store:
                    shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(scratch, ignore_errors=True)
        # The resolved experiment, on the first system's profile (profiles/: each system's own), by
        # its final absolute path: a profile path is read from where acsim runs, not from the config.
        final = _profile_path(out.resolve(), exp.systems[0])
        atomic_write_text(tmp / "config.yaml", config.dump(config.replace_path(ran, "profile", str(final))))
        atomic_write_text(tmp / "summary.json", json.dumps(_plain(summary), indent=2) + "\n")
        if not args.no_plots:
            from plots.validation import validation_figure

            validation_figure(pd.read_csv(tmp / "validation.csv"), tmp / "plots")
    for name, s in summary.items():
        print(_line(name, s))
    print(f"results: {out}")
    return 0


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``acsim calibrate serve``."""
    from sim.app.config_args import add_config_args

    add_config_args(p, "experiment YAML file: its trace, embedder, cache, selector and systems")
    p.add_argument("--model", default="tiny-sdxl", help="an SDXL-architecture preset (tiny-sdxl, sdxl) or a local diffusers directory (default: tiny-sdxl)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), help="default: fp16 on cuda, fp32 on cpu")
    p.add_argument("--resolution", type=int, help="image side in pixels (default: the model's native one)")
    p.add_argument("--steps", type=int, help="denoising steps N (default: the experiment profile's)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the pipeline's)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and noise (default: 0)")
    p.add_argument("--threads", type=int, help="torch threads per worker on CPU (default: 1)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with its own pipeline (default: 1)")
    p.add_argument("--utilization", type=float, help="set trace.time_scale so that fresh generations would keep the workers this busy (e.g. 0.8)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of each calibrate-latency measurement (default: 5)")
    p.add_argument("--rounds", type=int, default=20, help="rounds of the four whole jobs timed on the workers (default: 20)")
    p.add_argument("--store", help="directory of the latent store (default: a temporary one, removed at the end)")
    p.add_argument("--out", required=True, help="result directory (validation.csv, summary.json, profiles/, real/, plots/)")
    p.add_argument("--no-plots", action="store_true", help="skip plots/validation.png")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress messages")
    p.epilog = "On CPU the default tiny-sdxl pipeline serves in milliseconds per step; on a GPU give --model sdxl --device cuda (random weights time like real ones)."
    p.set_defaults(func=cmd_serve)
