"""``acsim plan``: the cheapest cluster that meets the SLOs, per system and GPU type.

For every system, GPU type and load (a multiple of ``trace.time_scale``), the plan finds the
smallest GPU count whose run of the trace meets every objective (``--slo 'p95<=30'``, see
:mod:`sim.base.slo`), and optionally the highest load that cluster sustains. It relies on one
property: a cluster that meets the objectives still meets them with more GPUs (latency only
falls as GPUs are added; ``tests/test_plan.py`` checks the answer against a brute-force sweep).
So each search gallops from the stability bound (the GPUs that the trace's mean work needs)
until it brackets the answer, then bisects: a handful of runs instead of one per count.

Every point is an ordinary run directory of the sweep machinery (``sim.app.sweep.run_points``):
named by its values and a hash of its resolved config, resumable, on the local pool or Ray, so
a repeated plan (even with other objectives) reads its finished runs and is instant. The
searches advance in rounds: each round runs the next point of every unfinished search at once.
The trace, embeddings and neighbour lists are prepared once per GPU type at the file's load;
a point at another load rescales the arrival times (nothing else depends on them).

Output directory (``--output``, default ``<output>-plan``)::

    plan.csv     one row per (load, system, GPU type): the recommended cluster and its figures
    points.csv   every evaluated point: counts, loads, objectives met, figures
    plan.yaml    the resolved experiment and the objectives
    runs/        the run directories
    plots/       plan (objectives and cost against GPUs), capacity (GPUs and cost against load)
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from sim.app import outputs
from sim.app.preflight import preflight
from sim.app.run import Inputs, min_similarity, prepare_inputs, request_work_of, run_experiment
from sim.app.sweep import (
    RUNS_DIR,
    PointsResult,
    SweepPoint,
    add_sweep_arguments,
    is_done,
    make_executor,
    run_name,
    run_points,
)
from sim.base import config as cfg
from sim.base.errors import ConfigError, unknown_name
from sim.base.io import atomic_write_csv, atomic_write_text
from sim.base.profile import load_profile, load_run_profile, profile_for_gpu
from sim.base.slo import Slo, parse_slo
from sim.engine.autoscaler import SCALING_RULES
from sim.engine.workers import job_work
from sim.results.metrics import held_per_1k_images
from sim.systems import SYSTEMS, system_class

if TYPE_CHECKING:
    import argparse

    from sim.base.request_work import RequestWork

_SCALE_LIMIT = 2.0**10  # loads beyond 1024x (or below 1/1024x) the start are not searched


# ---------------------------------------------------------------------------
# The searches (pure: they propose points and are told the verdicts)


class CountSearch:
    """The smallest GPU count in least..max_gpus that meets the objectives, if any.

    Gallops from ``start``: up by 1, 2, 4, ... GPUs while failing, or down by 1, 2, 4, ... while
    passing, until a failing count and a passing one bracket the answer; then bisects. A count
    that fails without any request having queued ends the search: more GPUs cannot shorten a
    latency that is all service time.
    """

    def __init__(self, start: int, max_gpus: int, least: int = 1) -> None:
        self.least = least  # the fewest GPUs the system runs on (one per model of a two-model system)
        self.start = min(max(least, start), max_gpus)
        self.max_gpus = max_gpus
        self.floor = least - 1
        self.lo = self.floor  # largest count known to fail (fewer than ``least`` always do)
        self.hi: int | None = None  # smallest count known to pass
        self.up = 1  # next step of the gallop up
        self.down = 1  # next step of the gallop down
        self.infeasible = ""

    @property
    def done(self) -> bool:
        return bool(self.infeasible) or (self.hi is not None and self.hi - self.lo <= 1)

    @property
    def result(self) -> int | None:
        """The smallest passing count (None when there is none, or while searching)."""
        return self.hi if self.done and not self.infeasible else None

    def next(self) -> int | None:
        """The next count to evaluate, or None when the search is over."""
        if self.done:
            return None
        if self.hi is None:
            return self.start if self.lo == self.floor else min(self.lo + self.up, self.max_gpus)
        if self.lo == self.floor:
            return max(self.hi - self.down, self.least)
        return (self.lo + self.hi) // 2

    def tell(self, gpus: int, ok: bool, queued: bool = True) -> None:
        """The verdict at ``gpus`` (``queued``: whether any request waited for a GPU)."""
        if ok:
            if self.lo == self.floor and self.hi is not None and gpus < self.hi:
                self.down *= 2
            self.hi = gpus if self.hi is None else min(self.hi, gpus)
            return
        if self.hi is None and gpus > self.start:
            self.up *= 2
        self.lo = max(self.lo, gpus)
        if self.hi is None:
            if not queued:
                self.infeasible = f"missed at {gpus} GPUs with no request queued: more GPUs cannot help"
            elif gpus >= self.max_gpus:
                self.infeasible = f"missed at {gpus} GPUs, the most searched (--max-gpus)"


class ScaleSearch:
    """The highest load multiple (of ``trace.time_scale``) that a fixed cluster sustains.

    Gallops by factors of 2 from ``start`` until a passing and a failing load bracket the
    answer, then bisects geometrically until the bracket is narrower than ``tolerance``
    (relative). Loads are rounded to four significant digits, so their run directories are
    found again by a repeated plan.
    """

    def __init__(self, start: float, tolerance: float) -> None:
        self.start = round_load(start)
        self.tolerance = tolerance
        self.lo: float | None = None  # highest load known to pass
        self.hi: float | None = None  # lowest load known to fail
        self.infeasible = ""
        self.capped = False  # passed at the highest load searched

    @property
    def done(self) -> bool:
        if self.infeasible or self.capped:
            return True
        return self.lo is not None and self.hi is not None and self.hi <= self.lo * (1 + self.tolerance)

    @property
    def result(self) -> float | None:
        """The highest passing load found (None when even the lowest searched failed)."""
        return None if self.infeasible else self.lo

    def next(self) -> float | None:
        """The next load to evaluate, or None when the search is over."""
        if self.done:
            return None
        if self.lo is None and self.hi is None:
            return self.start
        if self.hi is None:
            return round_load(self.lo * 2)
        if self.lo is None:
            return round_load(self.hi / 2)
        mid = round_load(math.sqrt(self.lo * self.hi))
        return mid if self.lo < mid < self.hi else None

    def tell(self, load: float, ok: bool) -> None:
        """The verdict at ``load``."""
        if ok:
            self.lo = load if self.lo is None else max(self.lo, load)
            self.capped = self.hi is None and load >= self.start * _SCALE_LIMIT
        else:
            self.hi = load if self.hi is None else min(self.hi, load)
            if self.lo is None and load <= self.start / _SCALE_LIMIT:
                self.infeasible = f"missed even at {load:g}x the load"


def round_load(x: float) -> float:
    """``x`` to four significant digits (stable run names)."""
    return float(f"{x:.4g}")


# ---------------------------------------------------------------------------
# Points and runs


@dataclasses.dataclass
class PlanInputs:
    """The shared inputs of one GPU type, prepared at the file's ``trace.time_scale``."""

    inputs: Inputs
    time_scale: float


def run_point(
    exp: cfg.Experiment, out_dir: Path, inputs: PlanInputs | None = None, progress: bool = False
) -> pd.DataFrame:
    """One point of a plan: the run of ``exp``, its trace rescaled to ``exp.trace.time_scale``.

    A module-level function: executors pickle it to their workers.
    """
    if inputs is None:
        return run_experiment(exp, out_dir=out_dir, progress=progress)
    trace = inputs.inputs.trace
    if exp.trace.time_scale != inputs.time_scale:
        trace = dataclasses.replace(
            trace, time_scale=trace.time_scale * exp.trace.time_scale / inputs.time_scale
        )
    return run_experiment(
        exp, out_dir=out_dir, inputs=dataclasses.replace(inputs.inputs, trace=trace), progress=progress
    )


@dataclasses.dataclass
class PlanSettings:
    """What one plan searches: objectives, systems, GPU types (type -> profile), loads and limits."""

    slos: list[Slo]
    systems: list[str]
    gpus: dict[str, str]
    loads: list[float]
    max_gpus: int = 256
    at: int | None = None  # a fixed GPU count instead of the count search
    max_scale: bool = False
    scale_tolerance: float = 0.02
    verify: bool = False  # also run every count from 1 to the answer + 1 (brute force)
    # A scaling rule (cluster.autoscale.rule): each answer is also run autoscaled within
    # min_gpus..its count, and its bill reported beside the provisioned one. None: not.
    autoscale: str | None = None


@dataclasses.dataclass
class PlanResult:
    """The outcome of :func:`run_plan`."""

    out_dir: Path
    recommendations: pd.DataFrame
    points: pd.DataFrame
    evaluated: int  # runs this call computed
    reused: int  # runs found finished
    failed: dict[str, str]
    elapsed_s: float


class Planner:
    """Builds the points of a plan and reads their verdicts (shared by every search)."""

    def __init__(self, exp: cfg.Experiment, settings: PlanSettings, out_dir: Path) -> None:
        self.exp = exp
        self.settings = settings
        self.runs_dir = out_dir / RUNS_DIR
        self.points: dict[str, SweepPoint] = {}
        self.meta: dict[str, dict[str, Any]] = {}  # run name -> system, gpu, profile, load, gpus
        self.inputs: dict[str, PlanInputs] = {}  # profile -> prepared inputs
        self.base_scale = exp.trace.time_scale
        self.autoscaled: set[str] = set()  # run names of the autoscaled comparisons

    def base_for(self, profile: str) -> cfg.Experiment:
        """The experiment whose inputs every point of one GPU type shares (all planned systems)."""
        data = cfg.to_dict(self.exp)
        data.update(systems=list(self.settings.systems), profile=profile, sweep=None, plots=False)
        return preflight(cfg.from_dict(data))

    def prepare(self, exp: cfg.Experiment, progress: bool = True) -> PlanInputs:
        """The inputs of ``exp``'s GPU type, prepared once at the file's load.

        GPU types of one model share the trace, embeddings and lists (when their ladders reach
        the same floor), so workers receive those arrays once.
        """
        if exp.profile not in self.inputs:
            base = self.base_for(exp.profile)
            profile = load_run_profile(base.profile, base.step_cache)
            floor = min_similarity(base, profile)
            same = next(
                (x for x in self.inputs.values() if min_similarity(base, x.inputs.profile) == floor), None
            )
            if same is not None:
                inputs = dataclasses.replace(same.inputs, profile=profile)
            else:
                inputs = prepare_inputs(base, progress=progress)
            self.inputs[exp.profile] = PlanInputs(inputs, base.trace.time_scale)
        return self.inputs[exp.profile]

    def point(self, system: str, gpu: str, load: float, gpus: int, autoscaled: bool = False) -> SweepPoint:
        """The run of ``system`` on ``gpus`` GPUs of type ``gpu`` at ``load`` times the file's load;
        ``autoscaled``: starting with ``gpus`` and scaled by the plan's rule within min_gpus..gpus
        (the searches themselves always run fixed clusters)."""
        profile = self.settings.gpus[gpu]
        data = cfg.to_dict(self.exp)
        data.update(systems=[system], profile=profile, sweep=None, plots=False)
        data["trace"]["time_scale"] = round_load(self.base_scale * load)
        data["cluster"]["gpus"] = gpus
        scale = data["cluster"]["autoscale"]
        scale["rule"] = self.settings.autoscale if autoscaled else "none"
        if autoscaled:
            scale.update(min_gpus=min(scale["min_gpus"], gpus), max_gpus=gpus)
        exp = preflight(cfg.from_dict(data))
        values = {
            "system": system,
            "gpu": gpu,
            "trace.time_scale": exp.trace.time_scale,
            "cluster.gpus": gpus,
            **({"cluster.autoscale.rule": exp.cluster.autoscale.rule} if autoscaled else {}),
        }
        name = run_name(values, exp)
        if autoscaled:
            self.autoscaled.add(name)
        if name not in self.points:
            self.points[name] = SweepPoint(values=values, exp=exp, name=name)
            self.meta[name] = {"system": system, "gpu": gpu, "profile": profile, "load": load, "gpus": gpus}
        return self.points[name]

    def verdict(self, name: str) -> dict[str, Any] | None:
        """A finished point's summary row, with ``meets`` (every objective met) and its cost per
        provisioned hour and per 1,000 images; None when the run has not finished."""
        run_dir = self.runs_dir / name
        if not is_done(run_dir):
            return None
        row = pd.read_csv(run_dir / "summary.csv").iloc[0].to_dict()
        meta = self.meta[name]
        out = {"run": name, **row, **meta}
        out["meets"] = all(s.met(row) for s in self.settings.slos)
        hours = row["gpu_hours_provisioned"] / meta["gpus"]  # the run's duration
        out["usd_per_hour"] = row["cost_provisioned_usd"] / hours if hours > 0 else math.nan
        out["usd_per_1k_provisioned"] = held_per_1k_images(row)
        return out


def stability_bound(
    arrival_s: Any, profile: str, load: float, step_cache: Any = None, own: RequestWork | None = None
) -> int:
    """GPUs the trace's mean work needs at ``load``: the requests' plain generations (with the
    experiment's ``step_cache``, if any, and each request's own steps and size when ``own`` gives
    them) / the span."""
    p = load_run_profile(profile, step_cache)
    n = len(arrival_s)
    span = float(arrival_s[-1] - arrival_s[0]) / load if n > 1 else 0.0
    if own is None:
        work = n * job_work(p, p.steps, False)
    else:
        pairs, count = np.unique(np.stack([own.full_steps, own.area]), axis=1, return_counts=True)
        shapes = zip(pairs.T, count, strict=True)
        work = sum(c * job_work(p, int(f), False, False, int(f), a) for (f, a), c in shapes)
    return max(1, math.ceil(work / span)) if span > 0 else 1


def _check_plannable(exp: cfg.Experiment) -> None:
    if exp.mode != "full":
        raise ConfigError(
            "mode", exp.mode, "acsim plan needs mode: full (latency comes from the serving model)"
        )
    if exp.cluster.replicas is not None:
        raise ConfigError(
            "cluster.replicas",
            len(exp.cluster.replicas),
            "acsim plan sizes one pool of cluster.gpus GPUs; leave cluster.replicas out of the planned file",
        )


def _run_named(
    planner: Planner, names: dict[str, Any], pool: Any, progress: bool, stream: Any, desc: str
) -> PointsResult:
    """Run the planner's points of these names (those done already are reused)."""
    return run_points(
        [planner.points[name] for name in names],
        planner.runs_dir,
        executor=pool,
        run_fn=run_point,
        prepare_fn=planner.prepare,
        inputs_key=lambda p: p.exp.profile,
        progress=progress,
        stream=stream,
        desc=desc,
    )


def _tell(
    planner: Planner,
    wanted: dict[str, tuple],
    counts: dict[tuple, CountSearch],
    scales: dict[tuple, ScaleSearch],
    failed: dict[str, str],
) -> None:
    """Give each search the verdict of the run it asked for."""
    for name, (kind, t, value) in wanted.items():
        v = planner.verdict(name)
        search = counts.get(t) if kind == "count" else scales.get(t) if kind == "scale" else None
        if search is None:
            continue
        if v is None:  # the run failed: this search cannot go on
            search.infeasible = f"run failed: {failed.get(name, '?')}"
        elif kind == "count":
            search.tell(value, v["meets"], queued=v["mean_queue_s"] > 0)
        else:
            search.tell(value, v["meets"])


def run_plan(
    exp: cfg.Experiment,
    settings: PlanSettings,
    out_dir: Path,
    *,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    progress: bool = True,
    stream: Any = None,
) -> PlanResult:
    """Search every (load, system, GPU type) of ``settings``; write and return the recommendations."""
    stream = stream or sys.stderr
    t0 = time.perf_counter()
    _check_plannable(exp)
    planner = Planner(exp, settings, out_dir)
    atomic_write_text(out_dir / "plan.yaml", _plan_yaml(exp, settings))
    targets = [
        (load, system, gpu) for load in settings.loads for system in settings.systems for gpu in settings.gpus
    ]
    # Stability bounds need the trace's arrivals (at the file's load): any GPU type's inputs hold them.
    first = planner.base_for(next(iter(settings.gpus.values())))
    shared = planner.prepare(first, progress).inputs
    arrival = shared.trace.arrival_s
    own = request_work_of(first, shared)  # each request's own steps and size, when the file asks
    counts: dict[tuple, CountSearch] = {}
    fixed: dict[tuple, int] = {}
    for t in targets:
        if settings.at is not None:
            fixed[t] = settings.at
        else:
            bound = stability_bound(arrival, settings.gpus[t[2]], t[0], exp.step_cache, own)
            counts[t] = CountSearch(bound, settings.max_gpus, len(SYSTEMS[t[1]].pool_models) or 1)
    scales: dict[tuple, ScaleSearch] = {}
    evaluated, reused, failed = 0, 0, {}
    rounds = 0
    with make_executor(executor, jobs, address) as pool:
        while True:
            wanted = _next_points(planner, targets, counts, fixed, scales, failed)
            if not wanted:
                break
            rounds += 1
            res = _run_named(planner, wanted, pool, progress, stream, f"plan round {rounds}")
            evaluated += len(res.completed)
            reused += len(res.skipped)
            failed.update(res.failed)
            _tell(planner, wanted, counts, scales, failed)
        if settings.verify:
            checks = {
                planner.point(t[1], t[2], t[0], c).name: None
                for t, s in counts.items()
                if s.result is not None
                for c in range(s.least, s.result + 2)
                if c <= settings.max_gpus
            }
            res = _run_named(planner, checks, pool, progress, stream, "plan verification")
            evaluated += len(res.completed)
            reused += len(res.skipped)
            failed.update(res.failed)
        if settings.autoscale is not None:
            res = _run_named(planner, _autoscaled_points(planner, targets, counts, fixed), pool, progress, stream, "plan autoscaled")
            evaluated += len(res.completed)
            reused += len(res.skipped)
            failed.update(res.failed)
    points = _points_table(planner, arrival)
    recs = _recommendations(planner, targets, counts, fixed, scales, arrival)
    if settings.verify:
        recs["verified"] = [_verified(points, r) for _, r in recs.iterrows()]
    atomic_write_csv(out_dir / "points.csv", points)
    atomic_write_csv(out_dir / "plan.csv", recs)
    return PlanResult(out_dir, recs, points, evaluated, reused, failed, time.perf_counter() - t0)


def _next_points(
    planner: Planner,
    targets: list[tuple],
    counts: dict[tuple, CountSearch],
    fixed: dict[tuple, int],
    scales: dict[tuple, ScaleSearch],
    failed: dict[str, str],
) -> dict[str, tuple]:
    """The next point of every unfinished search: run name -> (kind, target, value)."""
    wanted: dict[str, tuple] = {}
    for t, s in counts.items():
        g = s.next()
        if g is not None:
            wanted[planner.point(t[1], t[2], t[0], g).name] = ("count", t, g)
    for t, g in fixed.items():
        name = planner.point(t[1], t[2], t[0], g).name
        if planner.verdict(name) is None and name not in failed:
            wanted[name] = ("fixed", t, g)
    if planner.settings.max_scale:
        for t in targets:
            g = _answer(t, counts, fixed)
            if g is None:
                continue
            s = scales.setdefault(t, ScaleSearch(t[0], planner.settings.scale_tolerance))
            load = s.next()
            if load is not None:
                wanted.setdefault(planner.point(t[1], t[2], load, g).name, ("scale", t, load))
    return wanted


def _answer(t: tuple, counts: dict[tuple, CountSearch], fixed: dict[tuple, int]) -> int | None:
    """The GPU count a target ended with (searched or fixed), None when it has none."""
    return fixed.get(t, counts[t].result if t in counts else None)


def _autoscaled_points(
    planner: Planner, targets: list[tuple], counts: dict[tuple, CountSearch], fixed: dict[tuple, int]
) -> dict[str, None]:
    """The autoscaled run of every answer: run name -> None."""
    return {
        planner.point(t[1], t[2], t[0], g, autoscaled=True).name: None
        for t in targets
        if (g := _answer(t, counts, fixed)) is not None
    }


def _autoscaled_columns(planner: Planner, t: tuple, g: int) -> dict[str, Any]:
    """The autoscaled run of an answer of ``g`` GPUs: its bill per 1k images (the GPUs it held),
    the mean GPUs held, SLO attainment and whether it meets the objectives."""
    v = planner.verdict(planner.point(t[1], t[2], t[0], g, autoscaled=True).name)
    if v is None:
        return {}
    return {
        "autoscaled_usd_per_1k": v["usd_per_1k_provisioned"],
        "autoscaled_gpus_mean": v["gpus_mean"],
        "autoscaled_slo_attainment": v["slo_attainment"],
        "autoscaled_p95_latency_s": v["p95_latency_s"],
        "autoscaled_meets": bool(v["meets"]),
    }


def _verified(points: pd.DataFrame, rec: pd.Series) -> str:
    """Whether every count below the recommendation fails and it and the next pass (``--verify``)."""
    if not rec["meets"] or not len(points):
        return ""
    g = points[
        (points["load"] == rec["load"]) & (points["system"] == rec["system"]) & (points["gpu"] == rec["gpu"])
    ]
    meets = dict(zip(g["gpus"].astype(int), g["meets"].astype(bool), strict=True))
    top = int(rec["gpus"])
    if any(c not in meets for c in range(1, top + 1)):
        return "incomplete"
    # Every count below fails, the answer and the next one (when searched) pass.
    ok = all(meets[c] == (c >= top) for c in range(1, top + 2) if c in meets)
    return "yes" if ok else "NO: not monotone"


def _offered_rps(arrival: Any, load: float) -> float:
    """Requests per second the trace offers at ``load`` times its own rate."""
    n = len(arrival)
    span = float(arrival[-1] - arrival[0]) if n > 1 else 0.0
    return n * load / span if span > 0 else math.nan


def _points_table(planner: Planner, arrival: Any) -> pd.DataFrame:
    rows = [
        v for name in planner.points if name not in planner.autoscaled and (v := planner.verdict(name)) is not None
    ]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    df.insert(4, "offered_rps", [_offered_rps(arrival, x) for x in df["load"]])
    return df.sort_values(["load", "system", "gpu", "gpus"], kind="stable").reset_index(drop=True)


_REC_COLUMNS = (
    "hit_rate",
    "p50_latency_s",
    "p95_latency_s",
    "p99_latency_s",
    "slo_attainment",
    "quality_clip",
    "compute_saved",
    "gpu_utilization",
    "usd_per_hour",
    "usd_per_1k_provisioned",
    "cost_per_1k_images_usd",
)


def _recommendations(
    planner: Planner,
    targets: list[tuple],
    counts: dict[tuple, CountSearch],
    fixed: dict[tuple, int],
    scales: dict[tuple, ScaleSearch],
    arrival: Any,
) -> pd.DataFrame:
    rows = []
    for t in targets:
        load, system, gpu = t
        g = _answer(t, counts, fixed)
        row: dict[str, Any] = {
            "load": load,
            "offered_rps": _offered_rps(arrival, load),
            "system": system,
            "gpu": gpu,
            "profile": planner.settings.gpus[gpu],
            "gpus": g if g is not None else math.nan,
            "meets": False,
            "note": counts[t].infeasible if t in counts else "",
        }
        if g is not None:
            v = planner.verdict(planner.point(system, gpu, load, g).name)
            if v is not None:
                row["meets"] = bool(v["meets"])
                row.update({c: v.get(c, math.nan) for c in _REC_COLUMNS})
                row["run"] = v["run"]
                if not v["meets"]:
                    row["note"] = f"misses the objectives at {g} GPUs"
            if planner.settings.autoscale is not None:
                row.update(_autoscaled_columns(planner, t, g))
        if t in scales:
            s = scales[t]
            row["max_load"] = s.result if s.result is not None else math.nan
            row["max_offered_rps"] = _offered_rps(arrival, s.result) if s.result else math.nan
            if s.infeasible and not row["note"]:
                row["note"] = s.infeasible
        rows.append(row)
    df = pd.DataFrame(rows)
    if "usd_per_hour" not in df:
        df["usd_per_hour"] = math.nan
    df["cheapest"] = False
    ok = df["meets"].astype(bool) & df["usd_per_hour"].notna()
    for _, g in df[ok].groupby("load"):
        df.loc[g["usd_per_hour"].idxmin(), "cheapest"] = True
    return df


def _plan_yaml(exp: cfg.Experiment, settings: PlanSettings) -> str:
    data = {
        "objectives": [s.text for s in settings.slos],
        "attainment_within_s": exp.selector.slo_s,
        "systems": settings.systems,
        "gpus": settings.gpus,
        "loads": settings.loads,
        "max_gpus": settings.max_gpus,
        "at": settings.at,
        "max_scale": settings.max_scale,
        "scale_tolerance": settings.scale_tolerance,
        "experiment": cfg.to_dict(exp),
    }
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------------------
# The table


def format_plan(recs: pd.DataFrame, settings: PlanSettings) -> str:
    """The recommendation table: one row per (load, system, GPU type), the cheapest marked."""
    head = ["load", "req/s", "system", "GPU", "GPUs", "$/hour", "$/1k img", "hit rate", "p95 s", "SLO met"]
    scale = "max_load" in recs
    if scale:
        head.append("max load")
    verify = "verified" in recs
    if verify:
        head.append("verified")
    auto = "autoscaled_usd_per_1k" in recs
    if auto:
        head += [f"{settings.autoscale}: $/1k", "GPUs held", "SLO met"]
    rows = [head]
    for _, r in recs.iterrows():
        met = r["meets"]
        cells = [
            f"{r['load']:g}x",
            f"{r['offered_rps']:.3f}",
            str(r["system"]),
            str(r["gpu"]),
            f"{int(r['gpus'])}" if met else "-",
            _num(r, "usd_per_hour", "{:.2f}", met),
            _num(r, "usd_per_1k_provisioned", "{:.3f}", met),
            _num(r, "hit_rate", "{:.1%}", met),
            _num(r, "p95_latency_s", "{:.1f}", met),
            _num(r, "slo_attainment", "{:.1%}", met),
        ]
        if scale:
            cells.append("-" if pd.isna(r.get("max_load")) else f"{r['max_load']:g}x")
        if verify:
            cells.append(str(r["verified"]) or "-")
        if auto:
            cells += [
                _num(r, "autoscaled_usd_per_1k", "{:.3f}", met),
                _num(r, "autoscaled_gpus_mean", "{:.2f}", met),
                _num(r, "autoscaled_slo_attainment", "{:.1%}", met)
                + ("" if not met or r.get("autoscaled_meets", True) is True else " (misses)"),
            ]
        note = ("  <- cheapest" if r["cheapest"] else "") + (f"  ({r['note']})" if r["note"] else "")
        rows.append([*cells, note])
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        text = "  ".join(
            c.ljust(w) if j in (2, 3) else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=False))
        )
        lines.append(text + (row[-1] if len(row) > len(head) else ""))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    objectives = "; ".join(s.label for s in settings.slos)
    return f"objectives: {objectives}\n" + "\n".join(lines)


def _num(r: pd.Series, col: str, fmt: str, met: bool) -> str:
    v = r.get(col, math.nan)
    return "-" if not met or pd.isna(v) else fmt.format(v)


# ---------------------------------------------------------------------------
# Command line


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def settings_from(exp: cfg.Experiment, args: argparse.Namespace) -> PlanSettings:
    """The plan's settings: the file's ``plan:`` block, each flag overriding it; errors name the flag."""
    plan = exp.plan
    texts = args.slo or plan.slo
    field = "--slo" if args.slo else "plan.slo"
    if not texts:
        raise ConfigError(
            "--slo", None, "give at least one objective, e.g. --slo 'p95<=30' (or plan.slo in the file)"
        )
    slos = [parse_slo(t, field) for t in texts]
    if args.systems:
        systems = _split(args.systems)
        for name in systems:
            system_class(name, "--systems")
    else:
        systems = list(exp.systems)
    if args.gpus is not None:
        types, field = _split(args.gpus), "--gpus"
        if not types:
            raise ConfigError("--gpus", args.gpus, "list GPU types, e.g. a10g,a100")
    elif plan.gpus is not None:
        types, field = plan.gpus, "plan.gpus"
    else:
        types, field = [load_profile(exp.profile).gpu_name], "profile"
    gpus = {t.lower(): profile_for_gpu(exp.profile, t, field) for t in types}
    if args.loads is not None:
        loads = []
        for text in _split(args.loads):
            try:
                x = float(text)
            except ValueError:
                raise ConfigError(
                    "--loads", args.loads, "expected multiples of the trace's load, e.g. 0.5,1,2"
                ) from None
            if not (math.isfinite(x) and x > 0):
                raise ConfigError("--loads", args.loads, "every load must be a number > 0")
            loads.append(x)
        if not loads:
            raise ConfigError("--loads", args.loads, "expected multiples of the trace's load, e.g. 0.5,1,2")
    else:
        loads = list(plan.loads)
    max_gpus = args.max_gpus if args.max_gpus is not None else plan.max_gpus
    if max_gpus < 1:
        raise ConfigError("--max-gpus", max_gpus, "must be >= 1")
    if args.at is not None and args.at < 1:
        raise ConfigError("--at", args.at, "must be >= 1")
    tol = args.scale_tolerance if args.scale_tolerance is not None else plan.scale_tolerance
    if not 0 < tol < 1:
        raise ConfigError("--scale-tolerance", tol, "must be in (0, 1)")
    autoscale = args.autoscale or (exp.cluster.autoscale.rule if exp.cluster.autoscale.on else None)
    if autoscale is not None and autoscale not in SCALING_RULES:
        raise unknown_name("--autoscale" if args.autoscale else "cluster.autoscale.rule", autoscale, sorted(SCALING_RULES))
    return PlanSettings(
        slos=slos,
        systems=systems,
        gpus=gpus,
        loads=loads,
        max_gpus=max_gpus,
        at=args.at,
        max_scale=bool(args.max_scale or plan.max_scale),
        scale_tolerance=tol,
        verify=bool(getattr(args, "verify", False)),
        autoscale=autoscale,
    )


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``acsim plan`` (the file and --set are added by the CLI)."""
    p.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="EXPR",
        help="an objective every recommended cluster meets (repeatable): p50/p95/p99/mean<=SECONDS, "
        "attainment>=FRACTION (share within selector.slo_s), quality>=CLIP; e.g. 'p95<=30'",
    )
    p.add_argument(
        "--gpus",
        default=None,
        help="GPU types to compare, e.g. a10g,a100 (default: plan.gpus, else the profile's)",
    )
    p.add_argument(
        "--systems", default=None, help="systems to plan for, e.g. vanilla,nirvana (default: the file's)"
    )
    p.add_argument(
        "--loads", default=None, help="loads as multiples of trace.time_scale, e.g. 0.5,1,2 (default: 1)"
    )
    p.add_argument("--max-gpus", type=int, default=None, help="give up beyond this many GPUs (default 256)")
    p.add_argument(
        "--at", type=int, default=None, metavar="GPUS", help="evaluate this GPU count instead of searching"
    )
    p.add_argument(
        "--max-scale",
        action="store_true",
        help="also find the highest load (trace.time_scale multiple) each recommended cluster sustains",
    )
    p.add_argument(
        "--scale-tolerance", type=float, default=None, help="relative precision of --max-scale (default 0.02)"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also run every GPU count from 1 to each answer + 1 and check that exactly the counts "
        "from the answer on meet the objectives (a brute-force check of the bisection)",
    )
    p.add_argument(
        "--autoscale",
        default=None,
        metavar="RULE",
        help="also run each answer autoscaled by RULE (utilization or queue-delay) within "
        "cluster.autoscale.min_gpus..the answer's GPUs, and print its cost beside the provisioned one "
        "(default: the file's cluster.autoscale.rule, if any)",
    )
    add_sweep_arguments(p, output_help="plan directory (default: the file's output: with -plan appended)")


def plan_command(args: argparse.Namespace) -> int:
    """``acsim plan FILE --slo ...``: print the recommendations, write them and draw the figures."""
    exp = preflight(cfg.load(args.file, getattr(args, "overrides", None)))
    settings = settings_from(exp, args)
    out = Path(args.output) if args.output is not None else Path(f"{exp.output}-plan")
    stream = sys.stderr
    print(
        f"plan {exp.name}: {len(settings.systems)} systems x {len(settings.gpus)} GPU types x "
        f"{len(settings.loads)} loads ({args.executor} executor) -> {out}",
        file=stream,
    )
    # A plan directory is acsim's own (marked), locked while written, and only ever added to.
    with outputs.sweep_dir(out, kind="plan"):
        try:
            result = run_plan(
                exp,
                settings,
                out,
                executor=args.executor,
                jobs=args.jobs,
                address=args.address,
                progress=not args.quiet,
                stream=stream,
            )
        except KeyboardInterrupt:
            print("\ninterrupted: finished runs are kept; run the same `acsim plan` again to resume", file=stream)
            return 130
        print(
            f"plan {exp.name}: {result.evaluated} runs computed, {result.reused} reused, "
            f"{len(result.failed)} failed in {result.elapsed_s:.1f} s",
            file=stream,
        )
        print(f"\n{exp.name}: attainment counts requests within selector.slo_s = {exp.selector.slo_s:g} s")
        print(format_plan(result.recommendations, settings))
        if exp.plots and not args.no_plots and len(result.points):
            from plots.plan import draw_capacity, draw_plan

            figures = draw_plan(result.points, result.recommendations, settings.slos, out / "plots")
            figures += draw_capacity(result.recommendations, out / "plots")
            print(f"{len(figures)} figure files in {out / 'plots'}")
    print(f"results: {out / 'plan.csv'}")
    for name, msg in result.failed.items():
        print(f"  failed {name}: {msg} (see {out / RUNS_DIR / name / 'error.txt'})", file=stream)
    return 0 if not result.failed else 1
