"""Descriptive statistics of a trace, and a readable rendering of them.

The same numbers serve a user sizing a cache (how repetitive and how similar is my workload?) and
the tests that hold the synthetic generator to the real DiffusionDB sample. With embeddings, the
reuse statistics of :mod:`traces.reuse` are included (``best_earlier_similarity`` and ``reuse``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from traces.reuse import MAX_REQUESTS, SESSION_GAP_S, Matches, reuse_stats, session_ids

if TYPE_CHECKING:
    from traces.schema import Trace

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {f"p{round(q * 100)}": math.nan for q in QUANTILES}
    values = np.quantile(x, QUANTILES)
    return {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, values, strict=True)}


def trace_stats(
    trace: Trace,
    embeddings: np.ndarray | None = None,
    max_requests: int = MAX_REQUESTS,
    matches: Matches | None = None,
) -> dict[str, Any]:
    """Statistics of ``trace``; with ``embeddings`` (float32 (n_prompts, d), unit rows, row =
    prompt_id) also how its requests reuse earlier prompts (:func:`traces.reuse.reuse_stats`,
    exact over the first ``max_requests`` requests, whose ``matches`` may be given)."""
    n = len(trace)
    t = trace.arrival_s
    duration = float(t[-1]) if n else 0.0
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
        reuse = reuse_stats(
            trace.prompt_ids, trace.user_codes, t, embeddings, max_requests=max_requests, matches=matches
        )
        out["best_earlier_similarity"] = {
            "measured_requests": reuse["measured_requests"] - 1,
            **reuse.pop("best_similarity"),
        }
        out["reuse"] = reuse
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
    """Sessions: a user's requests with gaps below 30 minutes (on the scaled clock), and users who
    come back in another session."""
    users = trace.user_codes
    known = users >= 0
    if not known.any():
        return {"count": 0}
    t = trace.arrival_s[known]
    u = users[known]
    sid = session_ids(u, t, SESSION_GAP_S)
    order = np.lexsort((t, u))
    t, u, sid = t[order], u[order], sid[order]
    new = np.ones(len(t), dtype=bool)
    new[1:] = sid[1:] != sid[:-1]
    lengths = np.bincount(sid).astype(np.float64)
    gaps = np.diff(t)[~new[1:]]
    # A return: a user's next session, measured from the end of the previous one.
    returns = np.flatnonzero(new[1:] & (u[1:] == u[:-1])) + 1
    per_user = np.bincount(np.bincount(u[new]))
    one = float(per_user[1] / per_user.sum()) if len(per_user) > 1 else math.nan
    return {
        "count": int(len(lengths)),
        "mean_length": float(lengths.mean()),
        "length": _quantiles(lengths),
        "single_request_share": float(np.mean(lengths == 1)),
        "gap_s": _quantiles(gaps),
        "users_with_one_session_share": one,
        "users_returning_share": 1.0 - one,
        "returning_sessions_share": float(len(returns) / len(lengths)),
        "return_gap_h": _quantiles((t[returns] - t[returns - 1]) / 3600.0),
    }


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
        lines.append(
            f"  users returning in another session: {s['users_returning_share']:.1%} of users, "
            f"{s['returning_sessions_share']:.1%} of sessions; pause (h): {q(s['return_gap_h'], '{:.2f}')}"
        )
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
    r = stats.get("reuse")
    if r:
        lines.extend(format_reuse(r))
    return "\n".join(lines)


def format_reuse(r: dict[str, Any]) -> list[str]:
    """Text lines for :func:`traces.reuse.reuse_stats`' result."""
    thr = r["threshold"]
    cut = (
        ""
        if r["measured_requests"] == r["of_requests"]
        else f", first {r['measured_requests']:,} of {r['of_requests']:,} requests"
    )
    by_q = " ".join(f"{x:.0%}" for x in r["share_by_quarter"])
    pool = "  ".join(f"m={m}: {p:.3f}" for m, p in r["pool_curve"].items())
    d, h = r["distance_requests"], r["distance_hours"]
    lines = [
        f"  reuse at similarity >= {thr:.2f}{cut}:",
        f"    best earlier match >= {thr:.2f}: {r[f'share_ge_{thr:.2f}']:.1%} of requests (by quarter of the trace: {by_q})",
        f"    best earlier match from ANOTHER user >= {thr:.2f}: {r['cross_user_share']:.1%} of requests",
        f"    P(some of m random requests of other users >= {thr:.2f}): {pool}",
        "    distance to the best match, requests: " + "  ".join(f"{k}={v:,.0f}" for k, v in d.items()),
        "    distance to the best match, hours:    " + "  ".join(f"{k}={v:.3g}" for k, v in h.items()),
        f"    that match is the same user's: {r['same_user_share']:.1%}, in the same session: {r['same_session_share']:.1%}",
    ]
    return lines
