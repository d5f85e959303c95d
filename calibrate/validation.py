"""The simulator held against a real run: the serving profile measured beforehand, and the comparison.

``acsim calibrate serve`` measures, before it serves anything, every number the simulator's engine
charges (:func:`serving_profile`): the step time, text encoders, VAE decode and latent save/load as
``acsim calibrate latency`` times them; the whole pipeline call as the server makes it (a fresh
generation that saves its levels, and one resumed from a cached latent), whose remainder over
those parts becomes ``latency.pipeline_overhead_s`` and ``latency.resume_overhead_s``; the
embedder on one prompt; an index search with its similarities; a latent read back from the store.
Nothing measured during the served run itself goes into the profile, so the prediction is a
prediction.

:func:`compare` joins the real records (:mod:`calibrate.serve`) with the simulated ones request by
request and reports the agreement of decisions and the relative error of latency, throughput and
GPU busy time.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from calibrate.writer import MEASURED, hardware_name
from sim.neighbours.similarity import similarities_to

if TYPE_CHECKING:
    from collections.abc import Callable

    from calibrate.serve import WorkerPool
    from sim.base.profile import Profile

DISK_TIER = "disk"


def _median_s(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, int]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), len(samples)


def front_end_times(embedder: Any, prompts: list[str], n_cached: int, repeats: int, seed: int) -> dict[str, float]:
    """Median seconds of the server's front end: one prompt embedded (each of ``prompts`` in turn), and a search of an index of
    ``n_cached`` prompts with the similarities of every candidate (:class:`calibrate.serve.CachedIndex`)."""
    from calibrate.serve import CachedIndex

    it = iter(range(10**9))
    embed_s, _ = _median_s(lambda: embedder.encode([prompts[next(it) % len(prompts)]]), max(repeats, len(prompts)))
    rng = np.random.default_rng(seed)
    n = max(n_cached, 1)
    emb = rng.normal(size=(n + 1, embedder.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = CachedIndex(embedder.dim, n + 1, seed)
    index.sync(set(range(n)), emb)

    def look() -> None:
        slots = index.search(emb[n])
        similarities_to(emb, np.asarray(slots, dtype=np.int64), n)

    lookup_s, _ = _median_s(look, max(repeats, 5))
    return {"embed_s": embed_s, "index_lookup_s": lookup_s}


def pipeline_times(
    pool: WorkerPool, levels: tuple[int, ...], rounds: int, scratch: Path, prompts: list[str]
) -> dict[str, float]:
    """Mean seconds of whole jobs as the pool's workers run them, in ``rounds`` interleaved rounds (a
    drift of the machine's speed touches them alike): a fresh generation saving nothing, the same
    saving every level, the same writing its image (as for an image cache), and a resume from the
    middle level saving the levels above it; and
    the median of the front end's read of a stored latent. Each round takes the next of ``prompts``
    (the trace's: tokenizing a long prompt costs more than a short one). Means, not medians: a
    queue's wait grows with the mean service time."""
    import torch

    from calibrate.serve import Job

    k = levels[len(levels) // 2] if levels else 0
    out = str(scratch / "timed-jobs")
    pool.time_job(Job(-1, prompts[0], 0, None, levels, False, out), 1)  # the latent the resumes start from
    latent = torch.load(Path(out) / f"{k}.pt", map_location="cpu").float().numpy() if k else None
    samples: dict[str, list[float]] = {"plain_s": [], "saving_s": [], "image_s": [], "resume_s": []}
    for r in range(rounds):
        prompt = prompts[r % len(prompts)]
        samples["plain_s"] += pool.time_job(Job(-1, prompt, 0, None, (), False, out), 1)
        samples["saving_s"] += pool.time_job(Job(-1, prompt, 0, None, levels, False, out), 1)
        samples["image_s"] += pool.time_job(Job(-1, prompt, 0, None, (), True, out), 1)
        if k:
            above = tuple(x for x in levels if x > k)
            samples["resume_s"] += pool.time_job(Job(-2, prompt, k, latent, above, False, out), 1)
    times = {name: statistics.fmean(v) if v else math.nan for name, v in samples.items()}
    times["resume_k"] = float(k)
    times["rounds"] = float(rounds)
    times["latent_read_s"] = math.nan
    if k:
        path = Path(out) / f"{k}.pt"
        times["latent_read_s"], _ = _median_s(lambda: torch.load(path, map_location="cpu").float().numpy(), 10)
    return times


def serving_profile(
    data: dict[str, Any], profile: Profile, front: dict[str, float], calls: dict[str, float], env: dict[str, Any]
) -> dict[str, Any]:
    """``data`` (a profile as ``calibrate latency`` wrote it, parsed as ``profile``) with the front end,
    the store on disk, the latent saves and the pipeline's fixed costs measured from whole jobs
    (:func:`pipeline_times`)."""
    out = copy.deepcopy(data)
    lat = out["latency"]
    gpu = profile.gpu_model("model")
    n, levels = gpu.steps, profile.k_levels
    k = int(calls["resume_k"])
    # Saving every level costs what the two fresh jobs differ by; the engine spreads it over the steps.
    save_step = max(0.0, calls["saving_s"] - calls["plain_s"]) / n if levels else 0.0
    parts = gpu.text_encoder_s + n * gpu.step_s(1) + gpu.vae_decode_s
    overhead = max(0.0, calls["plain_s"] - parts)
    resume = 0.0
    if k and math.isfinite(calls["resume_s"]):
        resumed_parts = gpu.text_encoder_s + (n - k) * (gpu.step_s(1) + save_step) + gpu.vae_decode_s
        resume = max(0.0, calls["resume_s"] - resumed_parts - overhead)
    hw = hardware_name(env)
    run = f"acsim calibrate serve {env['date']} on {hw}"
    jobs = f"mean of {calls['rounds']:.0f} interleaved whole jobs on the serving workers"
    lat.update(
        save_overhead_step_s=save_step,
        embed_s=front["embed_s"],
        index_lookup_base_s=front["index_lookup_s"],
        index_lookup_per_decade_s=0.0,
        pipeline_overhead_s=overhead,
        resume_overhead_s=resume,
        image_save_s=max(0.0, calls["image_s"] - calls["plain_s"]),
    )
    fields = lat.setdefault("fields", {})
    fields.update(
        save_overhead_step_s={
            "kind": MEASURED,
            "source": f"{run}: (fresh job saving all {len(levels)} levels {calls['saving_s']:.4f} s - saving none "
            f"{calls['plain_s']:.4f} s) / {n} steps ({jobs})",
        },
        embed_s={"kind": MEASURED, "source": f"{run}: median of the trace's prompts embedded one at a time"},
        index_lookup_base_s={"kind": MEASURED, "source": f"{run}: hnswlib search of every cached prompt plus their similarities"},
        index_lookup_per_decade_s={"kind": MEASURED, "source": f"{run}: measured at one index size only (0)"},
        pipeline_overhead_s={
            "kind": MEASURED,
            "source": f"{run}: fresh job saving nothing ({calls['plain_s']:.4f} s) minus text encoder, {n} steps and "
            f"VAE decode as measured ({parts:.4f} s); {jobs}",
        },
        image_save_s={
            "kind": MEASURED,
            "source": f"{run}: fresh job writing its PNG ({calls['image_s']:.4f} s) minus one writing nothing; {jobs}",
        },
        resume_overhead_s={
            "kind": MEASURED,
            "source": f"{run}: job resumed at K={k} ({calls['resume_s']:.4f} s) minus its parts and the pipeline "
            f"overhead; {jobs}",
        },
    )
    read = calls["latent_read_s"] if math.isfinite(calls["latent_read_s"]) else float(lat.get("latent_load_s") or 0.0)
    storage = out.setdefault("storage", {})
    storage["default_tier"] = DISK_TIER
    storage.setdefault("tiers", {})[DISK_TIER] = {
        "latency_s": read,
        "bandwidth_Bps": 1.0e12,
        "capacity_bytes": None,
        "price_per_gb_month_usd": 0.0,
        "kind": MEASURED,
        "source": f"{run}: median torch.load of a stored latent from the server's store (page cache warm, as when served)",
    }
    return out


def _rel(sim: float, real: float) -> float:
    return (sim - real) / real if real else math.nan


def compare(real: pd.DataFrame, sim: pd.DataFrame, embed_s: float, workers: int = 1) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(one row per request with real_* and sim_* columns, the summary) of one system served by
    ``workers`` workers.

    ``embed_s``: the simulator's embedding time (its lookup happens that long after the arrival);
    ``completed_before`` counts, for both, the completions a request's lookup saw, so a decision that
    differs because a completion and an arrival came in the other order can be told apart.
    """
    cols = ("outcome", "matched", "k_used", "steps", "latency_s", "queue_s", "gpu_s", "start_s", "finish_s")
    out = pd.DataFrame({"request": real["request"], "prompt_id": real["prompt_id"], "arrival_s": real["arrival_s"]})
    sim = sim.sort_values("request").reset_index(drop=True)
    for c in cols:
        out[f"real_{c}"] = real[c].to_numpy()
        out[f"sim_{c}"] = sim[c].to_numpy()
    out["real_lookup_s"] = (real["embed_s"] + real["lookup_s"]).to_numpy()
    out["sim_lookup_s"] = sim["lookup_s"].to_numpy()
    out["real_fetch_s"] = real["fetch_s"].to_numpy()
    out["real_ready_s"] = real["ready_s"].to_numpy()
    out["sim_fetch_s"] = sim["fetch_s"].to_numpy()
    finish = np.sort(sim["finish_s"].to_numpy())
    looked = sim["arrival_s"].to_numpy() + embed_s
    out["real_completed_before"] = real["completed_before"].to_numpy()
    out["sim_completed_before"] = np.searchsorted(finish, looked, side="right")
    out["k_agrees"] = out["real_k_used"] == out["sim_k_used"]
    out["outcome_agrees"] = out["real_outcome"] == out["sim_outcome"]
    out["order_differs"] = out["real_completed_before"] != out["sim_completed_before"]
    out["replayed_latency_s"] = queue_replay(out, workers)
    summary = agreement(out)
    return out, summary


def queue_replay(v: pd.DataFrame, workers: int) -> np.ndarray:
    """Each request's latency had the engine's queue (FCFS, ``workers`` identical workers, a job
    starting when it is ready and a worker is free) been given the real run's front-end and
    service times. Held against the real latencies it measures the queue model alone: what is left
    of the error once the service times are known (an independent recursion, not the engine)."""
    ready = v["real_ready_s"].to_numpy()
    service = v["real_gpu_s"].to_numpy()
    gpu = v["real_steps"].to_numpy() > 0
    free = np.zeros(max(workers, 1))
    finish = ready.copy()
    for i in np.argsort(ready, kind="stable"):
        if gpu[i]:
            w = int(np.argmin(free))
            finish[i] = free[w] = max(free[w], ready[i]) + service[i]
    return finish - v["arrival_s"].to_numpy()


def service_windows(v: pd.DataFrame, size: int = 20) -> list[float]:
    """Mean real over simulated service time of the GPU jobs, ``size`` at a time in the order they
    started: how the machine's speed moved during the run against the speed the profile measured."""
    jobs = v.loc[(v["real_steps"] > 0) & (v["sim_steps"] > 0)].sort_values("real_start_s")
    ratio = (jobs["real_gpu_s"] / jobs["sim_gpu_s"]).to_numpy()
    return [float(ratio[a : a + size].mean()) for a in range(0, len(ratio), size) if len(ratio[a : a + size]) >= size // 2]


def _span(df: pd.DataFrame, who: str) -> float:
    return float(df[f"{who}_finish_s"].max() - df["arrival_s"].min())


def agreement(v: pd.DataFrame) -> dict[str, Any]:
    """Agreement and relative errors (simulated minus real, over real) of one system's rows."""
    n = len(v)
    real_lat, sim_lat = v["real_latency_s"].to_numpy(), v["sim_latency_s"].to_numpy()
    q = {p: (float(np.percentile(real_lat, p)), float(np.percentile(sim_lat, p))) for p in (50, 95, 99)}
    thr_real, thr_sim = n / _span(v, "real"), n / _span(v, "sim")
    busy_real, busy_sim = float(v["real_gpu_s"].sum()), float(v["sim_gpu_s"].sum())
    same_order = ~v["order_differs"]
    replayed = v["replayed_latency_s"].to_numpy()
    windows = service_windows(v)
    return {
        "requests": n,
        "k_agreement": float(v["k_agrees"].mean()),
        "outcome_agreement": float(v["outcome_agrees"].mean()),
        "k_agreement_same_order": float(v.loc[same_order, "k_agrees"].mean()) if same_order.any() else math.nan,
        "order_differs": int(v["order_differs"].sum()),
        "disagreements": v.loc[~v["k_agrees"] | ~v["outcome_agrees"], "request"].astype(int).tolist(),
        "mean_latency_real_s": float(real_lat.mean()),
        "mean_latency_sim_s": float(sim_lat.mean()),
        "mean_latency_error": _rel(float(sim_lat.mean()), float(real_lat.mean())),
        "p50_latency_error": _rel(q[50][1], q[50][0]),
        "p95_latency_error": _rel(q[95][1], q[95][0]),
        "p99_latency_error": _rel(q[99][1], q[99][0]),
        "p95_latency_real_s": q[95][0],
        "p95_latency_sim_s": q[95][1],
        "throughput_real_rps": thr_real,
        "throughput_sim_rps": thr_sim,
        "throughput_error": _rel(thr_sim, thr_real),
        "gpu_busy_real_s": busy_real,
        "gpu_busy_sim_s": busy_sim,
        "gpu_busy_error": _rel(busy_sim, busy_real),
        "mean_gpu_s_error": _rel(float(v.loc[v["real_steps"] > 0, "sim_gpu_s"].mean()), float(v.loc[v["real_steps"] > 0, "real_gpu_s"].mean()))
        if (v["real_steps"] > 0).any()
        else math.nan,
        "utilization_real": busy_real / (_span(v, "real") or math.nan),
        # The error split in two: the queue model given the real service times, and the machine's speed.
        "replayed_mean_latency_error": _rel(float(replayed.mean()), float(real_lat.mean())),
        "replayed_p95_latency_error": _rel(float(np.percentile(replayed, 95)), q[95][0]),
        "service_ratio_by_window": windows,
        "service_ratio_spread": (max(windows) - min(windows)) if windows else math.nan,
    }
