"""One experiment end to end: config -> trace -> embeddings -> neighbours -> systems -> records -> summary.

``prepare_inputs`` does the expensive work that every configuration of a sweep shares
(trace, embeddings, neighbour lists); its pieces are cached on disk so that worker
processes reuse them. ``run_experiment`` replays every system and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sim.app import outputs
from sim.app.preflight import check_replica_memory, check_size
from sim.base import config as cfg
from sim.base.cache_root import cache_root
from sim.base.errors import ConfigError, InputError
from sim.base.io import atomic_write_csv, atomic_write_parquet, atomic_write_text
from sim.base.profile import Profile, load_profile
from sim.base.request_work import RequestWork
from sim.cache.admission import build_admission
from sim.engine import simulate
from sim.engine.core import with_request_work, with_step_cache_quality
from sim.engine.predictor import PREDICTORS
from sim.engine.replay import replay
from sim.engine.replicas import cache_count
from sim.neighbours import NeighbourLists, build_neighbours
from sim.results.metrics import summarize
from sim.reuse.similarity_space import run_space
from sim.systems import SYSTEMS, System, build_system, combined_stats
from traces.embeddings import embed_prompts, get_embedder
from traces.load import kept_note, load_trace
from traces.samples import resolve
from traces.schema import Trace, read_parquet, write_parquet
from traces.sources import get_source, source_version


@dataclass
class Inputs:
    """What every configuration of one (trace, embedder) shares."""

    trace: Trace
    profile: Profile
    embeddings: np.ndarray | None
    neighbours: NeighbourLists | None


def _digest(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trace_key(exp: cfg.Experiment) -> str:
    """A key that changes whenever the trace would."""
    trace = {k: v for k, v in asdict(exp.trace).items() if k not in ("request_steps", "request_resolution")}
    key: dict[str, object] = {"trace": trace, "seed": exp.seed}
    version = source_version(exp.trace.source)
    if version is not None:  # a newer generator never reuses an older one's cached trace
        key["generator"] = version
    # The files the trace is made from: an edited file makes a new trace.
    for name, path in (("file", exp.trace.path), ("prompts", exp.trace.prompts_from), ("rate", exp.trace.arrival.rate_path)):
        if path:
            p = resolve(path)
            if p.exists():
                st = p.stat()
                key[name] = [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return _digest(key)


def min_similarity(exp: cfg.Experiment, profile: Profile) -> float | None:
    """The lowest similarity any configured system acts on (neighbour lists stop there); None: none does."""
    if exp.neighbours.min_similarity is not None:
        return exp.neighbours.min_similarity
    lows = [SYSTEMS[name].min_similarity(exp, profile) for name in exp.systems]
    lows = [low for low in lows if low is not None]
    return min(lows) if lows else None


# What prepare_inputs reads of an experiment. Configurations that agree on these fields share
# one prepared Inputs (a sweep prepares each distinct set once), so a field that prepare_inputs
# starts to read must be added here (tests/test_run.py checks the list against what it reads).
INPUT_FIELDS = (
    "seed",
    "trace",
    "embedder",
    "embedder_device",
    "profile",
    "neighbours",
    "selector",
    "systems",
    "params",
    "predictor",
)


def prepare_inputs(exp: cfg.Experiment, progress: bool = True) -> Inputs:
    """Load the profile and trace, embed the prompts and build the causal neighbour lists.

    Embeddings are computed when a system searches by similarity or the match predictor reads
    them; neighbour lists when a system searches by similarity.
    """
    profile = load_profile(exp.profile)  # the step cache is applied per run (with_step_cache)
    trace = _cached_trace(exp)
    # A file's length is known only now: refuse what cannot fit before the heavy work.
    check_size(exp, len(trace))
    embeddings = neighbours = None
    floor = min_similarity(exp, profile)
    if floor is not None or PREDICTORS[exp.predictor.kind].needs_embeddings:
        embedder = get_embedder(exp.embedder, exp.embedder_device)
        embeddings = embed_prompts(embedder, trace.prompts, cache_root() / "embeddings", progress=progress)
        if floor is not None:
            neighbours = build_neighbours(
                embeddings,
                trace.prompt_ids,
                top_m=exp.neighbours.top_m,
                min_similarity=floor,
                index=exp.neighbours.index,
                cache_dir=cache_root() / "neighbours",
                cache_key=f"{trace_key(exp)}-{_digest(embedder.name)}",
                progress=progress,
            )
    return Inputs(trace=trace, profile=profile, embeddings=embeddings, neighbours=neighbours)


def with_step_cache(exp: cfg.Experiment, inputs: Inputs) -> Inputs:
    """``inputs`` with ``exp``'s step cache in the profile's main model: a sweep shares its inputs
    between configurations that differ in ``step_cache`` only."""
    built = exp.step_cache.built(inputs.profile.architecture)
    return dataclasses.replace(inputs, profile=inputs.profile.with_step_cache(built))


def _cached_trace(exp: cfg.Experiment) -> Trace:
    """Synthetic traces are cached as parquet: big ones take a while to generate."""
    if not get_source(exp.trace.source).generated:
        return load_trace(exp.trace, exp.seed)
    path = cache_root() / "traces" / f"{trace_key(exp)}.parquet"
    if path.exists():
        try:
            return read_parquet(path)
        except InputError as exc:
            # Cache files appear only by atomic rename, so an unreadable one is damaged: make it again.
            print(f"acsim: note: regenerating the cached trace ({exc})", file=sys.stderr)
    trace = load_trace(exp.trace, exp.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(trace, path)
    return trace


def request_work_of(exp: cfg.Experiment, inputs: Inputs) -> RequestWork | None:
    """Each request's own schedule, size and image count from the trace's ``steps``, ``width``,
    ``height`` and ``images`` (``trace.request_steps`` / ``request_resolution`` / ``request_images``)
    and its model and LoRAs (``trace.request_models``), or None when all are off."""
    t = exp.trace
    if not (t.request_steps or t.request_resolution or t.request_models or t.request_images):
        return None
    df, profile = inputs.trace.df, inputs.profile

    def column(name: str, field: str | None = None) -> np.ndarray | None:
        if name not in df:
            if field is not None:
                raise ConfigError(field, True, f"the trace has no {name} column")
            return None
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    steps = column("steps", "trace.request_steps") if t.request_steps else None
    width, height = (None, None)
    resolution = None
    if t.request_resolution:
        width, height = column("width"), column("height")
        if width is None or height is None:
            raise ConfigError("trace.request_resolution", True, "the trace lacks a width or height column")
        resolution = (profile.raw.get("model") or {}).get("resolution")
        if not resolution:
            raise ConfigError("trace.request_resolution", True, f"profile {profile.name} gives no model.resolution")
    work = RequestWork.of(profile.steps, resolution, steps, width, height, n=len(inputs.trace))
    if t.request_images:
        work = work.with_images(column("images", "trace.request_images"))
    return work.with_models(*request_models(df)) if t.request_models else work


def request_models(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each request's model code (most requested model first; -1 where the trace names none) and
    LoRA count (0 where none is given), from a trace's ``model`` and ``loras`` columns."""
    if "model" not in df or not df["model"].notna().any():
        raise ConfigError("trace.request_models", True, "the trace names no request's model (its model column)")
    counts = df["model"].value_counts(sort=True)
    order = {m: code for code, m in enumerate(sorted(counts.index, key=lambda m: (-counts[m], str(m))))}
    models = df["model"].map(order).fillna(-1).to_numpy(dtype=np.int32)
    loras = pd.to_numeric(df["loras"], errors="coerce").fillna(0).to_numpy(dtype=np.int32) if "loras" in df else None
    return models, loras if loras is not None else np.zeros(len(df), dtype=np.int32)


def run_system(name: str, exp: cfg.Experiment, inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """Replay one system; returns (records, per-minute time series or None, system stats).

    A cluster with a cache per replica gets one instance of the system per replica (an autoscaled
    one, one more for each replica it adds); their stats are combined.
    """
    trace = inputs.trace
    systems: list[System] = []

    def new_system() -> System:
        systems.append(build_system(name, exp, trace, inputs.neighbours, inputs.profile))
        return systems[-1]

    for _ in range(cache_count(exp)):
        new_system()
    work = request_work_of(exp, inputs)
    if exp.mode == "cache-only":
        admit = build_admission(exp.cache.admission, len(trace), exp.seed).admitted()
        records = replay(systems[0], trace.arrival_s, trace.prompt_ids, trace.user_codes, admit=admit)
        if work is not None:
            records = with_request_work(records, work, own_schedule=systems[0].serves_with == "model")
        series = None
    else:
        records, series = simulate(
            list(systems),
            trace.arrival_s,
            trace.prompt_ids,
            trace.user_codes,
            exp,
            inputs.profile,
            seed=exp.seed,
            embeddings=inputs.embeddings,
            request_work=work,
            new_system=new_system,
        )
    step_cache = inputs.profile.gpu_model(systems[0].serves_with).step_cache
    if step_cache is not None:
        records = with_step_cache_quality(records, step_cache)
    return records, series, combined_stats([s.stats() for s in systems])


def run_experiment(
    exp: cfg.Experiment,
    out_dir: Path | str | None = None,
    inputs: Inputs | None = None,
    progress: bool = True,
    plots: bool = False,
) -> pd.DataFrame:
    """Run every system of ``exp`` and write its result directory; returns the summary.

    ``out_dir`` (default ``exp.output``) must be missing, empty or an earlier acsim run (see
    :mod:`sim.app.outputs`); it is locked while the run writes, and replaced whole at the end.
    With ``plots`` the figures are drawn before that swap, so they are part of the result.
    """
    out = Path(out_dir if out_dir is not None else exp.output)
    rows = []
    # Everything is written into a scratch directory that replaces ``out`` only when the
    # whole run succeeded, so a failure never leaves a half-written result behind.
    with outputs.staging_dir(out) as tmp:
        inputs = with_step_cache(exp, inputs or prepare_inputs(exp, progress=progress))
        trace = inputs.trace
        if len(trace):  # the full engine's clock must hold the (scaled) span of a file's trace
            cfg.check_simulated_span(exp, float(trace.arrival_s[-1]) * exp.trace.time_scale)
        check_replica_memory(exp, len(trace))  # a cache per replica grows with a file's trace
        for name in exp.systems:
            records, series, stats = run_system(name, exp, inputs)
            rows.append(summarize(records, profile=inputs.profile, exp=exp, system_stats=stats))
            atomic_write_parquet(tmp / "records" / f"{name}.parquet", records)
            if series is not None:
                atomic_write_csv(tmp / "timeseries" / f"{name}.csv", series)
        summary = pd.DataFrame(rows)
        atomic_write_text(tmp / "config.yaml", cfg.dump(exp, derived_block(exp, inputs.profile)))
        atomic_write_text(tmp / "profile.yaml", yaml.safe_dump(inputs.profile.raw, sort_keys=False))
        atomic_write_csv(tmp / "summary.csv", summary)
        if plots:
            from plots import plot_results

            plot_results(tmp)
    return summary


def describe_inputs(exp: cfg.Experiment, inputs: Inputs, stream=None) -> None:
    """A short description of the trace and embeddings a run is about to use (to stdout by default)."""
    stream = stream or sys.stdout
    t = inputs.trace
    dur_h = float(t.arrival_s[-1] - t.arrival_s[0]) / 3600 if len(t) > 1 else 0.0
    print(
        f"trace: {len(t):,} requests{kept_note(t)}, {len(t.prompts):,} unique prompts, "
        f"{dur_h:.1f} h ({exp.trace.source}); profile: {inputs.profile.name}",
        file=stream,
    )
    if inputs.neighbours is not None:
        nb = inputs.neighbours
        print(
            f"embedder: {exp.embedder}; neighbour lists: top-{nb.top_m} above "
            f"similarity {nb.min_similarity:.2f}, {len(nb.ids):,} entries",
            file=stream,
        )
        carried = carried_thresholds(exp, inputs.profile)
        if carried:
            print(f"published (CLIP-text) -> {exp.embedder} similarity: {carried}", file=stream)
    profile = with_step_cache(exp, inputs).profile
    sc, full = profile.step_cache, profile.steps
    if sc is not None:
        print(
            f"step cache: {sc.kind}; a fresh {full}-step image runs {sc.work(full):.1f} full-step equivalents "
            f"({full / sc.work(full):.2f}x) and keeps {sc.quality_factor(full):.2%} of its CLIP score",
            file=stream,
        )
    if inputs.profile.quality_extrapolated:
        note = inputs.profile.quality_extrapolated
        print(f"note: {inputs.profile.name}'s quality figures are extrapolated: {note}", file=stream)


def derived_block(exp: cfg.Experiment, profile: Profile) -> dict[str, Any]:
    """What the saved config reports beside the settings: every similarity threshold each system
    compares, as published (CLIP-text) and as the run compares it (the run embedder's cosines)."""
    space = run_space(exp)
    thresholds = {}
    for name in exp.systems:
        named = SYSTEMS[name].thresholds(exp, profile)
        if named:
            thresholds[name] = {
                what: {"published": float(space.to_clip(v)), "run": float(v)} for what, v in named.items()
            }
    mapping = "identity (published numbers read as the embedder's cosines)" if space.identity else "carried"
    return {"similarity_space": {"embedder": exp.embedder, "map": mapping, "thresholds": thresholds}}


def carried_thresholds(exp: cfg.Experiment, profile: Profile) -> str:
    """Each system's lowest threshold, as published and as the run compares it (empty when the
    run reads published numbers as they stand): the run header's line of :func:`derived_block`."""
    if run_space(exp).identity:
        return ""
    parts = []
    for name, named in derived_block(exp, profile)["similarity_space"]["thresholds"].items():
        low = min(named.values(), key=lambda t: t["run"])
        parts.append(f"{name} {low['published']:.3f} -> {low['run']:.3f}")
    return "; ".join(parts)
