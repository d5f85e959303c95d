"""Vector indexes for cosine nearest-neighbour search: hnswlib and exact, behind one interface.

Vectors are expected to be unit-norm (every acsim embedder makes them so), which makes the
inner product a cosine. Both indexes take caller-chosen integer labels, support deletion and
reuse of deleted slots, grow when full, and answer batched k-NN queries with
``(labels int64 (n, k'), similarities float32 (n, k'))`` sorted by descending similarity,
where ``k' = min(k, len(index))``. The exact index breaks ties by ascending label, so its
answers are reproducible to the last bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import numpy as np

__all__ = ["ExactIndex", "HnswIndex", "VectorIndex", "make_index", "topk_rows"]

_MAX_ENTRIES = 1 << 26  # similarity-matrix entries per exact query chunk


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    return x


def _as_labels(labels: np.ndarray | list[int], n: int) -> np.ndarray:
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(lab) != n:
        raise ValueError(f"{n} vectors but {len(lab)} labels")
    if len(lab) and lab.min() < 0:
        raise ValueError("labels must be >= 0")
    if len(np.unique(lab)) != len(lab):
        raise ValueError("labels within one add() call must be distinct")
    return lab


def topk_rows(sims: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best entries by (similarity descending, label ascending).

    ``sims`` and ``labels`` are (n, c); entries with similarity ``-inf`` never win but fill
    rows that have fewer than k finite entries (the caller filters them). Returns
    ``(labels, sims)`` of shape (n, min(k, c)). Ties are broken by label so that two
    computations of the same candidates always agree exactly.
    """
    n, c = sims.shape
    k = min(k, c)
    if k == 0 or n == 0:
        return np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    if c > 4 * k:
        # Keep every entry that ties with the k-th best so the label tie-break sees them all.
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1 : k]
        rows, cols = np.nonzero(sims >= kth)
    else:
        rows, cols = np.divmod(np.arange(n * c), c)
    s, lab = sims[rows, cols], labels[rows, cols]
    order = np.lexsort((lab, -s, rows))
    rows, s, lab = rows[order], s[order], lab[order]
    starts = np.searchsorted(rows, np.arange(n))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out_l = np.zeros((n, k), np.int64)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_l[rows[keep], rank[keep]] = lab[keep]
    out_s[rows[keep], rank[keep]] = s[keep]
    return out_l, out_s


class VectorIndex(ABC):
    """Cosine k-NN over labelled unit vectors, with deletion and slot reuse."""

    dim: int

    @abstractmethod
    def add(
        self,
        vectors: np.ndarray,
        labels: np.ndarray | list[int],
        replace_deleted: bool = False,
        num_threads: int = 1,
    ) -> None:
        """Insert vectors under ``labels`` (re-adding a live label updates its vector).

        With ``replace_deleted`` the slots of deleted vectors are reused before the index
        grows. The index resizes itself when full. More than one thread makes hnswlib's
        graph (and so its approximate answers) depend on thread timing.
        """

    @abstractmethod
    def mark_deleted(self, label: int) -> None:
        """Remove ``label`` from query results (KeyError if it is not live)."""

    @abstractmethod
    def query(self, vectors: np.ndarray, k: int, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live labels and cosine similarities per query row, best first."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of live vectors."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """Slots allocated (live + deleted-but-not-reused + free)."""

    @abstractmethod
    def __contains__(self, label: int) -> bool:
        """Whether ``label`` is live (added and not deleted)."""


class HnswIndex(VectorIndex):
    """hnswlib HNSW graph (approximate). ``space`` is ``cosine`` or ``ip`` (unit vectors)."""

    def __init__(
        self,
        dim: int,
        capacity: int = 1024,
        seed: int = 1,
        space: Literal["cosine", "ip"] = "cosine",
        M: int = 16,
        ef_construction: int = 40,
        ef: int = 64,
    ) -> None:
        import hnswlib

        if space not in ("cosine", "ip"):
            raise ValueError(f"space must be 'cosine' or 'ip', not {space!r}")
        self.dim, self.space, self.ef = int(dim), space, int(ef)
        self._index = hnswlib.Index(space=space, dim=self.dim)
        self._index.init_index(
            max_elements=max(1, int(capacity)),
            M=M,
            ef_construction=ef_construction,
            random_seed=seed,
            allow_replace_deleted=True,
        )
        self._index.set_ef(self.ef)
        self._live: set[int] = set()
        self._deleted = 0  # deleted slots not yet reused

    @property
    def capacity(self) -> int:
        return int(self._index.get_max_elements())

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, label: int) -> bool:
        return int(label) in self._live

    def set_ef(self, ef: int) -> None:
        """Query-time breadth: higher is slower and more accurate (always at least k)."""
        self.ef = int(ef)
        self._index.set_ef(self.ef)

    def add(
        self,
        vectors: np.ndarray,
        labels: np.ndarray | list[int],
        replace_deleted: bool = False,
        num_threads: int = 1,
    ) -> None:
        x = _as_matrix(vectors, self.dim)
        lab = _as_labels(labels, len(x))
        if not len(x):
            return
        fresh = int(sum(1 for v in lab.tolist() if v not in self._live))
        reused = min(fresh, self._deleted) if replace_deleted else 0
        needed = self._index.get_current_count() + fresh - reused
        if needed > self.capacity:
            self._index.resize_index(max(needed, 2 * self.capacity))
        self._index.add_items(x, lab, num_threads=num_threads, replace_deleted=replace_deleted)
        self._deleted -= reused
        self._live.update(lab.tolist())

    def mark_deleted(self, label: int) -> None:
        label = int(label)
        if label not in self._live:
            raise KeyError(f"label {label} is not in the index")
        self._index.mark_deleted(label)
        self._live.discard(label)
        self._deleted += 1

    def query(self, vectors: np.ndarray, k: int, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        x = _as_matrix(vectors, self.dim)
        k = min(int(k), len(self))
        if k <= 0 or not len(x):
            return np.zeros((len(x), max(k, 0)), np.int64), np.zeros((len(x), max(k, 0)), np.float32)
        ef = max(self.ef, k)
        while True:
            self._index.set_ef(ef)
            try:
                labels, dist = self._index.knn_query(x, k=k, num_threads=num_threads)
                break
            except RuntimeError:
                # Deleted vertices, or parts of the graph the search cannot reach, can leave fewer
                # than k results: widen the search, and when even one as wide as the index falls
                # short, score every live vector exactly.
                if ef >= len(self) + self._deleted:
                    return self._scan(x, k)
                ef = min(4 * ef, len(self) + self._deleted)
            finally:
                self._index.set_ef(self.ef)
        # Both spaces report 1 - cosine for unit vectors.
        sims = (1.0 - dist).astype(np.float32, copy=False)
        labels = labels.astype(np.int64, copy=False)
        # hnswlib returns ascending distance; a stable sort only fixes float ties' order.
        order = np.argsort(-sims, axis=1, kind="stable")
        return np.take_along_axis(labels, order, 1), np.take_along_axis(sims, order, 1)


    def _scan(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over every live vector (ties by label), for searches the graph cannot answer."""
        labels = np.array(sorted(self._live), dtype=np.int64)
        vecs = np.asarray(self._index.get_items(labels), dtype=np.float32)
        sims = x @ vecs.T
        return topk_rows(sims, np.broadcast_to(labels, sims.shape), k)


class ExactIndex(VectorIndex):
    """Brute-force inner product over a numpy matrix; exact, ties broken by label."""

    def __init__(self, dim: int, capacity: int = 1024, seed: int = 1) -> None:
        del seed  # exact search has no randomness; accepted so both kinds share make_index
        self.dim = int(dim)
        cap = max(1, int(capacity))
        self._vecs = np.zeros((cap, self.dim), np.float32)
        self._labels = np.zeros(cap, np.int64)
        self._alive = np.zeros(cap, bool)
        self._used = 0  # slots [0, _used) have been written
        self._slot: dict[int, int] = {}  # live label -> slot
        self._free: list[int] = []  # slots of deleted vectors

    @property
    def capacity(self) -> int:
        return len(self._vecs)

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, label: int) -> bool:
        return int(label) in self._slot

    def _grow(self, needed: int) -> None:
        cap = max(needed, 2 * self.capacity)
        for name in ("_vecs", "_labels", "_alive"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def add(
        self,
        vectors: np.ndarray,
        labels: np.ndarray | list[int],
        replace_deleted: bool = False,
        num_threads: int = 1,
    ) -> None:
        del num_threads  # one numpy copy; nothing to parallelise
        x = _as_matrix(vectors, self.dim)
        lab = _as_labels(labels, len(x))
        slots = np.empty(len(lab), np.int64)
        fresh = []
        for j, v in enumerate(lab.tolist()):
            s = self._slot.get(v)
            if s is None:
                if replace_deleted and self._free:
                    s = self._free.pop()
                else:
                    fresh.append(j)
                    continue
            slots[j] = s
        if fresh:
            if self._used + len(fresh) > self.capacity:
                self._grow(self._used + len(fresh))
            slots[fresh] = np.arange(self._used, self._used + len(fresh))
            self._used += len(fresh)
        self._vecs[slots] = x
        self._labels[slots] = lab
        self._alive[slots] = True
        self._slot.update(zip(lab.tolist(), slots.tolist(), strict=True))

    def mark_deleted(self, label: int) -> None:
        label = int(label)
        s = self._slot.pop(label, None)
        if s is None:
            raise KeyError(f"label {label} is not in the index")
        self._alive[s] = False
        self._free.append(s)

    def query(self, vectors: np.ndarray, k: int, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        del num_threads  # numpy's BLAS decides; the exact index is a reference, not the fast path
        x = _as_matrix(vectors, self.dim)
        k = min(int(k), len(self))
        if k <= 0 or not len(x):
            return np.zeros((len(x), max(k, 0)), np.int64), np.zeros((len(x), max(k, 0)), np.float32)
        n = self._used
        dead = ~self._alive[:n]
        # Bound the similarity matrix (~256 MB) however many vectors the index holds.
        rows = max(1, _MAX_ENTRIES // max(n, 1))
        out_l = np.zeros((len(x), k), np.int64)
        out_s = np.zeros((len(x), k), np.float32)
        for lo in range(0, len(x), rows):
            sims = x[lo : lo + rows] @ self._vecs[:n].T
            sims[:, dead] = -np.inf
            labels = np.broadcast_to(self._labels[:n], sims.shape)
            out_l[lo : lo + rows], out_s[lo : lo + rows] = topk_rows(sims, labels, k)
        return out_l, out_s


def make_index(
    kind: Literal["hnsw", "exact"], dim: int, capacity: int = 1024, seed: int = 1, **options: int | str
) -> VectorIndex:
    """A new empty index: ``hnsw`` (hnswlib, approximate, fast) or ``exact`` (numpy, reference).

    ``options`` go to :class:`HnswIndex` (``space``, ``M``, ``ef_construction``, ``ef``).
    """
    if kind == "hnsw":
        return HnswIndex(dim, capacity, seed, **options)  # type: ignore[arg-type]
    if kind == "exact":
        if options:
            raise ValueError(f"the exact index takes no options, got {sorted(options)}")
        return ExactIndex(dim, capacity, seed)
    raise ValueError(f"index kind must be 'hnsw' or 'exact', not {kind!r}")
