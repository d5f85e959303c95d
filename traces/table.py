"""Any CSV or parquet table of requests, its columns named by a mapping (``trace.source: table``).

``columns`` maps a trace column (``prompt``, ``timestamp``, ``user``, ``model``, ``seed``,
``steps``, ``width``, ``height``, ``loras``) to the input's name for it: ``{"prompt": "text", "timestamp": "ts"}``, or
on the command line ``--columns prompt=text,timestamp=ts,user=uid``. A trace column left out is
read from an input column of the same name when there is one. A name may also point into a JSON
object stored in a column: ``timestamp=meta.created`` reads field ``created`` of the JSON text in
column ``meta`` (nested fields: ``meta.a.b``); a column whose own name contains the dot wins.

Timestamps may be numbers (seconds since 1970-01-01 UTC, or the ``time_unit`` given), ISO 8601
text (a time without a zone is UTC), or parquet datetimes. Requests with an empty prompt are
dropped with one warning, as by every importer; any other bad value is an error that names the
file, the data row (1-based, header excluded) and the input's column.

A log without prompt text (a production serving trace such as GenTD26) imports with
``prompts_from``: a prompt list (one per line, as ``source: prompts`` reads), or an acsim trace
parquet (its prompts in time order: ``acsim trace synth``'s stream), gives the prompts instead:
the table's first request in time gets the first, and so on, and the table is cut to the list's
length (a log's users, times and models with real or synthetic prompts, for caching runs).
``placeholder_prompts``: every request gets a prompt of its own, ``<request N>`` (N its data row),
so nothing repeats and nothing is similar. Such a trace answers capacity, routing, model-switch
and autoscaling questions with systems that look nothing up (``vanilla``); a cache has nothing to
find in it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.base.errors import InputError
from traces.prompts import decode_utf8
from traces.schema import REQUIRED, Trace, drop_empty_prompts, normalise

if TYPE_CHECKING:
    from collections.abc import Mapping

TIME_UNITS = ("s", "ms", "us", "ns")
_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
# pandas' nanosecond datetimes span 1677-09-21..2262-04-11; a year inside each end keeps rounding clear.
_MAX_ABS_SECONDS = 9.19e9
# Trace columns an input column can be mapped to (trace.columns, for source: table).
MAPPABLE_COLUMNS = ("timestamp", "prompt", "user", "model", "seed", "steps", "width", "height", "loras", "images")


def check_columns(columns: Mapping[str, str] | None) -> str | None:
    """What is wrong with a ``trace.columns`` mapping, or None."""
    for key, value in (columns or {}).items():
        if key not in MAPPABLE_COLUMNS:
            return f"{key!r} is not a trace column; allowed: {', '.join(MAPPABLE_COLUMNS)}"
        if not isinstance(value, str) or not value:
            return f"the input column for {key!r} must be a non-empty name, got {value!r}"
    return None


def parse_columns(text: str) -> dict[str, str]:
    """``"prompt=text,timestamp=ts"`` -> ``{"prompt": "text", "timestamp": "ts"}``."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected TRACE_COLUMN=INPUT_COLUMN, got {item.strip()!r}")
        if key.strip() in out:
            raise ValueError(f"{key.strip()!r} is mapped twice ({out[key.strip()]!r} and {value.strip()!r})")
        out[key.strip()] = value.strip()
    return out


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        text = decode_utf8(path, path.read_bytes())
        try:
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(path, f"not a readable CSV ({exc})") from None
    if suffix == ".parquet":
        try:
            return pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(path, f"not a readable parquet file ({exc})") from None
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    raise InputError(path, "expected a .csv or .parquet table")


def _json_field(raw: pd.DataFrame, spec: str, path: Path) -> pd.Series | None:
    """Values of ``COLUMN.FIELD[.FIELD]`` (JSON text in COLUMN), or None if no column prefixes ``spec``."""
    parts = spec.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        column = ".".join(parts[:cut])
        if column in raw.columns:
            fields = parts[cut:]
            break
    else:
        return None
    out = []
    for i, cell in enumerate(raw[column].tolist(), start=1):
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            out.append(None)
            continue
        try:
            value = json.loads(cell) if isinstance(cell, str | bytes) else cell
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not a JSON object ({exc.msg})", row=i, column=column) from None
        except RecursionError:
            raise InputError(path, "JSON nested too deeply to read", row=i, column=column) from None
        for field in fields:
            if not isinstance(value, dict) or field not in value:
                raise InputError(path, f"no JSON field {spec[len(column) + 1 :]!r}", row=i, column=column)
            value = value[field]
        out.append(value)
    return pd.Series(out, dtype=object)


def _timestamps(col: pd.Series, unit: str, path: Path, name: str) -> pd.Series:
    """Numbers (seconds or ``unit`` since the epoch), ISO text or datetimes -> UTC datetimes."""
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col.dtype):
        return col
    num = pd.to_numeric(col, errors="coerce")
    present = col.notna().to_numpy()
    if present.any() and num[present].notna().all():
        bad = np.flatnonzero(present & ~np.isfinite(num.to_numpy(dtype=np.float64, na_value=np.nan)))
        if len(bad):
            raise InputError(
                path, f"timestamp {col.iloc[bad[0]]!r} is not finite", row=int(bad[0]) + 1, column=name
            )
        seconds = num.to_numpy(dtype=np.float64, na_value=np.nan) / _PER_SECOND[unit]
        far = np.flatnonzero(present & (np.abs(seconds) > _MAX_ABS_SECONDS))
        if len(far):
            hint = " (if they count milliseconds, say so: --time-unit ms, trace.time_unit: ms)" if unit == "s" else ""
            raise InputError(
                path,
                f"timestamp {col.iloc[far[0]]!r} read as {unit} since 1970 falls outside the years "
                f"1679..2261 that acsim's clock covers{hint}",
                row=int(far[0]) + 1,
                column=name,
            )
        return pd.to_datetime(num, unit=unit, utc=True)
    # Text (normalise parses ISO 8601 and names the first row that is not).
    return col.map(lambda v: v if v is None or isinstance(v, str) else str(v))


def read_timestamps(path: str | Path, column: str, time_unit: str = "s") -> pd.Series:
    """One column of a CSV or parquet table as UTC datetimes (numbers in ``time_unit`` since the
    epoch, ISO 8601 text or datetimes); InputError naming the row and column of a bad value."""
    p = Path(path)
    raw = _read(p)
    if column not in raw.columns:
        got = _json_field(raw, column, p)
        if got is None:
            raise InputError(p, f"no column {column!r}; columns: {', '.join(map(str, raw.columns))}", column=column)
        col = got
    else:
        col = raw[column]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0]) + 1
        raise InputError(p, "timestamp is empty", row=row, column=column)
    ts = _timestamps(col, time_unit, p, column)
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(ts.dtype):
        ts = pd.to_datetime(ts, utc=True, errors="coerce", format="ISO8601")
        bad = np.flatnonzero(ts.isna().to_numpy())
        if len(bad):
            raise InputError(p, f"timestamp {col.iloc[bad[0]]!r} is not ISO 8601 text or a number", row=int(bad[0]) + 1, column=column)
    return ts


def load_table(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    time_unit: str = "s",
    placeholder_prompts: bool = False,
    prompts_from: str | Path | None = None,
) -> Trace:
    """Read a CSV or parquet request table through the column mapping (see the module docstring);
    ``placeholder_prompts``: the table has no prompts, give each request one of its own;
    ``prompts_from``: a prompt list (one per line) whose k-th prompt the table's k-th request in
    time gets, the table cut to the list's length."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "table not found")
    problem = check_columns(columns)
    if problem:
        raise InputError(p, f"bad column mapping: {problem}")
    if time_unit not in TIME_UNITS:
        raise InputError(p, f"time unit {time_unit!r}; allowed: {', '.join(TIME_UNITS)}")
    raw = _read(p)
    mapping = dict(columns or {})
    df = pd.DataFrame(index=raw.index)
    names: dict[str, str] = {}
    for trace_col in MAPPABLE_COLUMNS:
        spec = mapping.get(trace_col, trace_col)
        if trace_col == "prompt" and prompts_from is not None:
            continue  # the list's, below, once the times are known
        if spec in raw.columns:
            values = raw[spec]
            names[trace_col] = spec
        elif trace_col == "prompt" and placeholder_prompts and "prompt" not in mapping:
            values = pd.Series([f"<request {k}>" for k in range(1, len(raw) + 1)], index=raw.index, dtype=object)
        else:
            values = _json_field(raw, spec, p)
            if values is None:
                if trace_col in mapping or trace_col in REQUIRED:
                    how = f"(mapped from {trace_col!r}) " if trace_col in mapping else ""
                    raise InputError(
                        p,
                        f"no column {spec!r} {how}for the trace's {trace_col}; found {list(raw.columns)}"
                        + ("" if trace_col in mapping else f" (name it with --columns {trace_col}=COLUMN)"),
                        column=spec,
                    )
                continue
            names[trace_col] = spec.split(".")[0]
        if trace_col == "timestamp":
            values = _timestamps(values, time_unit, p, names[trace_col])
        df[trace_col] = values.to_numpy() if trace_col != "timestamp" else values
    if prompts_from is not None:
        df = _with_listed_prompts(df, prompts_from)
    df, rows = drop_empty_prompts(df, p)
    out = normalise(df, p, rows=rows, columns=names)
    return Trace(out, name=p.stem, source=f"table:{p}")


def _with_listed_prompts(df: pd.DataFrame, prompts_from: str | Path) -> pd.DataFrame:
    """The first requests in time, as many as the list has prompts, each with the next prompt (of
    a prompt list, or of an acsim trace parquet in its time order: a synthetic trace's stream)."""
    from traces.prompts import read_prompts
    from traces.schema import read_parquet

    if Path(prompts_from).suffix.lower() == ".parquet":
        prompts = read_parquet(prompts_from).df["prompt"].tolist()
    else:
        prompts = read_prompts(prompts_from)
    order = np.argsort(df["timestamp"].to_numpy(dtype="datetime64[ns]"), kind="stable")[: len(prompts)]
    out = df.iloc[order].copy()
    out["prompt"] = prompts[: len(out)]
    return out
