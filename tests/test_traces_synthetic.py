"""Synthetic generator: determinism, knobs that move the statistics they name, and trace shape."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sim.base.config import ArrivalConfig, SyntheticConfig
from sim.base.errors import ConfigError
from traces.prompts import EPOCH
from traces.schema import COLUMNS
from traces.stats import trace_stats
from traces.synthetic import _session_topics, default_users, generate

ARRIVAL = ArrivalConfig(process="poisson", rate=0.5)


def gen(n: int = 3000, seed: int = 1, arrival: ArrivalConfig = ARRIVAL, **knobs):
    return generate(n, dataclasses.replace(SyntheticConfig(), **knobs), arrival, seed)


def test_deterministic_for_a_seed():
    a, b, c = gen(seed=4), gen(seed=4), gen(seed=5)
    pd.testing.assert_frame_equal(a.df, b.df)
    assert not a.df["prompt"].equals(c.df["prompt"])


def test_trace_shape():
    t = gen(2000)
    df = t.df
    assert len(t) == 2000 and list(df.columns) == list(COLUMNS)
    assert df["timestamp"].is_monotonic_increasing
    assert (df["prompt"].str.strip() != "").all() and df["prompt"].str.endswith(" ").all()
    assert df["user"].notna().all() and set(df["steps"].unique()) <= {50, 150, 100, 75}
    assert t.prompt_ids.max() + 1 == df["prompt"].nunique() == t.n_prompts
    # Arrival rate follows the arrival process (sessions at rate / mean length, requests inside them).
    assert len(t) / t.arrival_s[-1] == pytest.approx(0.5, rel=0.25)


def test_repeat_and_edit_knobs():
    low = trace_stats(gen(repeat_prob=0.02))["repeat_rate"]
    high = trace_stats(gen(repeat_prob=0.3))["repeat_rate"]
    assert low < 0.07 and high == pytest.approx(0.3, abs=0.06)

    # More edits inside sessions -> consecutive prompts of a user share more words.
    def overlap(t):
        df = t.df.sort_values(["user", "timestamp"], kind="stable")
        same = df["user"].to_numpy()[1:] == df["user"].to_numpy()[:-1]
        words = [set(p.split()) for p in df["prompt"]]
        j = [len(a & b) / len(a | b) for a, b, s in zip(words[:-1], words[1:], same, strict=True) if s]
        return np.mean(j)

    assert overlap(gen(edit_prob=0.9)) > overlap(gen(edit_prob=0.1)) + 0.05


def test_users_sessions_and_days():
    assert trace_stats(gen(4000, users=50))["users"] <= 50
    slow = ArrivalConfig(
        rate=0.05
    )  # few overlapping sessions of one user, so measured sessions are drawn ones
    long = trace_stats(gen(4000, arrival=slow, session_mean=10))["sessions"]["mean_length"]
    short = trace_stats(gen(4000, arrival=slow, session_mean=2))["sessions"]["mean_length"]
    assert long > 2 * short and short == pytest.approx(2, abs=0.5)
    t = gen(4000, days=3.0)
    assert t.arrival_s[-1] / 86400 == pytest.approx(3.0, rel=0.15)
    assert default_users(1000) < default_users(2_000_000) == pytest.approx(10_000, rel=0.1)


def test_diurnal_load():
    t = gen(20_000, arrival=ArrivalConfig(process="diurnal", rate=0.1, diurnal_amplitude=0.8))
    since_epoch = (t.df["timestamp"] - EPOCH).dt.total_seconds().to_numpy()
    whole_days = since_epoch < (since_epoch[-1] // 86400) * 86400
    per_hour = np.bincount(t.df["timestamp"].dt.hour.to_numpy()[whole_days], minlength=24)
    assert per_hour.max() / per_hour.min() > 3  # peak (1.8x) over trough (0.2x), blurred by sessions
    assert np.argmax(per_hour) in range(19, 24) or np.argmax(per_hour) in range(0, 2)  # evening UTC peak


def test_topic_popularity_drifts_by_day():
    starts = np.arange(0, 4 * 86400, 2.0)  # 43k sessions a day over four days

    def day_corr(drift: float) -> float:
        topics = _session_topics(starts, 200, 1.1, drift, np.random.default_rng(0))
        day = (starts // 86400).astype(int)
        first, last = (np.bincount(topics[day == d], minlength=200) for d in (0, 3))
        return float(np.corrcoef(first, last)[0, 1])

    assert day_corr(0.0) > 0.99  # same popularity every day (up to sampling)
    assert day_corr(0.3) < 0.8  # 30% of ranks reshuffled per day, three times
    assert day_corr(1.0) < 0.3


@pytest.mark.parametrize(
    ("knob", "value", "field"),
    [
        ("repeat_prob", 1.5, "repeat_prob"),
        ("edit_prob", -0.1, "edit_prob"),
        ("session_mean", 0.5, "session_mean"),
        ("users", 0, "users"),
        ("days", -1.0, "days"),
    ],
)
def test_bad_knobs(knob, value, field):
    with pytest.raises(ConfigError, match=f"trace.synthetic.{field}: "):
        gen(100, **{knob: value})
