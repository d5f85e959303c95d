"""One entry point from a :class:`sim.base.config.TraceConfig` to a :class:`traces.schema.Trace`.

Order of operations: read the source (:data:`traces.sources.SOURCES`), keep the window
``[start, end)`` (ISO times on the trace's own clock; a time without a zone is UTC), keep the
first ``requests`` requests of it (null: all of them; a synthetic trace then has
:data:`traces.sources.SYNTHETIC_DEFAULT_REQUESTS`), then scale time (``time_scale`` > 1
compresses the clock; ``Trace.arrival_s`` is divided by it; a parquet trace written with its own
time scale is compressed by the product of both). For ``synthetic``, ``requests`` is the number
generated (the window then applies to those); for ``prompts`` it is the number of prompts read
from the top of the file. Whenever only a prefix is kept, ``Trace.available`` says of how many.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from sim.base.errors import ConfigError
from traces.schema import Trace
from traces.sources import get_source

if TYPE_CHECKING:
    from sim.base.config import TraceConfig


def parse_time(field: str, value: str | None) -> pd.Timestamp | None:
    """An ISO time as a UTC timestamp (naive times are UTC); ConfigError names ``field``."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(field, value, "expected an ISO 8601 time such as 2022-08-13T20:00:00Z") from None
    if ts is pd.NaT:
        raise ConfigError(field, value, "expected an ISO 8601 time such as 2022-08-13T20:00:00Z")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def load_trace(cfg: TraceConfig, seed: int) -> Trace:
    """Load or generate the trace that ``cfg`` describes (deterministic for ``seed``)."""
    start, end = parse_time("trace.start", cfg.start), parse_time("trace.end", cfg.end)
    if start is not None and end is not None and end <= start:
        raise ConfigError("trace.end", cfg.end, f"must be after trace.start ({cfg.start})")
    source = get_source(cfg.source)
    requests = cfg.requests if cfg.requests is not None else source.default_requests
    trace = source.load(cfg, seed, start, end, requests)
    trace = window(trace, start, end, requests)
    # A stored trace may already be compressed; the config compresses it further.
    trace.time_scale *= cfg.time_scale
    return trace


def kept_note(trace: Trace) -> str:
    """`` (the first 20,000 of 31,250 requests: trace.requests)`` when a prefix was kept, else ``""``."""
    if trace.available is None or trace.available <= len(trace):
        return ""
    return f" (the first {len(trace):,} of {trace.available:,} requests: trace.requests)"


def window(trace: Trace, start: pd.Timestamp | None, end: pd.Timestamp | None, requests: int | None) -> Trace:
    """The requests in ``[start, end)``, then the first ``requests`` of them; prompt ids renumbered."""
    df = trace.df
    ts = df["timestamp"]
    keep = pd.Series(True, index=df.index)
    if start is not None:
        keep &= ts >= start
    if end is not None:
        keep &= ts < end
    if keep.all() and (requests is None or requests >= len(df)):
        return trace
    if not keep.any():
        field, value = ("trace.start", start) if start is not None else ("trace.end", end)
        raise ConfigError(
            field,
            str(value),
            f"no request in the window [{start}, {end}); "
            f"the trace {trace.name} spans {ts.iloc[0]} .. {ts.iloc[-1]}",
        )
    sub = df[keep.to_numpy()]
    available = trace.available
    if requests is not None and requests < len(sub):
        available = len(sub)
        sub = sub.iloc[:requests]
    sub = sub.reset_index(drop=True)
    codes, _ = pd.factorize(sub["prompt_id"], sort=False)
    sub["prompt_id"] = codes.astype("int32")
    return Trace(sub, name=trace.name, source=trace.source, time_scale=trace.time_scale, available=available)
