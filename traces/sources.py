"""Registry of trace sources: the names ``trace.source`` may take, and what each needs.

Adding a source is one loader function and one :data:`SOURCES` entry; the config validation,
the CLI (``acsim trace import --source``) and the docs read the names and properties from here.
Loaders import their module when called, so reading the registry (``--help``) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.base.config import MAX_TRACE_YEARS, YEAR_S
from sim.base.errors import ConfigError, unknown_name
from traces.arrivals import get_arrival
from traces.samples import resolve
from traces.table import check_columns

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pandas as pd

    from sim.base.config import TraceConfig
    from traces.schema import Trace

SYNTHETIC_DEFAULT_REQUESTS = 20_000  # a synthetic trace with trace.requests: null


@dataclass(frozen=True)
class TraceSource:
    """One source of :data:`SOURCES`."""

    name: str
    help: str  # one line for --help and the docs
    # (trace config, seed, window start, window end, requests to keep or None) -> trace
    load: Callable[[TraceConfig, int, pd.Timestamp | None, pd.Timestamp | None, int | None], Trace]
    needs_path: bool = True  # reads trace.path
    uses_arrival: bool = False  # times come from trace.arrival
    generated: bool = False  # made by acsim, not read: runs cache it on disk, keyed by generator version
    default_requests: int | None = None  # trace.requests when it is null (None: everything)
    lists_prompts: bool = False  # may take its prompts from trace.prompts_from


def _path(cfg: TraceConfig) -> Path:
    if cfg.path is None:
        raise ConfigError("trace.path", None, f"trace.source={cfg.source!r} needs a path to read")
    return resolve(str(cfg.path))


def _synthetic(
    cfg: TraceConfig, seed: int, start: pd.Timestamp | None, end: pd.Timestamp | None, requests: int | None
) -> Trace:
    from traces.synthetic import generate

    return generate(requests or SYNTHETIC_DEFAULT_REQUESTS, cfg.synthetic, cfg.arrival, seed)


def _diffusiondb(
    cfg: TraceConfig, seed: int, start: pd.Timestamp | None, end: pd.Timestamp | None, requests: int | None
) -> Trace:
    from traces.diffusiondb import load_diffusiondb

    return load_diffusiondb(_path(cfg), requests, start, end)


def _prompts(
    cfg: TraceConfig, seed: int, start: pd.Timestamp | None, end: pd.Timestamp | None, requests: int | None
) -> Trace:
    from traces.prompts import prompts_trace

    return prompts_trace(_path(cfg), cfg.arrival, seed, requests)


def _parquet(
    cfg: TraceConfig, seed: int, start: pd.Timestamp | None, end: pd.Timestamp | None, requests: int | None
) -> Trace:
    from traces.schema import read_parquet

    return read_parquet(_path(cfg))


def _table(
    cfg: TraceConfig, seed: int, start: pd.Timestamp | None, end: pd.Timestamp | None, requests: int | None
) -> Trace:
    from traces.table import load_table

    listed = resolve(cfg.prompts_from, "trace.prompts_from") if cfg.prompts_from is not None else None
    return load_table(_path(cfg), cfg.columns, cfg.time_unit, cfg.placeholder_prompts, listed)


def _generator_version() -> int:
    from traces.synthetic import GENERATOR_VERSION

    return GENERATOR_VERSION


SOURCES: dict[str, TraceSource] = {
    s.name: s
    for s in (
        TraceSource(
            "synthetic",
            "the DiffusionDB-style generator (trace.synthetic; times from trace.arrival)",
            _synthetic,
            needs_path=False,
            uses_arrival=True,
            generated=True,
            default_requests=SYNTHETIC_DEFAULT_REQUESTS,
        ),
        TraceSource(
            "diffusiondb",
            "DiffusionDB metadata.parquet / metadata-large.parquet, or a CSV export of it",
            _diffusiondb,
        ),
        TraceSource(
            "prompts",
            "a text file with one prompt per line (times from trace.arrival)",
            _prompts,
            uses_arrival=True,
        ),
        TraceSource(
            "parquet", "an acsim trace parquet, or any parquet with the trace's column names", _parquet
        ),
        TraceSource(
            "table",
            "any CSV or parquet table, its columns named by trace.columns (prompt=text,timestamp=ts,...)",
            _table,
            lists_prompts=True,
        ),
    )
}


def check_trace_config(cfg: TraceConfig) -> None:
    """What a trace config asks of the source and arrival registries (the preflight step calls this).

    Raises ConfigError naming the ``trace.*`` field: an unknown source or arrival process, a source
    that reads a file without ``trace.path``, a bad ``trace.columns`` mapping, a ``prompts_from``
    list the source cannot take or that is not there, ``process: rate``
    without its CSV, or generated arrivals that would overflow the timestamp clock.
    """
    source = get_source(cfg.source)
    process = get_arrival(cfg.arrival)
    if source.needs_path and cfg.path is None:
        raise ConfigError("trace.path", None, f"trace.source={cfg.source!r} needs a path to read")
    problem = check_columns(cfg.columns)
    if problem:
        raise ConfigError("trace.columns", cfg.columns, problem)
    if cfg.prompts_from is not None:
        if not source.lists_prompts:
            takes = ", ".join(s.name for s in SOURCES.values() if s.lists_prompts)
            raise ConfigError("trace.prompts_from", cfg.prompts_from, f"trace.source {cfg.source!r} has its own prompts; allowed with: {takes}")
        if not resolve(cfg.prompts_from, "trace.prompts_from").is_file():
            raise ConfigError("trace.prompts_from", cfg.prompts_from, "no such file (a prompt list, one per line)")
    if source.uses_arrival and process.needs_rate_path and cfg.arrival.rate_path is None:
        raise ConfigError("trace.arrival.rate_path", None, f"process={cfg.arrival.process} needs a CSV of minute,rate")
    span = expected_span_s(cfg)
    if span is not None and span > MAX_TRACE_YEARS * YEAR_S:
        field, value = (
            ("trace.synthetic.days", cfg.synthetic.days)
            if source.generated and cfg.synthetic.days
            else ("trace.arrival.rate", cfg.arrival.rate)
        )
        raise ConfigError(
            field,
            value,
            f"{requests_to_make(cfg):,} requests (trace.requests) would span {span / YEAR_S:,.0f} years; "
            f"generated arrivals must fit in {MAX_TRACE_YEARS:.0f} years",
        )


def requests_to_make(cfg: TraceConfig) -> int | None:
    """How many requests the trace will hold if that is known before reading it (else None)."""
    return cfg.requests if cfg.requests is not None else get_source(cfg.source).default_requests


def expected_span_s(cfg: TraceConfig) -> float | None:
    """Seconds the generated arrivals will span (before ``time_scale``); None when only the data knows."""
    source, requests = get_source(cfg.source), requests_to_make(cfg)
    if requests is None or not source.uses_arrival:
        return None
    if source.generated and cfg.synthetic.days:
        return cfg.synthetic.days * 86400.0
    if get_arrival(cfg.arrival).needs_rate_path:
        return None
    return requests / cfg.arrival.rate


def get_source(name: str) -> TraceSource:
    """The source called ``name`` (ConfigError naming ``trace.source`` otherwise)."""
    try:
        return SOURCES[name]
    except KeyError:
        raise unknown_name("trace.source", name, SOURCES) from None


def source_version(name: str) -> int | None:
    """The generator version of a generated source (cached traces carry it), else None."""
    src = get_source(name)
    return _generator_version() if src.generated else None
