"""``acsim bench``: the simulator's speed and memory, each beside a reference measured in the same run.

Every stage runs in a fresh process (so its peak RSS is its own) pinned to one core, on the
same synthetic trace: trace generation, embedding, neighbour precompute (vs hnswlib's raw
batched query), cache-only replay (vs libcachesim LRU on the same exact-ID sequence), the full
SimPy replay (vs a bare SimPy M/M/1 queue), and how replay time and memory grow with the
trace size (the exponent of a log-log fit). With ``--plan``, also ``acsim plan`` over four
systems and two GPU types (on every core: the plan runs its points on the local pool).

The embedding figures put ``minilm-onnx`` and
``minilm-static`` beside PyTorch MiniLM on the same prompts at the same thread count; the
neighbour figures put the ``ivf`` lists (both cores) and today's ``hnsw`` lists (one core)
beside hnswlib's raw batched query, with each one's recall against the exact lists.

``--e2e N`` adds one end-to-end figure, cold, on every core: a synthetic trace of N requests
(default 2M), the static embedder built from MiniLM in an empty model cache, its embeddings
(these three in a child process, whose heap never reaches the rest), the ``ivf`` neighbour lists
(capped at ``E2E_TOP_M``), then a cache-only nirvana replay of every policy at four cache sizes
(two at a time: the compiled replays release the GIL); each stage's time, share and the peak
memory, plus the lists' recall on the first 30k requests (against exact lists) and on a sample
of requests across the trace.

One trace of the largest size asked for is generated, embedded (hashing) and given its
causal neighbour lists once (ivf on every core: this is set-up, not a figure), and cached under
``$ACSIM_CACHE/bench``; later runs reuse it, or any longer cached trace (the output says what
was reused). Every smaller size is a prefix of that trace: causal lists only
look back, so the prefix of the lists IS the lists of the prefix trace. The rate figures are
measured fresh in every run (trace generation and embedding on a trace of ``--requests``,
neighbour precompute on a prefix of ``--precompute`` requests).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.config import NeighbourConfig
from sim.base.io import atomic_path, atomic_write_text, check_own_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

TOP_M = NeighbourConfig().top_m  # the config default, so the bench measures what users get
# The e2e lists' cap. At 2M requests most rows reach any cap (the static embedder lists 188 of
# 256 on average, 407 of 1,024 over the first 200k requests), so the lists cost top_m x 8 bytes
# per request: 16 GB at the default 1,024. A row that runs out falls back on the cached prompts
# (exactly while at most 4,096 are cached, then the cells nearest the request), so the cap
# changes the replays' time and, past that budget, which cached prompt a fallback finds.
E2E_TOP_M = 256
E2E_OFFLINE_MAX = 50_000_000  # listed pairs up to which the e2e replays the offline policy (Belady)

# Figures that must stay at or below a bound (seconds).
CEILINGS = {"plan, 4 systems x 2 GPU types": 120.0}

TARGETS = {
    "cache-only replay, nirvana LCBFU": 150_000.0,
    "cache-only replay, nirvana LRU": 150_000.0,
    "full SimPy replay, nirvana": 30_000.0,
    "neighbour precompute": 5_000.0,
    "e2e neighbour lists": 5_000.0,
    "embedding, minilm-static": 20_000.0,
}
E2E_CAPACITIES = (1_500, 15_000, 150_000, 1_500_000)  # the paper's cache sizes (cached latents)
RECALL_PREFIX = 30_000


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
    """Peak resident memory of this process or of the largest of its finished children (MB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024.0


def _pin_one_core() -> None:
    # The targets are per core; also stop BLAS and torch from spreading out.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # numpy's BLAS threads would only contend for the one core


def _experiment(
    requests: int,
    policy: str = "lcbfu",
    capacity: float = 15000,
    mode: str = "cache-only",
    embedder: str = "hashing",
):
    from sim.base import config

    return config.from_dict(
        {
            "name": "bench",
            "seed": 1,
            "mode": mode,
            "trace": {
                "source": "synthetic",
                "requests": requests,
                "arrival": {"process": "poisson", "rate": 0.2},
            },
            "embedder": embedder,
            # The workload every earlier figure was measured on: the published thresholds read as
            # the embedder's cosines (carried to hashing, the K=5 rung would list nearly every pair).
            "selector": {"carried": False},
            "cache": {"capacity": capacity, "policy": policy},
            "neighbours": {"top_m": TOP_M},
            "systems": ["nirvana"],
            "plots": False,
        }
    )


def inputs_dir(requests: int) -> Path:
    """Where the bench trace of ``requests`` requests, its embeddings and lists are cached.

    A cached trace at least that long is reused (its prefix serves), so measuring a large
    size once makes every later smaller run warm.
    """
    from sim.base.cache_root import cache_root
    from sim.neighbours.lists import FORMAT

    root = cache_root() / "bench"
    suffix = f"-seed1-hashing-top{TOP_M}-nb{FORMAT}-ivf"
    built = sorted(
        (int(p.name.split("-")[1]), p)
        for p in root.glob(f"synthetic-*{suffix}")
        if (p / "meta.json").exists() and p.name.split("-")[1].isdigit()
    )
    return next((p for size, p in built if size >= requests), root / f"synthetic-{requests}{suffix}")


@dataclass
class Inputs:
    """A prefix of the cached bench trace: arrays, embeddings and neighbour lists."""

    arrays: Any  # sim.systems.TraceArrays
    embeddings: np.ndarray
    neighbours: Any  # sim.neighbours.NeighbourLists


def load_prefix(src: Path, n: int) -> Inputs:
    """The first ``n`` requests of the cached trace with their (causal, hence exact) lists.

    The arrays are memory-mapped, so a small prefix costs no more memory than its own size.
    """
    from sim.neighbours import NeighbourLists
    from sim.systems import TraceArrays

    pids = np.load(src / "prompt_ids.npy", mmap_mode="r")
    if n > len(pids):
        raise ValueError(f"the cached bench trace has {len(pids)} requests, not {n}")
    pids = np.array(pids[:n])
    # Left memory-mapped: only the rare exhaustive-search fallback reads the embeddings.
    emb = np.load(src / "embeddings.npy", mmap_mode="r")[: int(pids.max()) + 1]
    nb = NeighbourLists.load(src / "neighbours.npz")
    end = int(nb.offsets[n])
    lists = NeighbourLists(
        offsets=nb.offsets[: n + 1].copy(),
        ids=nb.ids[:end].copy(),
        sims=nb.sims[:end].copy(),
        complete=nb.complete[:n].copy(),
        top_m=nb.top_m,
        min_similarity=nb.min_similarity,
        index=nb.index,
        prompt_ids=pids,
    ).attach(emb)
    del nb
    arrays = TraceArrays(
        pids,
        np.array(np.load(src / "user_codes.npy", mmap_mode="r")[:n]),
        np.array(np.load(src / "arrival_s.npy", mmap_mode="r")[:n]),
    )
    return Inputs(arrays, emb, lists)


# ---------------------------------------------------------------------------
# stages (each runs in its own process and returns a list of Figures)


def stage_inputs(src: Path, requests: int) -> list[Figure]:
    """Generate, embed and list the bench trace once; later runs reuse it from the cache."""
    from sim.app.run import min_similarity
    from sim.base.profile import load_profile
    from sim.neighbours import build_neighbours
    from traces.embeddings import get_embedder
    from traces.load import load_trace
    from traces.schema import write_parquet

    meta_path = src / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return [
            Figure(
                f"inputs: {meta['requests']:,}-request trace + lists REUSED",
                meta["build_s"],
                "s",
                f"cached in {src}",
            )
        ]
    src.mkdir(parents=True, exist_ok=True)
    exp = _experiment(requests)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    t0 = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    write_parquet(trace, src / "trace.parquet")
    emb = get_embedder(exp.embedder).encode(trace.prompts)
    nb = build_neighbours(
        emb,
        trace.prompt_ids,
        top_m=TOP_M,
        min_similarity=min_similarity(exp, load_profile(exp.profile)),
        index="ivf",
        progress=False,
        num_threads=threads,  # set-up, not a measured figure: every core helps
    )
    build_s = time.perf_counter() - t0
    for name, arr in (
        ("embeddings", emb),
        ("prompt_ids", trace.prompt_ids),
        ("user_codes", trace.user_codes),
        ("arrival_s", trace.arrival_s),
    ):
        with atomic_path(src / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr))
    nb.save(src / "neighbours.npz")
    atomic_write_text(meta_path, json.dumps({"build_s": build_s, "requests": requests, "top_m": TOP_M}))
    return [
        Figure(
            f"inputs: {requests:,}-request trace + lists BUILT",
            build_s,
            "s",
            f"{threads} threads; cached in {src}",
            peak_rss_mb=_peak_rss_mb(),
        )
    ]


def stage_trace(src: Path, requests: int) -> list[Figure]:
    """Generate a synthetic trace and embed its prompts with `hashing`."""
    from traces.embeddings import get_embedder
    from traces.load import load_trace

    exp = _experiment(requests)
    t0 = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    gen_s = time.perf_counter() - t0
    emb_hash = get_embedder("hashing")
    t0 = time.perf_counter()
    emb_hash.encode(trace.prompts)
    hash_s = time.perf_counter() - t0
    return [
        Figure(f"synthetic trace generation ({requests:,} req)", requests / gen_s, "requests/s"),
        Figure("embedding, hashing", len(trace.prompts) / hash_s, "prompts/s", peak_rss_mb=_peak_rss_mb()),
    ]


def _rate(embedder: Any, prompts: list[str]) -> tuple[float, float]:
    """(prompts per wall second, per CPU second of all threads) of one ``encode`` call, after a
    warm-up that loads the model. On a shared machine the CPU rate is the steadier one."""
    embedder.encode(prompts[:8])
    t0, c0 = time.perf_counter(), time.process_time()
    embedder.encode(prompts)
    return len(prompts) / (time.perf_counter() - t0), len(prompts) / (time.process_time() - c0)


def _set_threads(n: int) -> None:
    import torch

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if hasattr(os, "sched_setaffinity") and n > len(cpus):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    torch.set_num_threads(n)


def stage_minilm(src: Path, n_prompts: int) -> list[Figure]:
    """PyTorch MiniLM, minilm-onnx and minilm-static on the same prompts, at 1 and at 2 threads.

    Model artefacts (the ONNX export, the static table) are built first if missing, untimed;
    their build time is printed as its own figure. The static rate is measured on every prompt
    of the bench trace: its tokenizer memory pays off on long traces, not on a thousand prompts.
    """
    from traces.embeddings import MiniLMEmbedder, MiniLMOnnxEmbedder, MiniLMStaticEmbedder
    from traces.model_store import read_meta
    from traces.schema import read_parquet

    everything = list(read_parquet(src / "trace.parquet").prompts)
    prompts = everything[:n_prompts]
    figures = []
    for cls in (MiniLMOnnxEmbedder, MiniLMStaticEmbedder):
        t0 = time.perf_counter()
        directory = cls(device="cpu").artefact()
        meta = read_meta(directory)
        built = time.perf_counter() - t0 > 1.0
        figures.append(
            Figure(
                f"model build, {cls.name.split(':')[0]}",
                meta["build_s"],
                "s",
                f"{'BUILT now' if built else 'cached'} in {directory.parent}",
            )
        )
    for threads in (1, 2):
        _set_threads(threads)
        label = f"({threads} thread{'s' if threads > 1 else ''})"
        ref, ref_cpu = _rate(MiniLMEmbedder(device="cpu"), prompts)
        figures.append(Figure(f"embedding, minilm {label}", ref, "prompts/s", "PyTorch, sentence-transformers"))
        onnx, onnx_cpu = _rate(MiniLMOnnxEmbedder(device="cpu"), prompts)
        figures.append(
            Figure(f"embedding, minilm-onnx {label}", onnx, "prompts/s", f"minilm {label}, same prompts", ref)
        )
        figures.append(Figure(f"  minilm-onnx / minilm {label}", onnx / ref, "x", "target >= 4"))
        figures.append(
            Figure(f"  same, per CPU second {label}", onnx_cpu, "prompts/s", "minilm per CPU second", ref_cpu)
        )
        static, static_cpu = _rate(MiniLMStaticEmbedder(device="cpu"), everything)
        figures.append(
            Figure(
                f"embedding, minilm-static {label}",
                static,
                "prompts/s",
                f"minilm {label}; {len(everything):,} prompts",
                ref,
                _peak_rss_mb(),
            )
        )
        figures.append(Figure(f"  same, per CPU second {label}", static_cpu, "prompts/s", "minilm per CPU second", ref_cpu))
    return figures


def _pairs(nb: Any, n: int) -> np.ndarray:
    """The first ``n`` requests' (request, prompt id) pairs, each as one int64, without repeats."""
    counts = np.diff(nb.offsets[: n + 1])
    ids = nb.ids[nb.offsets[0] : nb.offsets[n]].astype(np.int64)
    return np.unique(np.repeat(np.arange(n, dtype=np.int64), counts) << 32 | ids)


def recall(approx: Any, exact: Any, n: int) -> float:
    """Share of the exact lists' (request, prompt) pairs among the first ``n`` requests that
    ``approx`` lists too (both are causal, so the first n rows of any trace's lists compare)."""
    want = _pairs(exact, n)
    return len(np.intersect1d(_pairs(approx, n), want, assume_unique=True)) / max(len(want), 1)


def stage_neighbours(src: Path, requests: int) -> list[Figure]:
    """Causal lists of a prefix: ivf (both cores) and hnsw (one core), against hnswlib's raw
    batched query, each with its recall against exact lists of the same prefix."""
    import hnswlib

    from sim.neighbours.lists import FIRST_K, HNSW_OPTIONS, build_neighbours

    inp = load_prefix(src, requests)
    emb, pids = inp.embeddings, inp.arrays.prompt_ids
    emb = np.ascontiguousarray(emb)
    floor = inp.neighbours.min_similarity
    _set_threads(2)
    t0, c0 = time.perf_counter(), time.process_time()
    ivf = build_neighbours(emb, pids, TOP_M, floor, index="ivf", progress=False, num_threads=2)
    rate_ivf, cpu_ivf = requests / (time.perf_counter() - t0), requests / (time.process_time() - c0)
    rss = _peak_rss_mb()
    _pin_one_core()
    t0, c0 = time.perf_counter(), time.process_time()
    hnsw = build_neighbours(emb, pids, TOP_M, floor, index="hnsw", progress=False)
    rate_hnsw, cpu_hnsw = requests / (time.perf_counter() - t0), requests / (time.process_time() - c0)

    # The reference: the lists' graph settings and first query depth, on a prebuilt index.
    index = hnswlib.Index(space="ip", dim=emb.shape[1])
    index.init_index(
        max_elements=len(emb), ef_construction=HNSW_OPTIONS["ef_construction"], M=HNSW_OPTIONS["M"], random_seed=1
    )
    index.set_num_threads(1)
    index.add_items(emb, np.arange(len(emb)))
    index.set_ef(HNSW_OPTIONS["ef"])
    t0 = time.perf_counter()
    index.knn_query(emb[pids], k=FIRST_K + 1, num_threads=1)
    raw = requests / (time.perf_counter() - t0)
    n = min(RECALL_PREFIX, requests)
    exact = build_neighbours(emb, pids[:n], TOP_M, floor, index="exact", progress=False)
    ref = f"hnswlib knn_query k={FIRST_K + 1}, no inserts"
    return [
        Figure(f"neighbour precompute, ivf ({requests:,} req, 2 threads)", rate_ivf, "requests/s", ref, raw, rss),
        Figure(f"neighbour precompute, hnsw ({requests:,} req, 1 thread)", rate_hnsw, "requests/s", ref, raw),
        Figure("  per CPU second, ivf (both threads' CPU)", cpu_ivf, "requests/s", "hnsw per CPU second", cpu_hnsw),
        Figure(f"  recall vs exact lists, ivf (first {n:,} req)", 100 * recall(ivf, exact, n), "%"),
        Figure(f"  recall vs exact lists, hnsw (first {n:,} req)", 100 * recall(hnsw, exact, n), "%"),
    ]


def _warm_kernel(inp: Inputs) -> float:
    """Load (or, on a fresh install, compile) the replay kernel before anything is timed."""
    from sim.base.profile import load_profile
    from sim.replay import replay
    from sim.systems import build_system

    n = min(2000, len(inp.arrays.prompt_ids))
    a = inp.arrays
    t0 = time.perf_counter()
    system = build_system(
        "nirvana", _experiment(n, "lcbfu", 500), a, inp.neighbours, load_profile("sdxl-a10g")
    )
    replay(system, a.arrival_s, a.prompt_ids, a.user_codes, n_requests=n)
    return time.perf_counter() - t0


def _replay_rate(inp: Inputs, policy: str) -> tuple[float, float, int]:
    """(requests/s wall, requests/s CPU, fallbacks) of one nirvana cache-only replay."""
    from sim.base.profile import load_profile
    from sim.replay import replay
    from sim.systems import build_system

    n = len(inp.arrays.prompt_ids)
    system = build_system(
        "nirvana", _experiment(n, policy), inp.arrays, inp.neighbours, load_profile("sdxl-a10g")
    )
    a = inp.arrays
    t0, c0 = time.perf_counter(), time.process_time()
    replay(system, a.arrival_s, a.prompt_ids, a.user_codes)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, n / cpu, system.stats()["fallbacks"]


def stage_replay(src: Path, requests: int) -> list[Figure]:
    """Cache-only replay of nirvana under LCBFU and LRU, against libcachesim's LRU."""
    inp = load_prefix(src, requests)
    complete = 100.0 * float(np.mean(inp.neighbours.complete))
    figures = [
        Figure("neighbour rows complete (no fallback possible)", complete, "%", f"top_m cap {TOP_M}"),
        Figure("replay kernel load (compiled once, cached on disk)", _warm_kernel(inp), "s", "before timing"),
    ]
    ref, ref_cpu = _libcachesim_lru_rate(inp.arrays.prompt_ids, capacity=3000)
    for policy in ("lcbfu", "lru"):
        rate, cpu_rate, calls = _replay_rate(inp, policy)
        figures.append(
            Figure(
                f"cache-only replay, nirvana {policy.upper()}",
                rate,
                "requests/s",
                "libcachesim LRU, same exact-ID sequence",
                ref,
                _peak_rss_mb(),
            )
        )
        # CPU time does not count the time other processes on a shared machine take.
        figures.append(
            Figure(
                f"  same, per CPU second ({calls:,} fallbacks)",
                cpu_rate,
                "requests/s",
                "libcachesim LRU, per CPU second",
                ref_cpu,
            )
        )
    return figures


def _libcachesim_lru_rate(prompt_ids: np.ndarray, capacity: int) -> tuple[float, float]:
    """(requests/s wall, requests/s CPU) of libcachesim's LRU on the exact-ID sequence."""
    import libcachesim as lcs

    cache = lcs.LRU(cache_size=capacity)
    req = lcs.Request()
    req.obj_size = 1
    ids = prompt_ids.tolist()
    t0, c0 = time.perf_counter(), time.process_time()
    for pid in ids:
        req.obj_id = pid
        cache.get(req)
    return len(ids) / (time.perf_counter() - t0), len(ids) / (time.process_time() - c0)


def stage_full(src: Path, requests: int) -> list[Figure]:
    """Full SimPy replay of nirvana on a prefix, against a bare SimPy M/M/1 queue."""
    from sim.base.profile import load_profile
    from sim.engine import simulate
    from sim.systems import build_system

    inp = load_prefix(src, requests)
    profile = load_profile("sdxl-a10g")
    exp = _experiment(requests, mode="full")
    system = build_system("nirvana", exp, inp.arrays, inp.neighbours, profile)
    a = inp.arrays
    t0 = time.perf_counter()
    simulate(system, a.arrival_s, a.prompt_ids, a.user_codes, exp, profile, seed=1, embeddings=inp.embeddings)
    rate = requests / (time.perf_counter() - t0)
    return [
        Figure(
            f"full SimPy replay, nirvana ({requests:,} req)",
            rate,
            "requests/s",
            "bare SimPy M/M/1 queue",
            _simpy_mm1_rate(requests),
            _peak_rss_mb(),
        )
    ]


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


PLAN_GPUS = {"a10g": "sdxl-a10g", "a100": "sdxl-a100"}


def _plan_experiment(requests: int):
    """The quickstart's shape (four systems, diurnal load near 70% of four A10Gs), hashing embeddings."""
    from sim.app.preflight import preflight
    from sim.base import config

    return preflight(
        config.from_dict(
            {
                "name": "bench-plan",
                "seed": 1,
                "mode": "full",
                "trace": {
                    "source": "synthetic",
                    "requests": requests,
                    "arrival": {"process": "diurnal", "rate": 0.16, "diurnal_amplitude": 0.3},
                },
                "embedder": "hashing",
                "selector": {"carried": False},  # as _experiment: the workload of the earlier figures
                "params": {"gptcache": {"threshold": 0.8, "space": "embedder"}},
                "cache": {"capacity": 15000, "policy": "lcbfu"},
                "systems": ["vanilla", "gptcache", "exact", "nirvana"],
                "plots": False,
            }
        )
    )


def stage_plan(src: Path, requests: int) -> list[Figure]:
    """``acsim plan`` over 4 systems x 2 GPU types (p95 <= 30 s), on every core, from no finished run.

    The trace and its lists are prepared (and cached) before the clock starts, as a plan over a
    trace someone has already run would find them. The reference is the same plan repeated, when
    every run is found finished.
    """
    import tempfile

    from sim.app.plan import PlanSettings, run_plan
    from sim.app.run import prepare_inputs
    from sim.base import config
    from sim.base.slo import parse_slo

    exp = _plan_experiment(requests)
    for profile in PLAN_GPUS.values():
        prepare_inputs(config.replace_path(exp, "profile", profile), progress=False)
    settings = PlanSettings(
        slos=[parse_slo("p95<=30")], systems=list(exp.systems), gpus=dict(PLAN_GPUS), loads=[1.0]
    )
    with tempfile.TemporaryDirectory(prefix="acsim-bench-plan-") as tmp:
        t0 = time.perf_counter()
        first = run_plan(exp, settings, Path(tmp), progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_plan(exp, settings, Path(tmp), progress=False)
        warm = time.perf_counter() - t0
    recs = first.recommendations
    brute = int(recs["gpus"].fillna(0).max() + 1) * len(recs)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return [
        Figure(
            f"plan, 4 systems x 2 GPU types ({requests:,} req)",
            cold,
            "s",
            f"same plan repeated ({again.reused} runs reused)",
            warm,
        ),
        Figure(
            f"  runs the plan evaluated ({cores} cores)",
            first.evaluated,
            "runs",
            "a sweep of 1..(max + 1) GPUs for every row",
            brute,
        ),
    ]


def stage_scaling(src: Path, requests: int) -> list[Figure]:
    """Time and peak memory of one nirvana LCBFU cache-only replay of a prefix (for the growth fit)."""
    inp = load_prefix(src, requests)
    _warm_kernel(inp)
    rate, _, calls = _replay_rate(inp, "lcbfu")
    return [Figure(f"scaling {requests}", requests / rate, "s", "fallbacks", calls, _peak_rss_mb())]


def _hnsw_reference(emb: np.ndarray, pids: np.ndarray, n_index: int, threads: int) -> float:
    """hnswlib's raw knn_query rate (queries/s) on an index of the first ``n_index`` prompts."""
    import hnswlib

    from sim.neighbours.lists import FIRST_K, HNSW_OPTIONS

    index = hnswlib.Index(space="ip", dim=emb.shape[1])
    index.init_index(max_elements=n_index, ef_construction=HNSW_OPTIONS["ef_construction"], M=HNSW_OPTIONS["M"], random_seed=1)
    index.add_items(emb[:n_index], np.arange(n_index), num_threads=threads)
    index.set_ef(HNSW_OPTIONS["ef"])
    queries = emb[pids[: min(len(pids), 20_000)]]
    t0 = time.perf_counter()
    index.knn_query(queries, k=FIRST_K + 1, num_threads=threads)
    return len(queries) / (time.perf_counter() - t0)


def sampled_recall(nb: Any, emb: np.ndarray, pids: np.ndarray, rows: np.ndarray, block: int = 65536) -> float:
    """Share of the exact top-``top_m`` causal pairs of ``rows`` (request indices) that ``nb`` lists.

    The exact lists of those requests come from one brute-force product per ``block`` prompts;
    each row keeps its best ``top_m`` so far (most similar first, ties: lower prompt id; its own
    prompt first), so memory stays at one block's product however many pairs pass the floor.
    """
    from sim.neighbours.lists import _first_seen

    first = _first_seen(pids, len(emb))
    q = emb[pids[rows]]
    floor = np.float32(nb.min_similarity)
    own = pids[rows].astype(np.int64)
    # Per row: (-similarity, prompt) of its best pairs so far.
    best = [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in rows]
    for lo in range(0, len(emb), block):
        sims = q @ emb[lo : lo + block].T
        ids = np.arange(lo, lo + sims.shape[1])
        ok = (sims >= floor) & (first[ids][None, :] < rows[:, None])
        for i in np.flatnonzero(ok.any(axis=1)).tolist():
            p = ids[ok[i]]
            v = np.where(p == own[i], np.float32(-1.0), -sims[i, ok[i]])
            v, p = np.concatenate([best[i][0], v]), np.concatenate([best[i][1], p])
            keep = np.lexsort((p, v))[: nb.top_m]
            best[i] = (v[keep], p[keep])
    found = total = 0
    for i, row in enumerate(rows.tolist()):
        want = set(best[i][1].tolist())
        got = set(nb.neighbours(row)[0].tolist())
        found += len(want & got)
        total += len(want)
    return found / max(total, 1)


def _minilm_rate(prompts: list[str]) -> tuple[float, float]:
    """PyTorch MiniLM's rate on ``prompts``: prompts per second and per CPU second (see _rate)."""
    from traces.embeddings import MiniLMEmbedder

    return _rate(MiniLMEmbedder(device="cpu"), prompts)


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def _e2e_inputs(requests: int, out: str) -> tuple[list[tuple[str, float, float]], int]:
    """The e2e's first stages, in a child process: trace, static table (torch's memory), embeddings,
    written to ``out``; the heap they leave (about 1 GB at 2M prompts, which glibc and pymalloc keep)
    never reaches the process that builds the lists and replays. Returns (stage, seconds, CPU
    seconds) per stage and the number of prompts."""
    from traces.embeddings import MiniLMStaticEmbedder
    from traces.load import load_trace

    exp = _experiment(requests, embedder="minilm-static")
    done: list[tuple[str, float, float]] = []
    t0, c0 = time.perf_counter(), time.process_time()

    def timed(name: str) -> None:
        nonlocal t0, c0
        done.append((name, time.perf_counter() - t0, time.process_time() - c0))
        t0, c0 = time.perf_counter(), time.process_time()

    trace = load_trace(exp.trace, exp.seed)
    timed("trace generation")
    MiniLMStaticEmbedder(device="cpu").artefact()
    timed("static model build (distil MiniLM)")
    emb = MiniLMStaticEmbedder(device="cpu").encode(trace.prompts)
    for name, a in (("emb", emb), ("pids", trace.prompt_ids), ("users", trace.user_codes), ("arrival", trace.arrival_s)):
        np.save(Path(out) / f"{name}.npy", a)
    (Path(out) / "sample.json").write_text(json.dumps(trace.prompts[:400]), encoding="utf-8")
    timed("embedding, minilm-static")
    return done, len(trace.prompts)


def stage_e2e(src: Path, requests: int) -> list[Figure]:
    """The whole pipeline on a ``requests``-request trace, cold, on every core (see the module doc)."""
    import tempfile

    from sim.app.run import min_similarity
    from sim.base.cache_root import cache_root
    from sim.base.memory import release_free_memory
    from sim.base.profile import load_profile
    from sim.cache.policies import POLICIES
    from sim.metrics import summarize
    from sim.neighbours import build_neighbours
    from sim.replay import replay
    from sim.systems import TraceArrays, build_system

    del src  # nothing is reused: the point is the cold pipeline
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    exp = _experiment(requests, embedder="minilm-static")
    profile = load_profile(exp.profile)
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t_all, c_all = time.perf_counter(), _cpu_s()

    def log(name: str, t0: float, c0: float) -> None:
        stages[name], cpu[name] = time.perf_counter() - t0, _cpu_s() - c0
        print(
            f"e2e: {name}: {stages[name]:.1f} s (CPU {cpu[name]:.1f} s), peak RSS {_peak_rss_mb():,.0f} MB",
            file=sys.stderr,
            flush=True,
        )

    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".e2e-models-", dir=cache_root()) as models:
        os.environ["ACSIM_MODELS"] = models  # an empty model cache: the static table is built here
        with mp.get_context("spawn").Pool(1) as pool:
            done, n_prompts = pool.apply(_e2e_inputs, (requests, models))
        t0 = time.perf_counter()
        emb, pids, users, arrival = (np.load(Path(models) / f"{name}.npy") for name in ("emb", "pids", "users", "arrival"))
        sample = json.loads((Path(models) / "sample.json").read_text(encoding="utf-8"))  # for the reference
        handed = time.perf_counter() - t0
    for name, secs, cpu_s in done:
        stages[name], cpu[name] = secs, cpu_s
        print(f"e2e: {name}: {secs:.1f} s (CPU {cpu_s:.1f} s), in a child process", file=sys.stderr, flush=True)
    stages["embedding, minilm-static"] += handed  # reading the child's arrays back
    arrays = TraceArrays(pids, users, arrival)
    t0, c0 = time.perf_counter(), _cpu_s()
    nb = build_neighbours(
        emb, pids, E2E_TOP_M, min_similarity(exp, profile), index="ivf", progress=False, num_threads=threads
    )
    log("neighbour lists, ivf", t0, c0)
    # Seconds per policy, and what the replays decide: the paper's policy x cache-size table at
    # this scale (not timed).
    replays: dict[str, float] = {}
    saved: dict[str, dict[int, tuple[float, float]]] = {}
    t_replays, c0 = time.perf_counter(), _cpu_s()

    def replay_one(policy: str, capacity: int) -> None:
        t0 = time.perf_counter()
        run_exp = _experiment(requests, policy, capacity)
        system = build_system("nirvana", run_exp, arrays, nb, profile)
        records = replay(system, arrays.arrival_s, arrays.prompt_ids, arrays.user_codes)
        row = summarize(records, profile=profile, exp=run_exp, system_stats=system.stats())
        saved.setdefault(policy, {})[capacity] = (row["hit_rate"], row["compute_saved"])
        fallbacks = system.stats()["fallbacks"]
        del records, system
        release_free_memory()  # what the records and the request loop's objects leave in the heap
        secs = time.perf_counter() - t0
        replays[policy] = replays.get(policy, 0.0) + secs
        print(f"e2e: replay {policy} at {capacity:,}: {secs:.1f} s, {fallbacks:,} fallbacks", file=sys.stderr, flush=True)

    # An offline policy's table of future uses holds one row per listed pair (hundreds of
    # millions at 2M requests, several GB): it is replayed only where that fits (E2E_OFFLINE_MAX).
    online = [p for p, cls in POLICIES.items() if not cls.offline or len(nb.ids) <= E2E_OFFLINE_MAX]
    skipped = [p for p in POLICIES if p not in online]
    # The K of every listed candidate, computed once here and shared by every replay below.
    build_system("nirvana", _experiment(requests), arrays, nb, profile)
    release_free_memory()
    # Two workers. The request loop holds the GIL, so its policies run one at a time, on the
    # first worker; the compiled replays (numba, no GIL) go to whichever worker is free. Memory
    # grows with the cache size, and a request loop's store (Python objects) is the heaviest: the
    # request loop goes from the smallest cache up and the compiled replays from the largest down,
    # so the largest caches of the two do not meet (at 2M the compiled replays are all done before
    # the request loop reaches its largest cache, which then runs alone).
    compiled = deque(
        (p, c) for c in reversed(E2E_CAPACITIES) for p in online if POLICIES[p].rule is not None
    )
    plain = [(p, c) for c in E2E_CAPACITIES for p in online if POLICIES[p].rule is None]

    def worker(first: list[tuple[str, int]]) -> None:
        for job in first:
            replay_one(*job)
        while True:
            try:
                job = compiled.popleft()
            except IndexError:
                return
            replay_one(*job)

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(worker, plain), pool.submit(worker, [])]:
            done.result()
    table = {p: [saved[p][c] for c in E2E_CAPACITIES] for p in online}
    replays = {p: replays[p] for p in online}
    for p in skipped:
        print(f"e2e: {p} not replayed: offline, and {len(nb.ids):,} listed pairs > {E2E_OFFLINE_MAX:,}", file=sys.stderr)
    log(f"cache-only replays ({len(online)} policies x {len(E2E_CAPACITIES)} sizes)", t_replays, c0)
    print(_saved_table(table), file=sys.stderr, flush=True)
    total, total_cpu = time.perf_counter() - t_all, _cpu_s() - c_all
    peak = _peak_rss_mb()

    # Checks and references, after the timed pipeline.
    n = min(RECALL_PREFIX, requests)
    exact = build_neighbours(emb, pids[:n], E2E_TOP_M, nb.min_similarity, index="exact", progress=False)
    later = np.arange(n, requests)
    rows = np.sort(np.random.default_rng(1).choice(later, min(500, len(later)), replace=False))
    with mp.get_context("spawn").Pool(1) as pool:  # torch and its model stay out of this process
        ref_embed = pool.apply(_minilm_rate, (sample,))
    raw = _hnsw_reference(emb, pids, min(n_prompts, 50_000), threads)
    figures = [
        Figure(
            f"e2e total ({requests:,} req, {n_prompts:,} prompts, cold)",
            total,
            "s",
            f"{threads} threads; target <= 1,800 s, 8 GB; CPU s:",
            total_cpu,
            peak_rss_mb=peak,
        )
    ]
    for name, secs in stages.items():
        figures.append(Figure(f"  e2e {name}", secs, "s", f"{100 * secs / total:.1f}% of the total; CPU s:", cpu[name]))
    figures.append(
        Figure(
            "e2e embedding, minilm-static",
            n_prompts / stages["embedding, minilm-static"],
            "prompts/s",
            f"PyTorch minilm, {threads} threads",
            ref_embed[0],
        )
    )
    figures.append(
        Figure(
            "  same, per CPU second",
            n_prompts / cpu["embedding, minilm-static"],
            "prompts/s",
            "PyTorch minilm per CPU second",
            ref_embed[1],
        )
    )
    figures.append(
        Figure(
            f"e2e neighbour lists ({threads} threads)",
            requests / stages["neighbour lists, ivf"],
            "requests/s",
            "hnswlib knn_query k=33, 50k index",
            raw,
        )
    )
    figures.append(
        Figure("  same, per CPU second (both threads)", requests / cpu["neighbour lists, ivf"], "requests/s")
    )
    figures.append(Figure("  list entries", float(len(nb.ids)), "", f"top_m {E2E_TOP_M}, floor {nb.min_similarity}"))
    figures.append(Figure(f"  recall vs exact lists (first {n:,} req)", 100 * recall(nb, exact, n), "%"))
    if len(rows):
        figures.append(
            Figure(f"  recall vs exact lists ({len(rows)} req sampled after)", 100 * sampled_recall(nb, emb, pids, rows), "%")
        )
    for policy, secs in replays.items():
        figures.append(Figure(f"  e2e replay {policy} x {len(E2E_CAPACITIES)} sizes", secs, "s", "nirvana, cache-only"))
    for policy, cells in table.items():
        figures.append(
            Figure(
                f"  {policy}: saved at {E2E_CAPACITIES[-1]:,} latents",
                100 * cells[-1][1],
                "%",
                f"at {E2E_CAPACITIES[0]:,} latents",
                100 * cells[0][1],
            )
        )
    return figures


def _saved_table(saved: dict[str, list[tuple[float, float]]]) -> str:
    """Compute saved (hit rate) by policy and cache size: the paper's table at the e2e scale."""
    head = f"{'e2e: compute saved (hit rate)':34s}" + "".join(f"{c:>18,}" for c in E2E_CAPACITIES)
    rows = [
        f"{'  ' + policy:34s}" + "".join(f"{100 * c:>9.1f}% ({100 * h:4.1f}%)" for h, c in cells)
        for policy, cells in saved.items()
    ]
    return "\n".join([head, *rows])


@dataclass(frozen=True)
class Stage:
    """One stage of the bench: what it runs, and how it must be run."""

    run: Callable[[Path, int], list[Figure]]
    every_core: bool = False  # else pinned to one core, so its figure is a one-core rate
    own_processes: bool = False  # starts processes of its own, which a (daemonic) stage process cannot


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
        _pin_one_core()
    return [f.__dict__ for f in stage.run(src, requests)]


def _in_fresh_process(name: str, src: Path, requests: int) -> list[Figure]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rows = pool.apply(_run_stage, (name, src, requests))
    return [Figure(**r) for r in rows]


def fit_exponent(sizes: list[int], values: list[float]) -> float:
    """Exponent b of ``value ~ a * size**b`` by least squares in log-log space."""
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


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
    from tqdm import tqdm

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


def format_table(figures: list[Figure]) -> str:
    """The bench table: figure, value, target, reference and peak memory."""
    head = f"{'figure':56s} {'value':>14s} {'target':>10s}  {'reference':38s} {'ref value':>12s} {'peak RSS':>10s}"
    lines = [head, "-" * len(head)]
    for f in figures:
        target = next((v for k, v in TARGETS.items() if f.name.startswith(k)), None)
        ceiling = next((v for k, v in CEILINGS.items() if f.name.startswith(k)), None)
        tgt = f">={target:,.0f}" if target else f"<={ceiling:,.0f}" if ceiling else ""
        ref = f"{f.reference_value:,.0f}" if f.reference_value == f.reference_value else ""
        mem = f"{f.peak_rss_mb:,.0f} MB" if f.peak_rss_mb == f.peak_rss_mb else ""
        val = f"{f.value:,.2f}" if abs(f.value) < 100 else f"{f.value:,.0f}"
        lines.append(
            f"{f.name:56s} {val:>10s} {f.unit[:3]:3s} {tgt:>10s}  {f.reference[:38]:38s} {ref:>12s} {mem:>10s}"
        )
    return "\n".join(lines)


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
    from sim.base.errors import ConfigError

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
    from sim.app.preflight import memory_bytes

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
    from sim.base.errors import ConfigError

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
            from sim.base.errors import ConfigError

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
    cpu = _cpu_name()
    print(
        f"\nmachine: {cpu}, {os.cpu_count()} cores; each stage pinned to one core unless a figure "
        f"says otherwise (the plan and the end-to-end figure use every core); "
        f"bench took {time.perf_counter() - t0:.0f} s"
    )
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
