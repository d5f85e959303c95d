"""Causal neighbour lists by a cluster-pruned exact join (``neighbours.index: ivf``).

An inverted-file (IVF) index, specialised for what the lists need: the whole trace is known in
advance, so instead of inserting prompts one by one into a graph (hnswlib: ~100-200 µs per insert
and per query at 200k prompts, slower as the index outgrows the CPU caches), the prompts are
partitioned once and every similarity is computed by dense matrix products.

1. A coarse quantiser: the embeddings are projected on their top ``_PCA_DIMS`` principal
   directions (fitted on a sample) and clustered by spherical k-means into ``C ≈ 2 sqrt(n)``
   cells, seeded, so the partition is deterministic.
2. Every prompt is assigned to its nearest cell; the embeddings' rows are sorted by (cell,
   first appearance), so the members of a cell seen before any time t are one contiguous
   slice: in place when the array allows it (and put back before returning), else a copy.
3. Requests are processed in chunks in time order. Each distinct prompt of a chunk probes its
   most similar cells, nearest first, until the probed cells hold ``_BUDGET`` earlier prompts
   (at least ``_MIN_PROBES`` cells, at most ``_MAX_PROBES``): early in a trace, when cells are
   nearly empty, a request looks at many cells; later, at a bounded cost. While all earlier
   prompts fit the budget every cell is probed, so short traces get exact lists. For each probed
   cell, one matrix product scores all the chunk's prompts that probe it against the cell's
   members first seen before the chunk ends; pairs at or above the floor are kept, exactly
   scored in the full dimension.
4. The pairs are filtered causally per request (a candidate must be first seen before the
   request), the request's own prompt is listed at 1.0 when it repeats, and the best ``top_m``
   kept by (similarity descending, prompt id ascending), as every index kind does.

What it misses is a neighbour whose cell is not among the probed ones (the recall is reported
by ``acsim bench``); what it lists is exact. Cells are split between threads; every result is
sorted before it is kept, so the lists do not depend on thread timing.

The partition is kept with the lists (:class:`Cells`): a replay whose truncated list runs out
searches the cached prompts the same way (:func:`probe`), exactly while they fit the budget.
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from sim.base.memory import release_free_memory
from sim.neighbours.similarity import dot

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Cells", "ivf_lists", "probe"]

_PCA_DIMS = 64  # coarse quantiser dimension (the join itself scores in the full dimension)
_CELLS_PER_SQRT_N = 2.0  # C = 2 sqrt(prompts): balances the quantiser's cost against the join's
_KMEANS_ITERS = 6
_SAMPLE_PER_CELL = 32  # k-means trains on this many prompts per cell
_BUDGET = 4096  # earlier prompts a request's probed cells hold, at least
_MIN_PROBES = 8
_MAX_PROBES = 64
_CHUNK = 16384  # requests per chunk: larger chunks make larger (faster) matrix products


@numba.njit(cache=True, nogil=True)
def _top_cells(sims: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the k largest values, largest first."""
    n, m = sims.shape
    k = min(k, m)
    out = np.empty((n, k), np.int64)
    for i in range(n):
        vals = np.full(k, -np.inf, np.float32)
        idx = np.zeros(k, np.int64)
        for j in range(m):
            v = sims[i, j]
            if v > vals[k - 1]:
                t = k - 1
                while t > 0 and vals[t - 1] < v:  # insertion keeps the row sorted
                    vals[t] = vals[t - 1]
                    idx[t] = idx[t - 1]
                    t -= 1
                vals[t] = v
                idx[t] = j
        out[i] = idx
    return out


@numba.njit(cache=True, nogil=True)
def _above(sims: np.ndarray, floor: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of every entry >= floor, row-major."""
    n, m = sims.shape
    count = 0
    for i in range(n):
        for j in range(m):
            if sims[i, j] >= floor:
                count += 1
    rows = np.empty(count, np.int64)
    cols = np.empty(count, np.int64)
    vals = np.empty(count, np.float32)
    c = 0
    for i in range(n):
        for j in range(m):
            v = sims[i, j]
            if v >= floor:
                rows[c] = i
                cols[c] = j
                vals[c] = v
                c += 1
    return rows, cols, vals


@numba.njit(cache=True, nogil=True)
def _keep_best(
    sims: np.ndarray, us: np.ndarray, ids: np.ndarray, floor: np.float32, hv: np.ndarray, hp: np.ndarray, hn: np.ndarray
) -> None:
    """Offer every entry >= floor of ``sims`` (row r: prompt ``us[r]``, column j: prompt ``ids[j]``)
    to the bounded heap of row ``us[r]``'s best pairs (by similarity descending, prompt id
    ascending): ``hv[u, :hn[u]]``, ``hp[u, :hn[u]]``, its worst kept pair at the root."""
    k = hv.shape[1]
    n, m = sims.shape
    for r in range(n):
        u = us[r]
        for j in range(m):
            v = sims[r, j]
            if v < floor:
                continue
            p = ids[j]
            i = hn[u]
            if i < k:
                hn[u] = i + 1
                while i > 0:  # sift up past every parent that is better than the newcomer
                    up = (i - 1) >> 1
                    if hv[u, up] < v or (hv[u, up] == v and hp[u, up] > p):
                        break
                    hv[u, i] = hv[u, up]
                    hp[u, i] = hp[u, up]
                    i = up
            else:
                if v < hv[u, 0] or (v == hv[u, 0] and p > hp[u, 0]):
                    continue  # no better than the worst kept
                i = 0
                while True:  # the newcomer replaces the root and sinks below every worse child
                    w = 2 * i + 1
                    if w >= k:
                        break
                    if w + 1 < k and (hv[u, w + 1] < hv[u, w] or (hv[u, w + 1] == hv[u, w] and hp[u, w + 1] > hp[u, w])):
                        w += 1
                    if hv[u, w] < v or (hv[u, w] == v and hp[u, w] > p):
                        hv[u, i] = hv[u, w]
                        hp[u, i] = hp[u, w]
                        i = w
                    else:
                        break
            hv[u, i] = v
            hp[u, i] = p


@numba.njit(cache=True, nogil=True)
def _drain(hv: np.ndarray, hp: np.ndarray, hn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, prompt id, similarity) of every pair the heaps of :func:`_keep_best` hold."""
    total = 0
    for u in range(len(hn)):
        total += hn[u]
    rows = np.empty(total, np.int64)
    ids = np.empty(total, np.int64)
    vals = np.empty(total, np.float32)
    c = 0
    for u in range(len(hn)):
        for i in range(hn[u]):
            rows[c] = u
            ids[c] = hp[u, i]
            vals[c] = hv[u, i]
            c += 1
    return rows, ids, vals


@numba.njit(cache=True, nogil=True)
def _permute_rows(a: np.ndarray, perm: np.ndarray) -> None:
    """``a[:] = a[perm]`` in place (``perm`` a permutation of the rows), with one row of extra
    memory: each cycle of the permutation is walked once."""
    n = len(perm)
    done = np.zeros(n, np.bool_)
    row = np.empty(a.shape[1], a.dtype)
    for first in range(n):
        if done[first]:
            continue
        row[:] = a[first]
        j = first
        while True:
            done[j] = True
            k = perm[j]
            if k == first:
                a[j] = row
                break
            a[j] = a[k]
            j = k


@dataclass(eq=False)
class Cells:
    """The join's partition, kept so that a search over any subset of the prompts (the cached
    ones, say) can probe it as the join did: ``of_prompt[p]`` is prompt p's cell (``len(centroids)``
    when the trace never asks for it); a query probes its nearest cells until they hold ``budget``
    of the searched prompts (:func:`probe`)."""

    proj: np.ndarray  # float32 (d, dims): the quantiser's projection
    centroids: np.ndarray  # float32 (cells, dims), unit rows
    of_prompt: np.ndarray  # int32 per prompt
    budget: int = _BUDGET
    min_probes: int = _MIN_PROBES
    max_probes: int = _MAX_PROBES


@numba.njit(cache=True, nogil=True)
def probe(
    x: np.ndarray,
    proj: np.ndarray,
    centroids: np.ndarray,
    held: np.ndarray,
    budget: int,
    min_probes: int,
    max_probes: int,
) -> np.ndarray:  # pragma: no cover - compiled
    """The cells (bool per cell) a query with embedding ``x`` searches when cell c holds
    ``held[c]`` of the searched prompts: all of them while they hold at most ``budget`` (an exact
    search); else its most similar cells, nearest first, until they hold ``budget`` (the crossing
    one included), at least ``min_probes`` and at most ``max_probes``; ties to the lower cell."""
    n_cells, dims = centroids.shape
    take = np.ones(n_cells, np.bool_)
    if held.sum() <= budget:
        return take
    take[:] = False
    low = np.zeros(dims, np.float32)
    for t in range(len(x)):
        for j in range(dims):
            low[j] += x[t] * proj[t, j]
    norm = np.float32(max(np.sqrt(np.sum(low * low)), 1e-12))
    low /= norm
    scores = np.empty((1, n_cells), np.float32)
    for c in range(n_cells):
        scores[0, c] = dot(centroids[c], low)
    order = _top_cells(scores, max_probes)
    order = order[0][_probed(order, held, budget, min_probes)[0]]
    take[order] = True
    return take


@numba.njit(cache=True, nogil=True)
def _probed(order: np.ndarray, held: np.ndarray, budget: int, min_probes: int) -> np.ndarray:  # pragma: no cover - compiled
    """Which of each row's cells (``order``: nearest first) a query probes: the first
    ``min_probes``, and more while those taken hold fewer than ``budget`` (``held[c]`` per cell);
    the crossing cell is taken. The one rule for the join (:func:`_chunk_groups`) and for
    :func:`probe`."""
    take = np.zeros(order.shape, np.bool_)
    for i in range(order.shape[0]):
        cum = 0
        for r in range(order.shape[1]):
            if r >= min_probes and cum >= budget:
                break
            take[i, r] = True
            cum += held[order[i, r]]
    return take


class _Quantiser:
    """PCA projection + spherical k-means cells, fitted on a seeded sample of the prompts."""

    def __init__(self, emb: np.ndarray, prompts: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.cells = max(1, min(len(prompts), round(_CELLS_PER_SQRT_N * math.sqrt(len(prompts)))))
        take = min(len(prompts), max(_SAMPLE_PER_CELL * self.cells, 2 * _PCA_DIMS))
        sample = emb[np.sort(rng.choice(prompts, take, replace=False))]
        dims = min(_PCA_DIMS, emb.shape[1])
        fit = sample[: min(len(sample), 20000)]
        _, _, vt = np.linalg.svd(fit - fit.mean(0), full_matrices=False)
        self.proj = np.ascontiguousarray(vt[:dims].T, dtype=np.float32)
        low = self.project(sample)
        cent = low[rng.choice(len(low), self.cells, replace=False)].copy()
        for _ in range(_KMEANS_ITERS):
            a = _top_cells(low @ cent.T, 1)[:, 0]
            order = np.argsort(a, kind="stable")
            count = np.bincount(a, minlength=self.cells)
            used = np.flatnonzero(count)
            cent[used] = np.add.reduceat(low[order], (np.cumsum(count) - count)[used], axis=0)
            cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        self.centroids = cent

    def project(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.proj
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Similarity of every row of ``x`` to every cell centroid."""
        return self.project(x) @ self.centroids.T


def ivf_lists(
    emb: np.ndarray,
    pids: np.ndarray,
    first_seen: np.ndarray,
    top_m: int,
    floor: float,
    threads: int = 1,
    seed: int = 1,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Cells | None]:
    """(per-request counts, prompt ids, similarities) of the causal top-``top_m`` lists, and the
    partition they were joined on.

    ``emb``: unit rows, row = prompt id; ``pids``: prompt id per request in time order;
    ``first_seen``: request index of each prompt's first occurrence (``len(pids)`` if never).
    A writable C-contiguous float32 ``emb`` is reordered in place while the join runs and
    restored before this returns (or raises), so no other thread may read it meanwhile.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    n = len(pids)
    seen = np.flatnonzero(first_seen < n)
    counts = np.zeros(n, np.int64)
    if not len(seen):
        return counts, np.zeros(0, np.int32), np.zeros(0, np.float32), None
    fl = np.float32(floor)
    # The join is split over threads itself; BLAS threads on top would only contend.
    with threadpool_limits(1):
        q = _Quantiser(emb, seen, seed)
        cell = np.full(len(emb), q.cells, np.int64)
        for lo in range(0, len(seen), 65536):
            part = seen[lo : lo + 65536]
            cell[part] = _top_cells(q.scores(emb[part]), 1)[:, 0]
        perm = np.lexsort((first_seen, cell))
        order = perm[: len(seen)]
        start = np.searchsorted(cell[order], np.arange(q.cells + 1))
        rank = np.empty_like(perm)  # row of each prompt in the sorted order
        rank[perm] = np.arange(len(perm))
        # The pool stops (every join done) before the rows are put back.
        with _sorted_rows(emb, perm, rank) as sorted_emb, ThreadPoolExecutor(max(1, threads)) as pool:
            held = np.zeros(q.cells, np.int64)  # members of each cell first seen before the chunk's end
            id_parts, sim_parts = [], []
            pending: tuple[list[Future], int, int, np.ndarray, np.ndarray] | None = None

            def finish(joins: list[Future], s: int, e: int, inv: np.ndarray, own: np.ndarray) -> None:
                tu, tp, ts = [], [], []
                for job in joins:
                    out_u, out_p, out_s = job.result()
                    tu += out_u
                    tp += out_p
                    ts += out_s
                ids, sims, cnt = _merge(tu, tp, ts, inv, own, first_seen, s, top_m)
                counts[s:e] = cnt
                id_parts.append(ids)
                sim_parts.append(sims)
                bar.update(e - s)

            with tqdm(total=n, desc="neighbour lists (ivf)", unit="req", disable=not progress or n < 65536) as bar:
                for s in range(0, n, _CHUNK):
                    e = min(s + _CHUNK, n)
                    own = pids[s:e].astype(np.int64)
                    uniq, inv = np.unique(own, return_inverse=True)
                    vecs = sorted_emb[rank[uniq]]
                    earlier = start[:-1] + held
                    held += np.bincount(cell[uniq[first_seen[uniq] >= s]], minlength=q.cells + 1)[:-1]
                    ends = start[:-1] + held
                    groups = _chunk_groups(q, vecs, held, earlier, ends)
                    shares = [groups[t :: max(1, threads)] for t in range(max(1, threads))]
                    joins = [pool.submit(_join, share, vecs, sorted_emb, start, order, fl, top_m) for share in shares]
                    # The previous chunk is merged while this one is joined: the merge is serial.
                    if pending is not None:
                        finish(*pending)
                    pending = (joins, s, e, inv, own)
                if pending is not None:
                    finish(*pending)
        del sorted_emb  # the assembly below is the peak: free a copy of the embeddings first
    cells = Cells(q.proj, q.centroids, cell.astype(np.int32))
    return counts, _join_parts(id_parts, np.int32), _join_parts(sim_parts, np.float32), cells


def _join(
    groups: list[tuple[int, np.ndarray, int, int]],
    vecs: np.ndarray,
    members: np.ndarray,
    start: np.ndarray,
    order: np.ndarray,
    fl: np.float32,
    top_m: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """One thread's share of a chunk's join: (requests, prompt ids, similarities) in parts.

    ``members``: the embeddings in cell order; cell c's are rows ``start[c]:start[c + 1]``,
    prompt ids ``order[...]``."""
    # Pairs with members first seen before the chunk: only each prompt's best top_m + 1 can
    # reach a list (a request drops at most its own prompt of them), kept in bounded heaps.
    # Members first seen inside the chunk may be dropped by the request: all are kept.
    hv = np.empty((len(vecs), top_m + 1), np.float32)
    hp = np.empty((len(vecs), top_m + 1), np.int64)
    hn = np.zeros(len(vecs), np.int64)
    out_u, out_p, out_s = [], [], []
    for c, us, early, end in groups:
        a = start[c]
        sims = vecs[us] @ members[a:end].T
        _keep_best(sims[:, : early - a], us, order[a:early], fl, hv, hp, hn)
        r, k, s = _above(sims[:, early - a :], fl)
        out_u.append(us[r])
        out_p.append(order[early + k])
        out_s.append(s)
    u, p, v = _drain(hv, hp, hn)
    out_u.append(u)
    out_p.append(p)
    out_s.append(v)
    return out_u, out_p, out_s


def _chunk_groups(
    q: _Quantiser, vecs: np.ndarray, held: np.ndarray, earlier: np.ndarray, ends: np.ndarray
) -> list[tuple[int, np.ndarray, int, int]]:
    """The join's work for one chunk: per probed cell, (cell, rows of ``vecs`` that probe it,
    end of its members seen before the chunk, end of those seen by its end)."""
    if held.sum() <= _BUDGET:  # every earlier prompt fits the budget: an exact join
        full = np.flatnonzero(held)
        pu = np.repeat(np.arange(len(vecs)), len(full))
        pc = np.tile(full, len(vecs))
    else:
        probes = _top_cells(q.scores(vecs), min(_MAX_PROBES, q.cells))
        take = _probed(probes, held, _BUDGET, _MIN_PROBES)
        pu = np.broadcast_to(np.arange(len(vecs))[:, None], probes.shape)[take]
        pc = probes[take]
        keep = held[pc] > 0
        pu, pc = pu[keep], pc[keep]
    if not len(pc):
        return []
    by_cell = np.argsort(pc, kind="stable")
    pu, pc = pu[by_cell], pc[by_cell]
    cuts = np.flatnonzero(np.diff(pc)) + 1
    return [
        (int(pc[i]), us, int(earlier[pc[i]]), int(ends[pc[i]]))
        for i, us in zip(np.r_[0, cuts], np.split(pu, cuts), strict=True)
    ]


@contextlib.contextmanager
def _sorted_rows(emb: np.ndarray, perm: np.ndarray, rank: np.ndarray) -> Iterator[np.ndarray]:
    """``emb``'s rows in the order ``perm`` (``rank`` its inverse), so each cell's members seen
    before t are one contiguous slice: sorted in place and put back on exit when the array
    allows it (no second copy of the embeddings, 1.8 GB at 2M requests), else a sorted copy."""
    if not (emb.flags.writeable and emb.flags.c_contiguous and emb.dtype == np.float32):
        yield emb[perm]
        return
    _permute_rows(emb, perm)
    try:
        yield emb
    finally:
        _permute_rows(emb, rank)


def _join_parts(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """``np.concatenate(parts)``, releasing each part once copied (emptying the list): the peak
    is the result plus one part, not twice the result."""
    out = np.empty(sum(len(p) for p in parts), dtype)
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
        if len(parts) % 16 == 0:
            release_free_memory()  # the parts are heap blocks: freeing them alone keeps the pages
    return out


def _list_order(u: np.ndarray, v: np.ndarray, p: np.ndarray, n_u: int, n_prompts: int) -> np.ndarray:
    """The order that sorts pairs by (u, similarity descending, prompt id): list order per prompt.

    One argsort of a composite 64-bit key when the three fit (similarities >= 0 compare as their
    float32 bit patterns), a three-key lexsort otherwise; pairs are unique, so both give the same order.
    """
    if len(v) and float(v.min()) >= 0.0:
        bits = v.astype(np.float32, copy=False).view(np.uint32).astype(np.uint64)
        hi = int(bits.max())
        sb = (hi - int(bits.min())).bit_length()
        pb = max(n_prompts - 1, 1).bit_length()
        ub = max(n_u - 1, 1).bit_length()
        if ub + sb + pb <= 63:
            key = u.astype(np.uint64) << np.uint64(sb + pb)
            key |= (np.uint64(hi) - bits) << np.uint64(pb)
            key |= p.astype(np.uint64)
            return np.argsort(key)
    return np.lexsort((p, -v, u))


def _merge(
    tu: list[np.ndarray],
    tp: list[np.ndarray],
    ts: list[np.ndarray],
    inv: np.ndarray,
    own: np.ndarray,
    first_seen: np.ndarray,
    s: int,
    top_m: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-prompt pairs of a chunk -> per-request causal lists (ids, sims, counts).

    Each prompt's pairs are put in list order once and cut to what any of its requests can use
    before they are copied per request: a request drops only its own prompt and prompts first
    seen at or after it, which are first seen inside this chunk, so ``top_m`` + those + 1 suffice.
    """
    u = np.concatenate(tu) if tu else np.zeros(0, np.int64)
    p = np.concatenate(tp) if tp else np.zeros(0, np.int64)
    v = np.concatenate(ts) if ts else np.zeros(0, np.float32)
    n_u = int(inv.max()) + 1
    order = _list_order(u, v, p, n_u, len(first_seen))
    u, p, v = u[order], p[order], v[order]
    per_u = np.bincount(u, minlength=n_u)
    late = np.bincount(u[first_seen[p] >= s], minlength=n_u)
    rank = np.arange(len(u)) - (np.cumsum(per_u) - per_u)[u]
    usable = rank < (top_m + late + 1)[u]
    u, p, v = u[usable], p[usable], v[usable]
    per_u = np.bincount(u, minlength=n_u)
    u_start = np.cumsum(per_u) - per_u
    per_req = per_u[inv]
    total = int(per_req.sum())
    first = np.cumsum(per_req) - per_req
    gather = np.arange(total) - np.repeat(first, per_req) + np.repeat(u_start[inv], per_req)
    row = np.repeat(np.arange(len(inv)), per_req)
    cid, sim = p[gather], v[gather]
    causal = (first_seen[cid] < s + row) & (cid != own[row])
    row, cid, sim = row[causal], cid[causal], sim[causal]
    # Rows are in request order and each row in list order; a repeat lists its own prompt at
    # exactly 1.0, after only the entries that sort before it (above 1.0, or 1.0 with a lower id).
    rep = np.flatnonzero(first_seen[own] < s + np.arange(len(own)))
    if len(rep):
        ahead = (sim > 1.0) | ((sim == 1.0) & (cid < own[row]))
        at = np.searchsorted(row, rep) + np.bincount(row[ahead], minlength=len(own))[rep]
        row = np.insert(row, at, rep)
        cid = np.insert(cid, at, own[rep])
        sim = np.insert(sim, at, np.float32(1.0))
    keep = np.arange(len(row)) - np.searchsorted(row, row) < top_m
    return cid[keep].astype(np.int32), sim[keep], np.bincount(row[keep], minlength=len(own))
