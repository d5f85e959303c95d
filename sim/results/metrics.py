"""Per-request records -> one summary row per system, and per-minute time series.

Works on records of both replay paths. Cache-only records have NaN time columns: their
latency, queue and SLO fields are NaN, their GPU time is computed from the steps run and the
latents saved (``gpu_s`` is filled by the full engine only; at batch size 1 the two agree) and
their duration is the arrival span.

A system's steps are those of the model it generates with (``stats["serves_with"]``, a block of
the profile); ``compute_saved`` counts them in steps of the main model, weighted by the two
models' step times, so a small model's cheap steps are not counted as full ones. With a step
cache (``step_cache:``) a run of n steps counts its full-step equivalents (:mod:`sim.base.step_cache`),
against N full steps per request without one. Quality comes
in three metrics (CLIP score, PickScore, FID; see :mod:`sim.reuse.quality`).

``offered_load`` is the GPU work the requests bring per GPU-second of the arrival span (busy
time / (GPUs x arrival span)); above 1 the cluster cannot keep up and queues grow.
``gpu_utilization`` is the share of the run's GPU-time actually busy (busy time / (GPUs x
first arrival to last finish)), at most 1: only the full engine knows when work finished, so
it is NaN in cache-only mode, where there is no queue to stretch the run. An autoscaled
cluster (``cluster.autoscale``) counts the GPU-seconds it held instead of GPUs x duration, in
utilisation, offered load and the provisioned bill; ``gpus_mean`` and ``gpus_peak`` say how many
it held (a static cluster: its size).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.base.config import warmup_spec
from sim.base.errors import ConfigError
from sim.base.records import REUSE_OUTCOMES
from sim.results.cost import Cost, GpuGroup, held_gpu_seconds, run_cost
from sim.reuse.quality import QualityModel

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import GpuModel, Profile
    from sim.reuse.selector import Selector

_NAN = float("nan")


def _mean_cached_bytes(stats: dict[str, Any], since_s: float = -math.inf) -> float:
    """Bytes the cache held on average (from ``since_s`` on): the system's occupancy samples, else
    its final size."""
    occ = stats.get("occupancy")
    if isinstance(occ, pd.DataFrame) and len(occ) and "bytes" in occ:
        later = occ[occ["time_s"] >= since_s] if "time_s" in occ else occ
        return float((later if len(later) else occ)["bytes"].mean())
    return float(stats.get("bytes") or 0)


def estimated_gpu_s(records: pd.DataFrame, gpu: GpuModel | Profile) -> np.ndarray:
    """GPU-seconds of each request from its steps of ``gpu``'s model, one image per batch (for
    records without ``gpu_s``; a Profile means its main model).

    A generation that saves intermediate latents (``saved_latents`` > 0) pays the save overhead
    on every step, as in the engine; storing a final image costs no GPU time.
    """
    steps = records["steps"].to_numpy(dtype=float)
    saving = np.where(records["saved_latents"].to_numpy() > 0, gpu.save_overhead_step_s, 0.0)
    denoise = np.asarray(gpu.denoise_work(steps), dtype=float) * gpu.step_s(1) + steps * saving
    area = records["area"].to_numpy(dtype=float) if "area" in records else 1.0
    work = gpu.text_encoder_s + area * (denoise + gpu.vae_decode_s)
    return np.where(steps > 0, work, 0.0)


def _compute_saved(r: pd.DataFrame, gpu: GpuModel, step_weight: float, n_steps: int) -> float:
    """The share of vanilla's denoising work (N full steps per request, or each request's own
    schedule at its own latent area) that the system did not run."""
    if not len(r):
        return _NAN
    work = np.asarray(gpu.denoise_work(r["steps"].to_numpy()), dtype=float)
    if "main_steps" in r:  # a two-model system's records: its denoising already in main-model steps
        work, step_weight = r["main_steps"].to_numpy(dtype=float), 1.0
    if "full_steps" in r:
        area = r["area"].to_numpy(dtype=float)
        return 1.0 - step_weight * float(np.sum(work * area)) / float(np.sum(r["full_steps"].to_numpy() * area))
    return 1.0 - step_weight * float(np.sum(work)) / (len(r) * n_steps)


def quality_traded(records: pd.DataFrame, selector: Selector | None, quality: QualityModel | None) -> float:
    """Mean CLIP score per request given up to load-aware boosts (0 when nothing was boosted).

    For each boosted request: the quality at the K the plain ``selector`` gives its similarity
    (scored by ``quality``, the system's own) minus the quality it was served at; summed and
    divided by all requests, so that ``quality_clip + quality_traded`` is the quality the run
    would have had without boosts (for the same matches).
    """
    if "boost" not in records or not (records["boost"] > 0).any():
        return 0.0
    if selector is None or quality is None:
        raise ValueError("boosted requests, but the system reports no selector to read their plain K from")
    b = records[records["boost"] > 0]
    plain_q = [
        quality.hit(selector.k_for(float(s)), float(s)) if s == s else quality.vanilla
        for s in b["similarity"].to_numpy(dtype=float)
    ]
    return float(np.sum(np.asarray(plain_q) - b["quality"].to_numpy(dtype=float)) / len(records))


def steady_state(records: pd.DataFrame, exp: Experiment) -> np.ndarray:
    """Which requests count in the summary: all but the warm-up (``metrics.warmup``).

    The warm-up is the first N requests, or those that arrived within a duration of the first
    arrival. Raises ConfigError when it would leave nothing to measure.
    """
    n = len(records)
    kind, value = warmup_spec(exp.metrics.warmup)
    if value <= 0 or not n:
        return np.ones(n, dtype=bool)
    if kind == "requests":
        measured = records["request"].to_numpy() >= int(value)
    else:
        arrival = records["arrival_s"].to_numpy(dtype=float)
        measured = arrival >= arrival.min() + value
    if not measured.any():
        raise ConfigError("metrics.warmup", exp.metrics.warmup, f"leaves none of the {n} requests to measure")
    return measured


def held_per_1k_images(summary: Any) -> Any:
    """What the GPUs held cost per 1,000 images, from summary rows (a row, a dict or a frame): the
    provisioned bill over the images made (``images``; summaries written before it: the requests)."""
    images = summary["images"] if "images" in summary else summary["requests"]
    return 1000.0 * summary["cost_provisioned_usd"] / images


def summarize(
    records_df: pd.DataFrame, *, profile: Profile, exp: Experiment, system_stats: dict[str, Any]
) -> dict[str, Any]:
    """One summary row (see ARCHITECTURE.md) for the records of one system.

    Every figure is over the steady state (:func:`steady_state`; ``warmup_excluded`` and
    ``measured_from_s`` say what the warm-up left out). A cluster of several GPU types is billed
    per replica at each one's price (the engine's ``replicas`` totals and the records' ``replica``)."""
    engine = dict(records_df.attrs.get("engine", {}))
    measured = steady_state(records_df, exp)
    excluded = int((~measured).sum())
    r = records_df[measured] if excluded else records_df
    n = len(r)
    name = str(r["system"].iloc[0]) if n else "?"
    stats = dict(system_stats or {})
    outcome = r["outcome"].astype(str).to_numpy()
    latency = r["latency_s"].to_numpy(dtype=float)
    full = n > 0 and not np.isnan(latency).all()
    arrival = r["arrival_s"].to_numpy(dtype=float)
    kind = stats["lookup_kind"]
    caches = bool(stats["caches"])
    gpu = profile.gpu_model(stats.get("serves_with", "model"))
    gpu_s, span, duration = _work_and_time(r, gpu, full)
    gpu_busy = float(gpu_s.sum())
    gpus = int(engine.get("gpus", exp.cluster.gpus))
    t_from = float(arrival.min()) if n else 0.0
    held_s, mean_gpus, peak = _held(engine, t_from, duration, gpus)
    cost = _bill(r, stats, engine, exp, profile, gpu_s, duration, t_from if excluded else -math.inf, held_s)
    step_weight = gpu.step_s(1) / profile.step_s(1)  # a step of the system's model, in main-model steps
    pct = np.percentile(latency, [50, 95, 99]) if full else [_NAN] * 3
    pool_models = tuple(profile.gpu_model(b) for b in stats.get("pool_models", ()))
    quality = QualityModel(profile).summary(
        r, model=gpu, retrieval_source=stats.get("retrieval_source", "cache"), pool_models=pool_models
    )
    hits = int(np.isin(outcome, REUSE_OUTCOMES).sum())
    images = int(r["images"].sum()) if "images" in r else n
    row: dict[str, Any] = {
        "system": name,
        # What the system decided with, as it reports it (not re-read from the config).
        "policy": stats["policy"] if caches else None,
        "cache_capacity": stats["cache_capacity"] if caches and stats.get("cache_capacity") is not None else _NAN,
        "requests": n,
        "hit_rate": hits / n if n else _NAN,
        "compute_saved": _compute_saved(r, gpu, step_weight, profile.steps),
        "mean_latency_s": float(latency.mean()) if full else _NAN,
        "p50_latency_s": float(pct[0]),
        "p95_latency_s": float(pct[1]),
        "p99_latency_s": float(pct[2]),
        "mean_queue_s": float(r["queue_s"].mean()) if full else _NAN,
        "throughput_rps": n / duration if duration > 0 else _NAN,
        "gpu_busy_s": gpu_busy,
        "gpu_utilization": gpu_busy / held_s if full and held_s > 0 else _NAN,
        "offered_load": gpu_busy / (mean_gpus * span) if span > 0 and mean_gpus > 0 else _NAN,
        "slo_attainment": float((latency <= exp.selector.slo_s).mean()) if full else _NAN,
        "quality_clip": quality["quality_clip"],
        "quality_pickscore": quality["quality_pickscore"],
        "quality_fid": quality["quality_fid"],
        "cost_usd": cost.total_usd,
        "cost_per_1k_images_usd": 1000.0 * cost.total_usd / images if n else _NAN,
        "holes": int((outcome == "hole").sum()),
        "evictions": stats.get("evictions", _NAN),
        "cost_provisioned_usd": cost.total_provisioned_usd,
        "gpu_hours_busy": cost.gpu_hours_busy,
        "gpu_hours_provisioned": cost.gpu_hours_provisioned,
        "storage_usd": cost.storage_usd,
        "index_usd": cost.index_usd,
        "quality_traded": quality_traded(r, stats.get("selector"), stats.get("quality_model")),
        "boosted_share": float((r["boost"] > 0).mean()) if "boost" in r and n else 0.0,
        **_predictor_columns(engine, hits, predicts=full and kind != "none"),
        **_declared_columns(stats, gpu),
        # What the warm-up left out of every figure above (metrics.warmup).
        "warmup_excluded": excluded,
        "measured_from_s": t_from,
        "replicas": len(engine.get("replicas", ())) or 1,
        "images": images,  # a request may make several (trace.request_images): per-image costs count them
        "gpus_mean": float(mean_gpus),
        "gpus_peak": peak,
        "not_admitted": engine.get("not_admitted", 0),
    }
    return row


def _bill(
    r: pd.DataFrame,
    stats: dict[str, Any],
    engine: dict[str, Any],
    exp: Experiment,
    profile: Profile,
    gpu_s: np.ndarray,
    duration: float,
    since_s: float,
    held_s: float,
) -> Cost:
    """The run's cost (:func:`sim.results.cost.run_cost`): its GPUs over ``duration``, its cache's mean
    bytes from ``since_s`` on, and the vector index when it searches one."""
    gpu = profile.gpu_model(stats.get("serves_with", "model"))
    holds = bool(stats["caches"]) or bool(stats["is_ceiling"])
    return run_cost(
        profile,
        gpu_price_per_hour_usd=gpu.gpu_price_per_hour_usd,
        gpus=int(engine.get("gpus", exp.cluster.gpus)),
        duration_s=duration,
        gpu_busy_s=float(gpu_s.sum()),
        mean_cached_bytes=_mean_cached_bytes(stats, since_s) if holds else 0.0,
        tier=exp.cache.tier,
        uses_index=stats["lookup_kind"] == "vector",
        groups=_gpu_groups(r, engine, gpu_s),
        held_gpu_s=held_s if "gpus_log" in engine else None,
    )


def _held(engine: dict[str, Any], t_from: float, duration: float, gpus: int) -> tuple[float, float, int]:
    """GPU-seconds held over the measured ``duration`` from ``t_from``, the mean and the most GPUs
    held then: from the autoscaler's log, or the cluster's fixed size."""
    log = engine.get("gpus_log")
    if log is None:
        return gpus * duration, gpus, gpus
    t, held = np.asarray(log["t_s"], dtype=float), np.asarray(log["held"])
    in_force = np.searchsorted(t, t_from, side="right") - 1
    window = held[max(0, in_force) : np.searchsorted(t, t_from + duration, side="right")]
    held_s = held_gpu_seconds(t, held, t_from, t_from + duration)
    return held_s, held_s / duration if duration > 0 else gpus, int(window.max())


def _work_and_time(r: pd.DataFrame, gpu: GpuModel, full: bool) -> tuple[np.ndarray, float, float]:
    """Each request's GPU-seconds (estimated from its steps when the records lack them), the span
    of the arrivals, and the run's duration (to the last finish in full mode, else the span)."""
    gpu_s = r["gpu_s"].to_numpy(dtype=float)
    if not full or np.isnan(gpu_s).any():
        gpu_s = estimated_gpu_s(r, gpu)
    arrival = r["arrival_s"].to_numpy(dtype=float)
    span = float(arrival.max() - arrival.min()) if len(r) else 0.0
    if not full:
        return gpu_s, span, span
    return gpu_s, span, float(np.nanmax(r["finish_s"].to_numpy(dtype=float))) - float(arrival.min())


def _predictor_columns(engine: dict[str, Any], hits: int, predicts: bool) -> dict[str, Any]:
    """The match predictor's columns: hits it lost, lookups it skipped, and, as a classifier of
    "this lookup would reuse something" (full mode, a system that looks up), its precision
    (reuses / lookups made) and recall (reuses / (reuses + hits lost to skipped lookups))."""
    lost = int(engine.get("lost_hits", 0))
    looked = engine.get("looked_up")
    predicts = predicts and looked is not None
    return {
        "lost_hits": lost,
        "predictor_skipped": engine.get("predictor_skipped", 0),
        "predictor_precision": hits / looked if predicts and looked else _NAN,
        "predictor_recall": hits / (hits + lost) if predicts and hits + lost else _NAN,
    }


def _declared_columns(stats: dict[str, Any], gpu: GpuModel) -> dict[str, Any]:
    """What the system and its policy declare (figures and reports read these, not names), and
    the lowest similarity it acts on, as it compared it and as published."""

    def number(key: str) -> float:
        return _NAN if stats.get(key) is None else float(stats[key])

    return {
        "lookup_kind": stats["lookup_kind"],
        "serves_with": gpu.block,
        "caches": bool(stats["caches"]),
        "is_baseline": bool(stats["is_baseline"]),
        "is_ceiling": bool(stats["is_ceiling"]),
        "bounds": stats["bounds"],
        "policy_offline": bool(stats["policy_offline"]),
        "min_similarity": number("min_similarity"),
        "min_similarity_published": number("min_similarity_published"),
    }


def _gpu_groups(records: pd.DataFrame, engine: dict[str, Any], gpu_s: np.ndarray) -> list[GpuGroup] | None:
    """Per-replica GPU bills of a run whose replicas differ in price; None: one price for all."""
    reps = engine.get("replicas") or []
    if len({rep["price_per_hour_usd"] for rep in reps}) <= 1 or "replica" not in records:
        return None
    busy = np.bincount(records["replica"].to_numpy(dtype=np.int64), weights=gpu_s, minlength=len(reps))
    return [GpuGroup(rep["gpus"], float(b), rep["price_per_hour_usd"]) for rep, b in zip(reps, busy, strict=True)]


def _integral_until(t: np.ndarray, points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each t: sum over points p <= t of w * (t - p), via sorted cumulative sums."""
    order = np.argsort(points, kind="stable")
    p, w = points[order], weights[order]
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwp = np.concatenate([[0.0], np.cumsum(w * p)])
    j = np.searchsorted(p, t, side="right")
    return cw[j] * t - cwp[j]


def _per_bin_mean(starts: np.ndarray, ends: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Time average per bin of sum_k w_k [start_k <= t < end_k]."""
    ok = ends > starts
    s, e, w = starts[ok], ends[ok], weights[ok]
    f = _integral_until(edges, s, w) - _integral_until(edges, e, w)
    return np.diff(f) / np.diff(edges)


def timeseries(
    records_df: pd.DataFrame,
    bin_s: float = 60.0,
    *,
    gpus: int | None = None,
    gpus_log: dict[str, list[Any]] | None = None,
    pools_log: dict[str, list[Any]] | None = None,
) -> pd.DataFrame:
    """Per-bin series: arrivals, completions, hit rate and mean latency of the bin's arrivals,
    time-averaged queue length, requests in the system, busy GPUs and (given ``gpus``) utilisation.
    An autoscaler's ``gpus_log`` adds ``gpus_held`` (time-averaged per bin), which utilisation
    then divides by; a pool controller's ``pools_log`` adds ``gpus_<model>`` per pool (GPUs serving
    or loading that model, time-averaged per bin).

    Queue length and busy GPUs are NaN for cache-only records (no times).
    """
    r = records_df
    arrival = r["arrival_s"].to_numpy(dtype=float)
    finish = r["finish_s"].to_numpy(dtype=float)
    full = len(r) > 0 and not np.isnan(finish).all()
    end = float(np.nanmax(finish)) if full else (float(arrival.max()) if len(r) else 0.0)
    # A run that ends a hair past a bin edge (float sums of step times) does not open a new bin.
    nbins = max(1, math.ceil(end / bin_s - 1e-9)) if end > 0 else 1
    edges = np.arange(nbins + 1, dtype=float) * bin_s
    a_bin = np.minimum((arrival // bin_s).astype(np.int64), nbins - 1)
    arrivals = np.bincount(a_bin, minlength=nbins)
    hits = np.bincount(a_bin, weights=np.isin(r["outcome"].astype(str), REUSE_OUTCOMES), minlength=nbins)
    out = pd.DataFrame({"t_s": edges[:-1], "arrivals": arrivals})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["hit_rate"] = np.where(arrivals > 0, hits / np.maximum(arrivals, 1), np.nan)
        if full:
            start = r["start_s"].to_numpy(dtype=float)
            ready = start - r["queue_s"].to_numpy(dtype=float)
            f_bin = np.minimum((finish // bin_s).astype(np.int64), nbins - 1)
            out["completions"] = np.bincount(f_bin, minlength=nbins)
            lat = np.bincount(a_bin, weights=r["latency_s"].to_numpy(dtype=float), minlength=nbins)
            out["mean_latency_s"] = np.where(arrivals > 0, lat / np.maximum(arrivals, 1), np.nan)
            ones = np.ones(len(r))
            out["queue_len"] = _per_bin_mean(ready, start, ones, edges)
            out["in_system"] = _per_bin_mean(arrival, finish, ones, edges)
            gpu = r["gpu_s"].to_numpy(dtype=float)
            span = finish - start
            rate = np.divide(gpu, span, out=np.zeros_like(gpu), where=span > 0)
            out["busy_gpus"] = _per_bin_mean(start, finish, rate, edges)
        else:
            for col in ("completions", "mean_latency_s", "queue_len", "in_system", "busy_gpus"):
                out[col] = np.nan
    if pools_log is not None:
        t = np.asarray(pools_log["t_s"], dtype=float)
        ends = np.append(t[1:], max(edges[-1], t[-1]))
        for model in (k for k in pools_log if k != "t_s"):
            out[f"gpus_{model}"] = _per_bin_mean(t, ends, np.asarray(pools_log[model], dtype=float), edges)
    if gpus_log is not None:
        t = np.asarray(gpus_log["t_s"], dtype=float)
        ends = np.append(t[1:], max(edges[-1], t[-1]))
        out["gpus_held"] = _per_bin_mean(t, ends, np.asarray(gpus_log["held"], dtype=float), edges)
        out["utilization"] = out["busy_gpus"] / out["gpus_held"]
        return out
    out["utilization"] = out["busy_gpus"] / gpus if gpus else np.nan
    return out
