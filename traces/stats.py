"""Descriptive statistics of a trace, and a readable rendering of them.

The same numbers serve a user sizing a cache (how repetitive and how similar is my workload?) and
the tests that hold the synthetic generator to the real DiffusionDB sample.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from traces.schema import Trace

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
SESSION_GAP_S = 1800.0  # a user's session ends after 30 minutes without a request
# Exact best-earlier similarity is O(prompts^2 d); beyond this many unique prompts only the requests
# whose prompt is among the first MAX_SIMILARITY_PROMPTS are measured (reported in the result).
MAX_SIMILARITY_PROMPTS = 50_000
_BLOCK = 512


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {f"p{round(q * 100)}": math.nan for q in QUANTILES}
    values = np.quantile(x, QUANTILES)
    return {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, values, strict=True)}


def trace_stats(trace: Trace, embeddings: np.ndarray | None = None) -> dict[str, Any]:
    """Statistics of ``trace``; with ``embeddings`` (float32 (n_prompts, d), unit rows, row = prompt_id)
    also the distribution of each request's best cosine similarity to any earlier request's prompt."""
    n = len(trace)
    t = trace.arrival_s
    duration = float(t[-1]) if n else 0.0
    ids = trace.prompt_ids
    n_prompts = trace.n_prompts
    prompts = trace.df["prompt"]
    words = prompts.str.split().str.len().to_numpy(dtype=np.float64)
    chars = prompts.str.len().to_numpy(dtype=np.float64)
    hours = np.bincount((t // 3600).astype(np.int64)) if n else np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {
        "name": trace.name,
        "requests": n,
        "unique_prompts": n_prompts,
        "repeat_rate": 1.0 - n_prompts / n if n else math.nan,
        "users": int(trace.user_codes.max()) + 1 if n and trace.user_codes.max() >= 0 else 0,
        "start": str(trace.df["timestamp"].iloc[0]) if n else None,
        "duration_s": duration,
        "mean_rate_rps": (n - 1) / duration if duration > 0 else math.nan,
        "requests_per_hour": hours.tolist(),
        "prompt_words": _quantiles(words),
        "prompt_chars": _quantiles(chars),
    }
    out.update(_repeat_users(trace))
    out["sessions"] = _sessions(trace)
    if embeddings is not None:
        out["best_earlier_similarity"] = best_earlier_similarity_stats(ids, embeddings)
    return out


def _repeat_users(trace: Trace) -> dict[str, Any]:
    """Share of exact repeats whose earlier occurrence came from the same user."""
    ids, users = trace.prompt_ids, trace.user_codes
    seen_first = np.zeros(len(ids), dtype=bool)
    _, first = np.unique(ids, return_index=True)
    seen_first[first] = True
    rep = np.flatnonzero(~seen_first)
    if len(rep) == 0 or users.max() < 0:
        return {"repeat_same_user_share": math.nan}
    # Users who used each prompt before: same user if (prompt, user) occurred earlier.
    pair = ids.astype(np.int64) * (int(users.max()) + 2) + (users.astype(np.int64) + 1)
    _, pair_first = np.unique(pair, return_index=True)
    is_first_pair = np.zeros(len(ids), dtype=bool)
    is_first_pair[pair_first] = True
    return {"repeat_same_user_share": float(np.mean(~is_first_pair[rep]))}


def _sessions(trace: Trace) -> dict[str, Any]:
    """Sessions: a user's requests with gaps below 30 minutes (on the scaled clock)."""
    users = trace.user_codes
    known = users >= 0
    if not known.any():
        return {"count": 0}
    t = trace.arrival_s[known]
    u = users[known]
    order = np.lexsort((t, u))
    t, u = t[order], u[order]
    new = np.ones(len(t), dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (np.diff(t) >= SESSION_GAP_S)
    sid = np.cumsum(new) - 1
    lengths = np.bincount(sid).astype(np.float64)
    gaps = np.diff(t)[~new[1:]]
    per_user = np.bincount(np.bincount(u[new]))
    return {
        "count": int(len(lengths)),
        "mean_length": float(lengths.mean()),
        "length": _quantiles(lengths),
        "single_request_share": float(np.mean(lengths == 1)),
        "gap_s": _quantiles(gaps),
        "users_with_one_session_share": float(per_user[1] / per_user.sum())
        if len(per_user) > 1
        else math.nan,
    }


def best_earlier_similarity(
    prompt_ids: np.ndarray, embeddings: np.ndarray, max_prompts: int = MAX_SIMILARITY_PROMPTS
) -> np.ndarray:
    """Per request, the best cosine similarity to any earlier request's prompt (NaN for the first
    request and for requests whose prompt id is >= ``max_prompts``). A repeat scores 1."""
    ids = np.asarray(prompt_ids)
    m = min(int(ids.max()) + 1 if len(ids) else 0, max_prompts)
    emb = np.ascontiguousarray(embeddings[:m], dtype=np.float32)
    # Prompt ids are numbered by first appearance, so "earlier prompts" of a new prompt p are ids < p.
    best_prev = np.full(m, np.nan, dtype=np.float32)
    for lo in range(0, m, _BLOCK):
        hi = min(lo + _BLOCK, m)
        sims = emb[lo:hi] @ emb[:hi].T
        # Mask every column q >= p for the row of prompt p (only the diagonal block has any).
        sims[:, lo:hi][np.triu(np.ones((hi - lo, hi - lo), dtype=bool))] = -np.inf
        row_best = sims.max(axis=1)
        best_prev[lo:hi] = np.where(np.isfinite(row_best), row_best, np.nan)
    out = np.full(len(ids), np.nan, dtype=np.float32)
    is_first = np.zeros(len(ids), dtype=bool)
    _, first = np.unique(ids, return_index=True)
    is_first[first] = True
    measured = ids < m
    out[measured & ~is_first] = 1.0
    new = measured & is_first
    out[new] = best_prev[ids[new]]
    return out


def best_earlier_similarity_stats(prompt_ids: np.ndarray, embeddings: np.ndarray) -> dict[str, Any]:
    """Quantiles and threshold shares of :func:`best_earlier_similarity`."""
    s = best_earlier_similarity(prompt_ids, embeddings)
    ok = s[np.isfinite(s)].astype(np.float64)
    res: dict[str, Any] = {"measured_requests": int(len(ok)), **_quantiles(ok)}
    res["mean"] = float(ok.mean()) if len(ok) else math.nan
    for thr in (0.65, 0.75, 0.85, 0.95):
        res[f"share_ge_{thr:.2f}"] = float(np.mean(ok >= thr)) if len(ok) else math.nan
    return res


def format_stats(stats: dict[str, Any]) -> str:
    """A readable multi-line rendering of :func:`trace_stats`' result."""

    def q(d: dict[str, float], fmt: str = "{:.0f}") -> str:
        return "  ".join(f"{k}={fmt.format(v)}" for k, v in d.items() if k.startswith("p"))

    dur = stats["duration_s"]
    lines = [
        f"trace {stats['name']}: {stats['requests']:,} requests, {stats['unique_prompts']:,} unique prompts "
        f"(repeat rate {stats['repeat_rate']:.1%}), {stats['users']:,} users",
        f"  time: from {stats['start']}, {dur / 3600:.2f} h, mean rate {stats['mean_rate_rps']:.4g} req/s",
        f"  prompt words: {q(stats['prompt_words'])}",
        f"  prompt chars: {q(stats['prompt_chars'])}",
    ]
    if not math.isnan(stats.get("repeat_same_user_share", math.nan)):
        lines.append(f"  exact repeats by the same user: {stats['repeat_same_user_share']:.1%}")
    s = stats["sessions"]
    if s.get("count"):
        lines.append(
            f"  sessions (gap < 30 min): {s['count']:,}, mean length {s['mean_length']:.2f}, "
            f"single-request {s['single_request_share']:.1%}; length {q(s['length'])}"
        )
        lines.append(f"  gap inside sessions (s): {q(s['gap_s'])}")
    per_hour = stats["requests_per_hour"]
    if per_hour:
        shown = " ".join(map(str, per_hour[:48])) + (" ..." if len(per_hour) > 48 else "")
        lines.append(f"  requests per hour: {shown}")
    sim = stats.get("best_earlier_similarity")
    if sim:
        lines.append(
            f"  best similarity to an earlier request ({sim['measured_requests']:,} requests): "
            f"{q(sim, '{:.3f}')}  mean={sim['mean']:.3f}"
        )
        lines.append(
            "  share at or above: "
            + "  ".join(f"{k[9:]}: {v:.1%}" for k, v in sim.items() if k.startswith("share_ge_"))
        )
    return "\n".join(lines)
