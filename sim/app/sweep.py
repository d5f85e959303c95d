"""Sweeps: expand an experiment's ``sweep:`` block and run every configuration, resumably.

A sweep block is either a plain grid ``{dotted.path: [values], ..., seeds: [..]}`` or
``{grid: {path: [values]}, zip: {path: [values]}, seeds: [..]}``: grid axes are crossed,
zip lists advance together (one axis), every configuration runs once per seed.

Layout of a sweep's output directory (``<output>-sweep``, beside the run directory that
``acsim run`` writes for the same file, so that neither ever touches the other; ``-o`` names it
exactly)::

    .acsim-result          the marker that makes it acsim's sweep directory (sim.app.outputs)
    summary.csv            merged: one row per (configuration, system) + the varied columns
    runs.csv               one row per configuration: its directory, varied values, status, error
    sweep.yaml             the resolved base configuration
    runs/<slug>-<hash>/    one run directory (see sim.app.run), plus ``done`` (written last) or ``error.txt``
    plots/                 the figures over the merged results

A configuration's directory name is a readable slug of its varied values plus a hash of
its whole resolved config, so a second invocation finds the runs it already finished
(their ``done`` marker, with a readable summary.csv) and skips them, while editing the base
config starts fresh ones; a finished run whose summary.csv is empty or damaged runs again.
The expensive shared inputs (trace, embeddings, neighbour lists) are prepared once per
distinct input configuration in the parent and handed to the workers. A failing
configuration writes ``error.txt`` and does not stop the others. The sweep directory is locked
while a sweep writes it (a second sweep of it fails at once with a clear error).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import os
import re
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm import tqdm

from sim.app import outputs
from sim.app.preflight import preflight
from sim.app.run import INPUT_FIELDS, prepare_inputs, run_experiment
from sim.base import config as cfg
from sim.base.errors import ConfigError, InputError
from sim.base.io import atomic_write_bytes, atomic_write_csv, atomic_write_text
from traces.embeddings import embedder_version
from traces.load import kept_note
from traces.sources import source_version

if TYPE_CHECKING:
    import argparse
    from typing import TextIO

RunFn = Callable[..., pd.DataFrame]
PrepareFn = Callable[..., Any]

DONE_MARKER = "done"
ERROR_FILE = "error.txt"
RUNS_DIR = "runs"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Fields that do not change a run's results: left out of its directory hash.
_NOT_RESULT_FIELDS = ("name", "output", "plots", "sweep", "plan")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One configuration of a sweep."""

    values: dict[str, Any]  # varied dotted path (or "seed") -> value
    exp: cfg.Experiment
    name: str  # directory name under runs/

    @property
    def inputs_key(self) -> str:
        """Configurations with the same key share one prepared Inputs."""
        data = cfg.to_dict(self.exp)
        return _digest({k: data[k] for k in INPUT_FIELDS})


@dataclasses.dataclass
class RunOutcome:
    """What one configuration's run produced (returned by executors)."""

    name: str
    summary: pd.DataFrame | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    # Executors whose workers may not share our filesystem ship the run directory back.
    files: dict[str, bytes] | None = None


@dataclasses.dataclass
class SweepResult:
    """The outcome of :func:`run_sweep`."""

    out_dir: Path
    summary: pd.DataFrame  # merged over every finished configuration
    completed: list[str]  # run names finished by this invocation
    skipped: list[str]  # run names already finished before it
    failed: dict[str, str]  # run name -> one-line error
    elapsed_s: float

    @property
    def ok(self) -> bool:
        """True when every configuration has finished."""
        return not self.failed


# ---------------------------------------------------------------------------
# Expansion


def _digest(obj: object, n: int = 10) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _slug_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | dict):
        return _digest(value, 6)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "x"


def run_name(values: Mapping[str, Any], exp: cfg.Experiment) -> str:
    """A run directory's name: a slug of the varied ``values`` and a hash of the resolved config
    (fields that do not change results left out), so the same configuration finds its run again."""
    slug = "_".join(f"{k.rsplit('.', 1)[-1]}-{_slug_value(v)}" for k, v in values.items())[:80] or "base"
    full = {k: v for k, v in cfg.to_dict(exp).items() if k not in _NOT_RESULT_FIELDS}
    version = source_version(exp.trace.source)
    if version is not None:  # a newer generator makes another trace: its runs are not the old ones
        full["generator"] = version
    vectors = embedder_version(exp.embedder)
    if vectors is not None:  # likewise a new embedding recipe (minilm-onnx:...:int8-v2)
        full["embedder_vectors"] = vectors
    return f"{slug}-{_digest(full, 8)}"


def expand_sweep(exp: cfg.Experiment) -> list[SweepPoint]:
    """Every configuration of ``exp.sweep`` (the base alone if none), each checked as a run is:
    the config's own checks, then :func:`sim.app.preflight.preflight`.

    Raises :class:`ConfigError` naming ``sweep.<field>`` when a swept value is invalid.
    """
    sweep = exp.sweep or {}
    axes = cfg.sweep_axes(sweep)
    shown = _shown_paths(sweep)
    base = cfg.to_dict(exp)
    base["sweep"] = None
    base["plots"] = False  # figures are drawn once over the merged results
    points, seen = [], set()
    for combo in itertools.product(*axes):
        values: dict[str, Any] = {}
        for part in combo:
            values.update(part)
        data = copy.deepcopy(base)
        try:
            for path, value in values.items():
                cfg.set_path(data, path, value)
            point_exp = preflight(cfg.from_dict(data))
        except ConfigError as exc:
            raise _blame(exc, values, shown) from None
        name = run_name(values, point_exp)
        if name in seen:
            raise ConfigError(
                "sweep", sweep, f"two configurations are identical ({name}); remove duplicate values"
            )
        seen.add(name)
        points.append(SweepPoint(values=values, exp=point_exp, name=name))
    return points


def _shown_paths(sweep: Mapping[str, Any]) -> dict[str, str]:
    """Swept path -> where it is written in the file (``sweep.grid.cache.capacity``, ``sweep.seeds``)."""
    out = {"seed": "sweep.seeds"}
    for block in ("grid", "zip"):
        out.update({path: f"sweep.{block}.{path}" for path in sweep.get(block) or {}})
    out.update({path: f"sweep.{path}" for path in sweep if path not in cfg.SWEEP_KEYS})
    return out


def _blame(exc: ConfigError, values: Mapping[str, Any], shown: Mapping[str, str]) -> ConfigError:
    """The error of one configuration, charged to the swept field that caused it when there is one."""
    for path in values:
        if exc.field == path or exc.field.startswith((path + ".", path + "[")):
            where = shown.get(path, f"sweep.{path}") + exc.field[len(path) :]
            return ConfigError(where, exc.value, exc.allowed, exc.hint)
    setting = ", ".join(f"{k}={v!r}" for k, v in values.items())
    return ConfigError(exc.field, exc.value, exc.allowed, f"in the sweep configuration {setting}")


# ---------------------------------------------------------------------------
# Running one configuration (in a worker)


def _say_kept(inputs: Any, stream: TextIO) -> None:
    """Say so when the shared inputs' trace keeps only a prefix of its source (trace.requests)."""
    trace = getattr(inputs, "trace", None)
    if trace is not None and kept_note(trace):
        print(f"trace {trace.name}:{kept_note(trace)}", file=stream)


def execute_point(
    point: SweepPoint, run_dir: Path | None, inputs: Any, run_fn: RunFn | None, ship_files: bool = False
) -> RunOutcome:
    """Run one configuration into ``run_dir``; never raises for a failing run.

    With ``ship_files`` the run happens in a private temporary directory and its files
    come back in the outcome (for workers on other machines); the caller writes them.
    """

    start = time.perf_counter()
    fn = run_fn or run_experiment
    with (
        tempfile.TemporaryDirectory(prefix="acsim-run-")
        if ship_files
        else contextlib.nullcontext(run_dir) as where
    ):
        out = Path(where)
        try:
            summary = fn(point.exp, out_dir=out, inputs=inputs, progress=False)
            if not (out / "summary.csv").exists():
                atomic_write_csv(out / "summary.csv", summary)
        except Exception as exc:  # any failure of one configuration is reported, not fatal
            detail = "".join(traceback.format_exception(exc))
            return RunOutcome(
                point.name,
                error=f"{type(exc).__name__}: {exc}\n\n{detail}",
                elapsed_s=time.perf_counter() - start,
            )
        files = None
        if ship_files:
            files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return RunOutcome(point.name, summary=summary, elapsed_s=time.perf_counter() - start, files=files)


# ---------------------------------------------------------------------------
# Executors


@dataclasses.dataclass
class Task:
    """One configuration to run, as handed to an executor."""

    point: SweepPoint
    run_dir: Path
    inputs_key: str | None


_WORKER_INPUTS: dict[str, Any] = {}


def _init_worker(shared: Mapping[str, Any]) -> None:
    _WORKER_INPUTS.clear()
    _WORKER_INPUTS.update(shared)


def _pool_task(task: Task, run_fn: RunFn | None) -> RunOutcome:
    inputs = _WORKER_INPUTS.get(task.inputs_key) if task.inputs_key else None
    return execute_point(task.point, task.run_dir, inputs, run_fn)


class LocalExecutor:
    """A process pool on this machine (``jobs`` workers; 1 runs in this process).

    Used as a context manager, the pool outlives one ``run``: later calls whose shared inputs
    it already holds (by key: a key must name the same inputs throughout the block) reuse its
    workers instead of starting new ones (``acsim plan`` runs its points in rounds).
    """

    name = "local"

    def __init__(self, jobs: int | None = None, address: str | None = None) -> None:
        if address:
            raise ConfigError("--address", address, "only the ray executor connects to a cluster")
        self.jobs = jobs or len(os.sched_getaffinity(0))
        self._persistent = False
        self._pool: Any = None
        self._keys: set[str] = set()

    def __enter__(self) -> LocalExecutor:
        self._persistent = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._persistent = False
        self._close()

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._keys = None, set()

    def _pool_for(self, shared: Mapping[str, Any], tasks: int) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is not None and set(shared) <= self._keys:
            return self._pool
        self._close()
        # spawn, not fork: the parent may hold torch/BLAS thread pools that a forked child would inherit locked.
        self._pool = ProcessPoolExecutor(
            max_workers=self.jobs if self._persistent else min(self.jobs, tasks),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(dict(shared),),
        )
        self._keys = set(shared)
        return self._pool

    def run(
        self, tasks: Sequence[Task], shared: Mapping[str, Any], run_fn: RunFn | None
    ) -> Iterator[RunOutcome]:
        """Run ``tasks`` on the pool; the shared inputs are sent once per worker process."""
        if self.jobs <= 1 or (len(tasks) <= 1 and self._pool is None):
            for task in tasks:
                inputs = shared.get(task.inputs_key) if task.inputs_key else None
                yield execute_point(task.point, task.run_dir, inputs, run_fn)
            return
        from concurrent.futures import FIRST_COMPLETED, wait

        pool = self._pool_for(shared, len(tasks))
        ok = False
        try:
            futures = {pool.submit(_pool_task, t, run_fn): t for t in tasks}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = futures[fut]
                    try:
                        yield fut.result()
                    except Exception as exc:  # the worker process died (e.g. out of memory)
                        yield RunOutcome(task.point.name, error=f"worker failed: {type(exc).__name__}: {exc}")
            ok = True
        finally:
            if not (ok and self._persistent):
                self._close()


class RayExecutor:
    """Ray tasks: on the cluster at ``address``, or on a local Ray started with ``jobs`` CPUs.

    Workers may be on other machines, so each run writes into a private temporary directory
    and ships its files back; the driver writes them into the sweep's directory. Used as a
    context manager, Ray stays up between ``run`` calls and shared inputs already in its object
    store (by key) are not put again.
    """

    name = "ray"

    def __init__(self, jobs: int | None = None, address: str | None = None) -> None:
        self.jobs = jobs
        self.address = address
        self._persistent = False
        self._started = False
        self._refs: dict[str, Any] = {}

    def __enter__(self) -> RayExecutor:
        self._persistent = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._persistent = False
        self._shutdown()

    def _shutdown(self) -> None:
        self._refs = {}
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def _init(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "--executor", "ray", "ray is not installed (pip install 'acsim[ray]')"
            ) from None
        if not ray.is_initialized():
            self._started = True
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                # Workers of a local Ray import what this process can (e.g. a run_fn in a script or test).
                path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
                # Ray starts workers at nice 15; runs are the whole point here, so give them the
                # priority a local pool worker has.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(
                    num_cpus=self.jobs or len(os.sched_getaffinity(0)),
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                )
        return ray

    def run(
        self, tasks: Sequence[Task], shared: Mapping[str, Any], run_fn: RunFn | None
    ) -> Iterator[RunOutcome]:
        """Submit one Ray task per configuration; shared inputs go through the object store once."""
        ray = self._init()
        try:
            for key, value in shared.items():
                if key not in self._refs:
                    self._refs[key] = ray.put(value)
            refs = self._refs
            remote = ray.remote(num_cpus=1, max_retries=0)(execute_point)
            futures = {
                remote.remote(
                    t.point, None, refs.get(t.inputs_key) if t.inputs_key else None, run_fn, True
                ): t
                for t in tasks
            }
            while futures:
                done, _ = ray.wait(list(futures), num_returns=1)
                task = futures.pop(done[0])
                try:
                    yield ray.get(done[0])
                except Exception as exc:  # the task's worker died or could not unpickle its arguments
                    cause = getattr(exc, "cause", None) or exc
                    detail = _ANSI.sub("", str(exc))
                    yield RunOutcome(
                        task.point.name,
                        error=f"ray task failed: {type(cause).__name__}: "
                        f"{_ANSI.sub('', str(cause)).strip()}\n\n{detail}",
                    )
        finally:
            if not self._persistent:
                self._shutdown()


EXECUTORS: dict[str, type[LocalExecutor] | type[RayExecutor]] = {"local": LocalExecutor, "ray": RayExecutor}


def make_executor(executor: str, jobs: int | None, address: str | None) -> LocalExecutor | RayExecutor:
    """The executor named ``executor``; ConfigError naming the flag for a bad name or count."""
    if executor not in EXECUTORS:
        raise ConfigError("--executor", executor, "allowed: " + ", ".join(EXECUTORS))
    if jobs is not None and jobs < 1:
        raise ConfigError("--jobs", jobs, "must be >= 1")
    return EXECUTORS[executor](jobs=jobs, address=address)


# ---------------------------------------------------------------------------
# The sweep


def sweep_output(exp: cfg.Experiment) -> Path:
    """Where ``acsim sweep`` writes by default: ``<output>-sweep`` (``acsim run`` writes ``<output>``)."""
    out = Path(exp.output)
    return out.with_name(out.name + "-sweep")


def _read_summary(path: Path) -> pd.DataFrame:
    """A run's summary.csv; InputError when it is missing, empty or damaged."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable summary ({type(exc).__name__})") from None
    if not len(df) or "system" not in df.columns:
        raise InputError(path, "holds no summary rows")
    return df


def is_done(run_dir: Path) -> bool:
    """Whether a configuration's run finished: its ``done`` marker (written last) and a readable summary."""
    if not (run_dir / DONE_MARKER).is_file():
        return False
    try:
        _read_summary(run_dir / "summary.csv")
    except InputError:
        return False
    return True


def _damaged(run_dir: Path) -> bool:
    """Marked done, but its summary.csv is empty or damaged: it runs again."""
    return (run_dir / DONE_MARKER).is_file() and not is_done(run_dir)


def _record_outcome(task: Task, outcome: RunOutcome) -> None:

    run_dir = task.run_dir
    if outcome.error is not None:
        outputs.mark_run_dir(run_dir)
        atomic_write_text(run_dir / ERROR_FILE, outcome.error)
        return
    outputs.mark_run_dir(run_dir)
    for rel, data in (outcome.files or {}).items():
        if rel not in (DONE_MARKER, "summary.csv"):
            atomic_write_bytes(run_dir / rel, data)
    if outcome.files and "summary.csv" in outcome.files:
        atomic_write_bytes(run_dir / "summary.csv", outcome.files["summary.csv"])
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    marker = {
        "values": task.point.values,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(run_dir / DONE_MARKER, json.dumps(marker, default=str, indent=1) + "\n")


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def merge_summaries(points: Sequence[SweepPoint], runs_dir: Path) -> pd.DataFrame:
    """One table over every finished configuration: ``run``, the varied columns, then its summary rows."""

    frames = []
    for p in points:
        run_dir = runs_dir / p.name
        if not is_done(run_dir):
            continue
        df = _read_summary(run_dir / "summary.csv")
        varied = {"run": p.name, **{k: _cell(v) for k, v in p.values.items()}}
        df = df.drop(columns=[c for c in varied if c in df.columns])
        for i, (col, value) in enumerate(varied.items()):
            df.insert(i, col, [value] * len(df))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run"])


def _write_index(
    points: Sequence[SweepPoint], runs_dir: Path, out_dir: Path, elapsed: Mapping[str, float]
) -> None:


    rows = []
    for p in points:
        run_dir = runs_dir / p.name
        err = run_dir / ERROR_FILE
        status = "done" if is_done(run_dir) else "failed" if err.is_file() else "pending"
        error = err.read_text(encoding="utf-8").splitlines()[0] if status == "failed" else ""
        row = {"run": p.name, **{k: _cell(v) for k, v in p.values.items()}, "status": status}
        seconds = elapsed.get(p.name, float("nan"))
        if status == "done" and p.name not in elapsed:  # finished by an earlier invocation
            with contextlib.suppress(ValueError, OSError):
                seconds = json.loads((run_dir / DONE_MARKER).read_text(encoding="utf-8"))["elapsed_s"]
        row.update(elapsed_s=seconds, error=error)
        rows.append(row)
    atomic_write_csv(out_dir / "runs.csv", pd.DataFrame(rows))


@dataclasses.dataclass
class PointsResult:
    """The outcome of :func:`run_points`."""

    completed: list[str]  # run names finished by this call
    skipped: list[str]  # run names already finished before it
    failed: dict[str, str]  # run name -> one-line error
    elapsed: dict[str, float]  # run name -> seconds, for the runs of this call


def _prepare_tasks(
    todo: Sequence[SweepPoint],
    runs_dir: Path,
    key_of: Callable[[SweepPoint], str],
    prepare: PrepareFn,
    progress: bool,
    stream: Any,
) -> tuple[dict[str, Task], dict[str, Any], dict[str, str]]:
    """(tasks by run name, prepared inputs by key, failed run -> error): each group's inputs are
    prepared once; a group whose preparation fails fails its runs, with the error in each run's folder."""
    failed: dict[str, str] = {}
    shared: dict[str, Any] = {}
    prep_errors: dict[str, str] = {}  # inputs key -> error with traceback
    tasks: dict[str, Task] = {}
    for p in todo:
        key = key_of(p)
        if key not in shared and key not in prep_errors:
            try:
                shared[key] = prepare(p.exp, progress=progress)
                _say_kept(shared[key], stream)
            except Exception as exc:  # e.g. a missing trace file: fails the configurations that need it
                prep_errors[key] = (
                    f"preparing inputs failed: {type(exc).__name__}: {exc}\n\n" + traceback.format_exc()
                )
        if key in prep_errors:
            outputs.mark_run_dir(runs_dir / p.name)
            atomic_write_text(runs_dir / p.name / ERROR_FILE, prep_errors[key])
            failed[p.name] = prep_errors[key].splitlines()[0]
        else:
            tasks[p.name] = Task(point=p, run_dir=runs_dir / p.name, inputs_key=key)
    return tasks, shared, failed


def run_points(
    points: Sequence[SweepPoint],
    runs_dir: Path,
    *,
    executor: str | LocalExecutor | RayExecutor = "local",
    jobs: int | None = None,
    address: str | None = None,
    run_fn: RunFn | None = None,
    prepare_fn: PrepareFn | None = None,
    inputs_key: Callable[[SweepPoint], str] | None = None,
    progress: bool = True,
    stream: Any = None,
    desc: str = "runs",
) -> PointsResult:
    """Run every point whose directory ``runs_dir/<name>`` is not done yet (resumable, one per point).

    The machinery of :func:`run_sweep`, for callers that choose their own points (``acsim plan``).
    ``executor``: a name of :data:`EXECUTORS` (built with ``jobs`` and ``address``) or an
    executor the caller keeps open across calls (see :class:`LocalExecutor`).
    ``inputs_key(point)`` groups points that share one prepared input (default: the point's
    :attr:`SweepPoint.inputs_key`); ``prepare_fn`` is called once per group, in this process,
    with the first point's experiment. A point marked done whose summary is empty or damaged
    runs again, with a note.
    """
    stream = stream or sys.stderr
    pool = make_executor(executor, jobs, address) if isinstance(executor, str) else executor
    key_of = inputs_key or (lambda p: p.inputs_key)
    skipped = [p.name for p in points if is_done(runs_dir / p.name)]
    todo = [p for p in points if p.name not in set(skipped)]
    for p in todo:
        if _damaged(runs_dir / p.name):
            print(
                f"note: {runs_dir / p.name / 'summary.csv'} is empty or damaged; running {p.name} again",
                file=stream,
            )
    prepare = prepare_fn or prepare_inputs
    tasks, shared, failed = _prepare_tasks(todo, runs_dir, key_of, prepare, progress, stream)
    completed: list[str] = []
    elapsed: dict[str, float] = {}
    bar = tqdm(
        total=len(tasks),
        unit="run",
        desc=desc,
        disable=not progress or not tasks,
        file=stream,
        dynamic_ncols=True,
    )
    try:
        for outcome in pool.run(list(tasks.values()), shared, run_fn):
            _record_outcome(tasks[outcome.name], outcome)
            elapsed[outcome.name] = outcome.elapsed_s
            if outcome.error is None:
                completed.append(outcome.name)
            else:
                failed[outcome.name] = outcome.error.splitlines()[0]
                bar.write(f"FAILED {outcome.name}: {failed[outcome.name]}", file=stream)
            bar.update(1)
            bar.set_postfix(failed=len(failed), refresh=False)
    finally:
        bar.close()
    return PointsResult(completed, skipped, failed, elapsed)


def run_sweep(
    exp: cfg.Experiment,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    out_dir: Path | str | None = None,
    run_fn: RunFn | None = None,
    prepare_fn: PrepareFn | None = None,
    progress: bool = True,
    stream: Any = None,
    plots: bool = False,
) -> SweepResult:
    """Run every configuration of ``exp.sweep`` that has not finished yet; merge the summaries.

    ``out_dir`` defaults to :func:`sweep_output`; it must be missing, empty or an acsim sweep
    directory, and is locked while the sweep writes it (figures too, with ``plots``).
    ``executor`` names an entry of :data:`EXECUTORS`; ``jobs`` is the number of worker
    processes (default: the usable CPUs); ``address`` is a Ray cluster to connect to.
    ``run_fn(exp, out_dir=, inputs=, progress=)`` and ``prepare_fn(exp, progress=)`` default
    to :func:`sim.app.run.run_experiment` and :func:`sim.app.run.prepare_inputs`; both must be
    module-level functions (they are pickled to the workers). Returns a :class:`SweepResult`;
    failing configurations are in ``result.failed`` (their ``error.txt`` holds the traceback).
    """
    stream = stream or sys.stderr
    make_executor(executor, jobs, address)  # bad names and counts fail before anything runs
    out = Path(out_dir) if out_dir is not None else sweep_output(exp)
    points = expand_sweep(exp)
    with outputs.sweep_dir(out):
        result = _sweep_into(exp, points, out, executor, jobs, address, run_fn, prepare_fn, progress, stream)
        if plots and len(result.summary):
            from plots import plot_results

            plot_results(out)
    return result


def _sweep_into(
    exp: cfg.Experiment,
    points: list[SweepPoint],
    out: Path,
    executor: str,
    jobs: int | None,
    address: str | None,
    run_fn: RunFn | None,
    prepare_fn: PrepareFn | None,
    progress: bool,
    stream: Any,
) -> SweepResult:
    t0 = time.perf_counter()
    runs_dir = out / RUNS_DIR
    atomic_write_text(out / "sweep.yaml", cfg.dump(exp))
    done = sum(is_done(runs_dir / p.name) for p in points)
    print(
        f"sweep {exp.name}: {len(points)} configurations, {done} already done, {len(points) - done} to run "
        f"({EXECUTORS[executor].name} executor) -> {out}",
        file=stream,
    )
    if not exp.sweep:
        print(f"note: {exp.name} has no sweep block; running its base configuration once", file=stream)
    res = PointsResult([], [], {}, {})
    try:
        res = run_points(
            points,
            runs_dir,
            executor=executor,
            jobs=jobs,
            address=address,
            run_fn=run_fn,
            prepare_fn=prepare_fn,
            progress=progress,
            stream=stream,
            desc=f"sweep {exp.name}",
        )
    finally:
        summary = merge_summaries(points, runs_dir)
        atomic_write_csv(out / "summary.csv", summary)
        _write_index(points, runs_dir, out, res.elapsed)
    result = SweepResult(out, summary, res.completed, res.skipped, res.failed, time.perf_counter() - t0)
    print(
        f"sweep {exp.name}: {len(res.completed)} run, {len(res.skipped)} skipped, {len(res.failed)} failed "
        f"in {result.elapsed_s:.1f} s; summary: {out / 'summary.csv'}",
        file=stream,
    )
    for name, msg in res.failed.items():
        print(f"  failed {name}: {msg} (see {runs_dir / name / ERROR_FILE})", file=stream)
    return result


# ---------------------------------------------------------------------------
# Command line (wired by sim.app.cli)


def add_sweep_arguments(parser: argparse.ArgumentParser, output_help: str | None = None) -> None:
    """Options of ``acsim sweep`` (the file and --set are added by the CLI); ``acsim plan`` shares them."""
    parser.add_argument(
        "--executor", choices=sorted(EXECUTORS), default="local", help="local process pool (default) or ray"
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help="worker processes (local) or CPUs of a local Ray (default: usable CPUs)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="address of an existing Ray cluster, e.g. ray://head:10001 or auto (ray only)",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help=output_help or "sweep directory (default: the file's output: with -sweep appended, beside what `acsim run` writes)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip drawing figures after the sweep")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def resume_command(args: argparse.Namespace) -> str:
    """The exact command line that resumes this sweep (every option as the user gave it)."""
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = ["sweep", str(args.file)]
        for item in getattr(args, "overrides", None) or []:
            argv += ["--set", item]
        if args.output is not None:
            argv += ["--output", str(args.output)]
    return "acsim " + shlex.join(argv)


def sweep_command(args: argparse.Namespace) -> int:
    """``acsim sweep FILE``: run (or resume) the sweep; exit 1 if any configuration failed."""
    exp = preflight(cfg.load(args.file, getattr(args, "overrides", None)))
    try:
        result = run_sweep(
            exp,
            executor=args.executor,
            jobs=args.jobs,
            address=args.address,
            out_dir=args.output,
            progress=not args.quiet,
            plots=exp.plots and not args.no_plots,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished runs are kept; run `{resume_command(args)}` again to resume",
            file=sys.stderr,
        )
        return 130
    if exp.plots and not args.no_plots and len(result.summary):
        figures = sorted((result.out_dir / "plots").glob("*.*"))
        print(f"{len(figures)} figure files in {result.out_dir / 'plots'}", file=sys.stderr)
    return 0 if result.ok else 1
