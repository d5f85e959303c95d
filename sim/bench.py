"""``acsim bench``: the simulator's speed and memory, each beside a reference measured in the same run.

Every stage runs in a fresh process (so its peak RSS is its own) pinned to one core, on the
same synthetic trace: trace generation, embedding, neighbour precompute (vs hnswlib's raw
batched query), cache-only replay (vs libcachesim LRU on the same exact-ID sequence), the full
SimPy replay (vs a bare SimPy M/M/1 queue), and how replay time and memory grow with the
trace size (the exponent of a log-log fit).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.io import atomic_write_text

TARGETS = {
    "cache-only replay, nirvana LCBFU": 150_000.0,
    "cache-only replay, nirvana LRU": 150_000.0,
    "full SimPy replay, nirvana": 30_000.0,
    "neighbour precompute": 5_000.0,
}


@dataclass
class Figure:
    """One printed row: what was measured, its value, and the reference beside it."""

    name: str
    value: float
    unit: str
    reference: str = ""
    reference_value: float = float("nan")
    peak_rss_mb: float = float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pin_one_core() -> None:
    # The targets are per core; also stop BLAS and torch from spreading out.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _experiment(requests: int, policy: str = "lcbfu", capacity: float = 15000):
    from sim import config

    return config.from_dict(
        {
            "name": "bench",
            "seed": 1,
            "trace": {"source": "synthetic", "requests": requests, "arrival": {"process": "poisson", "rate": 0.2}},
            "embedder": "hashing",
            "cache": {"capacity": capacity, "policy": policy},
            "systems": ["nirvana"],
            "plots": False,
        }
    )


def _load_inputs(work: Path, requests: int):
    """Trace arrays, embeddings and neighbour lists of the bench trace of ``requests`` requests."""
    from sim.neighbours import NeighbourLists
    from traces.schema import read_parquet

    trace = read_parquet(work / f"trace-{requests}.parquet")
    emb = np.load(work / f"emb-{requests}.npy")
    nb_path = work / f"nb-{requests}.npz"
    nb = NeighbourLists.load(nb_path) if nb_path.exists() else None
    return trace, emb, nb


# ---------------------------------------------------------------------------
# stages (each runs in its own process and returns a list of Figures)


def stage_trace(work: Path, requests: int) -> list[Figure]:
    """Generate the synthetic trace and embed its prompts with `hashing`."""
    from sim.profile import load_profile
    from sim.run import min_similarity
    from traces.embeddings import get_embedder
    from traces.load import load_trace
    from traces.schema import write_parquet

    exp = _experiment(requests)
    t0 = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    gen_s = time.perf_counter() - t0
    write_parquet(trace, work / f"trace-{requests}.parquet")
    emb_hash = get_embedder("hashing")
    t0 = time.perf_counter()
    emb = emb_hash.encode(trace.prompts)
    hash_s = time.perf_counter() - t0
    np.save(work / f"emb-{requests}.npy", emb)
    (work / "min_sim.txt").write_text(str(min_similarity(exp, load_profile(exp.profile))))
    return [
        Figure(f"synthetic trace generation ({requests:,} requests)", requests / gen_s, "requests/s"),
        Figure("embedding, hashing", len(trace.prompts) / hash_s, "prompts/s", peak_rss_mb=_peak_rss_mb()),
    ]


def stage_minilm(work: Path, requests: int, n_prompts: int = 1000) -> list[Figure]:
    """Embed real-sized prompts with the packaged MiniLM model."""
    from traces.embeddings import get_embedder
    from traces.schema import read_parquet

    prompts = read_parquet(work / f"trace-{requests}.parquet").prompts[:n_prompts]
    emb = get_embedder("minilm")
    emb.encode(prompts[:32])  # warm-up: model load and first-call overheads
    t0 = time.perf_counter()
    emb.encode(prompts)
    return [Figure("embedding, minilm (1 thread)", len(prompts) / (time.perf_counter() - t0), "prompts/s",
                   peak_rss_mb=_peak_rss_mb())]


def stage_neighbours(work: Path, requests: int) -> list[Figure]:
    """Causal neighbour lists, against hnswlib's raw batched top-m query on the same vectors."""
    import hnswlib

    from sim.neighbours import build_neighbours
    from traces.schema import read_parquet

    trace = read_parquet(work / f"trace-{requests}.parquet")
    emb = np.load(work / f"emb-{requests}.npy")
    min_sim = float((work / "min_sim.txt").read_text())
    t0 = time.perf_counter()
    nb = build_neighbours(emb, trace.prompt_ids, top_m=8, min_similarity=min_sim, index="hnsw", progress=False)
    build_s = time.perf_counter() - t0
    nb.save(work / f"nb-{requests}.npz")
    rss = _peak_rss_mb()

    index = hnswlib.Index(space="ip", dim=emb.shape[1])
    index.init_index(max_elements=len(emb), ef_construction=200, M=16, random_seed=1)
    index.set_num_threads(1)
    index.add_items(emb, np.arange(len(emb)))
    index.set_ef(64)
    queries = emb[trace.prompt_ids[: min(len(trace), 100_000)]]
    t0 = time.perf_counter()
    index.knn_query(queries, k=8, num_threads=1)
    raw = len(queries) / (time.perf_counter() - t0)
    return [Figure("neighbour precompute", requests / build_s, "requests/s",
                   "hnswlib knn_query k=8 (no inserts)", raw, rss)]


def stage_replay(work: Path, requests: int) -> list[Figure]:
    """Cache-only replay of nirvana under LCBFU and LRU, against libcachesim's LRU."""
    from sim.profile import load_profile
    from sim.replay import replay
    from sim.systems import build_system

    trace, _, nb = _load_inputs(work, requests)
    profile = load_profile("sdxl-a10g")
    figures = []
    ref = _libcachesim_lru_rate(trace.prompt_ids, capacity=3000)
    for policy in ("lcbfu", "lru"):
        exp = _experiment(requests, policy)
        system = build_system("nirvana", exp, trace, nb, profile)
        t0 = time.perf_counter()
        replay(system, trace.arrival_s, trace.prompt_ids, trace.user_codes)
        rate = requests / (time.perf_counter() - t0)
        figures.append(Figure(f"cache-only replay, nirvana {policy.upper()}", rate, "requests/s",
                              "libcachesim LRU, same exact-ID sequence", ref, _peak_rss_mb()))
    return figures


def _libcachesim_lru_rate(prompt_ids: np.ndarray, capacity: int) -> float:
    import libcachesim as lcs

    cache = lcs.LRU(cache_size=capacity)
    req = lcs.Request()
    req.obj_size = 1
    ids = prompt_ids.tolist()
    t0 = time.perf_counter()
    for pid in ids:
        req.obj_id = pid
        cache.get(req)
    return len(ids) / (time.perf_counter() - t0)


def stage_full(work: Path, requests: int) -> list[Figure]:
    """Full SimPy replay of nirvana, against a bare SimPy M/M/1 queue."""
    from sim.engine import simulate
    from sim.profile import load_profile
    from sim.systems import build_system

    trace, emb, nb = _load_inputs(work, requests)
    profile = load_profile("sdxl-a10g")
    exp = _experiment(requests)
    system = build_system("nirvana", exp, trace, nb, profile)
    t0 = time.perf_counter()
    simulate(system, trace.arrival_s, trace.prompt_ids, trace.user_codes, exp, profile, seed=1, embeddings=emb)
    rate = requests / (time.perf_counter() - t0)
    return [Figure("full SimPy replay, nirvana", rate, "requests/s", "bare SimPy M/M/1 queue",
                   _simpy_mm1_rate(min(requests, 200_000)), _peak_rss_mb())]


def _simpy_mm1_rate(customers: int) -> float:
    import simpy

    rng = np.random.default_rng(1)
    inter = rng.exponential(1.0, customers).tolist()
    service = rng.exponential(0.8, customers).tolist()
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)

    def customer(s: float):
        with server.request() as req:
            yield req
            yield env.timeout(s)

    def source():
        for a, s in zip(inter, service, strict=True):
            yield env.timeout(a)
            env.process(customer(s))

    env.process(source())
    t0 = time.perf_counter()
    env.run()
    return customers / (time.perf_counter() - t0)


def stage_scaling(work: Path, requests: int) -> list[Figure]:
    """Time and peak memory of one cache-only replay of this size (for the scaling fit)."""
    from sim.neighbours import build_neighbours
    from sim.profile import load_profile
    from sim.replay import replay
    from sim.systems import build_system
    from traces.embeddings import get_embedder
    from traces.load import load_trace

    exp = _experiment(requests)
    trace = load_trace(exp.trace, exp.seed)
    emb = get_embedder("hashing").encode(trace.prompts)
    min_sim = float((work / "min_sim.txt").read_text())
    t0 = time.perf_counter()
    nb = build_neighbours(emb, trace.prompt_ids, top_m=8, min_similarity=min_sim, index="hnsw", progress=False)
    nb_s = time.perf_counter() - t0
    system = build_system("nirvana", exp, trace, nb, load_profile("sdxl-a10g"))
    t0 = time.perf_counter()
    replay(system, trace.arrival_s, trace.prompt_ids, trace.user_codes)
    replay_s = time.perf_counter() - t0
    return [Figure(f"scaling {requests}", replay_s, "s", "neighbour precompute s", nb_s, _peak_rss_mb())]


def _run_stage(name: str, work: Path, requests: int) -> list[dict[str, Any]]:
    _pin_one_core()
    figures = globals()[f"stage_{name}"](work, requests)
    return [f.__dict__ for f in figures]


def _in_fresh_process(name: str, work: Path, requests: int) -> list[Figure]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rows = pool.apply(_run_stage, (name, work, requests))
    return [Figure(**r) for r in rows]


def fit_exponent(sizes: list[int], values: list[float]) -> float:
    """Exponent b of ``value ~ a * size**b`` by least squares in log-log space."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def run_bench(requests: int, scale_sizes: list[int], minilm: bool = True, stream=sys.stdout) -> list[Figure]:
    """Run every stage and return the figures (also printed as they arrive)."""
    from tqdm import tqdm

    stages = ["trace", *(["minilm"] if minilm else []), "neighbours", "replay", "full"]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="acsim-bench-") as tmp:
        work = Path(tmp)
        for name in tqdm(stages, desc="bench stages", unit="stage", file=sys.stderr):
            figures += _in_fresh_process(name, work, requests)
        times, mems = [], []
        for n in tqdm(scale_sizes, desc="scaling", unit="size", file=sys.stderr):
            (f,) = _in_fresh_process("scaling", work, n)
            times.append(f.value)
            mems.append(f.peak_rss_mb)
            figures.append(Figure(f"cache-only replay at {n:,} requests", f.value, "s",
                                  "neighbour precompute", f.reference_value, f.peak_rss_mb))
        if len(scale_sizes) >= 2:
            figures.append(Figure("replay time growth exponent", fit_exponent(scale_sizes, times), "",
                                  "1.0 = linear"))
            figures.append(Figure("replay peak RSS growth exponent", fit_exponent(scale_sizes, mems), "",
                                  "1.0 = linear"))
    return figures


def format_table(figures: list[Figure]) -> str:
    """The bench table: figure, value, target, reference and peak memory."""
    head = f"{'figure':44s} {'value':>14s} {'target':>10s}  {'reference':38s} {'ref value':>12s} {'peak RSS':>10s}"
    lines = [head, "-" * len(head)]
    for f in figures:
        target = TARGETS.get(f.name)
        tgt = f"{'>=' if target else ''}{target:,.0f}" if target else ""
        ref = f"{f.reference_value:,.0f}" if f.reference_value == f.reference_value else ""
        mem = f"{f.peak_rss_mb:,.0f} MB" if f.peak_rss_mb == f.peak_rss_mb else ""
        val = f"{f.value:,.2f}" if abs(f.value) < 100 else f"{f.value:,.0f}"
        lines.append(f"{f.name:44s} {val:>10s} {f.unit[:3]:3s} {tgt:>10s}  {f.reference[:38]:38s} {ref:>12s} {mem:>10s}")
    return "\n".join(lines)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``acsim bench``."""
    p.add_argument("--requests", type=int, default=200_000,
                   help="synthetic trace size for the rate figures (default 200,000)")
    p.add_argument("--scale", default="100000,300000,1000000",
                   help="comma-separated trace sizes for the time/memory growth fit (default 100k,300k,1M)")
    p.add_argument("--no-minilm", action="store_true", help="skip the MiniLM embedding figure")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table."""
    sizes = [int(s) for s in str(args.scale).split(",") if s.strip()]
    t0 = time.perf_counter()
    figures = run_bench(args.requests, sizes, minilm=not args.no_minilm)
    print(format_table(figures))
    cpu = _cpu_name()
    print(f"\nmachine: {cpu}, {os.cpu_count()} cores; each stage pinned to one core; "
          f"bench took {time.perf_counter() - t0:.0f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps([f.__dict__ for f in figures], indent=2))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
