"""``acsim trace``: generate, import and describe request traces.

Every sub-command validates its knobs through :mod:`sim.base.config`, so a bad value gets the same
message (field, value, what is allowed) as it would in an experiment file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

TRACE_HELP = """\
Generate, import and describe request traces. A trace is a time-sorted parquet table of requests
(timestamp, prompt, prompt_id, user, seed, steps, width, height) that `acsim run` replays through
a cache model (set `trace.source: parquet` and `trace.path` in an experiment file).
"""

SYNTH_EPILOG = """\
The generator models users in sessions who refine a prompt in small edits, topics with Zipf
popularity that drift over days, exact repeats, and the arrival process you choose (diurnal load
by default, bursts with --process bursty). Its defaults reproduce the real DiffusionDB sample's
repeat rate, prompt lengths and session behaviour.

examples:
  acsim trace synth --requests 100000 --out results/synth-100k.parquet
  acsim trace synth --requests 2000000 --rate 1.2 --process bursty --out results/synth-2m.parquet
  acsim trace synth --requests 5000 --repeat-prob 0.2 --edit-prob 0.7 --seed 7 --out /tmp/t.parquet
"""

IMPORT_EPILOG = """\
sources:
  diffusiondb  DiffusionDB metadata.parquet / metadata-large.parquet (read in batches; only the
               needed columns) or a CSV export with the same columns. Minute timestamps are
               spread inside their minute deterministically.
  prompts      a text file with one prompt per line; arrival times come from --process/--rate.
  parquet      any parquet table with timestamp and prompt columns (re-validated, re-sorted).

examples:
  acsim trace import --source diffusiondb --path metadata.parquet --requests 200000 --out results/ddb-200k.parquet
  acsim trace import --source diffusiondb --path diffusiondb_2m_first1k.csv --out results/ddb-1k.parquet
  acsim trace import --source prompts --path prompts.txt --process diurnal --rate 0.2 --out results/p.parquet
"""

STATS_EPILOG = """\
PATH may be an acsim trace parquet, a DiffusionDB metadata parquet or CSV, or a prompt list (.txt,
Poisson arrivals at 0.5 req/s). With --embedder, the prompts are embedded (cached on disk) and the
distribution of each request's best cosine similarity to any earlier request is reported: the
share above a similarity threshold bounds the hit rate an approximate cache can reach.

examples:
  acsim trace stats results/synth-100k.parquet
  acsim trace stats diffusiondb_2m_first1k.csv --embedder minilm
  acsim trace stats results/ddb-1k.parquet --embedder hashing --json
"""


def register(subparsers: Any) -> None:
    """Add ``trace`` with its sub-commands ``synth``, ``import`` and ``stats`` to ``subparsers``."""
    fmt = argparse.RawDescriptionHelpFormatter
    trace = subparsers.add_parser(
        "trace",
        help="generate, import and describe request traces",
        description=TRACE_HELP,
        formatter_class=fmt,
    )
    sub = trace.add_subparsers(dest="trace_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser(
        "synth",
        help="generate a synthetic DiffusionDB-style trace",
        description=cmd_synth.__doc__,
        epilog=SYNTH_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("--requests", "-n", type=int, default=20000, help="number of requests (default: 20000)")
    p.add_argument(
        "--seed", type=int, default=1, help="random seed; equal seeds give equal traces (default: 1)"
    )
    p.add_argument("--out", "-o", type=Path, required=True, help="output trace parquet")
    g = p.add_argument_group("generator knobs (defaults: sim.base.config.SyntheticConfig)")
    g.add_argument("--users", type=int, help="user population (default: grows with --requests)")
    g.add_argument("--topics", type=int, help="number of prompt topics (default: grows with --requests)")
    g.add_argument("--zipf-s", type=float, help="Zipf exponent of topic popularity (default: 1.1)")
    g.add_argument("--session-mean", type=float, help="mean prompts per user session (default: 6)")
    g.add_argument(
        "--edit-prob", type=float, help="chance a session's next prompt edits the last one (default: 0.55)"
    )
    g.add_argument(
        "--repeat-prob",
        type=float,
        help="share of requests that repeat an earlier prompt exactly (default: 0.08)",
    )
    g.add_argument(
        "--drift-per-day",
        type=float,
        help="share of topic popularity ranks reshuffled per day (default: 0.3)",
    )
    g.add_argument("--days", type=float, help="trace length in days (default: requests / rate)")
    _arrival_args(p, default_process="diurnal")
    p.add_argument("--stats", action="store_true", help="print the trace's statistics after writing it")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "import",
        help="import DiffusionDB metadata, a prompt list or a parquet table",
        description=cmd_import.__doc__,
        epilog=IMPORT_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument(
        "--source", choices=("diffusiondb", "prompts", "parquet"), required=True, help="input kind"
    )
    p.add_argument("--path", type=Path, required=True, help="input file")
    p.add_argument("--out", "-o", type=Path, required=True, help="output trace parquet")
    p.add_argument("--requests", "-n", type=int, help="keep the first N requests (default: all)")
    p.add_argument("--start", help="keep requests at or after this ISO time, e.g. 2022-08-13T21:00Z")
    p.add_argument("--end", help="keep requests before this ISO time")
    p.add_argument("--seed", type=int, default=1, help="seed of the arrival process for --source prompts")
    _arrival_args(p, default_process=None)
    p.add_argument("--stats", action="store_true", help="print the trace's statistics after writing it")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "stats",
        help="describe a trace: repeats, lengths, sessions, rates, similarity",
        description=cmd_stats.__doc__,
        epilog=STATS_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument(
        "path", type=Path, metavar="PATH", help="trace parquet, DiffusionDB parquet/CSV or prompt list"
    )
    p.add_argument("--embedder", help="embedder name (e.g. minilm, hashing) for the similarity distribution")
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where embeddings are cached (default: $ACSIM_CACHE/embeddings or ~/.cache/acsim/embeddings)",
    )
    p.add_argument("--json", action="store_true", help="print the statistics as JSON instead of text")
    p.set_defaults(func=cmd_stats)

    from traces.embed_executors import EMBED_EXECUTORS

    p = sub.add_parser(
        "embed",
        help="embed an experiment's trace into the cache, here or on Ray (large traces)",
        description=cmd_embed.__doc__,
        epilog=EMBED_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("file", type=Path, help="experiment YAML file (its trace, embedder and embedder_device)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD.PATH=VALUE",
        help="override a config field, e.g. --set embedder=minilm-onnx",
    )
    p.add_argument("--executor", choices=sorted(EMBED_EXECUTORS), default="local", help="local (default) or ray")
    p.add_argument("--address", help="address of an existing Ray cluster, e.g. ray://head:10001 or auto (ray only)")
    p.add_argument("--cpus", type=int, help="CPUs of a local Ray (default: the usable CPUs)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_embed)


def _arrival_args(p: argparse.ArgumentParser, default_process: str | None) -> None:
    g = p.add_argument_group("arrival process (defaults: sim.base.config.ArrivalConfig)")
    g.add_argument(
        "--process",
        choices=("poisson", "diurnal", "bursty", "rate"),
        default=default_process,
        help=f"arrival process (default: {default_process or 'poisson'})",
    )
    g.add_argument("--rate", type=float, help="mean requests per second (default: 0.5)")
    g.add_argument(
        "--diurnal-amplitude", type=float, help="peak-to-mean swing of the daily cycle, 0..1 (default: 0.5)"
    )
    g.add_argument("--burst-factor", type=float, help="rate multiplier during a burst (default: 5)")
    g.add_argument("--burst-on-s", type=float, help="mean burst length in seconds (default: 120)")
    g.add_argument("--burst-off-s", type=float, help="mean time between bursts in seconds (default: 1800)")
    g.add_argument("--rate-path", help="CSV with columns minute,rate (requests/s) for --process rate")
    g.add_argument("--time-scale", type=float, help="> 1 compresses time (more load), < 1 stretches it")


def _given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _trace_config(args: argparse.Namespace, trace: dict[str, Any]) -> Any:
    """Validate the command's knobs as the ``trace`` block of an experiment."""
    from sim.base import config

    arrival = _given(
        args,
        ["process", "rate", "diurnal_amplitude", "burst_factor", "burst_on_s", "burst_off_s", "rate_path"],
    )
    if arrival:
        trace["arrival"] = arrival
    if getattr(args, "time_scale", None) is not None:
        trace["time_scale"] = args.time_scale
    return config.from_dict({"trace": trace}).trace


def _write(trace: Any, out: Path, started: float, show_stats: bool) -> None:
    from traces.schema import write_parquet
    from traces.stats import format_stats, trace_stats

    write_parquet(trace, out)
    print(
        f"wrote {out}: {len(trace):,} requests, {trace.n_prompts:,} unique prompts "
        f"({time.perf_counter() - started:.1f} s)"
    )
    if show_stats:
        print(format_stats(trace_stats(trace)))


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic DiffusionDB-style trace and write it as parquet."""
    from sim.base.io import check_writable
    from traces.load import load_trace

    check_writable(args.out, "--out")
    started = time.perf_counter()
    synthetic = _given(
        args,
        ["users", "topics", "zipf_s", "session_mean", "edit_prob", "repeat_prob", "drift_per_day", "days"],
    )
    cfg = _trace_config(args, {"source": "synthetic", "requests": args.requests, "synthetic": synthetic})
    _write(load_trace(cfg, args.seed), args.out, started, args.stats)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a real trace (DiffusionDB metadata or CSV, prompt list, parquet) into acsim's trace parquet."""
    from sim.base.io import check_writable
    from traces.load import load_trace

    check_writable(args.out, "--out")
    started = time.perf_counter()
    trace = {
        "source": args.source,
        "path": str(args.path),
        "requests": args.requests,
        **_given(args, ["start", "end"]),
    }
    cfg = _trace_config(args, trace)
    _write(load_trace(cfg, args.seed), args.out, started, args.stats)
    return 0


def _open_any(path: Path) -> Any:
    """A trace from an acsim parquet, DiffusionDB metadata (parquet or CSV) or a prompt list."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.base.config import ArrivalConfig
    from sim.base.errors import InputError
    from traces.diffusiondb import load_diffusiondb
    from traces.prompts import prompts_trace
    from traces.schema import META_KEY, read_parquet

    if not path.is_file():
        raise InputError(path, "file not found")
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
    raise InputError(path, "expected a .parquet trace, a DiffusionDB .csv/.parquet or a .txt prompt list")


EMBED_EPILOG = """\
examples:
  acsim trace embed experiments/diffusiondb.yaml --set embedder=minilm-onnx
  acsim trace embed experiments/diffusiondb.yaml --executor ray --address auto

The prompts still missing from the cache are encoded in blocks of 16,384 (one Ray task each) and
each block is written as one cache shard when it arrives: an interrupted job keeps its blocks.
"""


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed an experiment's trace with its embedder into the cache, here or on Ray."""
    from sim.app.run import cache_dir
    from sim.base import config
    from traces.embed_executors import EMBED_EXECUTORS
    from traces.embeddings import embed_prompts, get_embedder
    from traces.load import load_trace

    exp = config.load(args.file, args.overrides)
    started = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    executor = EMBED_EXECUTORS[args.executor](exp.embedder, exp.embedder_device, args.address, args.cpus)
    embedder = get_embedder(exp.embedder, exp.embedder_device)
    vecs = embed_prompts(embedder, trace.prompts, cache_dir() / "embeddings", progress=not args.quiet, executor=executor)
    print(
        f"{len(trace.prompts):,} prompts of {args.file} embedded with {exp.embedder} ({vecs.shape[1]}-d, "
        f"{args.executor} executor) into {cache_dir() / 'embeddings'} in {time.perf_counter() - started:.1f} s; "
        f"`acsim run` / `acsim sweep` on this file now reuse them"
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a trace's statistics (optionally with the similarity distribution under an embedder)."""
    from traces.stats import format_stats, trace_stats

    if args.cache_dir is not None:
        from sim.base.io import check_writable

        check_writable(args.cache_dir, "--cache-dir", directory=True)
    trace = _open_any(args.path)
    embeddings = None
    if args.embedder:
        from sim.base.errors import ConfigError
        from traces.embeddings import check_embedder_name, embed_prompts, get_embedder

        problem = check_embedder_name(args.embedder)
        if problem:
            raise ConfigError("--embedder", args.embedder, problem)
        embeddings = embed_prompts(get_embedder(args.embedder), trace.prompts, args.cache_dir, progress=False)
    stats = trace_stats(trace, embeddings)
    if args.json:
        json.dump(stats, sys.stdout, indent=2)
        print()
    else:
        print(format_stats(stats))
    return 0
