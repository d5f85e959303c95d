"""sim.neighbours: causal top-m lists equal a naive O(n^2) scan, persist, cache, and extend."""

from __future__ import annotations

import numpy as np
import pytest

import sim.neighbours.lists as nbmod
from sim.base.errors import InputError
from sim.neighbours import NeighbourLists, build_neighbours


def trace_ids(n_requests: int, n_prompts: int, seed: int, repeat: float = 0.4) -> np.ndarray:
    """Prompt ids in order of first appearance, with repeats (some within the same block)."""
    rng = np.random.default_rng(seed)
    ids, nxt = [], 0
    for _ in range(n_requests):
        if nxt < n_prompts and (nxt == 0 or rng.random() > repeat):
            ids.append(nxt)
            nxt += 1
        elif rng.random() < 0.5:
            ids.append(int(rng.integers(max(0, nxt - 5), nxt)))  # a repeat of a very recent prompt
        else:
            ids.append(int(rng.integers(0, nxt)))
    return np.array(ids, np.int32)


def grid_vectors(n: int, d: int, seed: int) -> np.ndarray:
    """Vectors on a coarse grid: every dot product is exact in float32 whatever the summation
    order, so results can be compared bit for bit, ties included (and ties are frequent)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-3, 4, (n, d)) / 16).astype(np.float32)


def unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    """Unit vectors in families of near-duplicates (like edited prompts)."""
    rng = np.random.default_rng(seed)
    fam = rng.standard_normal((n // 4 + 1, d))
    fam /= np.linalg.norm(fam, axis=1, keepdims=True)
    x = fam[rng.integers(0, len(fam), n)] + rng.standard_normal((n, d)) * 0.6 / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def naive(emb: np.ndarray, pids: np.ndarray, top_m: int, min_sim: float):
    """The definition, one request at a time: (ids, sims, complete) per request."""
    sims_all = emb @ emb.T
    first: dict[int, int] = {}
    for i, p in enumerate(pids.tolist()):
        first.setdefault(p, i)
    seen = np.array(sorted(first, key=first.get), dtype=np.int64)
    first_at = np.array([first[p] for p in seen.tolist()])
    out = []
    for i, p in enumerate(pids.tolist()):
        cand = seen[first_at < i]
        s = sims_all[p, cand].astype(np.float32)
        s[cand == p] = 1.0
        ok = s >= np.float32(min_sim)
        cand, s = cand[ok], s[ok]
        order = np.lexsort((cand, -s))[:top_m]
        out.append((cand[order], s[order], len(cand) < top_m))
    return out


def assert_equal_to_naive(nb: NeighbourLists, ref) -> None:
    assert len(nb) == len(ref)
    for i, (ids, sims, complete) in enumerate(ref):
        got_ids, got_sims = nb.neighbours(i)
        assert np.array_equal(got_ids, ids), f"request {i}"
        assert np.array_equal(got_sims, sims), f"request {i}"
        assert nb.complete[i] == complete, f"request {i}"


@pytest.mark.parametrize("index", ["exact", "ivf"])
@pytest.mark.parametrize(("top_m", "min_sim"), [(5, 0.3), (8, 0.05), (1, -1.0)])
def test_exact_build_equals_naive_scan(top_m: int, min_sim: float, index: str) -> None:
    # ivf probes every cell of a trace this small (its budget exceeds the trace), so it too is exact.
    pids = trace_ids(3000, 1600, seed=top_m)
    emb = grid_vectors(1700, 32, seed=top_m)  # some prompts never occur
    nb = build_neighbours(emb, pids, top_m=top_m, min_similarity=min_sim, index=index, progress=False)
    assert len(nb.ids) > 1000  # the comparison is not vacuous
    assert_equal_to_naive(nb, naive(emb, pids, top_m, min_sim))


def test_structure_and_semantics_with_hnsw() -> None:
    pids = trace_ids(2500, 2000, seed=7, repeat=0.2)
    emb = unit_vectors(2000, 48, seed=7)
    nb = build_neighbours(emb, pids, top_m=6, min_similarity=0.5, index="hnsw", progress=False)
    n = len(pids)
    assert nb.offsets.dtype == np.int64 and nb.offsets.shape == (n + 1,)
    assert nb.ids.dtype == np.int32 and nb.sims.dtype == np.float32 and nb.complete.dtype == bool
    assert nb.offsets[0] == 0 and nb.offsets[-1] == len(nb.ids) == len(nb.sims)
    counts = np.diff(nb.offsets)
    assert counts.max() <= 6
    assert np.array_equal(nb.complete, counts < 6)
    assert (nb.sims >= np.float32(0.5)).all()
    first = nbmod._first_seen(pids, len(emb))
    req = np.repeat(np.arange(n), counts)
    assert (first[nb.ids] < req).all(), "a candidate must have appeared before the request"
    for i in range(n):
        ids, sims = nb.neighbours(i)
        assert (np.diff(sims) <= 0).all()
        assert len(set(ids.tolist())) == len(ids)
        if first[pids[i]] < i:  # a repeat lists its own prompt first, at 1.0
            assert ids[0] == pids[i] and sims[0] == 1.0
    assert nb.complete[0] and counts[0] == 0

    # hnsw is approximate but must find nearly every pair the exact scan finds.
    ex = build_neighbours(emb, pids, top_m=6, min_similarity=0.5, index="exact", progress=False)
    pairs_h = set(zip(req.tolist(), nb.ids.tolist(), strict=True))
    req_e = np.repeat(np.arange(n), np.diff(ex.offsets))
    pairs_e = set(zip(req_e.tolist(), ex.ids.tolist(), strict=True))
    assert len(pairs_e) > 2000
    assert len(pairs_h & pairs_e) / len(pairs_e) >= 0.98


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_more_extends_the_list(index: str) -> None:
    pids = trace_ids(1200, 900, seed=3)
    emb = unit_vectors(900, 32, seed=3)
    nb = build_neighbours(emb, pids, top_m=3, min_similarity=0.0, index=index, progress=False)
    ref = naive(emb, pids, 40, 0.0)
    checked = 0
    for i in range(0, 1200, 37):
        ids, sims = nb.more(i, 40)
        assert ids.dtype == np.int32 and sims.dtype == np.float32
        ref_ids, ref_sims, _ = ref[i]
        # The fallback searches exactly, whichever index built the lists.
        assert np.array_equal(ids, ref_ids)
        np.testing.assert_allclose(sims, ref_sims, atol=1e-6)
        # The list is the head of the longer answer.
        head, _ = nb.neighbours(i)
        assert np.array_equal(ids[: len(head)], head) or index == "hnsw"
        checked += len(ref_ids) == 40
    assert checked > 10
    # Asking for more than exist returns fewer than k: the replay's "no more" signal.
    ids, _ = nb.more(5, 1000)
    assert len(ids) == len(naive(emb, pids, 1000, 0.0)[5][0]) < 1000


def test_similarities_score_the_given_prompts_exactly() -> None:
    pids = trace_ids(1200, 900, seed=4)
    emb = unit_vectors(900, 32, seed=4)
    nb = build_neighbours(emb, pids, top_m=3, min_similarity=0.3, index="exact", progress=False)
    ref = naive(emb, pids, 10**6, 0.3)
    rng = np.random.default_rng(4)
    found = 0
    for i in range(1, 1200, 23):
        earlier = np.unique(pids[:i])
        subset = np.sort(rng.permutation(earlier)[: max(1, len(earlier) // 5)])  # say, what is cached
        sims = nb.similarities(i, subset)
        assert sims.dtype == np.float32 and sims.shape == subset.shape
        direct = emb[subset] @ emb[pids[i]]
        direct[subset == pids[i]] = 1.0  # its own prompt counts 1.0, as in the lists
        np.testing.assert_allclose(sims, direct, atol=1e-6)
        # The best of them (similarity, then prompt id) is the naive scan's first one among them.
        ref_ids, ref_sims, _ = ref[i]
        inside = np.flatnonzero(np.isin(ref_ids, subset))
        if len(inside):
            found += 1
            best = np.lexsort((subset, -sims))[0]
            assert subset[best] == ref_ids[inside[0]]
            assert sims[best] == pytest.approx(float(ref_sims[inside[0]]), abs=1e-6)
    assert found > 20


def test_save_load_roundtrip(tmp_path) -> None:
    pids = trace_ids(700, 500, seed=1)
    emb = unit_vectors(500, 16, seed=1)
    nb = build_neighbours(emb, pids, top_m=4, min_similarity=0.2, index="exact", progress=False)
    path = nb.save(tmp_path / "nb.npz")
    assert not list(tmp_path.glob("*.tmp"))
    back = NeighbourLists.load(path)
    for name in ("offsets", "ids", "sims", "complete", "prompt_ids"):
        assert np.array_equal(getattr(back, name), getattr(nb, name)), name
    assert (back.top_m, back.min_similarity, back.index) == (4, 0.2, "exact")
    with pytest.raises(RuntimeError, match="attach"):
        back.more(10, 5)
    back.attach(emb)
    assert np.array_equal(back.more(600, 6)[0], nb.more(600, 6)[0])
    assert back.cells is None
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="junk.npz"):
        NeighbourLists.load(tmp_path / "junk.npz")


def test_ivf_lists_keep_their_partition_through_save_and_load(tmp_path) -> None:
    """The cells a replay's fallback probes are saved with ivf lists and come back equal."""
    pids = trace_ids(700, 500, seed=3)
    emb = unit_vectors(500, 16, seed=3)
    nb = build_neighbours(emb, pids, top_m=4, min_similarity=0.2, index="ivf", progress=False)
    cells = nb.cells
    assert cells is not None and cells.of_prompt.shape == (500,) and cells.proj.shape[0] == 16
    seen = np.unique(pids)
    assert (cells.of_prompt[seen] < len(cells.centroids)).all()  # every asked prompt has a cell
    back = NeighbourLists.load(nb.save(tmp_path / "nb.npz"))
    for name in ("proj", "centroids", "of_prompt", "budget", "min_probes", "max_probes"):
        assert np.array_equal(getattr(back.cells, name), getattr(cells, name)), name


def test_cache_is_reused_and_keyed(tmp_path, monkeypatch) -> None:
    pids = trace_ids(600, 400, seed=2)
    emb = unit_vectors(400, 16, seed=2)
    kw = {"index": "exact", "cache_dir": tmp_path, "cache_key": "trace-a", "progress": False}
    first = build_neighbours(emb, pids, 4, 0.3, **kw)
    assert len(list(tmp_path.glob("neighbours-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("cached lists must not be rebuilt")

    monkeypatch.setattr(nbmod, "_build", fail)
    again = build_neighbours(emb, pids, 4, 0.3, **kw)
    assert np.array_equal(again.ids, first.ids) and np.array_equal(again.sims, first.sims)
    assert np.array_equal(again.more(300, 10)[0], first.more(300, 10)[0])  # embeddings attached
    # Another top_m, threshold or key is another entry.
    for args, extra in [((5, 0.3), {}), ((4, 0.4), {}), ((4, 0.3), {"cache_key": "trace-b"})]:
        with pytest.raises(AssertionError, match="rebuilt"):
            build_neighbours(emb, pids, *args, **{**kw, **extra})


def test_bad_inputs() -> None:
    emb = unit_vectors(10, 8, seed=0)
    with pytest.raises(ValueError, match="prompt_ids"):
        build_neighbours(emb, np.array([0, 10]), 2, 0.5, progress=False)
    with pytest.raises(ValueError, match="top_m"):
        build_neighbours(emb, np.array([0, 1]), 0, 0.5, progress=False)
    with pytest.raises(ValueError, match="index"):
        build_neighbours(emb, np.array([0, 1]), 2, 0.5, index="faiss", progress=False)
    with pytest.raises(ValueError, match="matrix"):
        build_neighbours(emb[0], np.array([0]), 2, 0.5, progress=False)
    empty = build_neighbours(emb, np.zeros(0, np.int32), 2, 0.5, progress=False)
    assert len(empty) == 0 and empty.offsets.tolist() == [0]


def test_damaged_cache_entry_is_rebuilt(tmp_path) -> None:
    pids = trace_ids(300, 200, seed=4)
    emb = unit_vectors(200, 16, seed=4)
    kw = {"index": "exact", "cache_dir": tmp_path, "cache_key": "t", "progress": False}
    good = build_neighbours(emb, pids, 3, 0.3, **kw)
    (entry,) = tmp_path.glob("neighbours-*.npz")
    entry.write_bytes(b"truncated")
    again = build_neighbours(emb, pids, 3, 0.3, **kw)
    assert np.array_equal(again.ids, good.ids)
    assert np.array_equal(NeighbourLists.load(entry).ids, good.ids)  # rewritten


def test_ivf_with_pruned_probes_lists_exact_pairs_whatever_the_threads(monkeypatch) -> None:
    import sim.neighbours.ivf as ivf

    # A small budget and chunk make the join prune cells and cross chunk boundaries.
    monkeypatch.setattr(ivf, "_BUDGET", 400)
    monkeypatch.setattr(ivf, "_MIN_PROBES", 4)
    monkeypatch.setattr(ivf, "_CHUNK", 700)
    pids = trace_ids(4000, 3000, seed=11, repeat=0.25)
    emb = unit_vectors(3000, 32, seed=11)
    one = build_neighbours(emb, pids, top_m=50, min_similarity=0.6, index="ivf", progress=False, num_threads=1)
    two = build_neighbours(emb, pids, top_m=50, min_similarity=0.6, index="ivf", progress=False, num_threads=2)
    for name in ("offsets", "ids", "sims", "complete"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    ref = naive(emb, pids, 10**6, 0.6)
    found = total = 0
    for i, (ids, sims, _) in enumerate(ref):
        truth = dict(zip(ids.tolist(), sims.tolist(), strict=True))
        got_ids, got_sims = one.neighbours(i)
        # Everything listed is a true causal neighbour with its exact similarity, best first.
        assert all(truth.get(c) == pytest.approx(v, abs=1e-6) for c, v in zip(got_ids.tolist(), got_sims.tolist(), strict=True))
        assert (np.diff(got_sims) <= 0).all()
        if one.complete[i]:
            found += len(got_ids)
            total += len(ids)
        if pids[i] in ids[:1].tolist():  # a repeat lists its own prompt first
            assert got_ids[0] == pids[i] and got_sims[0] == 1.0
    assert total > 2000
    assert 0.8 <= found / total < 1.0  # pruned (misses some) but finds most


@pytest.mark.parametrize("seed", range(6))
def test_ivf_merge_equals_the_definition(seed: int) -> None:
    """A chunk's pairs -> per-request lists, against the definition: a request lists the pairs of
    its prompt first seen before it (not itself), and itself at 1.0 if it is a repeat, by
    similarity then id, at most top_m. Ties, exact 1.0 and rounding above 1.0 included."""
    from sim.neighbours.ivf import _merge

    rng = np.random.default_rng(seed)
    n_prompts, n_req, s, top_m = 60, 40, 30, int(rng.integers(1, 12))
    first_seen = rng.integers(0, s + n_req + 5, n_prompts)
    own = rng.integers(0, n_prompts, n_req)
    first_seen[own] = np.minimum(first_seen[own], s + np.arange(n_req))  # a request's prompt is seen by then
    uniq, inv = np.unique(own, return_inverse=True)
    levels = np.array([0.7, 0.8, 0.8, 0.9, 1.0, np.nextafter(np.float32(1.0), np.float32(2.0))], np.float32)
    pairs = {(ui, int(q)) for ui in range(len(uniq)) for q in rng.choice(n_prompts, 25, replace=False)}
    pu = np.array([a for a, _ in sorted(pairs)], np.int64)
    pp = np.array([b for _, b in sorted(pairs)], np.int64)
    pv = levels[rng.integers(0, len(levels), len(pu))]
    shuffle = rng.permutation(len(pu))
    parts = np.array_split(shuffle, 3)
    ids, sims, counts = _merge([pu[k] for k in parts], [pp[k] for k in parts], [pv[k] for k in parts],
                               inv, own, first_seen, s, top_m)
    at = 0
    for r in range(n_req):
        cand = [(float(v), int(q)) for a, q, v in zip(pu, pp, pv, strict=True)
                if a == inv[r] and first_seen[q] < s + r and q != own[r]]
        if first_seen[own[r]] < s + r:
            cand.append((1.0, int(own[r])))
        want = sorted(cand, key=lambda c: (-c[0], c[1]))[:top_m]
        got = list(zip(sims[at : at + counts[r]].tolist(), ids[at : at + counts[r]].tolist(), strict=True))
        assert got == [(np.float32(v).item(), q) for v, q in want], f"request {r}"
        at += counts[r]
    assert at == len(ids)


@pytest.mark.parametrize(("top_m", "threads"), [(1, 1), (4, 2), (9, 2)])
def test_ivf_across_chunks_equals_naive_scan(monkeypatch, top_m: int, threads: int) -> None:
    """With every cell probed the ivf join is exact: across many chunks, where pairs with earlier
    members go through the bounded best-pair heaps, the lists equal the naive scan (ties included)."""
    import sim.neighbours.ivf as ivf

    monkeypatch.setattr(ivf, "_CHUNK", 250)
    pids = trace_ids(2500, 1400, seed=top_m)
    emb = grid_vectors(1500, 16, seed=top_m)  # coarse grid: many exactly tied similarities
    nb = build_neighbours(emb, pids, top_m=top_m, min_similarity=0.0, index="ivf", progress=False, num_threads=threads)
    assert_equal_to_naive(nb, naive(emb, pids, top_m, 0.0))
    assert (~nb.complete).mean() > 0.5  # the heaps did cut rows


def test_keep_best_holds_each_rows_best_pairs() -> None:
    from sim.neighbours.ivf import _drain, _keep_best

    rng = np.random.default_rng(3)
    levels = np.array([0.1, 0.5, 0.5, 0.7, 0.9], np.float32)
    ids = rng.permutation(1000)[:60].astype(np.int64)
    hv, hp, hn = np.empty((6, 7), np.float32), np.empty((6, 7), np.int64), np.zeros(6, np.int64)
    offered: dict[int, set[tuple[float, int]]] = {u: set() for u in range(6)}
    for lo in range(0, 60, 12):  # one block per cell: each row once, the cell's own members
        us = rng.permutation(6)[: rng.integers(2, 7)]
        sims = levels[rng.integers(0, len(levels), (len(us), 12))]
        block = ids[lo : lo + 12]
        _keep_best(sims, us, block, np.float32(0.4), hv, hp, hn)
        for r, u in enumerate(us.tolist()):
            offered[u] |= {(float(v), int(q)) for v, q in zip(sims[r], block, strict=True) if v >= 0.4}
    rows, got_ids, got_v = _drain(hv, hp, hn)
    for u in range(6):
        want = sorted(offered[u], key=lambda c: (-c[0], c[1]))[:7]
        got = sorted(zip(got_v[rows == u].tolist(), got_ids[rows == u].tolist(), strict=True), key=lambda c: (-c[0], c[1]))
        assert got == want and len(offered[u]) > 7


def test_ivf_leaves_the_embeddings_as_it_found_them() -> None:
    """The join sorts the rows in place while it runs: afterwards they are the caller's again,
    and a read-only array (copied instead) gives the same lists."""
    from sim.neighbours.ivf import _permute_rows

    rng = np.random.default_rng(5)
    a = rng.normal(size=(50, 3)).astype(np.float32)
    perm = rng.permutation(50)
    b = a.copy()
    _permute_rows(b, perm)
    assert np.array_equal(b, a[perm])
    pids = trace_ids(3000, 1800, seed=4)
    emb = unit_vectors(1800, 16, seed=4)
    before = emb.copy()
    nb = build_neighbours(emb, pids, top_m=5, min_similarity=0.5, index="ivf", progress=False, num_threads=2)
    assert np.array_equal(emb, before)
    frozen = before.copy()
    frozen.flags.writeable = False
    again = build_neighbours(frozen, pids, top_m=5, min_similarity=0.5, index="ivf", progress=False, num_threads=2)
    assert np.array_equal(nb.ids, again.ids) and np.array_equal(nb.sims, again.sims)
