"""Registry of trace sources: the names ``trace.source`` may take, and what each needs.

Adding a source is one loader function and one :data:`SOURCES` entry; the config validation,
the CLI (``acsim trace import --source``) and the docs read the names and properties from here.
Loaders import their module when called, so reading the registry (``--help``) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sim.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from sim.config import TraceConfig
    from traces.schema import Trace

SYNTHETIC_DEFAULT_REQUESTS = 20_000  # a synthetic trace with trace.requests: null
# Trace columns an input column can be mapped to (trace.columns, for source: table).
MAPPABLE_COLUMNS = ("timestamp", "prompt", "user", "seed", "steps", "width", "height")


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


def _path(cfg: TraceConfig) -> Path:
    if cfg.path is None:
        raise ConfigError("trace.path", None, f"trace.source={cfg.source!r} needs a path to read")
    return Path(str(cfg.path))


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

    return load_table(_path(cfg), cfg.columns, cfg.time_unit)


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
        ),
    )
}


def check_columns(columns: Mapping[str, str] | None) -> str | None:
    """What is wrong with a ``trace.columns`` mapping, or None."""
    for key, value in (columns or {}).items():
        if key not in MAPPABLE_COLUMNS:
            return f"{key!r} is not a trace column; allowed: {', '.join(MAPPABLE_COLUMNS)}"
        if not isinstance(value, str) or not value:
            return f"the input column for {key!r} must be a non-empty name, got {value!r}"
    return None


def get_source(name: str) -> TraceSource:
    """The source called ``name`` (ConfigError naming ``trace.source`` otherwise)."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError("trace.source", name, "allowed: " + ", ".join(SOURCES)) from None


def source_version(name: str) -> int | None:
    """The generator version of a generated source (cached traces carry it), else None."""
    src = get_source(name)
    return _generator_version() if src.generated else None
