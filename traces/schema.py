"""The request trace: one validated, time-sorted table that every part of acsim reads.

A trace row is one request: ``timestamp`` (UTC), ``prompt``, optional ``user``, ``model`` (the
base model it asked for), ``seed``, ``steps``, ``width``, ``height``, ``loras`` (adapters it
loads), ``images`` (images it makes from its prompt in one batch), and the derived ``prompt_id`` (dense index of the unique prompt
in order of first appearance). :func:`normalise` turns any loader's raw table into that shape and
reports bad input as :class:`sim.base.errors.InputError` naming file, row and column.

Rows of real DiffusionDB files are not in time order, so :func:`normalise` sorts (stably). A file
written by :func:`write_parquet` is sorted by construction and says so in its parquet metadata;
:func:`read_parquet` therefore treats unsorted timestamps in such a file as corruption (error),
while any other parquet table with ``timestamp`` and ``prompt`` columns is simply sorted.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.base.errors import InputError
from sim.base.io import atomic_path

if TYPE_CHECKING:
    from collections.abc import Mapping

REQUIRED = ("timestamp", "prompt")
OPTIONAL_INT = ("seed", "steps", "width", "height", "loras", "images")
# Optional text columns: who sent a request, and which base model it asked for.
OPTIONAL_TEXT = ("user", "model")
COLUMNS = ("timestamp", "prompt", "prompt_id", *OPTIONAL_TEXT, *OPTIONAL_INT)
# Parquet key-value metadata that marks a file written by write_parquet.
META_KEY = b"acsim.trace"
FORMAT_VERSION = 1


@dataclass(eq=False)
class Trace:
    """A validated request trace (see :func:`normalise` for the table's shape).

    ``time_scale`` > 1 compresses the clock: :attr:`arrival_s` is divided by it while
    ``df.timestamp`` keeps the trace's own times (so windows stay on the real clock).
    Treat a Trace as immutable: the array properties are computed once and cached.
    ``available`` is how many requests the source held when only the first ``len(self)`` were
    kept (``trace.requests``); None when the trace is all there was.
    """

    df: pd.DataFrame
    name: str = "trace"
    source: str = ""
    time_scale: float = 1.0
    available: int | None = None

    def __len__(self) -> int:
        return len(self.df)

    @cached_property
    def prompts(self) -> list[str]:
        """Unique prompt texts; list index = prompt_id."""
        first = ~self.df["prompt_id"].duplicated()
        return self.df["prompt"][first].tolist()

    @cached_property
    def arrival_s(self) -> np.ndarray:
        """float64 seconds since the first request, divided by ``time_scale``."""
        ns = self.df["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        if len(ns) == 0:
            return np.zeros(0)
        return (ns - ns[0]).astype(np.float64) / 1e9 / self.time_scale

    @cached_property
    def prompt_ids(self) -> np.ndarray:
        """int32 prompt id of every request."""
        return self.df["prompt_id"].to_numpy(dtype=np.int32)

    @cached_property
    def user_codes(self) -> np.ndarray:
        """int32 dense user code of every request (order of first appearance); -1 when unknown."""
        codes, _ = pd.factorize(self.df["user"], use_na_sentinel=True)
        return codes.astype(np.int32)

    @property
    def n_prompts(self) -> int:
        """Number of unique prompts."""
        return int(self.df["prompt_id"].max()) + 1 if len(self.df) else 0


def _fail(path: object, problem: str, index: np.ndarray, column: str) -> None:
    """Raise for the first offending position (0-based positions -> 1-based data rows)."""
    bad = np.flatnonzero(index)
    if len(bad):
        more = f" ({len(bad) - 1} more rows like it)" if len(bad) > 1 else ""
        raise InputError(path, problem + more, row=int(bad[0]) + 1, column=column)


def _timestamps(col: pd.Series, path: object) -> pd.Series:
    """Parse a timestamp column to datetime64[ns, UTC]; naive times are taken as UTC."""
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col.dtype):
        ts = col
    elif pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:
        ts = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
        bad = (ts.isna() & col.notna()).to_numpy()
        if bad.any():
            value = col.iloc[int(np.flatnonzero(bad)[0])]
            _fail(
                path,
                f"unparseable timestamp {value!r}; expected ISO 8601 like 2022-08-13 20:04:00+00:00",
                bad,
                "timestamp",
            )
    else:
        raise InputError(
            path,
            f"timestamp column has type {col.dtype}; expected datetimes or ISO 8601 text",
            column="timestamp",
        )
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    try:
        ts = ts.astype("datetime64[ns, UTC]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        # Datetimes of a coarser unit (a parquet file's) beyond what nanoseconds hold.
        years = ts.dt.year.to_numpy()
        _fail(path, "timestamp outside the years 1678..2261 that acsim's clock covers",
              (years < 1678) | (years > 2261), "timestamp")
        raise

    _fail(path, "missing timestamp (NaN/NaT)", ts.isna().to_numpy(), "timestamp")
    return ts


# What a request's seed, step count and image size may be (a seed is any 64-bit integer).
INT_RANGES = {
    "seed": (-(2**63), 2**63 - 1),
    "steps": (1, 10_000),
    "width": (1, 65_536),
    "height": (1, 65_536),
    "loras": (0, 1_000),
    "images": (1, 1_000),
}


def _int_column(col: pd.Series, name: str, path: object) -> pd.Series:
    """Nullable Int64 in :data:`INT_RANGES`; reject text, fractions, infinities and what is out of range."""
    num = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_numeric_dtype(col.dtype) else col
    bad = num.isna().to_numpy() & col.notna().to_numpy()
    _fail(path, f"{name} must be an integer", bad, name)
    arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
    frac = np.isfinite(arr) & (arr != np.round(arr))
    _fail(path, f"{name} must be an integer", frac | np.isinf(arr), name)
    lo, hi = INT_RANGES[name]
    allowed = f"{name} must be in {lo:,}..{hi:,}"
    _fail(path, allowed, (arr < float(lo)) | (arr > float(hi)), name)
    try:
        return num.astype("Int64")
    except (OverflowError, TypeError, ValueError):
        # Within float rounding of a 64-bit end, yet beyond it: compared exactly.
        _fail(path, allowed, np.array([v == v and v is not None and not lo <= int(v) <= hi for v in num.tolist()]), name)
        raise


def normalise(
    df: pd.DataFrame,
    source_path: object,
    *,
    require_sorted: bool = False,
    rows: np.ndarray | None = None,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Validate a raw request table and return it in trace shape.

    ``df`` must hold ``timestamp`` (datetimes or ISO text) and ``prompt`` (non-empty text);
    ``user``, ``model``, ``seed``, ``steps``, ``width``, ``height``, ``loras``, ``images`` are optional; other
    columns are dropped.
    Rows are sorted by time (stable, so equal times keep file order) and ``prompt_id`` is
    assigned densely in order of first appearance. With ``require_sorted`` (files that claim to
    be acsim traces) out-of-order times are an error instead. Errors name ``source_path``, the
    1-based data row in the input order and the column; ``rows`` gives the input row number of
    each row of ``df`` when it is not the position (rows were dropped or selected before), and
    ``columns`` the input's name of a trace column when it differs.
    """
    try:
        return _normalise(df, source_path, require_sorted)
    except InputError as exc:
        row = exc.row
        if row is not None and rows is not None and 0 < row <= len(rows):
            row = int(rows[row - 1])
        column = (columns or {}).get(exc.column or "", exc.column)
        if (row, column) == (exc.row, exc.column):
            raise
        raise InputError(source_path, exc.problem, row=row, column=column) from None


def drop_empty_prompts(df: pd.DataFrame, source_path: object) -> tuple[pd.DataFrame, np.ndarray]:
    """Drop requests with a missing or blank prompt (real DiffusionDB has some: an empty prompt
    cannot be embedded meaningfully and no trace may hold one), warning once with their rows.

    Every importer does this, the same way. Returns the kept rows and their 1-based input row
    numbers (for :func:`normalise` to name rows as the input numbers them).
    """
    numbers = np.arange(1, len(df) + 1)
    if "prompt" not in df.columns:
        return df, numbers
    prompt = df["prompt"]
    text = prompt.where(prompt.map(lambda v: isinstance(v, str)), "x") if prompt.dtype == object else prompt
    empty = (prompt.isna() | (text.astype("str").str.strip() == "")).to_numpy()
    if empty.any():
        warn_dropped(source_path, numbers[empty])
        df = df[~empty].reset_index(drop=True)
    return df, numbers[~empty]


def warn_dropped(source_path: object, rows: np.ndarray | list[int], unit: str = "data rows") -> None:
    """The one warning every importer gives for requests dropped for an empty prompt.

    ``unit`` names what the numbers count: ``data rows`` of a table, ``lines`` of a text file.
    """
    rows = list(rows)
    shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
    warnings.warn(
        f"{source_path}: dropped {len(rows)} request(s) with an empty prompt ({unit} {shown})",
        stacklevel=3,
    )


def _normalise(df: pd.DataFrame, source_path: object, require_sorted: bool) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(
            source_path, f"missing required column(s) {missing}; found {list(df.columns)}", column=missing[0]
        )
    if len(df) == 0:
        raise InputError(source_path, "the trace has no requests")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    out["timestamp"] = _timestamps(df["timestamp"].reset_index(drop=True), source_path)

    prompt = df["prompt"].reset_index(drop=True)
    if not (pd.api.types.is_string_dtype(prompt.dtype) or prompt.dtype == object):
        raise InputError(
            source_path, f"prompt column has type {prompt.dtype}; expected text", column="prompt"
        )
    if prompt.dtype == object:
        not_text = np.array([v is not None and not isinstance(v, str) for v in prompt], dtype=bool)
        _fail(source_path, "prompt must be text", not_text & prompt.notna().to_numpy(), "prompt")
    prompt = prompt.astype("str")
    # len/isspace run in arrow for arrow-backed text (a regex would fall back to Python objects).
    empty = prompt.isna() | (prompt.str.len() == 0) | prompt.str.isspace()
    _fail(source_path, "empty prompt", empty.to_numpy(), "prompt")
    out["prompt"] = prompt

    for name in OPTIONAL_TEXT:
        if name in df.columns:
            col = df[name].reset_index(drop=True)
            out[name] = col.astype("str").where(col.notna(), None)
        else:
            out[name] = pd.Series([None] * len(df), dtype="str")
    for name in OPTIONAL_INT:
        if name in df.columns:
            out[name] = _int_column(df[name].reset_index(drop=True), name, source_path)
        else:
            out[name] = pd.array([pd.NA] * len(df), dtype="Int64")

    ns = out["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    back = np.flatnonzero(np.diff(ns) < 0)
    if len(back):
        if require_sorted:
            raise InputError(
                source_path,
                "timestamps go backwards in a file that claims to be a time-sorted "
                "acsim trace (rewrite it with `acsim trace import --source parquet`)",
                row=int(back[0]) + 2,
                column="timestamp",
            )
        out = out.iloc[np.argsort(ns, kind="stable")].reset_index(drop=True)
    codes, _ = pd.factorize(out["prompt"], sort=False)
    out.insert(2, "prompt_id", codes.astype(np.int32))
    return out[list(COLUMNS)]


def read_parquet(path: str | Path) -> Trace:
    """Read a trace parquet (written by :func:`write_parquet`, or any table with the trace columns)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "trace file not found")
    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(p, f"not a readable parquet file ({exc})") from None
    meta = pf.schema_arrow.metadata or {}
    info = json.loads(meta[META_KEY]) if META_KEY in meta else None
    names = pf.schema_arrow.names
    wanted = [c for c in ("timestamp", "prompt", *OPTIONAL_TEXT, *OPTIONAL_INT) if c in names]
    try:
        table = pf.read(columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(p, f"not a readable parquet file ({exc})") from None
    table = _checked_utf8(table, p)
    raw, rows = table.to_pandas(), None
    if info is None:  # a foreign table is imported like any other; an acsim trace holds no empty prompt
        raw, rows = drop_empty_prompts(raw, p)
    df = normalise(raw, p, require_sorted=info is not None, rows=rows)
    info = info or {}
    return Trace(
        df,
        name=info.get("name", p.stem),
        source=info.get("source", str(p)),
        time_scale=float(info.get("time_scale", 1.0)),
    )


def _checked_utf8(table: pa.Table, path: Path) -> pa.Table:
    """Binary text columns must hold UTF-8; report the first row that does not."""
    for name in ("prompt", "user"):
        if name not in table.column_names:
            continue
        col = table.column(name)
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            for i, v in enumerate(col.to_pylist()):
                if v is None:
                    continue
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(
                        path, f"not UTF-8 text (byte {exc.start})", row=i + 1, column=name
                    ) from None
            table = table.set_column(table.column_names.index(name), name, col.cast(pa.string()))
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            try:
                col.validate(full=True)
            except pa.ArrowInvalid:
                return _checked_utf8(
                    table.set_column(table.column_names.index(name), name, col.cast(pa.binary())), path
                )
    return table


def is_acsim_trace(path: str | Path) -> bool:
    """Whether ``path`` is a trace file :func:`write_parquet` wrote (it carries acsim's metadata)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return META_KEY in meta


def write_parquet(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` atomically as parquet, marked as a time-sorted acsim trace.

    Name, source and ``time_scale`` travel in the file's metadata, so :func:`read_parquet`
    returns an equal trace.
    """
    table = pa.Table.from_pandas(trace.df[list(COLUMNS)], preserve_index=False)
    info = {
        "version": FORMAT_VERSION,
        "name": trace.name,
        "source": trace.source,
        "time_scale": trace.time_scale,
    }
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(info).encode()}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)
