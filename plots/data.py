"""Reading result directories for the figures: summaries, records, time series.

A *run* directory holds ``summary.csv``, ``records/<system>.parquet`` and, in full mode,
``timeseries/<system>.csv``; a *sweep* directory holds a merged ``summary.csv``, ``runs.csv``
and ``runs/<name>/`` run directories (see :mod:`sim.app.sweep`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.base import strict_yaml
from sim.base.errors import InputError
from sim.base.records import REUSE_OUTCOMES

# Columns a sweep adds to a summary that are not settings someone varied.
_SWEEP_META = ("run", "status", "elapsed_s", "error")
# Swept fields that set the offered load; the SLO figure uses them when records are absent.
LOAD_FIELDS = ("trace.arrival.rate", "trace.time_scale")
# Columns the figures compute with: a damaged file that holds text there is reported, not drawn.
NUMERIC_SUMMARY = (
    "requests",
    "hit_rate",
    "compute_saved",
    "mean_latency_s",
    "p50_latency_s",
    "p95_latency_s",
    "p99_latency_s",
    "mean_queue_s",
    "throughput_rps",
    "gpu_busy_s",
    "gpu_utilization",
    "slo_attainment",
    "quality_clip",
    "cost_usd",
    "cost_per_1k_images_usd",
    "holes",
    "evictions",
    "cache_capacity",
)
NUMERIC_RECORDS = ("arrival_s", "start_s", "finish_s", "queue_s", "latency_s", "similarity", "quality", "gpu_s")
NUMERIC_TIMESERIES = ("t_s", "arrivals", "queue_len", "queue", "queue_length", "hit_rate")


@dataclasses.dataclass
class Run:
    """One run directory and the values its sweep varied (empty for a single run)."""

    name: str
    path: Path
    values: dict[str, Any]

    @property
    def systems(self) -> list[str]:
        """Systems with a records file, in name order."""
        return sorted(p.stem for p in (self.path / "records").glob("*.parquet"))


@dataclasses.dataclass
class Results:
    """Everything a figure may read from one run or sweep directory."""

    root: Path
    summary: pd.DataFrame  # has a ``run`` column (the run directory name)
    runs: list[Run]
    varied: list[str]  # columns of ``summary`` that the sweep varied
    config: dict[str, Any]  # the resolved base config

    def run(self, name: str) -> Run:
        """The run called ``name``."""
        return next(r for r in self.runs if r.name == name)


def _read_csv(path: Path, numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table acsim wrote, checked whole first: pandas would read a cut or padded file quietly."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a readable CSV table: not UTF-8 text ({exc.reason})") from None
    _check_whole(text, path)
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"not a readable CSV table: {exc}") from None
    return _numbers(df, path, numeric)


def _check_whole(text: str, path: Path) -> None:
    """InputError unless ``text`` is a complete table: no NUL bytes, every row as wide as the header,
    and a final newline (acsim writes one; a file cut short by a full disk or a copy has none)."""
    rows = list(csv.reader(io.StringIO(text.replace("\0", "\ufffd"))))
    for i, line in enumerate(text.splitlines()):
        if "\0" in line:
            raise InputError(path, "holds NUL bytes: the file is damaged", row=i if i else None, line=None if i else 1)
    if not rows:
        return
    width = len(rows[0])
    for i, row in enumerate(rows[1:], start=1):
        if row and len(row) != width:
            raise InputError(path, f"has {len(row)} fields where the header has {width}: the file is damaged", row=i)
    if not text.endswith("\n"):
        raise InputError(path, "ends in the middle of a row: the file was cut short", row=len(rows) - 1)


def _numbers(df: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """``df`` with ``columns`` (those present) as numbers; InputError at the first cell that is not one."""
    for name in columns:
        if name not in df.columns:
            continue
        col = df[name]
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            continue
        num = pd.to_numeric(col, errors="coerce")
        bad = (num.isna() & col.notna() & (col.astype(str).str.strip() != "")).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(path, f"{col.iloc[i]!r} is not a number", row=i + 1, column=name)
        df[name] = num.astype(float)
    return df


def load_results(results_dir: str | Path) -> Results:
    """Read a run or sweep directory; raises InputError when it holds no summary.csv."""
    root = Path(results_dir)
    summary_path = root / "summary.csv"
    if not summary_path.is_file():
        raise InputError(root, "no summary.csv here: not an acsim run or sweep directory")
    summary = _read_csv(summary_path, NUMERIC_SUMMARY)
    if not len(summary):
        raise InputError(summary_path, "holds no rows: no finished run to draw")
    if "system" not in summary.columns:
        raise InputError(summary_path, "missing the 'system' column", column="system")
    config: dict[str, Any] = {}
    for name in ("sweep.yaml", "config.yaml"):
        if (root / name).is_file():
            config = strict_yaml.read(root / name, name)
            if not isinstance(config, dict):
                raise InputError(root / name, "expected a mapping of config fields")
            break
    if not (root / "runs").is_dir():
        summary.insert(0, "run", "")
        return Results(root, summary, [Run("", root, {})], [], config)
    index = _read_csv(root / "runs.csv") if (root / "runs.csv").is_file() else summary.drop_duplicates("run")
    sys_col = list(index.columns).index("system") if "system" in index.columns else len(index.columns)
    varied = [c for c in list(index.columns)[:sys_col] if c not in _SWEEP_META]
    runs = []
    for _, row in index.iterrows():
        path = root / "runs" / str(row["run"])
        if (path / "summary.csv").is_file() and (row.get("status", "done") == "done"):
            runs.append(Run(str(row["run"]), path, {c: row[c] for c in varied}))
    return Results(root, summary, runs, varied, config)


def distinguishing_keys(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """The fewest of ``keys`` (in order) that tell ``df``'s settings apart: of fields swept
    together (a trace's source, path and warm-up in a zip) the first is enough."""
    varying = [k for k in keys if df[k].astype(str).nunique() > 1]
    if not varying:
        return []
    total = df[varying].astype(str).drop_duplicates().shape[0]
    chosen: list[str] = []
    for k in varying:
        chosen.append(k)
        if df[chosen].astype(str).drop_duplicates().shape[0] == total:
            break
    return chosen


def read_records(run: Run, system: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A system's per-request records (only ``columns``), or None when the file is absent."""
    path = run.path / "records" / f"{system}.parquet"
    if not path.is_file():
        return None
    try:
        df = pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(path, f"not a readable records parquet ({type(exc).__name__}: {exc})") from None
    return _numbers(df, path, NUMERIC_RECORDS)


def offered_load_rps(run: Run) -> float:
    """Requests per second that arrived over the run's trace (from any system's records)."""
    for system in run.systems:
        rec = read_records(run, system, ["arrival_s"])
        if rec is not None and len(rec) > 1:
            arrivals = rec["arrival_s"].to_numpy()
            span = float(np.nanmax(arrivals) - np.nanmin(arrivals))
            return len(arrivals) / span if span > 0 else float("nan")
    return float("nan")


# Names the engine's per-bin CSV (sim.results.metrics.timeseries) may use for each quantity we draw.
_TS_ALIASES = {
    "queue": ("queue_len", "queue", "queue_length"),
    "hit_rate": ("hit_rate",),
}


def raw_timeseries(run: Run, system: str) -> pd.DataFrame | None:
    """``timeseries/<system>.csv`` as the engine wrote it (checked whole), or None without one."""
    path = run.path / "timeseries" / f"{system}.csv"
    return _read_csv(path, NUMERIC_TIMESERIES) if path.is_file() else None


def timeseries(run: Run, system: str) -> pd.DataFrame | None:
    """Per-minute ``minute, load_rps, queue, hit_rate`` for one system.

    Read from ``timeseries/<system>.csv`` (columns ``t_s, arrivals, queue_len, hit_rate``)
    when it has them all; otherwise derived from the records (arrivals, the waiting count
    at each minute boundary, the share of requests served from the cache). None when
    neither file has arrival times.
    """
    path = run.path / "timeseries" / f"{system}.csv"
    if path.is_file():
        raw = _read_csv(path, NUMERIC_TIMESERIES)
        cols = {
            name: next((a for a in aliases if a in raw.columns), None)
            for name, aliases in _TS_ALIASES.items()
        }
        if "t_s" in raw.columns and "arrivals" in raw.columns and None not in cols.values() and len(raw) > 1:
            t = raw["t_s"].to_numpy(dtype=float)
            bin_s = float(np.median(np.diff(t)))
            return pd.DataFrame(
                {
                    "minute": t / 60.0,
                    "load_rps": raw["arrivals"].to_numpy(dtype=float) / bin_s,
                    "queue": raw[cols["queue"]].to_numpy(dtype=float),
                    "hit_rate": raw[cols["hit_rate"]].to_numpy(dtype=float),
                }
            )
    return _timeseries_from_records(run, system)


def _timeseries_from_records(run: Run, system: str) -> pd.DataFrame | None:
    rec = read_records(run, system, ["arrival_s", "queue_s", "outcome"])
    if rec is None or not len(rec) or rec["arrival_s"].isna().all():
        return None
    arrival = rec["arrival_s"].to_numpy(dtype=float)
    minute = np.floor(arrival / 60.0).astype(np.int64)
    n_min = int(minute.max()) + 1
    arrivals = np.bincount(minute, minlength=n_min)
    reused = np.bincount(
        minute, weights=rec["outcome"].astype(str).isin(REUSE_OUTCOMES).to_numpy(float), minlength=n_min
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_rate = np.where(arrivals > 0, reused / arrivals, np.nan)
    queue = np.full(n_min, np.nan)
    if rec["queue_s"].notna().any():
        # Waiting at a boundary t: arrived by t but not started by t.
        start = np.sort(arrival + rec["queue_s"].fillna(0.0).to_numpy(dtype=float))
        edges = (np.arange(n_min) + 1) * 60.0
        queue = np.searchsorted(np.sort(arrival), edges, side="right") - np.searchsorted(
            start, edges, side="right"
        )
    return pd.DataFrame(
        {"minute": np.arange(n_min), "load_rps": arrivals / 60.0, "queue": queue, "hit_rate": hit_rate}
    )
