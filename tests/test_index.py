"""sim.neighbours.index: hnswlib and exact indexes answer the same questions the same way."""

from __future__ import annotations

import numpy as np
import pytest

from sim.neighbours.index import ExactIndex, HnswIndex, make_index, topk_rows


def clustered(n: int, d: int = 64, topics: int = 30, families: int = 10, seed: int = 0) -> np.ndarray:
    """Unit vectors shaped like prompt embeddings: topics, prompt families within a topic,
    and small edits within a family (so a nearest neighbour is well defined)."""
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((topics, d))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    f = t[rng.integers(0, topics, topics * families)] + rng.standard_normal(
        (topics * families, d)
    ) * 0.8 / np.sqrt(d)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    x = f[rng.integers(0, len(f), n)] + rng.standard_normal((n, d)) * 0.5 / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def edits(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """New queries: small perturbations of stored vectors."""
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), n)] + rng.standard_normal((n, x.shape[1])) * 0.2 / np.sqrt(x.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def brute(x: np.ndarray, q: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = q @ x.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return labels[order], np.take_along_axis(s, order, 1)


@pytest.mark.parametrize("kind", ["hnsw", "exact"])
def test_topk_matches_brute_force_on_clustered_data(kind: str) -> None:
    x = clustered(3000, seed=1)
    q = edits(x, 200, seed=2)
    labels = np.arange(3000, dtype=np.int64) * 7 + 3  # labels need not be positions
    idx = make_index(kind, 64, capacity=3000, seed=5)
    idx.add(x, labels)
    got_l, got_s = idx.query(q, 10)
    ref_l, ref_s = brute(x, q, 10, labels)
    assert got_l.dtype == np.int64 and got_s.dtype == np.float32
    assert got_l.shape == (200, 10)
    assert np.all(np.diff(got_s, axis=1) <= 1e-6), "similarities must be sorted descending"
    assert np.array_equal(got_l[:, 0], ref_l[:, 0])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got_l, ref_l, strict=True)])
    assert overlap >= (1.0 if kind == "exact" else 0.97)
    np.testing.assert_allclose(got_s[:, 0], ref_s[:, 0], atol=1e-5)


def test_hnsw_and_exact_agree() -> None:
    x = clustered(2000, d=48, seed=3)
    q = edits(x, 200, seed=4)
    results = {}
    for kind in ("hnsw", "exact"):
        idx = make_index(kind, 48, capacity=100, seed=1)  # small capacity: both must grow
        for lo in range(0, 2000, 300):
            idx.add(x[lo : lo + 300], np.arange(lo, min(lo + 300, 2000)))
        assert len(idx) == 2000 and idx.capacity >= 2000
        results[kind] = idx.query(q, 5)
    assert np.array_equal(results["hnsw"][0][:, 0], results["exact"][0][:, 0])
    np.testing.assert_allclose(results["hnsw"][1], results["exact"][1], atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "exact"])
def test_deletion_and_replacement(kind: str) -> None:
    x = clustered(500, d=32, seed=4)
    idx = make_index(kind, 32, capacity=500)
    idx.add(x, np.arange(500))
    # Query with the vectors themselves: each one's best match is itself until deleted.
    labels, sims = idx.query(x[:50], 1)
    assert np.array_equal(labels[:, 0], np.arange(50))
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    for label in range(50):
        idx.mark_deleted(label)
    assert len(idx) == 450 and 10 not in idx and 60 in idx
    labels, _ = idx.query(x[:50], 3)
    assert not np.isin(labels, np.arange(50)).any()
    with pytest.raises(KeyError):
        idx.mark_deleted(10)
    # Re-adding under new labels reuses the deleted slots instead of growing.
    cap = idx.capacity
    idx.add(x[:50], np.arange(1000, 1050), replace_deleted=True)
    assert idx.capacity == cap and len(idx) == 500
    labels, _ = idx.query(x[:50], 1)
    assert np.array_equal(labels[:, 0], np.arange(1000, 1050))


@pytest.mark.parametrize("kind", ["hnsw", "exact"])
def test_k_larger_than_index_and_empty(kind: str) -> None:
    idx = make_index(kind, 8, capacity=4)
    labels, sims = idx.query(np.ones((2, 8), np.float32), 5)
    assert labels.shape == (2, 0) and sims.shape == (2, 0)
    v = np.eye(8, dtype=np.float32)[:3]
    idx.add(v, [10, 11, 12])
    labels, sims = idx.query(v, 5)
    assert labels.shape == (3, 3)
    assert np.array_equal(labels[:, 0], [10, 11, 12])


def test_exact_index_breaks_ties_by_label() -> None:
    idx = ExactIndex(4, capacity=2)
    v = np.array([1, 0, 0, 0], np.float32)
    idx.add(np.stack([v] * 5), [9, 4, 7, 1, 3])
    labels, sims = idx.query(v, 3)
    assert labels.tolist() == [[1, 3, 4]]
    assert sims.tolist() == [[1.0, 1.0, 1.0]]


def test_topk_rows_handles_padding_and_ties() -> None:
    sims = np.array([[0.5, -np.inf, 0.9, 0.5, 0.1], [-np.inf] * 5], np.float32)
    labels = np.array([[5, 6, 7, 2, 3], [1, 2, 3, 4, 5]])
    top_l, top_s = topk_rows(sims, labels, 3)
    assert top_l[0].tolist() == [7, 2, 5]
    assert top_s[0].tolist() == pytest.approx([0.9, 0.5, 0.5])
    assert np.isinf(top_s[1]).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="hnsw"):
        make_index("faiss", 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        HnswIndex(8).add(np.ones((2, 7), np.float32), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        ExactIndex(8).add(np.ones((2, 8), np.float32), [0])


def test_exact_query_in_chunks_gives_the_same_answer(monkeypatch) -> None:
    import sim.neighbours.index as index_module

    x = clustered(600, d=16, seed=8)
    q = edits(x, 50, seed=9)
    idx = ExactIndex(16)
    idx.add(x, np.arange(600))
    idx.mark_deleted(3)
    whole = idx.query(q, 7)
    monkeypatch.setattr(index_module, "_MAX_ENTRIES", 600 * 4)  # 4 query rows per chunk
    chunked = idx.query(q, 7)
    assert np.array_equal(whole[0], chunked[0])
    # BLAS may sum in another order for another matrix shape: equal up to float rounding.
    np.testing.assert_allclose(whole[1], chunked[1], atol=1e-6)


def test_hnsw_answers_a_query_its_graph_cannot_cover() -> None:
    """A sparse graph over tight clusters leaves hnswlib short of k results even at ef = n
    (it raises); the index then scores every vector exactly instead of failing."""
    rng = np.random.default_rng(0)
    n, d = 300, 16
    centres = rng.normal(size=(6, d))
    x = centres[rng.integers(0, 6, n)] + 0.01 * rng.normal(size=(n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    idx = make_index("hnsw", d, n, 0, M=2, ef_construction=4, ef=4)
    idx.add(x, np.arange(n))
    with pytest.raises(RuntimeError):  # the situation itself: hnswlib alone cannot answer
        idx._index.knn_query(x[:5], k=n)
    labels, sims = idx.query(x[:5], n)
    exact = ExactIndex(d, n)
    exact.add(x, np.arange(n))
    ref_labels, ref_sims = exact.query(x[:5], n)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert all(sorted(row) == list(range(n)) for row in labels.tolist())
    assert idx.ef == 4  # the query-time breadth is restored
