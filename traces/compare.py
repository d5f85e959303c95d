"""Several traces side by side: the statistics as one table, and the numbers behind the figure.

:func:`comparison_table` renders :func:`traces.stats.trace_stats` results in columns, one per
trace, so that a researcher sees at a glance where a synthetic trace differs from theirs.
:func:`figure_data` is the data step of the comparison figure (drawn by
:func:`plots.traces.draw_trace_comparison`): CDFs of the reuse distance, the pool curve and
similarity histograms, as plain numbers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from traces.reuse import (
    MAX_REQUESTS,
    THRESHOLD,
    Matches,
    best_earlier_matches,
    pool_curve,
    similarity_histogram,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from traces.schema import Trace

CDF_POINTS = np.linspace(0.0, 1.0, 101)  # a CDF as its quantiles at these probabilities
PAIR_SAMPLES = 20_000  # random pairs of other users' requests for the background histogram


def _get(path: str) -> Callable[[dict[str, Any]], Any]:
    def get(stats: dict[str, Any]) -> Any:
        node: Any = stats
        for key in path.split("/"):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    return get


# (label, path in the stats dict, format); a row shows when any trace has the value.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("requests", "requests", "{:,}"),
    ("unique prompts", "unique_prompts", "{:,}"),
    ("exact repeat rate", "repeat_rate", "{:.3f}"),
    ("users", "users", "{:,}"),
    ("duration (h)", "duration_s", "h"),
    ("mean rate (req/s)", "mean_rate_rps", "{:.4g}"),
    ("prompt words p50", "prompt_words/p50", "{:.0f}"),
    ("prompt words p90", "prompt_words/p90", "{:.0f}"),
    ("sessions", "sessions/count", "{:,}"),
    ("session length mean", "sessions/mean_length", "{:.2f}"),
    ("single-request sessions", "sessions/single_request_share", "{:.3f}"),
    ("gap in session p50 (s)", "sessions/gap_s/p50", "{:.0f}"),
    ("users returning (share of users)", "sessions/users_returning_share", "{:.3f}"),
    ("returning sessions (share)", "sessions/returning_sessions_share", "{:.3f}"),
    ("return pause p50 (h)", "sessions/return_gap_h/p50", "{:.2f}"),
    ("best earlier similarity p10", "best_earlier_similarity/p10", "{:.3f}"),
    ("best earlier similarity p25", "best_earlier_similarity/p25", "{:.3f}"),
    ("best earlier similarity p50", "best_earlier_similarity/p50", "{:.3f}"),
    ("best earlier similarity p75", "best_earlier_similarity/p75", "{:.3f}"),
    ("share best earlier >= 0.65", "reuse/share_ge_0.65", "{:.3f}"),
    ("cross-user share >= 0.65", "reuse/cross_user_share", "{:.3f}"),
    ("pool P(m=10)", "reuse/pool_curve/10", "{:.4f}"),
    ("pool P(m=100)", "reuse/pool_curve/100", "{:.4f}"),
    ("pool P(m=700)", "reuse/pool_curve/700", "{:.4f}"),
    ("pool P(m=3000)", "reuse/pool_curve/3000", "{:.4f}"),
    ("reuse distance p25 (requests)", "reuse/distance_requests/p25", "{:,.0f}"),
    ("reuse distance p50 (requests)", "reuse/distance_requests/p50", "{:,.0f}"),
    ("reuse distance p75 (requests)", "reuse/distance_requests/p75", "{:,.0f}"),
    ("reuse distance p90 (requests)", "reuse/distance_requests/p90", "{:,.0f}"),
    ("reuse distance p99 (requests)", "reuse/distance_requests/p99", "{:,.0f}"),
    ("reuse distance p50 (hours)", "reuse/distance_hours/p50", "{:.3g}"),
    ("reuse distance p90 (hours)", "reuse/distance_hours/p90", "{:.3g}"),
    ("reuse distance p99 (hours)", "reuse/distance_hours/p99", "{:.3g}"),
    ("best match: same user", "reuse/same_user_share", "{:.3f}"),
    ("best match: same session", "reuse/same_session_share", "{:.3f}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "h":
        return f"{value / 3600:.2f}"
    return fmt.format(value)


def comparison_rows(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statistics of several traces as rows (one per statistic, a column per trace), raw values."""
    names = [str(s.get("name", f"trace {i + 1}")) for i, s in enumerate(stats)]
    rows = []
    for label, path, _ in ROWS:
        values = [_get(path)(s) for s in stats]
        if any(v is not None for v in values):
            rows.append({"statistic": label, "key": path, **dict(zip(names, values, strict=True))})
    return rows


def comparison_table(stats: list[dict[str, Any]]) -> str:
    """The statistics of several traces in columns (``-``: not measured for that trace)."""
    names = [str(s.get("name", f"trace {i + 1}")) for i, s in enumerate(stats)]
    rows = []
    for label, path, fmt in ROWS:
        values = [_get(path)(s) for s in stats]
        if any(v is not None for v in values):
            rows.append([label, *(_cell(v, fmt) for v in values)])
    widths = [max(len(r[i]) for r in [["statistic", *names], *rows]) for i in range(len(names) + 1)]
    head = ["statistic".ljust(widths[0]), *(n.rjust(w) for n, w in zip(names, widths[1:], strict=True))]
    lines = ["  ".join(head), "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append(
            "  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])
        )
    return "\n".join(lines)


def _cdf(x: np.ndarray) -> dict[str, list[float]]:
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return {"x": [], "p": []}
    return {"x": np.quantile(x, CDF_POINTS).tolist(), "p": CDF_POINTS.tolist()}


def pair_similarities(
    prompt_ids: np.ndarray, users: np.ndarray, embeddings: np.ndarray, n: int = PAIR_SAMPLES, seed: int = 0
) -> np.ndarray:
    """Similarities of ``n`` random pairs of requests of different users (seeded): the background
    a cache lookup competes with. Empty when the trace has fewer than two users."""
    ids = np.asarray(prompt_ids)
    users = np.asarray(users)
    if len(ids) < 2 or len(np.unique(users[users >= 0])) < 2:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(ids), (2, 4 * n))
    ok = (users[i] != users[j]) & (users[i] >= 0) & (users[j] >= 0)
    i, j = i[ok][:n], j[ok][:n]
    return np.einsum("ij,ij->i", embeddings[ids[i]], embeddings[ids[j]])


def figure_data(
    trace: Trace,
    embeddings: np.ndarray,
    threshold: float = THRESHOLD,
    max_requests: int = MAX_REQUESTS,
    matches: Matches | None = None,
) -> dict[str, Any]:
    """The numbers the comparison figure shows for one trace (JSON-ready):

    - ``distance_requests`` / ``distance_hours``: CDF of the distance to the best earlier match at
      or above ``threshold`` (as ``x`` quantiles at probabilities ``p``);
    - ``pool_curve``: P(some of m random requests of other users >= threshold), by m;
    - ``best_similarity``: histogram of each request's best earlier similarity;
    - ``pair_similarity``: histogram of the similarity of random pairs of other users' requests.

    Per-request numbers cover the first ``max_requests`` requests (``matches``: their best
    earlier matches when already computed).
    """
    n = min(len(trace), max_requests)
    ids, users, t = trace.prompt_ids[:n], trace.user_codes[:n], trace.arrival_s[:n]
    m = matches if matches is not None else best_earlier_matches(ids, users, embeddings)
    hit = np.flatnonzero(np.isfinite(m.best) & (m.best >= threshold))
    j = m.best_index[hit]
    return {
        "name": trace.name,
        "threshold": threshold,
        "distance_requests": _cdf(hit - j),
        "distance_hours": _cdf((t[hit] - t[j]) / 3600.0),
        "pool_curve": pool_curve(trace.prompt_ids, trace.user_codes, embeddings, threshold),
        "best_similarity": similarity_histogram(m.best),
        "pair_similarity": similarity_histogram(
            pair_similarities(trace.prompt_ids, trace.user_codes, embeddings)
        ),
    }
