"""Reuse statistics against answers worked out by hand, and against a brute-force loop.

The hand-made trace: five prompts on the unit circle, so every cosine is known exactly:
a = 0 deg, b = 30 deg, c = 90 deg, d = 100 deg, e = 200 deg; a.b = 0.866, c.d = 0.985 are the only
different-prompt pairs at or above 0.65.

    request  minute  prompt  user   best earlier (>= 0.65?)          other users' best
    r0       0       a       u      -                                 -
    r1       1       b       u      r0 a 0.866, same user+session    none earlier
    r2       2       c       v      r1 b 0.5 (no)                     0.5
    r3       3       a       v      r0 a 1.0 (user u)                 1.0
    r4       50      d       v      r2 c 0.985, same user, new session (47 min gap)   0.342
    r5       51      a       u      r3 a 1.0 (the latest of r0, r3; user v)           1.0
    r6       52      e       w      r4 d -0.174 (no)                  -0.174

Hits (best >= 0.65): r1, r3, r4, r5 of the 6 requests with an earlier one: share 4/6. Cross-user:
r3 and r5: 2/6. Distances in requests 1, 3, 2, 2; in minutes 1, 3, 48, 48. Same user: r1, r4
(2/4); same session: r1 only (1/4). Sessions: u {r0,r1} {r5}, v {r2,r3} {r4}, w {r6}: 5 sessions,
2 of 3 users return, after 50 and 47 minutes.

Pool curve (every request a query; candidates = other users' requests): r0, r1, r5 (user u) see
N = 4 candidates (c, a, d, e) with c = 1 close (r3 = a); r3 sees N = 4 (a, b, a, e) with c = 3; r2,
r4 see none close; r6 sees N = 6, none close. P(m=1) = mean c/N = (3 * 1/4 + 3/4) / 7 = 1.5 / 7.
P(m=3) = mean of 1 - C(N-c, 3)/C(N, 3): 3/4 for the u queries, 1 for r3: (3 * 0.75 + 1) / 7.
The median N is 4, so m = 10 is not reported.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from traces.compare import comparison_table, figure_data, pair_similarities
from traces.reuse import best_earlier_matches, pool_curve, reuse_stats, session_ids
from traces.schema import Trace, normalise
from traces.stats import format_stats, trace_stats

ANGLES = {"a": 0, "b": 30, "c": 90, "d": 100, "e": 200}
ROWS = [
    (0, "a", "u"),
    (1, "b", "u"),
    (2, "c", "v"),
    (3, "a", "v"),
    (50, "d", "v"),
    (51, "a", "u"),
    (52, "e", "w"),
]


@pytest.fixture
def hand() -> tuple[Trace, np.ndarray]:
    minutes, prompts, users = zip(*ROWS, strict=True)
    df = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2022-08-13 20:00", tz="UTC") + pd.to_timedelta(minutes, unit="min"),
            "prompt": prompts,
            "user": users,
        }
    )
    trace = Trace(normalise(df, "hand"), name="hand")
    rad = np.radians([ANGLES[p] for p in trace.prompts])
    emb = np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)
    return trace, emb


def test_matches_by_hand(hand):
    trace, emb = hand
    m = best_earlier_matches(trace.prompt_ids, trace.user_codes, emb)
    assert np.isnan(m.best[0]) and m.best_index[0] == -1
    assert m.best_index[1:].tolist() == [0, 1, 0, 2, 3, 4]
    assert np.allclose(
        m.best[1:],
        [math.cos(math.radians(30)), 0.5, 1.0, math.cos(math.radians(10)), 1.0, math.cos(math.radians(100))],
        atol=1e-6,
    )
    other = m.best_other_user
    assert np.isnan(other[0]) and np.isnan(other[1])  # nobody else has asked anything yet
    assert np.allclose(
        other[2:], [0.5, 1.0, math.cos(math.radians(70)), 1.0, math.cos(math.radians(100))], atol=1e-6
    )


def test_reuse_stats_by_hand(hand):
    trace, emb = hand
    r = reuse_stats(trace.prompt_ids, trace.user_codes, trace.arrival_s, emb)
    assert r["share_ge_0.65"] == pytest.approx(4 / 6)
    assert r["cross_user_share"] == pytest.approx(2 / 6)
    assert r["same_user_share"] == pytest.approx(2 / 4) and r["same_session_share"] == pytest.approx(1 / 4)
    assert r["distance_requests"]["p50"] == 2 and r["distance_requests"]["p25"] == pytest.approx(
        np.quantile([1, 2, 2, 3], 0.25)
    )
    assert r["distance_hours"]["p50"] == pytest.approx(np.median([1, 3, 48, 48]) / 60)
    assert r["pool_curve"] == pytest.approx({"1": 1.5 / 7, "3": (3 * 0.75 + 1) / 7})
    assert r["best_similarity"]["share_ge_0.95"] == pytest.approx(3 / 6)
    assert (r["measured_requests"], r["of_requests"]) == (7, 7)
    cut = reuse_stats(trace.prompt_ids, trace.user_codes, trace.arrival_s, emb, max_requests=4)
    assert (cut["measured_requests"], cut["of_requests"]) == (4, 7) and cut["share_ge_0.65"] == pytest.approx(
        2 / 3
    )


def test_sessions_and_returns_by_hand(hand):
    trace, emb = hand
    assert session_ids(trace.user_codes, trace.arrival_s).tolist() == [0, 0, 2, 2, 3, 1, 4]
    s = trace_stats(trace, emb)
    sess = s["sessions"]
    assert sess["count"] == 5 and sess["users_returning_share"] == pytest.approx(2 / 3)
    assert sess["returning_sessions_share"] == pytest.approx(2 / 5)
    assert sorted(sess["return_gap_h"][k] for k in ("p10", "p99")) == pytest.approx(
        sorted(np.quantile([47 / 60, 50 / 60], [0.1, 0.99]))
    )
    assert s["best_earlier_similarity"]["measured_requests"] == 6
    text = format_stats(s)
    assert "best earlier match from ANOTHER user >= 0.65: 33.3% of requests" in text
    assert "that match is the same user's: 50.0%, in the same session: 25.0%" in text


def test_matches_equal_a_brute_force_loop():
    rng = np.random.default_rng(3)
    n_prompts, n = 300, 700  # more than one block of 256 requests
    emb = rng.normal(size=(n_prompts, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = rng.integers(0, n_prompts, n)
    users = rng.integers(-1, 6, n)  # -1: unknown user
    m = best_earlier_matches(ids, users, emb)
    for i in range(1, n):
        sims = [1.0 if ids[j] == ids[i] else float(emb[ids[i]] @ emb[ids[j]]) for j in range(i)]
        best = max(sims)
        latest = max(j for j in range(i) if sims[j] >= best - 1e-6)
        assert m.best[i] == pytest.approx(best, abs=1e-5)
        assert m.best_index[i] == latest or sims[m.best_index[i]] == pytest.approx(best, abs=1e-5)
        others = [s for j, s in enumerate(sims) if users[i] >= 0 and users[j] >= 0 and users[j] != users[i]]
        if others:
            assert m.best_other_user[i] == pytest.approx(max(others), abs=1e-5)
        else:
            assert np.isnan(m.best_other_user[i])


def test_pool_curve_samples_deterministically_and_matches_exact_on_small_traces():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids, users = rng.integers(0, 50, 400), rng.integers(0, 20, 400)
    exact = pool_curve(ids, users, emb, threshold=0.8)
    # m = 1 is the mean share of close candidates: an independent count over every pair.
    close = ((emb[ids] @ emb[ids].T) >= 0.8) | (ids[:, None] == ids[None, :])
    foreign = users[:, None] != users[None, :]
    assert exact["1"] == pytest.approx(np.mean((close & foreign).sum(1) / foreign.sum(1)))
    assert all(exact[a] <= exact[b] for a, b in zip(list(exact)[:-1], list(exact)[1:], strict=True))


def test_figure_data_and_table(hand):
    trace, emb = hand
    d = figure_data(trace, emb)
    assert d["distance_requests"]["x"][0] == 1 and d["distance_requests"]["x"][-1] == 3
    assert d["distance_hours"]["x"][-1] == pytest.approx(48 / 60)
    assert d["pool_curve"] == pytest.approx({"1": 1.5 / 7, "3": (3 * 0.75 + 1) / 7})
    h = d["best_similarity"]
    widths = np.diff(h["edges"])
    assert float(np.sum(np.array(h["density"]) * widths)) == pytest.approx(1.0)
    pairs = pair_similarities(trace.prompt_ids, trace.user_codes, emb, n=50)
    assert len(pairs) == 50 and np.all(pairs <= 1.0 + 1e-6)
    table = comparison_table([trace_stats(trace, emb), {"name": "other", "requests": 10}])
    assert "cross-user share >= 0.65" in table and "0.333" in table
    line = next(x for x in table.splitlines() if x.startswith("requests"))
    assert line.split()[-2:] == ["7", "10"]
