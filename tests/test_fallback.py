"""The exhaustive decision (a truncated list ran out): the similarities it scores with and the
rule it applies, each against a short computation from the definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.cache.kernel import decide
from sim.neighbours.ivf import probe
from sim.neighbours.similarity import similarities_to

LEVELS = np.array([5, 10, 15, 20, 25], np.int64)


@pytest.mark.parametrize("dim", [7, 24, 256, 384])
def test_similarities_are_dot_products_and_own_prompt_counts_one(dim: int) -> None:
    rng = np.random.default_rng(dim)
    emb = rng.normal(size=(300, dim))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    prompts = rng.permutation(300)[:120].astype(np.int64)
    own = int(prompts[17])
    got = similarities_to(emb, prompts, own)
    want = emb[prompts].astype(np.float64) @ emb[own].astype(np.float64)
    want[17] = 1.0
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert got[17] == 1.0
    # A prompt's score depends on that pair alone, not on its position or its company.
    assert np.array_equal(similarities_to(emb, prompts[::-1].copy(), own), got[::-1])
    assert similarities_to(emb, prompts[40:41].copy(), own)[0] == got[40]


def by_definition(prompts, held, sims, ks):
    """Reusable candidates most similar first (ties: lower id); the nearest plans K; served is the
    first of them offering the largest level it holds at or below its own K."""
    usable = sorted((-float(s), int(p), j) for j, (p, s, k) in enumerate(zip(prompts, sims, ks, strict=True)) if k > 0)
    if not usable:
        return (-1, math.nan, 0, 0, math.nan, 0)
    order = [j for _, _, j in usable]
    offer = [max([int(x) for x in LEVELS if x <= ks[j] and held[j] >> int(x) & 1], default=0) for j in order]
    near = order[0]
    b = offer.index(max(offer))
    if offer[b] == 0:
        return (-1, math.nan, 0, int(ks[near]), float(sims[near]), 0)
    j = order[b]
    return (j, float(sims[j]), offer[b], int(ks[near]), float(sims[near]), int(ks[j]))


def same(a: tuple, b: tuple) -> bool:
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def test_decide_follows_the_definition_with_ties() -> None:
    rng = np.random.default_rng(7)
    served = holes = 0
    for case in range(3000):
        c = int(rng.integers(0, 12))
        prompts = rng.permutation(40)[:c].astype(np.int64)
        # Few distinct similarities, so that ties (broken by prompt id) are common.
        sims = rng.choice(np.array([0.6, 0.7, 0.8, 0.9, 0.97], np.float32), c)
        ks = np.select([sims > 0.95, sims > 0.85, sims > 0.75, sims > 0.65], [25, 15, 10, 5], -1).astype(np.int64)
        held = rng.integers(0, 1 << 26, c) & int(sum(1 << int(x) for x in LEVELS))
        held[rng.random(c) < 0.3] = 1 << 25  # only the top level: often above the K asked
        got = decide(prompts, held.astype(np.int64), sims, ks, LEVELS)
        want = by_definition(prompts, held, sims, ks)
        assert same(tuple(got), want), (case, got, want)
        served += got[0] >= 0
        holes += got[0] >= 0 and got[2] < got[3]
    assert served > 1000 and holes > 100  # both outcomes exercised


def test_probe_takes_the_nearest_cells_until_they_hold_the_budget() -> None:
    """Against the definition: cells by similarity of the projected, normalised query to their
    centroids, nearest first; taken while fewer than ``budget`` searched prompts are in the ones
    taken (the crossing cell included), at least ``min_probes``, at most ``max_probes``; every
    cell when all the searched prompts fit the budget."""
    rng = np.random.default_rng(11)
    for case in range(300):
        d, dims, n_cells = 12, 5, int(rng.integers(1, 40))
        proj = rng.normal(size=(d, dims)).astype(np.float32)
        cent = rng.normal(size=(n_cells, dims))
        cent = (cent / np.linalg.norm(cent, axis=1, keepdims=True)).astype(np.float32)
        held = rng.integers(0, 6, n_cells).astype(np.int64)
        x = rng.normal(size=d).astype(np.float32)
        budget, lo, hi = int(rng.integers(1, 30)), int(rng.integers(1, 4)), int(rng.integers(4, 12))
        got = probe(x, proj, cent, held, budget, lo, hi)
        low = x.astype(np.float64) @ proj
        order = np.argsort(-(cent @ (low / np.linalg.norm(low))), kind="stable")
        want = np.zeros(n_cells, bool)
        if held.sum() <= budget:
            want[:] = True
        else:
            for r, c in enumerate(order[:hi]):
                if r >= lo and held[want].sum() >= budget:
                    break
                want[c] = True
        assert np.array_equal(got, want), case
