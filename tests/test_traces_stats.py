"""trace_stats on hand-made traces whose answers are known, and its text rendering (the reuse
statistics have their own hand-made trace in test_traces_reuse.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traces.schema import Trace, normalise
from traces.stats import format_stats, trace_stats


def make(times_min, prompts, users) -> Trace:
    df = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2022-08-13 20:00", tz="UTC") + pd.to_timedelta(times_min, unit="min"),
            "prompt": prompts,
            "user": users,
        }
    )
    return Trace(normalise(df, "x"), name="hand")


def test_counts_sessions_and_lengths():
    # u: requests at 0, 10, 50 (gap 40 min -> new session), 55; v: 5, 7; w: 120
    t = make(
        [0, 5, 7, 10, 50, 55, 120],
        ["a b", "c", "c", "a b", "d e f", "g", "h i j k"],
        ["u", "v", "v", "u", "u", "u", "w"],
    )
    s = trace_stats(t)
    assert (s["requests"], s["unique_prompts"], s["users"]) == (7, 5, 3)
    assert s["repeat_rate"] == pytest.approx(2 / 7)
    assert s["repeat_same_user_share"] == 1.0
    assert s["duration_s"] == 7200 and s["mean_rate_rps"] == pytest.approx(6 / 7200)
    assert s["requests_per_hour"] == [6, 0, 1]
    sess = s["sessions"]
    assert sess["count"] == 4 and sess["mean_length"] == pytest.approx(7 / 4)
    assert sess["single_request_share"] == pytest.approx(1 / 4)
    assert sorted([600.0, 120.0, 300.0])[1] == sess["gap_s"]["p50"]
    assert sess["users_with_one_session_share"] == pytest.approx(2 / 3)
    assert s["prompt_words"]["p50"] == 2


def test_cross_user_repeat_share():
    t = make([0, 1, 2, 3], ["a", "a", "b", "a"], ["u", "v", "v", "u"])
    assert trace_stats(t)["repeat_same_user_share"] == pytest.approx(1 / 2)


def test_similarity_stats_and_text():
    t = make([0, 1, 2, 3], ["a", "b", "a", "c"], ["u", "u", "u", None])
    emb = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    s = trace_stats(t, emb)
    b = s["best_earlier_similarity"]
    assert b["measured_requests"] == 3 and b["share_ge_0.95"] == pytest.approx(1 / 3)
    assert b["mean"] == pytest.approx((0.8 + 1.0 + 0.6) / 3)
    text = format_stats(s)
    assert "4 requests, 3 unique prompts (repeat rate 25.0%), 1 users" in text
    assert "best similarity to an earlier request (3 requests)" in text and "0.95: 33.3%" in text
