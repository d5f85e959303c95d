"""Stage ``e2e``: the whole pipeline on a large trace, cold, on every core."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim.app.bench.embedding import minilm_rate
from sim.app.bench.figures import (
    E2E_CAPACITIES,
    E2E_OFFLINE_MAX,
    E2E_TOP_M,
    RECALL_PREFIX,
    Figure,
    cpu_seconds,
    peak_rss_mb,
)
from sim.app.bench.inputs import experiment
from sim.app.bench.neighbours import hnsw_reference, recall, sampled_recall
from sim.app.run import min_similarity
from sim.base.cache_root import cache_root
from sim.base.memory import release_free_memory
from sim.base.profile import load_profile
from sim.cache.policies import POLICIES
from sim.engine.replay import replay
from sim.neighbours import build_neighbours
from sim.results.metrics import summarize
from sim.systems import TraceArrays, build_system
from traces.embeddings import MiniLMStaticEmbedder
from traces.load import load_trace

if TYPE_CHECKING:
    from sim.base.profile import Profile
    from sim.neighbours import NeighbourLists


def _e2e_inputs(requests: int, out: str) -> tuple[list[tuple[str, float, float]], int]:
    """The e2e's first stages, in a child process: trace, static table (torch's memory), embeddings,
    written to ``out``; the heap they leave (about 1 GB at 2M prompts, which glibc and pymalloc keep)
    never reaches the process that builds the lists and replays. Returns (stage, seconds, CPU
    seconds) per stage and the number of prompts."""
    exp = experiment(requests, embedder="minilm-static")
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


@dataclass
class _Clock:
    """Wall and CPU seconds of each e2e stage, printed as each one ends."""

    stages: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def log(self, name: str, t0: float, c0: float) -> None:
        self.stages[name], self.cpu[name] = time.perf_counter() - t0, cpu_seconds() - c0
        print(
            f"e2e: {name}: {self.stages[name]:.1f} s (CPU {self.cpu[name]:.1f} s), peak RSS {peak_rss_mb():,.0f} MB",
            file=sys.stderr,
            flush=True,
        )


def stage_e2e(src: Path, requests: int) -> list[Figure]:
    """The whole pipeline on a ``requests``-request trace, cold, on every core (see the module doc)."""
    del src  # nothing is reused: the point is the cold pipeline
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    exp = experiment(requests, embedder="minilm-static")
    profile = load_profile(exp.profile)
    clock = _Clock()
    t_all, c_all = time.perf_counter(), cpu_seconds()
    (emb, pids, users, arrival), sample, n_prompts = _cold_inputs(requests, clock)
    arrays = TraceArrays(pids, users, arrival)
    t0, c0 = time.perf_counter(), cpu_seconds()
    nb = build_neighbours(
        emb, pids, E2E_TOP_M, min_similarity(exp, profile), index="ivf", progress=False, num_threads=threads
    )
    clock.log("neighbour lists, ivf", t0, c0)
    table, replays = _replays(requests, arrays, nb, profile, clock)
    total, total_cpu = time.perf_counter() - t_all, cpu_seconds() - c_all
    peak = peak_rss_mb()

    # Checks and references, after the timed pipeline.
    n = min(RECALL_PREFIX, requests)
    exact = build_neighbours(emb, pids[:n], E2E_TOP_M, nb.min_similarity, index="exact", progress=False)
    later = np.arange(n, requests)
    rows = np.sort(np.random.default_rng(1).choice(later, min(500, len(later)), replace=False))
    with mp.get_context("spawn").Pool(1) as pool:  # torch and its model stay out of this process
        ref_embed = pool.apply(minilm_rate, (sample,))
    raw = hnsw_reference(emb, pids, min(n_prompts, 50_000), threads)
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
    figures += _stage_figures(clock, total, n_prompts, requests, threads, ref_embed, raw)
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


def _cold_inputs(requests: int, clock: _Clock) -> tuple[tuple[np.ndarray, ...], list[str], int]:
    """Trace, static embedder and embeddings from an empty model cache, in a child process
    (:func:`_e2e_inputs`): ((embeddings, prompt ids, users, arrivals), a prompt sample for the
    reference, number of prompts)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".e2e-models-", dir=cache_root()) as models:
        os.environ["ACSIM_MODELS"] = models  # an empty model cache: the static table is built here
        with mp.get_context("spawn").Pool(1) as pool:
            done, n_prompts = pool.apply(_e2e_inputs, (requests, models))
        t0 = time.perf_counter()
        arrays = tuple(np.load(Path(models) / f"{name}.npy") for name in ("emb", "pids", "users", "arrival"))
        sample = json.loads((Path(models) / "sample.json").read_text(encoding="utf-8"))
        handed = time.perf_counter() - t0
    for name, secs, cpu_s in done:
        clock.stages[name], clock.cpu[name] = secs, cpu_s
        print(f"e2e: {name}: {secs:.1f} s (CPU {cpu_s:.1f} s), in a child process", file=sys.stderr, flush=True)
    clock.stages["embedding, minilm-static"] += handed  # reading the child's arrays back
    return arrays, sample, n_prompts


def _replays(
    requests: int, arrays: TraceArrays, nb: NeighbourLists, profile: Profile, clock: _Clock
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
    """Every policy at every e2e cache size, two at a time: (policy -> (hit rate, compute saved)
    per size, policy -> seconds). The table is the paper's policy x cache-size table at this scale."""
    replays: dict[str, float] = {}
    saved: dict[str, dict[int, tuple[float, float]]] = {}
    t_replays, c0 = time.perf_counter(), cpu_seconds()

    def replay_one(policy: str, capacity: int) -> None:
        t0 = time.perf_counter()
        run_exp = experiment(requests, policy, capacity)
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
    # The K of every listed candidate, computed once here and shared by every replay below.
    build_system("nirvana", experiment(requests), arrays, nb, profile)
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
    for p in POLICIES:
        if p not in online:
            print(f"e2e: {p} not replayed: offline, and {len(nb.ids):,} listed pairs > {E2E_OFFLINE_MAX:,}", file=sys.stderr)
    clock.log(f"cache-only replays ({len(online)} policies x {len(E2E_CAPACITIES)} sizes)", t_replays, c0)
    print(_saved_table(table), file=sys.stderr, flush=True)
    return table, {p: replays[p] for p in online}


def _stage_figures(
    clock: _Clock,
    total: float,
    n_prompts: int,
    requests: int,
    threads: int,
    ref_embed: tuple[float, float],
    raw: float,
) -> list[Figure]:
    """Each stage's seconds and share, and the embedding and list rates beside their references."""
    stages, cpu = clock.stages, clock.cpu
    figures = [
        Figure(f"  e2e {name}", secs, "s", f"{100 * secs / total:.1f}% of the total; CPU s:", cpu[name])
        for name, secs in stages.items()
    ]
    embed_s, embed_cpu = stages["embedding, minilm-static"], cpu["embedding, minilm-static"]
    lists_s, lists_cpu = stages["neighbour lists, ivf"], cpu["neighbour lists, ivf"]
    return [
        *figures,
        Figure("e2e embedding, minilm-static", n_prompts / embed_s, "prompts/s", f"PyTorch minilm, {threads} threads", ref_embed[0]),
        Figure("  same, per CPU second", n_prompts / embed_cpu, "prompts/s", "PyTorch minilm per CPU second", ref_embed[1]),
        Figure(
            f"e2e neighbour lists ({threads} threads)",
            requests / lists_s,
            "requests/s",
            "hnswlib knn_query k=33, 50k index",
            raw,
        ),
        Figure("  same, per CPU second (both threads)", requests / lists_cpu, "requests/s"),
    ]


def _saved_table(saved: dict[str, list[tuple[float, float]]]) -> str:
    """Compute saved (hit rate) by policy and cache size: the paper's table at the e2e scale."""
    head = f"{'e2e: compute saved (hit rate)':34s}" + "".join(f"{c:>18,}" for c in E2E_CAPACITIES)
    rows = [
        f"{'  ' + policy:34s}" + "".join(f"{100 * c:>9.1f}% ({100 * h:4.1f}%)" for h, c in cells)
        for policy, cells in saved.items()
    ]
    return "\n".join([head, *rows])
