"""``acsim bench``: its options, the stage registry and the run of the stages."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from sim.app.bench.e2e import stage_e2e
from sim.app.bench.embedding import stage_minilm, stage_trace
from sim.app.bench.figures import Figure, Stage, fit_exponent, format_table, pin_one_core
from sim.app.bench.full import stage_full
from sim.app.bench.inputs import inputs_dir, stage_inputs
from sim.app.bench.neighbours import stage_neighbours
from sim.app.bench.plan import stage_plan
from sim.app.bench.replay import stage_replay, stage_scaling
from sim.app.preflight import memory_bytes
from sim.base.errors import ConfigError
from sim.base.io import atomic_write_text, check_own_file
from sim.base.machine import cpu_name

if TYPE_CHECKING:
    import argparse

STAGE_REGISTRY: dict[str, Stage] = {
    "inputs": Stage(stage_inputs, every_core=True),  # set-up, not a figure
    "trace": Stage(stage_trace),
    "minilm": Stage(stage_minilm),
    "neighbours": Stage(stage_neighbours),
    "replay": Stage(stage_replay),
    "full": Stage(stage_full),
    "scaling": Stage(stage_scaling),
    "plan": Stage(stage_plan, every_core=True, own_processes=True),
    "e2e": Stage(stage_e2e, every_core=True, own_processes=True),
}


def _run_stage(name: str, src: Path, requests: int) -> list[dict[str, Any]]:
    stage = STAGE_REGISTRY[name]
    if not stage.every_core:
        pin_one_core()
    return [f.__dict__ for f in stage.run(src, requests)]


def _in_fresh_process(name: str, src: Path, requests: int) -> list[Figure]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rows = pool.apply(_run_stage, (name, src, requests))
    return [Figure(**r) for r in rows]


STAGES = ("trace", "minilm", "neighbours", "replay", "full", "scaling", "plan")


def run_bench(
    requests: int,
    scale_sizes: list[int],
    minilm: bool = True,
    precompute: int = 20_000,
    full: int = 20_000,
    minilm_prompts: int = 300,
    plan_requests: int | None = None,
    only: set[str] | None = None,
    e2e: int | None = None,
) -> list[Figure]:
    """Run every stage (those in ``only``, if given) and return the figures.

    ``requests``: size of the replay figures; ``scale_sizes``: prefix sizes of the growth fit;
    ``precompute`` / ``full``: prefix sizes of the neighbour-precompute and full-SimPy figures;
    ``plan_requests``: trace size of the plan figure (None: no plan stage, unless ``only`` asks).
    ``e2e``: size of the cold end-to-end figure (None: skipped).
    """
    def wanted(stage: str) -> bool:
        return only is None or stage in only

    if e2e and not requests:  # the end-to-end figure alone
        return [Figure(**r) for r in _run_stage("e2e", inputs_dir(e2e), e2e)]
    figures: list[Figure] = []
    needs_src = any(wanted(s) for s in STAGES if s != "plan")
    n_max = max([requests, *scale_sizes])
    src = inputs_dir(n_max)
    stages = [("inputs", n_max)] if needs_src else []
    stages += [(name, n) for name, n in (("trace", requests),) if wanted(name)]
    if minilm and wanted("minilm"):
        stages.append(("minilm", minilm_prompts))
    stages += [
        (name, n)
        for name, n in (("neighbours", min(precompute, n_max)), ("replay", requests), ("full", min(full, n_max)))
        if wanted(name)
    ]
    if plan_requests is not None or (only is not None and "plan" in only):
        stages.append(("plan", plan_requests or 20_000))
    if e2e:
        stages.append(("e2e", e2e))
    for name, n in tqdm(stages, desc="bench stages", unit="stage", file=sys.stderr):
        if STAGE_REGISTRY[name].own_processes:
            figures += [Figure(**r) for r in _run_stage(name, src, n)]
        else:
            figures += _in_fresh_process(name, src, n)
    if not wanted("scaling"):
        return figures
    times, mems = [], []
    for n in tqdm(scale_sizes, desc="scaling", unit="size", file=sys.stderr):
        (f,) = _in_fresh_process("scaling", src, n)
        times.append(f.value)
        mems.append(f.peak_rss_mb)
        figures.append(
            Figure(
                f"cache-only replay LCBFU, {n:,} req",
                f.value,
                "s",
                "fallbacks",
                f.reference_value,
                f.peak_rss_mb,
            )
        )
    if len(scale_sizes) >= 2:
        figures.append(
            Figure("replay time growth exponent", fit_exponent(scale_sizes, times), "", "1.0 = linear")
        )
        figures.append(
            Figure(
                "replay peak RSS growth exponent",
                fit_exponent(scale_sizes, mems),
                "",
                "1.0 = linear (RSS includes ~0.2 GB of imports)",
            )
        )
    return figures


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``acsim bench``."""
    p.add_argument(
        "--requests",
        default="200000",
        help="synthetic trace size for the rate figures (default 200,000; 0 with --e2e: only the e2e figure)",
    )
    p.add_argument(
        "--scale",
        default="50000,100000,200000",
        help="comma-separated trace sizes for the time/memory growth fit (default 50k,100k,200k; "
        "larger sizes build larger cached inputs on the first run)",
    )
    p.add_argument(
        "--precompute",
        default="20000",
        help="requests (a prefix) for the neighbour-precompute figure (default 20,000)",
    )
    p.add_argument(
        "--full",
        default="20000",
        help="requests (a prefix) for the full SimPy replay figure (default 20,000)",
    )
    p.add_argument(
        "--no-minilm",
        action="store_true",
        help="skip the embedding figures of MiniLM and its ONNX and static backends",
    )
    p.add_argument(
        "--plan",
        nargs="?",
        const="20000",
        default=None,
        metavar="REQUESTS",
        help="also time `acsim plan` over 4 systems x 2 GPU types on a trace of REQUESTS (default 20,000)",
    )
    p.add_argument(
        "--e2e",
        nargs="?",
        const="2000000",
        default=None,
        metavar="REQUESTS",
        help="add the cold end-to-end figure on a trace of REQUESTS (default 2,000,000): trace, "
        "static embedder build and embeddings, ivf neighbour lists, cache-only replays of every "
        "policy at 4 cache sizes (at 2M on 2 cores: about 23 minutes, 7.5 GB at the peak, 6 GB while "
        "the lists are built: README, Performance)",
    )
    p.add_argument(
        "--only",
        default=None,
        help=f"run only these stages, comma-separated ({', '.join(STAGES)})",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.epilog = (
        "Sizes are whole numbers of requests, written 200000, 200,000, 200k, 1.5M or 2e6. The rate "
        f"figures need at least {MIN_REQUESTS:,} requests; acsim refuses sizes whose inputs would not "
        f"fit in this machine's memory (about {BYTES_PER_REQUEST:,} bytes per request at the peak)."
    )


# Smallest trace a figure means anything on, and the peak memory of a stage per request of its
# inputs (measured: the 2M end-to-end run peaks at 7.5 GB, README "Performance").
MIN_REQUESTS = 100


BYTES_PER_REQUEST = 4_000


_SUFFIX = {"k": 1_000, "m": 1_000_000}


def parse_count(text: str, flag: str, *, allow_zero: bool = False) -> int:
    """A number of requests written 200000, 200,000, 200k, 1.5M or 2e6; ConfigError naming ``flag``."""
    raw = str(text).strip().replace(",", "").replace("_", "")
    scale = _SUFFIX.get(raw[-1:].lower(), 1) if raw else 1
    body = raw[:-1] if scale != 1 else raw
    allowed = f"a whole number of requests of at least {MIN_REQUESTS:,} (200000, 200k, 1.5M or 2e6)"
    if allow_zero:
        allowed += ", or 0"
    try:
        value = float(body) * scale
    except ValueError:
        raise ConfigError(flag, text, allowed) from None
    if not math.isfinite(value) or value != int(value) or (value < MIN_REQUESTS and not (allow_zero and value == 0)):
        raise ConfigError(flag, text, allowed)
    n = int(value)
    memory = memory_bytes()
    if n * BYTES_PER_REQUEST > memory:
        raise ConfigError(
            flag,
            text,
            f"{n:,} requests need about {n * BYTES_PER_REQUEST / 2**30:,.0f} GiB of memory at the peak; this "
            f"machine has {memory / 2**30:,.0f} GiB (at most {memory // BYTES_PER_REQUEST:,} requests)",
        )
    return n


def _is_bench_json(path: Path) -> bool:
    """Whether ``path`` holds figures ``acsim bench --json`` wrote (a list of figure records)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    keys = set(Figure.__dataclass_fields__)
    return isinstance(data, list) and all(isinstance(d, dict) and set(d) == keys for d in data)


def check_bench_args(args: argparse.Namespace) -> None:
    """Parse and check every size option of ``acsim bench`` in place, before any stage starts."""
    if args.json is not None:
        check_own_file(args.json, "--json", "bench figures file", _is_bench_json)

    args.e2e = None if args.e2e is None else parse_count(args.e2e, "--e2e")
    if args.e2e is None and str(args.requests).strip() == "0":
        raise ConfigError("--requests", args.requests, "0 means the end-to-end figure alone: give --e2e too")
    args.requests = parse_count(args.requests, "--requests", allow_zero=args.e2e is not None)
    args.scale = [parse_count(s, "--scale") for s in str(args.scale).split(",") if s.strip()]
    if not args.scale:
        raise ConfigError("--scale", args.scale, "one or more sizes, comma-separated (50k,100k,200k)")
    if len(set(args.scale)) != len(args.scale):
        raise ConfigError("--scale", ",".join(map(str, args.scale)), "sizes that differ from one another")
    args.precompute = parse_count(args.precompute, "--precompute")
    args.full = parse_count(args.full, "--full")
    args.plan = None if args.plan is None else parse_count(args.plan, "--plan")


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table."""
    check_bench_args(args)
    sizes = args.scale
    only = None
    if args.only:
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = only - set(STAGES)
        if unknown:
            raise ConfigError("--only", args.only, "stages: " + ", ".join(STAGES))
    t0 = time.perf_counter()
    figures = run_bench(
        args.requests,
        sizes,
        minilm=not args.no_minilm,
        precompute=args.precompute,
        full=args.full,
        plan_requests=args.plan,
        only=only,
        e2e=args.e2e,
    )
    print(format_table(figures))
    cpu = cpu_name()
    print(
        f"\nmachine: {cpu}, {os.cpu_count()} cores; each stage pinned to one core unless a figure "
        f"says otherwise (the plan and the end-to-end figure use every core); "
        f"bench took {time.perf_counter() - t0:.0f} s"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps([f.__dict__ for f in figures], indent=2))
    return 0

