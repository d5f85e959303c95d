"""Stage ``neighbours``: the causal lists' build rate and recall, beside hnswlib's raw query."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import hnswlib
import numpy as np

from sim.app.bench.figures import RECALL_PREFIX, TOP_M, Figure, peak_rss_mb, pin_one_core, set_threads
from sim.app.bench.inputs import load_prefix
from sim.neighbours.lists import FIRST_K, HNSW_OPTIONS, _first_seen, build_neighbours

if TYPE_CHECKING:
    from pathlib import Path


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
    inp = load_prefix(src, requests)
    emb, pids = inp.embeddings, inp.arrays.prompt_ids
    emb = np.ascontiguousarray(emb)
    floor = inp.neighbours.min_similarity
    set_threads(2)
    t0, c0 = time.perf_counter(), time.process_time()
    ivf = build_neighbours(emb, pids, TOP_M, floor, index="ivf", progress=False, num_threads=2)
    rate_ivf, cpu_ivf = requests / (time.perf_counter() - t0), requests / (time.process_time() - c0)
    rss = peak_rss_mb()
    pin_one_core()
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


def hnsw_reference(emb: np.ndarray, pids: np.ndarray, n_index: int, threads: int) -> float:
    """hnswlib's raw knn_query rate (queries/s) on an index of the first ``n_index`` prompts."""
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
