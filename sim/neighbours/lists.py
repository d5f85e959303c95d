"""Causal top-m neighbour lists: each request's most similar EARLIER prompts, computed once per trace.

The nearest-neighbour search dominates a naive simulator. It does not depend on the cache
policy or size, so it is paid once per (trace, embedder): for every request i, the prompts
first seen at a request index < i with cosine >= ``min_similarity``, best ``top_m`` first.
Every replay then walks that list and checks which candidates are still cached; when all
listed candidates are gone and the list was truncated, :meth:`NeighbourLists.more` searches
every earlier prompt exactly (:meth:`NeighbourLists.similarities` scores given prompts, such
as the cached ones, exactly). ``top_m`` is a cap rather than a length: a first index query
of depth ``FIRST_K`` settles most rows, and only rows that fill it are queried deeper, so
nearly every row is complete and the fallback rare.

The build runs in time order over blocks of requests: a block queries (batched) an index of
every prompt first seen before the block, brute-forces the causal pairs inside the block
with a masked matrix product, merges both by (similarity descending, prompt id ascending),
and then adds the block's new prompts to the index. With ``index="exact"`` the result equals
a naive O(n^2) scan bit for bit. ``index="ivf"`` builds the same lists by a cluster-pruned
exact join instead (:mod:`sim.neighbours.ivf`): several times faster on large traces, on every core,
and deterministic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.base.errors import InputError
from sim.base.io import atomic_path
from sim.neighbours.index import VectorIndex, make_index
from sim.neighbours.ivf import Cells, ivf_lists
from sim.neighbours.similarity import similarities_to

__all__ = ["INDEX_KINDS", "NeighbourLists", "build_neighbours"]

INDEX_KINDS = ("hnsw", "exact", "ivf")

FORMAT = 3  # bump when the file layout or the build semantics change (cache key)
FIRST_K = 32  # depth of the first index query; deeper only for rows that fill it
# hnswlib graph for the lists. Measured on the 30k-request bench trace (hashing, 384-d)
# against exact lists: M=16/ef_construction=40/ef=64 finds 93.5% of the exact pairs at
# 5,900 req/s, this setting 91.7% at 8,400 req/s (precision 100% for both).
HNSW_OPTIONS = {"M": 12, "ef_construction": 32, "ef": 48}
_BLOCK = 256  # requests per block: larger blocks shift work from the index to dense products


@dataclass(eq=False)
class NeighbourLists:
    """CSR lists over requests: candidates of request i are ``ids[offsets[i]:offsets[i+1]]``.

    ``ids`` are prompt ids (int32) with similarities ``sims`` (float32, descending per request);
    ``complete[i]`` is True when fewer than ``top_m`` earlier prompts reached ``min_similarity``,
    i.e. the list is exhaustive. A repeat lists its own prompt with similarity 1.0. ``cells``
    (``ivf`` lists only): the partition the lists were joined on, which a replay's fallback
    probes when more prompts are cached than the budget (:func:`sim.neighbours.ivf.probe`).
    """

    offsets: np.ndarray  # int64 (n + 1)
    ids: np.ndarray  # int32
    sims: np.ndarray  # float32
    complete: np.ndarray  # bool (n)
    top_m: int
    min_similarity: float
    index: str = "hnsw"
    prompt_ids: np.ndarray | None = None  # int32 (n): the trace's prompt ids, needed by more()
    cells: Cells | None = field(default=None, repr=False)
    embeddings: np.ndarray | None = field(default=None, repr=False)  # needed by more(); not saved
    _first_seen: np.ndarray | None = field(default=None, repr=False)
    # Arrays its users derive from the lists, kept for the next user (sim.systems.cached: K per entry).
    derived: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.complete)

    def neighbours(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(prompt ids, similarities) listed for request ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.sims[a:b]

    def attach(self, embeddings: np.ndarray) -> NeighbourLists:
        """Give lists loaded from disk the embeddings :meth:`more` needs; returns self."""
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        return self

    def more(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k causal candidates of request ``i``, by exact search over every earlier prompt.

        Same semantics as the lists (first seen before i, similarity >= ``min_similarity``,
        own prompt at 1.0, best first, ties by prompt id) but not truncated at ``top_m``: the
        replay's fallback when every listed candidate has been evicted. Fewer than k results
        means no more exist. One matrix-vector product over all prompts per call: rows are
        rarely truncated (``top_m`` is a cap), so calls are rare and need no index.
        """
        if self.embeddings is None or self.prompt_ids is None:
            raise RuntimeError("NeighbourLists.more needs embeddings and prompt ids: call attach(embeddings)")
        if self._first_seen is None:
            self._first_seen = _first_seen(self.prompt_ids, len(self.embeddings))
        own = int(self.prompt_ids[i])
        sims = self.embeddings @ self.embeddings[own]
        sims[own] = 1.0
        ids = np.flatnonzero((self._first_seen < i) & (sims >= np.float32(self.min_similarity)))
        sims = sims[ids]
        order = np.lexsort((ids, -sims))[:k]
        return ids[order].astype(np.int32), sims[order].astype(np.float32)

    def similarities(self, i: int, prompts: np.ndarray) -> np.ndarray:
        """Exact similarities (float32) of request ``i``'s prompt to ``prompts``.

        ``prompts`` are prompt ids first seen before request i (the cached ones, say); the
        request's own prompt counts 1.0, as in the lists. The replay's fallback when a
        truncated list cannot settle a lookup: it costs a product with the cache's prompts
        instead of with every prompt of the trace.
        """
        if self.embeddings is None or self.prompt_ids is None:
            raise RuntimeError("NeighbourLists.similarities needs embeddings: call attach(embeddings)")
        return similarities_to(self.embeddings, np.asarray(prompts, dtype=np.int64), int(self.prompt_ids[i]))

    def save(self, path: str | Path) -> Path:
        """Write the lists to ``path`` (npz, atomic). Embeddings are not stored."""
        dest = Path(path)
        meta = {
            "format": FORMAT,
            "top_m": self.top_m,
            "min_similarity": self.min_similarity,
            "index": self.index,
        }
        arrays = {"offsets": self.offsets, "ids": self.ids, "sims": self.sims, "complete": self.complete}
        if self.prompt_ids is not None:
            arrays["prompt_ids"] = self.prompt_ids
        if self.cells is not None:
            c = self.cells
            meta["cells"] = {"budget": c.budget, "min_probes": c.min_probes, "max_probes": c.max_probes}
            arrays.update(cells_proj=c.proj, cells_centroids=c.centroids, cells_of=c.of_prompt)
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return dest

    @classmethod
    def load(cls, path: str | Path, embeddings: np.ndarray | None = None) -> NeighbourLists:
        """Read lists written by :meth:`save`; pass ``embeddings`` to enable :meth:`more`."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {name: z[name] for name in ("offsets", "ids", "sims", "complete")}
                prompt_ids = z["prompt_ids"] if "prompt_ids" in z.files else None
                cells = None
                if "cells" in meta:
                    cells = Cells(z["cells_proj"], z["cells_centroids"], z["cells_of"], **meta["cells"])
            if meta.get("format") != FORMAT:
                raise InputError(
                    path, f"neighbour-list format {meta.get('format')!r}, this acsim reads {FORMAT}"
                )
            lists = cls(
                offsets=arrays["offsets"].astype(np.int64, copy=False),
                ids=arrays["ids"].astype(np.int32, copy=False),
                sims=arrays["sims"].astype(np.float32, copy=False),
                complete=arrays["complete"].astype(bool, copy=False),
                top_m=int(meta["top_m"]),
                min_similarity=float(meta["min_similarity"]),
                index=str(meta["index"]),
                prompt_ids=None if prompt_ids is None else prompt_ids.astype(np.int32, copy=False),
                cells=cells,
            )
        except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError) as exc:
            raise InputError(path, f"not a neighbour-list file: {exc}") from None
        if embeddings is not None:
            lists.attach(embeddings)
        return lists


def _first_seen(prompt_ids: np.ndarray, n_prompts: int) -> np.ndarray:
    """Request index of each prompt's first occurrence (len(prompt_ids) when it never occurs)."""
    out = np.full(n_prompts, len(prompt_ids), dtype=np.int64)
    uniq, first = np.unique(prompt_ids, return_index=True)
    out[uniq] = first
    return out


def _check_inputs(
    embeddings: np.ndarray, prompt_ids: np.ndarray, top_m: int, min_similarity: float, index: str
):
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be a (n_prompts, d) matrix, got shape {np.shape(embeddings)}")
    pids = np.asarray(prompt_ids)
    if pids.ndim != 1 or (len(pids) and not np.issubdtype(pids.dtype, np.integer)):
        raise ValueError(f"prompt_ids must be a 1-d integer array, got {pids.dtype} {pids.shape}")
    pids = pids.astype(np.int32, copy=False)
    if len(pids) and (pids.min() < 0 or pids.max() >= len(emb)):
        raise ValueError(f"prompt_ids must lie in [0, {len(emb)}), got [{pids.min()}, {pids.max()}]")
    if int(top_m) < 1:
        raise ValueError(f"top_m must be >= 1, got {top_m}")
    if not -1.0 <= float(min_similarity) <= 1.0:
        raise ValueError(f"min_similarity must be a cosine in [-1, 1], got {min_similarity}")
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {', '.join(INDEX_KINDS)}, got {index!r}")
    return emb, pids


def _cache_file(
    cache_dir: Path,
    cache_key: str | None,
    emb: np.ndarray,
    pids: np.ndarray,
    top_m: int,
    min_sim: float,
    index: str,
) -> Path:
    # The caller's key names the (trace, embedder); the digests guard against a stale key.
    key = {
        "format": FORMAT,
        "key": cache_key if cache_key is not None else hashlib.sha1(emb.data).hexdigest(),
        "top_m": int(top_m),
        "min_similarity": float(min_sim),
        "index": index,
        "prompt_ids": hashlib.sha1(np.ascontiguousarray(pids).data).hexdigest(),
        "embeddings": list(emb.shape),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / f"neighbours-{digest}.npz"


def build_neighbours(
    embeddings: np.ndarray,
    prompt_ids: np.ndarray,
    top_m: int,
    min_similarity: float,
    index: str = "hnsw",
    cache_dir: str | Path | None = None,
    cache_key: str | None = None,
    progress: bool = True,
    num_threads: int = 1,
    seed: int = 1,
) -> NeighbourLists:
    """Causal top-``top_m`` neighbour lists of every request (see the module docstring).

    ``embeddings``: float32 (n_prompts, d), unit rows, row = prompt id. ``prompt_ids``: the
    trace's prompt id per request, in time order. ``index``: ``hnsw`` (approximate),
    ``ivf`` (approximate, fastest on large traces) or ``exact`` (brute force). With
    ``cache_dir`` the result is cached there keyed by (``cache_key``, top_m, min_similarity,
    index) and reused by every policy and cache size; without ``cache_key`` the key is a
    digest of the embeddings. ``num_threads`` > 1 speeds up hnswlib but makes its approximate
    lists depend on thread timing (ivf's lists do not); ``seed`` seeds the graph or the
    clustering.
    """
    emb, pids = _check_inputs(embeddings, prompt_ids, top_m, min_similarity, index)
    path = None
    if cache_dir is not None:
        path = _cache_file(Path(cache_dir), cache_key, emb, pids, top_m, min_similarity, index)
        if path.exists():
            try:
                return NeighbourLists.load(path, emb)
            except InputError:
                pass  # a damaged or outdated cache entry is rebuilt and overwritten
    lists = _build(emb, pids, int(top_m), float(min_similarity), index, progress, num_threads, seed)
    lists.embeddings = emb
    if path is not None:
        lists.save(path)
    return lists


def _query_above(
    idx: VectorIndex, emb: np.ndarray, uq: np.ndarray, top_m: int, floor: np.float32, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each prompt of ``uq``'s indexed neighbours at or above ``floor``, up to ``top_m`` of them.

    Most prompts have few neighbours above the floor, so the first query is short
    (``FIRST_K``); only rows that come back full are asked again, four times deeper, until
    a result falls below the floor, ``top_m`` is reached or the index is exhausted. Returns
    flat (row of ``uq``, prompt id, similarity) triples, the prompt itself excluded.
    """
    out_u, out_l, out_s = [], [], []
    todo = np.arange(len(uq))
    # One extra result: the request's own prompt is dropped here and re-added at 1.0.
    k = min(top_m, FIRST_K) + 1
    while len(todo):
        lab, sim = idx.query(emb[uq[todo]], k, num_threads=threads)
        full = np.zeros(len(todo), bool) if sim.shape[1] < k else sim[:, -1] >= floor
        done = ~full | (k > top_m) | (k >= len(idx))
        r, c = np.nonzero((sim[done] >= floor) & (lab[done] != uq[todo[done]][:, None]))
        out_u.append(todo[done][r])
        out_l.append(lab[done][r, c])
        out_s.append(sim[done][r, c])
        todo = todo[~done]
        k = min(4 * (k - 1), top_m) + 1
    return np.concatenate(out_u), np.concatenate(out_l), np.concatenate(out_s)


def _expand(
    u: np.ndarray, labels: np.ndarray, sims: np.ndarray, inv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triples per distinct prompt -> triples per request (request r has prompt row ``inv[r]``)."""
    order = np.argsort(u, kind="stable")
    labels, sims = labels[order], sims[order]
    per_u = np.bincount(u, minlength=int(inv.max()) + 1 if len(inv) else 0)
    u_start = np.cumsum(per_u) - per_u
    counts = per_u[inv]
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    gather = np.arange(total) - np.repeat(first, counts) + np.repeat(u_start[inv], counts)
    return np.repeat(np.arange(len(inv)), counts), labels[gather], sims[gather]


def _block_candidates(
    idx: VectorIndex,
    emb: np.ndarray,
    own: np.ndarray,
    new: np.ndarray,
    first_seen: np.ndarray,
    s: int,
    top_m: int,
    floor: np.float32,
    threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates at or above ``floor`` of the requests ``s, s + 1, ...`` (prompts ``own``) as
    flat (row, prompt id, similarity) triples, any order; ``new``: the block's prompts first
    seen inside it, which the index does not hold yet."""
    req = np.arange(s, s + len(own))
    own_first = first_seen[own]
    one = np.float32(1.0)
    rows, cids, csims = [], [], []

    # 1. Prompts first seen before the block, from the index (one query per distinct prompt).
    if len(idx):
        uq, inv = np.unique(own, return_inverse=True)
        r, cid, csim = _expand(*_query_above(idx, emb, uq, top_m, floor, threads), inv)
        rows.append(r)
        cids.append(cid)
        csims.append(csim)
    # 2. The request's own prompt when it was first seen before the block (exact repeat).
    r = np.flatnonzero(own_first < s)
    rows.append(r)
    cids.append(own[r])
    csims.append(np.full(len(r), one))
    # 3. Prompts first seen inside the block, before the request: a masked dense product.
    if len(new):
        sim = emb[own] @ emb[new].T
        earlier = first_seen[new][None, :] < req[:, None]
        # A repeat of a prompt first seen earlier in the block: its own prompt at 1.0.
        sim[earlier & (new[None, :] == own[:, None])] = one
        r, c = np.nonzero(earlier & (sim >= floor))
        rows.append(r)
        cids.append(new[c])
        csims.append(sim[r, c])

    return np.concatenate(rows), np.concatenate(cids), np.concatenate(csims)


def _build(
    emb: np.ndarray,
    pids: np.ndarray,
    top_m: int,
    min_sim: float,
    kind: str,
    progress: bool,
    threads: int,
    seed: int,
) -> NeighbourLists:
    n = len(pids)
    first_seen = _first_seen(pids, len(emb))
    if kind == "ivf":
        counts, ids, sims, cells = ivf_lists(emb, pids, first_seen, top_m, min_sim, threads, seed, progress)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return NeighbourLists(
            offsets, ids, sims, counts < top_m, top_m, min_sim, index=kind, prompt_ids=pids, cells=cells
        )
    n_seen = int((first_seen < n).sum())
    options = HNSW_OPTIONS if kind == "hnsw" else {}
    idx = make_index(kind, emb.shape[1], max(1, n_seen), seed, **options)  # type: ignore[arg-type]
    floor = np.float32(min_sim)
    counts = np.zeros(n, np.int64)
    id_parts: list[np.ndarray] = []
    sim_parts: list[np.ndarray] = []

    from tqdm.auto import tqdm

    with tqdm(total=n, desc="neighbour lists", unit="req", disable=not progress or n < 20 * _BLOCK) as bar:
        for s in range(0, n, _BLOCK):
            e = min(s + _BLOCK, n)
            own = pids[s:e].astype(np.int64)
            new = np.unique(own[first_seen[own] >= s])
            r, cid, csim = _block_candidates(idx, emb, own, new, first_seen, s, top_m, floor, threads)
            order = np.lexsort((cid, -csim, r))
            r, cid, csim = r[order], cid[order], csim[order]
            rank = np.arange(len(r)) - np.searchsorted(r, r)
            keep = rank < top_m
            counts[s:e] = np.bincount(r[keep], minlength=e - s)
            id_parts.append(cid[keep].astype(np.int32))
            sim_parts.append(csim[keep].astype(np.float32))

            if len(new):
                idx.add(emb[new], new, num_threads=threads)
            bar.update(e - s)

    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return NeighbourLists(
        offsets=offsets,
        ids=np.concatenate(id_parts) if id_parts else np.zeros(0, np.int32),
        sims=np.concatenate(sim_parts) if sim_parts else np.zeros(0, np.float32),
        complete=counts < top_m,
        top_m=top_m,
        min_similarity=min_sim,
        index=kind,
        prompt_ids=pids,
    )
