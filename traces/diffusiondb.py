"""DiffusionDB metadata: ``metadata.parquet`` (2M rows), ``metadata-large.parquet`` (14M) and CSV exports.

The parquet reader never turns the whole file into Python objects: it reads the ``timestamp``
column alone, picks the wanted rows (time window, then the ``requests`` earliest), and streams
only the needed columns, batch by batch, of only the row groups that hold a wanted row.

DiffusionDB times have minute resolution, so many requests share a timestamp. When every
timestamp is a whole minute, the n requests of a minute are spread inside it: ordered by a stable
hash of (prompt, user, seed), the k-th gets offset (k + 0.5) / n * 60 s. The result does not
depend on the order of rows in the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.base.errors import InputError
from traces.prompts import decode_utf8
from traces.schema import Trace, drop_empty_prompts, normalise

# DiffusionDB column -> trace column (only these are read).
RENAME = {
    "prompt": "prompt",
    "timestamp": "timestamp",
    "user_name": "user",
    "seed": "seed",
    "step": "steps",
    "width": "width",
    "height": "height",
}
_INPUT_NAMES = {v: k for k, v in RENAME.items() if k != v}  # errors name the file's columns
MINUTE_NS = 60 * 10**9
BATCH_ROWS = 65536


def load_diffusiondb(
    path: str | Path,
    requests: int | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> Trace:
    """Load DiffusionDB metadata (``.parquet`` or ``.csv`` by suffix).

    ``start`` (inclusive) and ``end`` (exclusive) window the trace on its original minute
    timestamps; ``requests`` keeps the earliest N requests of the window.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "DiffusionDB metadata file not found")
    if p.suffix.lower() == ".csv":
        raw = _read_csv(p)
        numbers, available = np.arange(1, len(raw) + 1), None
    elif p.suffix.lower() == ".parquet":
        raw, numbers, available = _read_parquet(p, requests, start, end)
    else:
        raise InputError(p, "expected a DiffusionDB metadata .parquet or a .csv export")
    raw, kept = drop_empty_prompts(raw, p)
    df = normalise(raw, p, rows=numbers[kept - 1], columns=_INPUT_NAMES)
    df = _window(df, start, end)
    if len(df) == 0:
        raise InputError(p, f"no request in the window [{start}, {end})")
    if available is None:  # CSV: the whole file was read
        available = len(df)
        if requests is not None:
            df = df.iloc[:requests].reset_index(drop=True)
    df["timestamp"] = spread_within_minute(df)
    # Spreading reorders requests inside a minute, so sort and number prompts again.
    df = normalise(df, p)
    return Trace(
        df, name=p.stem, source=f"diffusiondb:{p}", available=available if available > len(df) else None
    )


def spread_within_minute(df: pd.DataFrame) -> pd.Series:
    """Spread minute-resolution timestamps deterministically inside their minute (see module doc)."""
    ns = df["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if len(ns) == 0 or np.any(ns % MINUTE_NS):
        return df["timestamp"]
    h = pd.util.hash_pandas_object(df[["prompt", "user", "seed"]].astype("str"), index=False).to_numpy()
    order = np.lexsort((h, ns))
    s = ns[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s)) + 1))
    sizes = np.diff(np.concatenate((starts, [len(s)])))
    k = np.arange(len(s)) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes)
    out = np.empty_like(ns)
    out[order] = s + ((k + 0.5) / n * MINUTE_NS).astype(np.int64)
    return pd.Series(pd.to_datetime(out, utc=True), index=df.index).astype("datetime64[ns, UTC]")


def _window(df: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    keep = np.ones(len(df), dtype=bool)
    if start is not None:
        keep &= (df["timestamp"] >= start).to_numpy()
    if end is not None:
        keep &= (df["timestamp"] < end).to_numpy()
    return df[keep].reset_index(drop=True)


def _read_csv(path: Path) -> pd.DataFrame:
    text = decode_utf8(path, path.read_bytes())
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"not a readable CSV ({exc})") from None
    _check_columns(path, list(df.columns))
    df = df[[c for c in RENAME if c in df.columns]].rename(columns=RENAME)
    for col in df.columns:
        if col != "prompt":
            df[col] = df[col].where(df[col] != "", None)
    return df


def _check_columns(path: Path, names: list[str]) -> None:
    for col in ("prompt", "timestamp"):
        if col not in names:
            raise InputError(path, f"missing DiffusionDB column {col!r}; found {names}", column=col)


def _read_parquet(
    path: Path, requests: int | None, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The ``requests`` earliest rows in the window, their 1-based file rows, and how many the
    window holds (only those rows are read: a 14M-row file never becomes 14M Python objects)."""
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        _check_columns(path, names)
        ts_col = pf.read(columns=["timestamp"]).column(0)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"not a readable parquet file ({exc})") from None
    ts = _column_times(ts_col, path)
    rows, available = _select_rows(ts, requests, start, end)
    columns = [c for c in RENAME if c in names]
    parts = []
    groups = wanted_row_groups(pf, rows)
    try:
        for group, offset in groups:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns):
                hi = offset + batch.num_rows
                lo_i, hi_i = np.searchsorted(rows, [offset, hi])
                if hi_i > lo_i:
                    parts.append(batch.take(pa.array(rows[lo_i:hi_i] - offset)))
                offset = hi
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"not a readable parquet file ({exc})") from None
    if not parts:
        raise InputError(path, f"no request in the window [{start}, {end})")
    table = pa.Table.from_batches(parts)
    try:
        df = table.to_pandas()
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})", column="prompt") from None
    df = df.rename(columns=RENAME)
    df["timestamp"] = pd.to_datetime(ts[rows], utc=True)
    return df, rows + 1, available


def wanted_row_groups(pf: pq.ParquetFile, rows: np.ndarray) -> list[tuple[int, int]]:
    """(row group, its first row) of the row groups that hold any of ``rows`` (sorted row indices).

    Row groups without a wanted row are never read or decoded: a window late in a 2M-row file
    costs the timestamp column and the row groups of the window, not the file.
    """
    sizes = np.array([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    first, last = np.searchsorted(rows, starts), np.searchsorted(rows, starts + sizes)
    return [(int(g), int(starts[g])) for g in np.flatnonzero(last > first)]


def _column_times(col: pa.ChunkedArray, path: Path) -> np.ndarray:
    """The timestamp column as int64 ns UTC; errors name the row."""
    s = col.to_pandas()
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        t = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    else:
        t = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(t.isna().to_numpy())
    if len(bad):
        raise InputError(
            path,
            f"missing or unparseable timestamp {s.iloc[bad[0]]!r}",
            row=int(bad[0]) + 1,
            column="timestamp",
        )
    return t.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _select_rows(
    ts: np.ndarray, requests: int | None, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> tuple[np.ndarray, int]:
    """Row indices (ascending) of the ``requests`` earliest rows inside the window, and how many
    rows the window holds."""
    keep = np.ones(len(ts), dtype=bool)
    if start is not None:
        keep &= ts >= start.value
    if end is not None:
        keep &= ts < end.value
    rows = np.flatnonzero(keep)
    available = len(rows)
    if requests is not None and len(rows) > requests:
        rows = np.sort(rows[np.argsort(ts[rows], kind="stable")[:requests]])
    return rows, available
