"""How a trace's requests reuse earlier prompts: the statistics that decide what a cache can save.

For every request ``i`` the *best earlier match* is the earlier request ``j < i`` whose prompt is
most similar (cosine of the embeddings; an identical prompt scores exactly 1, and among equally
good matches the most recent wins). From it:

- ``share_ge`` (``share_ge_0.65`` by default): share of requests whose best earlier match reaches
  the threshold: an upper bound on an approximate cache's hit rate at that threshold;
- ``cross_user_share``: share of requests whose best earlier prompt *from another user* reaches
  the threshold: the reuse that only a shared cache can give;
- ``distance_requests`` / ``distance_hours``: how far back the best match (at or above the
  threshold) lies, in requests and in hours: the cache size and retention reuse needs;
- ``same_user_share`` / ``same_session_share``: of those best matches, the share made by the
  same user, and in the same session (a user's requests less than 30 minutes apart);
- ``pool_curve``: P(at least one of m random requests of *other* users is at or above the
  threshold), averaged over requests, for several m. It does not depend on time order: it says
  how concentrated cross-user similarity is. It is an exact expectation (hypergeometric), not a
  sample, over a fixed, seeded sample of queries and candidates when the trace is large.

The per-request computation is exact (blocked matrix products) and costs O(n^2 d) for n requests,
so it covers the first ``max_requests`` requests of a longer trace (the result says how many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

THRESHOLD = 0.65  # the lowest rung of the published similarity -> K ladder (0.65 -> K = 5)
QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.99)  # of reuse distances
SIMILARITY_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)  # of the best earlier similarity
SIMILARITY_SHARES = (0.65, 0.75, 0.85, 0.95)  # thresholds of the published ladder's rungs
POOL_SIZES = (1, 3, 10, 30, 100, 300, 700, 1000, 3000, 10000)
SESSION_GAP_S = 1800.0  # a user's session ends after 30 minutes without a request
MAX_REQUESTS = 50_000  # exact per-request matches beyond this would take minutes (O(n^2))
POOL_QUERIES = 2_000  # requests whose pool curve is averaged (all of them in smaller traces)
POOL_CANDIDATES = 20_000  # requests the random pools are drawn from (all in smaller traces)
_BLOCK = 256


@dataclass(frozen=True)
class Matches:
    """Per request (the first ``len(best)`` of the trace): its best earlier match."""

    best: np.ndarray  # float32 similarity of the best earlier request (NaN for the first)
    best_index: np.ndarray  # int64 index of that request (-1 for the first)
    best_other_user: np.ndarray  # float32 best similarity among earlier requests of other users


def session_ids(users: np.ndarray, arrival_s: np.ndarray, gap_s: float = SESSION_GAP_S) -> np.ndarray:
    """Session id per request (a user's requests with gaps below ``gap_s``); -1 for unknown users."""
    out = np.full(len(users), -1, dtype=np.int64)
    known = np.flatnonzero(users >= 0)
    if len(known) == 0:
        return out
    order = known[np.lexsort((arrival_s[known], users[known]))]
    u, t = users[order], arrival_s[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (np.diff(t) >= gap_s)
    out[order] = np.cumsum(new) - 1
    return out


def best_earlier_matches(prompt_ids: np.ndarray, users: np.ndarray, embeddings: np.ndarray) -> Matches:
    """Best earlier match of every request, overall and among other users' requests.

    ``embeddings`` holds unit rows indexed by prompt id; ``users`` are dense codes (-1: unknown,
    which never counts as "another user"). Exact: every earlier request is compared.
    """
    ids = np.asarray(prompt_ids, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    n = len(ids)
    emb = np.ascontiguousarray(embeddings[ids], dtype=np.float32)
    best = np.full(n, np.nan, dtype=np.float32)
    best_index = np.full(n, -1, dtype=np.int64)
    other = np.full(n, np.nan, dtype=np.float32)
    known_users = bool((users >= 0).any())
    for lo in range(0, n, _BLOCK):
        hi = min(lo + _BLOCK, n)
        sims = emb[lo:hi] @ emb[:hi].T
        np.minimum(sims, 1.0, out=sims)
        sims[ids[lo:hi, None] == ids[None, :hi]] = 1.0  # rounding must not split exact repeats
        # Only earlier requests count: mask column j >= i in the row of request i.
        sims[:, lo:hi][np.tri(hi - lo, dtype=bool).T] = -np.inf
        # The most recent of equally good matches: argmax over the columns read backwards.
        rev = hi - 1 - np.argmax(sims[:, ::-1], axis=1)
        row_best = sims[np.arange(hi - lo), rev]
        ok = np.isfinite(row_best)
        best[lo:hi][ok] = row_best[ok]
        best_index[lo:hi][ok] = rev[ok]
        if known_users:
            u = users[lo:hi, None]
            sims[(u == users[None, :hi]) | (u < 0) | (users[None, :hi] < 0)] = -np.inf
            row_other = sims.max(axis=1)
            ok = np.isfinite(row_other)
            other[lo:hi][ok] = row_other[ok]
    return Matches(best, best_index, other)


def _quantiles(x: np.ndarray, qs: tuple[float, ...] = QUANTILES) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return {f"p{round(q * 100)}": math.nan for q in qs}
    return {f"p{round(q * 100)}": float(v) for q, v in zip(qs, np.quantile(x, qs), strict=True)}


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else math.nan


def pool_curve(
    prompt_ids: np.ndarray,
    users: np.ndarray,
    embeddings: np.ndarray,
    threshold: float = THRESHOLD,
    sizes: tuple[int, ...] = POOL_SIZES,
    seed: int = 0,
) -> dict[str, float]:
    """P(some of m random requests of other users has similarity >= ``threshold``), for each m.

    For a query request with N candidate requests of other users, c of them at or above the
    threshold, P(m) = 1 - C(N - c, m) / C(N, m) (m drawn without replacement); the result is its
    mean over queries. A query with fewer than m candidates counts all of them (P = 1 if any is
    close); sizes above the median N are left out. Queries and candidates are
    every request of a trace up to :data:`POOL_QUERIES` / :data:`POOL_CANDIDATES` requests, else a
    sample drawn with ``seed`` (so the curve is deterministic).
    """
    from scipy.special import gammaln  # here: importing scipy costs half a second

    ids = np.asarray(prompt_ids, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    if len(ids) < 2 or not (users >= 0).any():
        return {}
    rng = np.random.default_rng(seed)
    n = len(ids)
    queries = np.sort(rng.choice(n, POOL_QUERIES, replace=False)) if n > POOL_QUERIES else np.arange(n)
    cands = np.sort(rng.choice(n, POOL_CANDIDATES, replace=False)) if n > POOL_CANDIDATES else np.arange(n)
    queries = queries[users[queries] >= 0]
    cand_emb = np.ascontiguousarray(embeddings[ids[cands]], dtype=np.float32)
    big_n = np.zeros(len(queries), dtype=np.int64)
    hits = np.zeros(len(queries), dtype=np.int64)
    for lo in range(0, len(queries), _BLOCK):
        q = queries[lo : lo + _BLOCK]
        sims = np.ascontiguousarray(embeddings[ids[q]], dtype=np.float32) @ cand_emb.T
        near = (sims >= threshold) | (ids[q, None] == ids[None, cands])
        foreign = (users[q, None] != users[None, cands]) & (users[None, cands] >= 0)
        big_n[lo : lo + len(q)] = foreign.sum(axis=1)
        hits[lo : lo + len(q)] = (near & foreign).sum(axis=1)
    out: dict[str, float] = {}
    if len(queries) == 0:
        return out
    misses = big_n - hits
    for size in sizes:
        if size > np.median(big_n):
            continue
        m = np.minimum(size, big_n)
        # log C(N - c, m) - log C(N, m); -inf (P = 1) when fewer than m candidates miss.
        with np.errstate(invalid="ignore"):
            log_none = np.where(
                misses >= m,
                gammaln(misses + 1) - gammaln(misses - m + 1) - gammaln(big_n + 1) + gammaln(big_n - m + 1),
                -np.inf,
            )
        out[str(size)] = float(np.mean(1.0 - np.exp(log_none)))
    return out


def reuse_stats(
    prompt_ids: np.ndarray,
    users: np.ndarray,
    arrival_s: np.ndarray,
    embeddings: np.ndarray,
    threshold: float = THRESHOLD,
    max_requests: int = MAX_REQUESTS,
    matches: Matches | None = None,
) -> dict[str, Any]:
    """Every reuse statistic of the module docstring, as plain data (JSON-ready).

    The per-request statistics cover the first ``max_requests`` requests (``matches``: their
    best earlier matches when already computed); the pool curve the whole trace (sampled as
    :func:`pool_curve` says).
    """
    ids = np.asarray(prompt_ids)[:max_requests]
    u = np.asarray(users)[:max_requests]
    t = np.asarray(arrival_s, dtype=np.float64)[:max_requests]
    m = matches if matches is not None else best_earlier_matches(ids, u, embeddings)
    measured = np.isfinite(m.best)
    hit = measured & (m.best >= threshold)
    j = m.best_index[hit]
    i = np.flatnonzero(hit)
    sess = session_ids(u, t)
    has_users = bool((u >= 0).any())
    best = m.best[measured].astype(np.float64)
    out: dict[str, Any] = {
        "threshold": threshold,
        "measured_requests": int(len(ids)),
        "of_requests": int(len(prompt_ids)),
        "best_similarity": {
            **_quantiles(best, SIMILARITY_QUANTILES),
            "mean": float(best.mean()) if len(best) else math.nan,
            **{f"share_ge_{x:.2f}": _share(best >= x) for x in SIMILARITY_SHARES},
        },
        f"share_ge_{threshold:.2f}": _share(best >= threshold),
        "share_by_quarter": [
            _share(q[np.isfinite(q)] >= threshold) for q in np.array_split(m.best, 4) if len(q)
        ],
        "cross_user_share": _share(np.nan_to_num(m.best_other_user[1:], nan=-1.0) >= threshold)
        if has_users
        else math.nan,
        "distance_requests": _quantiles((i - j).astype(np.float64)),
        "distance_hours": _quantiles((t[i] - t[j]) / 3600.0),
        "same_user_share": _share((u[i] == u[j]) & (u[i] >= 0)) if has_users else math.nan,
        "same_session_share": _share((sess[i] == sess[j]) & (sess[i] >= 0)) if has_users else math.nan,
        "pool_curve": pool_curve(prompt_ids, users, embeddings, threshold),
    }
    return out


def similarity_histogram(values: np.ndarray, bins: int = 40) -> dict[str, list[float]]:
    """Density histogram of similarities on [-0.2, 1] (NaNs ignored): bin edges and densities."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    density, edges = np.histogram(np.clip(v, -0.2, 1.0), bins=bins, range=(-0.2, 1.0), density=len(v) > 0)
    return {"edges": edges.tolist(), "density": density.tolist()}
