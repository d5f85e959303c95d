"""``acsim trace``: generate, import, describe and compare request traces.

Every sub-command validates its knobs through :mod:`sim.base.config`, so a bad value gets the same
message (field, value, what is allowed) as it would in an experiment file. Defaults shown in
``--help`` are read from the config dataclasses and the registries, never repeated here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from sim.base.config import ArrivalConfig, SyntheticConfig, TraceConfig
from traces.arrivals import ARRIVALS
from traces.sources import SOURCES, SYNTHETIC_DEFAULT_REQUESTS

TRACE_HELP = """\
Generate, import, describe and compare request traces. A trace is a time-sorted parquet table of
requests (timestamp, prompt, prompt_id, user, model, seed, steps, width, height, loras) that
`acsim run` replays through a cache model (set `trace.source: parquet` and `trace.path` in an experiment file).
"""

# The DiffusionDB 1k sample's mean rate (999 gaps in 6.73 h): `trace synth` draws requests at this
# rate unless --rate says otherwise, so a 1k trace spans hours and users come back, as in the real
# data. Experiment files set their own rate (the load they study; ArrivalConfig.rate by default).
SYNTH_RATE = 0.0412
SYNTH_PROCESS = "diurnal"

SYNTH_EPILOG = f"""\
The generator models users in sessions who refine their own prompts, users who come back hours
or days later, and a shared layer of topic clusters whose popularity is heavy-tailed and drifts
over days; its defaults are fitted to the real DiffusionDB 1k sample (see README, "Synthetic
traces"). Without --rate it draws requests at that sample's rate ({SYNTH_RATE} req/s, a daily
cycle): 1,000 requests span about 7 hours, 100,000 about 28 days.

examples:
  acsim trace synth --requests 100000 --out results/synth-100k.parquet
  acsim trace synth --requests 2000000 --rate 1.2 --process bursty --out results/synth-2m.parquet
  acsim trace synth --requests 5000 --repeat-prob 0.2 --shared-prob 0.8 --seed 7 --out /tmp/t.parquet
"""

IMPORT_EPILOG = (
    "sources:\n"
    + "".join(f"  {s.name:12s} {s.help}\n" for s in SOURCES.values() if not s.generated)
    + """
Requests with an empty prompt are dropped with one warning (every source does this the same
way); any other bad value stops the import with the file, row and column named.

examples:
  acsim trace import --source diffusiondb --path metadata.parquet --requests 200000 --out results/ddb-200k.parquet
  acsim trace import --source diffusiondb --path sample:diffusiondb_2m_first1k.csv --out results/ddb-1k.parquet
  acsim trace import --source table --path log.csv --columns prompt=text,timestamp=ts,user=uid --out results/log.parquet
  acsim trace import --source table --path log.parquet --columns timestamp=meta.created --time-unit ms --out t.parquet
  acsim trace import --source table --path gentd26_request_trace.csv --placeholder-prompts \
      --columns timestamp=gmt_create,user=groupId,model=checkpoint_model_version_id,loras=num_lora,steps=num_inference_steps \
      --out results/gentd26.parquet
  acsim trace import --source prompts --path prompts.txt --process diurnal --rate 0.2 --out results/p.parquet
"""
)

STATS_EPILOG = """\
PATH may be an acsim trace parquet, a DiffusionDB metadata parquet or CSV, a prompt list (.txt,
Poisson arrivals at 0.5 req/s), or any CSV/parquet table with --columns. With --embedder, the
prompts are embedded (cached on disk) and the reuse statistics are reported: the best similarity
to any earlier request, the share from another user, the pool curve, how far back the best match
lies (requests and hours) and whether it is the same user's or session's (README: "Trace
statistics" explains each).

examples:
  acsim trace stats results/synth-100k.parquet
  acsim trace stats diffusiondb_2m_first1k.csv --embedder minilm
  acsim trace stats results/ddb-1k.parquet --embedder hashing --json
"""

COMPARE_EPILOG = """\
Prints the statistics of every trace side by side and draws trace_compare.png/.pdf into --out:
CDFs of the reuse distance (requests, hours), the cross-user pool curve, and histograms of the
best earlier similarity and of random pairs of different users' requests.

examples:
  acsim trace compare diffusiondb_2m_first1k.csv results/synth-1k.parquet
  acsim trace compare mine.parquet results/synth-100k.parquet --embedder hashing --out results/cmp
"""

# Generator knobs offered by `trace synth`: field -> help (the default comes from SyntheticConfig).
SYNTH_KNOBS = {
    "users": "cap on distinct users (default: as many as the return process creates)",
    "topics": "number of shared topic clusters",
    "zipf_s": "Zipf exponent of cluster popularity",
    "drift_per_day": "share of a cluster's popularity score renewed per day",
    "shared_prob": "chance a new idea comes from a shared cluster",
    "session_mean": "mean prompts per user session",
    "edit_prob": "chance a session's next prompt edits the last one",
    "repeat_prob": "share of requests that deliberately repeat the previous prompt",
    "new_idea_prob": "chance a later prompt of a session starts a new idea",
    "return_prob": "mean chance a user comes back after a session",
    "return_gap_h": "median pause between a user's sessions, hours",
    "resume_prob": "chance a returning user resumes their last prompt",
    "days": "trace length in days (default: requests / rate)",
}
ARRIVAL_KNOBS = {
    "rate": "mean requests per second",
    "diurnal_amplitude": "peak-to-mean swing of the daily cycle, 0..1",
    "burst_factor": "rate multiplier during a burst",
    "burst_on_s": "mean burst length in seconds",
    "burst_off_s": "mean time between bursts in seconds",
    "rate_path": "CSV with columns minute,rate (requests/s) for --process rate",
}


def _field_default(cls: type, name: str) -> Any:
    return next(f for f in dataclasses.fields(cls) if f.name == name).default


def _field_type(cls: type, name: str) -> type:
    default = _field_default(cls, name)
    if isinstance(default, bool) or default is None:
        return int if name in ("users", "topics") else (str if name == "rate_path" else float)
    return type(default)


def _subcommand(sub: Any, name: str, func: Any, text: str, epilog: str) -> argparse.ArgumentParser:
    """``acsim trace NAME``: its one-line help, ``func``'s docstring as description, ``epilog``."""
    p = sub.add_parser(
        name, help=text, description=func.__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.set_defaults(func=func)
    return p


def register(subparsers: Any) -> None:
    """Add ``trace`` with its sub-commands ``synth``, ``import``, ``stats``, ``compare``, ``embed`` and ``rate``."""
    trace = subparsers.add_parser(
        "trace",
        help="generate, import, describe and compare request traces",
        description=TRACE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = trace.add_subparsers(dest="trace_command", metavar="SUBCOMMAND", required=True)
    _add_synth(sub)
    _add_import(sub)
    _add_stats(sub)
    _add_compare(sub)
    _add_embed(sub)
    _add_rate(sub)


def _add_synth(sub: Any) -> None:
    p = _subcommand(sub, "synth", cmd_synth, "generate a synthetic DiffusionDB-style trace", SYNTH_EPILOG)
    p.add_argument(
        "--requests",
        "-n",
        type=int,
        default=SYNTHETIC_DEFAULT_REQUESTS,
        help=f"number of requests (default: {SYNTHETIC_DEFAULT_REQUESTS})",
    )
    p.add_argument(
        "--seed", type=int, default=1, help="random seed; equal seeds give equal traces (default: 1)"
    )
    p.add_argument("--out", "-o", type=Path, required=True, help="output trace parquet")
    g = p.add_argument_group("generator knobs (trace.synthetic in an experiment file)")
    for name, text in SYNTH_KNOBS.items():
        default = _field_default(SyntheticConfig, name)
        shown = "" if default is None else f" (default: {default})"
        g.add_argument(
            "--" + name.replace("_", "-"), type=_field_type(SyntheticConfig, name), help=text + shown
        )
    _arrival_args(p, process=SYNTH_PROCESS, rate=SYNTH_RATE)
    p.add_argument("--stats", action="store_true", help="print the trace's statistics after writing it")


def _add_import(sub: Any) -> None:
    p = _subcommand(
        sub, "import", cmd_import, "import DiffusionDB metadata, any CSV/parquet table, a prompt list or an acsim parquet", IMPORT_EPILOG
    )
    p.add_argument(
        "--source",
        choices=[s.name for s in SOURCES.values() if not s.generated],
        required=True,
        help="input kind",
    )
    p.add_argument("--path", type=Path, required=True, help="input file (sample:NAME: a sample shipped with acsim)")
    p.add_argument("--out", "-o", type=Path, required=True, help="output trace parquet")
    p.add_argument("--requests", "-n", type=int, help="keep the first N requests (default: all)")
    p.add_argument("--start", help="keep requests at or after this ISO time, e.g. 2022-08-13T21:00Z")
    p.add_argument("--end", help="keep requests before this ISO time")
    _table_args(p)
    p.add_argument(
        "--placeholder-prompts",
        action="store_true",
        help="--source table without prompt text: each request gets a prompt of its own (<request N>); "
        "for capacity, routing and model-switch runs of systems that look nothing up",
    )
    p.add_argument(
        "--prompts-from",
        help="--source table: the prompts of a prompt list (one per line; sample:NAME too) or of an acsim "
        "trace parquet (e.g. `acsim trace synth`'s), the k-th for the table's k-th request in time; keeps "
        "as many requests as the list has prompts",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the arrival process for --source prompts")
    _arrival_args(p, process=None, rate=None)
    p.add_argument("--stats", action="store_true", help="print the trace's statistics after writing it")


RATE_EPILOG = """\
Counts a log's requests per minute (minute 0 at its first request) and writes the CSV that
`trace.arrival.process: rate` replays (`trace.arrival.rate_path`): a synthetic prompt stream, or
a prompt list, then arrives with the log's daily swing, growth and bursts. This is how to run
caching experiments on a log without prompt text, such as the GenTD26 production trace
(experiments/production_day.yaml). Only the times are carried, not the users.

examples:
  acsim trace rate --path gentd26_request_trace.csv --column gmt_create --out data/gentd26_rate.csv
  acsim trace rate --path log.parquet --column ts --time-unit ms --out data/log_rate.csv
"""


def _add_rate(sub: Any) -> None:
    p = _subcommand(sub, "rate", cmd_rate, "a log's per-minute request rate, for trace.arrival.process: rate", RATE_EPILOG)
    p.add_argument("--path", type=Path, required=True, help="a CSV or parquet log of requests")
    p.add_argument("--column", required=True, help="its timestamp column (COLUMN.FIELD: a field of JSON in COLUMN)")
    p.add_argument("--time-unit", choices=("s", "ms", "us", "ns"), default="s", help="unit of numeric timestamps (default: s)")
    p.add_argument("--out", "-o", type=Path, required=True, help="output CSV with columns minute,rate")


def _is_rate_csv(path: Path) -> bool:
    """A file acsim's ``trace rate`` wrote (its header), which it may replace."""
    try:
        with path.open("rb") as f:
            return f.readline().rstrip(b"\r\n") == b"minute,rate"
    except OSError:
        return False


def cmd_rate(args: argparse.Namespace) -> int:
    """Write a log's per-minute request rate as the minute,rate CSV of trace.arrival.rate_path."""
    import numpy as np
    import pandas as pd

    from sim.base.io import atomic_write_csv, check_own_file
    from traces.arrivals import rate_series
    from traces.table import read_timestamps

    check_own_file(args.out, "--out", "rate series", _is_rate_csv)
    ts = read_timestamps(args.path, args.column, args.time_unit)
    seconds = (ts - ts.min()).dt.total_seconds().to_numpy()
    rate = rate_series(seconds)
    atomic_write_csv(args.out, pd.DataFrame({"minute": np.arange(len(rate)), "rate": rate}))
    days = len(rate) / 1440
    print(
        f"{len(ts):,} requests over {days:,.1f} days ({ts.min()} to {ts.max()}): mean {len(ts) / max(seconds.max(), 60.0):.4f} "
        f"requests/s, busiest minute {rate.max() * 60:,.0f} requests -> {args.out}"
    )
    return 0


def _add_stats(sub: Any) -> None:
    p = _subcommand(
        sub, "stats", cmd_stats, "describe a trace: repeats, sessions, returns, rates, similarity and reuse", STATS_EPILOG
    )
    p.add_argument(
        "path", type=Path, metavar="PATH", help="trace parquet, DiffusionDB parquet/CSV, table or prompt list "
        "(sample:NAME: a sample shipped with acsim)"
    )
    p.add_argument(
        "--embedder", help="embedder name (e.g. minilm, hashing) for the similarity and reuse statistics"
    )
    _analysis_args(p)
    p.add_argument("--json", action="store_true", help="print the statistics as JSON instead of text")


def _add_compare(sub: Any) -> None:
    p = _subcommand(sub, "compare", cmd_compare, "compare traces side by side (table and figure)", COMPARE_EPILOG)
    p.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="traces to compare (as for `trace stats`)"
    )
    p.add_argument(
        "--embedder", default="minilm", help="embedder for the similarity statistics (default: minilm)"
    )
    _analysis_args(p)
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("results/trace_compare"),
        help="result directory: summary.csv (the table) and plots/trace_compare.png/.pdf (default: %(default)s)",
    )
    p.add_argument(
        "--json", action="store_true", help="print statistics and figure data as JSON instead of text"
    )


def _add_embed(sub: Any) -> None:
    from sim.app.config_args import add_config_args
    from traces.embed_executors import EMBED_EXECUTORS

    p = _subcommand(
        sub, "embed", cmd_embed, "embed an experiment's trace into the cache, here or on Ray (large traces)", EMBED_EPILOG
    )
    add_config_args(p, "experiment YAML file (its trace, embedder and embedder_device)")
    p.add_argument("--executor", choices=sorted(EMBED_EXECUTORS), default="local", help="local (default) or ray")
    p.add_argument("--address", help="address of an existing Ray cluster, e.g. ray://head:10001 or auto (ray only)")
    p.add_argument("--cpus", type=int, help="CPUs of a local Ray (default: the usable CPUs)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--columns",
        help="trace column = input column, comma-separated, e.g. prompt=text,timestamp=ts,user=uid "
        "(COLUMN.FIELD reads a field of JSON in COLUMN); reads PATH as a generic table",
    )
    p.add_argument(
        "--time-unit",
        choices=("s", "ms", "us", "ns"),
        help=f"unit of numeric timestamps in a table (default: {_field_default(TraceConfig, 'time_unit')})",
    )


def _analysis_args(p: argparse.ArgumentParser) -> None:
    from traces.reuse import MAX_REQUESTS

    _table_args(p)
    p.add_argument(
        "--max-requests",
        type=int,
        default=MAX_REQUESTS,
        help="per-request reuse statistics cover the first N requests (exact, O(N^2)); default: %(default)s",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where embeddings are cached (default: $ACSIM_CACHE/embeddings or ~/.cache/acsim/embeddings)",
    )


def _arrival_args(p: argparse.ArgumentParser, process: str | None, rate: float | None) -> None:
    g = p.add_argument_group("arrival process (trace.arrival in an experiment file)")
    g.add_argument(
        "--process",
        choices=list(ARRIVALS),
        default=process,
        help="arrival process: "
        + "; ".join(f"{a.name}: {a.help}" for a in ARRIVALS.values())
        + f" (default: {process or _field_default(ArrivalConfig, 'process')})",
    )
    for name, text in ARRIVAL_KNOBS.items():
        default = rate if name == "rate" and rate is not None else _field_default(ArrivalConfig, name)
        shown = "" if default is None else f" (default: {default})"
        g.add_argument(
            "--" + name.replace("_", "-"),
            type=_field_type(ArrivalConfig, name),
            default=rate if name == "rate" else None,
            help=text + shown,
        )
    g.add_argument(
        "--time-scale",
        type=float,
        help=f"> 1 compresses time (more load), < 1 stretches it (default: {_field_default(TraceConfig, 'time_scale')})",
    )


def _given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _columns(args: argparse.Namespace) -> dict[str, str] | None:
    from sim.base.errors import ConfigError
    from traces.table import parse_columns

    if not getattr(args, "columns", None):
        return None
    try:
        return parse_columns(args.columns)
    except ValueError as exc:
        raise ConfigError("--columns", args.columns, str(exc)) from None


def _trace_config(args: argparse.Namespace, trace: dict[str, Any]) -> TraceConfig:
    """Validate the command's knobs as the ``trace`` block of an experiment."""
    from sim.base import config

    arrival = _given(args, ["process", *ARRIVAL_KNOBS])
    if arrival:
        trace["arrival"] = arrival
    trace.update(_given(args, ["time_scale", "time_unit"]))
    return config.from_dict({"trace": trace}).trace


def _write(trace: Any, out: Path, started: float, show_stats: bool) -> None:
    from traces.load import kept_note
    from traces.schema import write_parquet
    from traces.stats import format_stats, trace_stats

    write_parquet(trace, out)
    print(
        f"wrote {out}: {len(trace):,} requests{kept_note(trace)}, {trace.n_prompts:,} unique prompts "
        f"({time.perf_counter() - started:.1f} s)"
    )
    if show_stats:
        print(format_stats(trace_stats(trace)))


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic DiffusionDB-style trace and write it as parquet."""
    from sim.base.io import check_own_file
    from traces.load import load_trace
    from traces.schema import is_acsim_trace

    check_own_file(args.out, "--out", "trace", is_acsim_trace)
    started = time.perf_counter()
    cfg = _trace_config(
        args, {"source": "synthetic", "requests": args.requests, "synthetic": _given(args, list(SYNTH_KNOBS))}
    )
    _write(load_trace(cfg, args.seed), args.out, started, args.stats)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a real trace (DiffusionDB metadata, any table, a prompt list, parquet) into acsim's trace parquet."""
    from sim.base.io import check_own_file
    from traces.load import load_trace
    from traces.schema import is_acsim_trace

    check_own_file(args.out, "--out", "trace", is_acsim_trace)
    started = time.perf_counter()
    trace = {
        "source": args.source,
        "path": str(args.path),
        "requests": args.requests,
        **_given(args, ["start", "end"]),
    }
    columns = _columns(args)
    if columns:
        trace["columns"] = columns
    if args.placeholder_prompts:
        trace["placeholder_prompts"] = True
    if args.prompts_from:
        trace["prompts_from"] = args.prompts_from
    cfg = _trace_config(args, trace)
    _write(load_trace(cfg, args.seed), args.out, started, args.stats)
    return 0


def _open_any(path: Path, columns: dict[str, str] | None = None, time_unit: str | None = None) -> Any:
    """A trace from an acsim parquet, DiffusionDB metadata (parquet or CSV), a prompt list, or any
    table when ``columns`` (or ``time_unit``) is given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.base.errors import InputError
    from traces.diffusiondb import load_diffusiondb
    from traces.prompts import prompts_trace
    from traces.samples import resolve
    from traces.schema import META_KEY, read_parquet
    from traces.table import load_table

    path = resolve(str(path), "PATH")
    if not path.is_file():
        raise InputError(path, "file not found")
    if columns is not None or time_unit is not None:
        return load_table(path, columns, time_unit or "s")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return load_diffusiondb(path)
    if suffix == ".txt":
        return prompts_trace(path, ArrivalConfig(), seed=1)
    if suffix == ".parquet":
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError):  # read_parquet reports an unreadable file with its reason
            return read_parquet(path)
        if META_KEY not in (schema.metadata or {}) and "user_name" in schema.names:
            return load_diffusiondb(path)
        return read_parquet(path)
    raise InputError(
        path,
        "expected a .parquet trace, a DiffusionDB .csv/.parquet, a .txt prompt list, or --columns for a table",
    )


def _embed(args: argparse.Namespace, trace: Any) -> Any:
    from sim.base.errors import ConfigError
    from traces.embeddings import check_embedder_name, embed_prompts, get_embedder

    problem = check_embedder_name(args.embedder)
    if problem:
        raise ConfigError("--embedder", args.embedder, problem)
    return embed_prompts(
        get_embedder(args.embedder), trace.prompts, args.cache_dir, progress=sys.stderr.isatty()
    )


def _check_analysis_args(args: argparse.Namespace) -> None:
    """The analysis options, before any work: ``--max-requests`` and ``--cache-dir``."""
    from sim.base.errors import ConfigError
    from sim.base.io import check_writable

    if args.max_requests < 2:
        raise ConfigError("--max-requests", args.max_requests, "must be >= 2")
    if args.cache_dir is not None:
        check_writable(args.cache_dir, "--cache-dir", directory=True)


EMBED_EPILOG = """\
examples:
  acsim trace embed experiments/diffusiondb.yaml --set embedder=minilm-onnx
  acsim trace embed experiments/diffusiondb.yaml --executor ray --address auto

The prompts still missing from the cache are encoded in blocks of 16,384 (one Ray task each) and
each block is written as one cache shard when it arrives: an interrupted job keeps its blocks.
"""


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed an experiment's trace with its embedder into the cache, here or on Ray."""
    from sim.base import config
    from sim.base.cache_root import cache_root
    from traces.embed_executors import EMBED_EXECUTORS
    from traces.embeddings import embed_prompts, get_embedder
    from traces.load import load_trace

    exp = config.load(args.file, args.overrides)
    started = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    executor = EMBED_EXECUTORS[args.executor](exp.embedder, exp.embedder_device, args.address, args.cpus)
    embedder = get_embedder(exp.embedder, exp.embedder_device)
    vecs = embed_prompts(embedder, trace.prompts, cache_root() / "embeddings", progress=not args.quiet, executor=executor)
    print(
        f"{len(trace.prompts):,} prompts of {args.file} embedded with {exp.embedder} ({vecs.shape[1]}-d, "
        f"{args.executor} executor) into {cache_root() / 'embeddings'} in {time.perf_counter() - started:.1f} s; "
        f"`acsim run` / `acsim sweep` on this file now reuse them"
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a trace's statistics (with an embedder also its similarity and reuse statistics)."""
    from traces.stats import format_stats, trace_stats

    _check_analysis_args(args)
    trace = _open_any(args.path, _columns(args), args.time_unit)
    embeddings = _embed(args, trace) if args.embedder else None
    stats = trace_stats(trace, embeddings, max_requests=args.max_requests)
    if args.json:
        json.dump(stats, sys.stdout, indent=2)
        print()
    else:
        print(format_stats(stats))
        if embeddings is None:
            print("  (similarity and reuse statistics: add --embedder minilm)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare traces: their statistics side by side, and a figure of reuse distance, pool curve
    and similarity histograms."""
    import pandas as pd

    from plots.traces import draw_trace_comparison
    from sim.app import outputs
    from sim.base.io import atomic_write_csv
    from traces.compare import comparison_rows, comparison_table, figure_data
    from traces.reuse import best_earlier_matches
    from traces.stats import trace_stats

    _check_analysis_args(args)
    outputs.check_target(args.out, "compare", "--out")  # before minutes of embedding
    all_stats, data = [], []
    for path in args.paths:
        trace = _open_any(path, _columns(args), args.time_unit)
        emb = _embed(args, trace)
        n = min(len(trace), args.max_requests)
        matches = best_earlier_matches(trace.prompt_ids[:n], trace.user_codes[:n], emb)
        stats = trace_stats(trace, emb, max_requests=args.max_requests, matches=matches)
        stats["name"] = _label(path, stats["name"], [s["name"] for s in all_stats])
        all_stats.append(stats)
        fig = figure_data(trace, emb, max_requests=args.max_requests, matches=matches)
        fig["name"] = stats["name"]
        data.append(fig)
    # acsim replaces the directory only if it is a comparison it wrote, and whole.
    with outputs.staging_dir(args.out, "compare", "--out") as tmp:
        atomic_write_csv(tmp / "summary.csv", pd.DataFrame(comparison_rows(all_stats)))
        (tmp / "plots").mkdir()
        figures = [args.out / "plots" / f.name for f in draw_trace_comparison(data, tmp / "plots")]
    if args.json:
        json.dump(
            {"stats": all_stats, "figure": data, "files": [str(f) for f in figures]}, sys.stdout, indent=2
        )
        print()
    else:
        print(comparison_table(all_stats))
        print(f"table: {args.out / 'summary.csv'}; figure: {', '.join(map(str, figures))}")
    return 0


def _label(path: Path, name: str, taken: list[str]) -> str:
    """A column label: the trace's name, or its file name when two traces share a name."""
    return name if name not in taken else f"{name} ({path.name})"
