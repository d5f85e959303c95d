"""Synthetic generator: determinism, knobs that move the statistics they name, and trace shape.

Similarity-based checks use the hashing embedder (word overlap, instant); the fit to the real
sample under MiniLM is test_traces_synthetic_vs_real.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sim.app.run import trace_key
from sim.app.sweep import run_name
from sim.base import config
from sim.base.config import ArrivalConfig, SyntheticConfig
from sim.base.errors import ConfigError
from traces import synthetic
from traces.embeddings import get_embedder
from traces.prompts import EPOCH
from traces.reuse import reuse_stats
from traces.schema import COLUMNS
from traces.stats import trace_stats
from traces.synthetic import generate, topic_clusters

ARRIVAL = ArrivalConfig(process="poisson", rate=0.5)
SLOW = ArrivalConfig(process="poisson", rate=0.04)  # the real sample's rate: users come back inside it


def gen(n: int = 3000, seed: int = 1, arrival: ArrivalConfig = ARRIVAL, **knobs):
    return generate(n, dataclasses.replace(SyntheticConfig(), **knobs), arrival, seed)


def reuse(trace, n: int | None = None) -> dict:
    n = n or len(trace)
    emb = get_embedder("hashing").encode(trace.prompts)
    return reuse_stats(trace.prompt_ids[:n], trace.user_codes[:n], trace.arrival_s[:n], emb)


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
    # Users keep their settings across their requests.
    assert (df.groupby("user")["steps"].nunique() == 1).all()


def test_repeat_and_edit_knobs():
    low = trace_stats(gen(repeat_prob=0.02))["repeat_rate"]
    high = trace_stats(gen(repeat_prob=0.3))["repeat_rate"]
    # Edits that undo an edit and shared clusters add a few coincidental repeats to the knob's.
    assert low < 0.07 and high == pytest.approx(0.32, abs=0.06)

    # More edits inside sessions -> consecutive prompts of a user share more words.
    def overlap(t):
        df = t.df.sort_values(["user", "timestamp"], kind="stable")
        same = df["user"].to_numpy()[1:] == df["user"].to_numpy()[:-1]
        words = [set(p.split()) for p in df["prompt"]]
        j = [len(a & b) / len(a | b) for a, b, s in zip(words[:-1], words[1:], same, strict=True) if s]
        return np.mean(j)

    assert (
        overlap(gen(edit_prob=0.9, new_idea_prob=0.0)) > overlap(gen(edit_prob=0.1, new_idea_prob=0.0)) + 0.05
    )
    # New ideas inside a session lower the share of requests with a close earlier prompt.
    assert (
        reuse(gen(new_idea_prob=0.6))["share_ge_0.65"] < reuse(gen(new_idea_prob=0.0))["share_ge_0.65"] - 0.1
    )


def test_users_sessions_and_days():
    assert trace_stats(gen(4000, users=50))["users"] <= 50
    long = trace_stats(gen(4000, arrival=SLOW, session_mean=10))["sessions"]["mean_length"]
    short = trace_stats(gen(4000, arrival=SLOW, session_mean=2))["sessions"]["mean_length"]
    assert long > 2 * short and short == pytest.approx(2, abs=0.5)
    t = gen(4000, days=3.0)
    assert t.arrival_s[-1] / 86400 == pytest.approx(3.0, rel=0.15)


def test_users_come_back_and_resume_their_prompts():
    never = trace_stats(gen(3000, arrival=SLOW, return_prob=0.0))["sessions"]
    loyal = trace_stats(gen(3000, arrival=SLOW, return_prob=0.9, return_gap_h=2.0))["sessions"]
    assert never["users_returning_share"] == 0.0 and never["returning_sessions_share"] == 0.0
    assert loyal["returning_sessions_share"] > 0.5
    # Later return pauses: fewer returns inside the same 3k requests (~20 hours).
    later = trace_stats(gen(3000, arrival=SLOW, return_prob=0.9, return_gap_h=48.0))["sessions"]
    assert later["returning_sessions_share"] < loyal["returning_sessions_share"] - 0.2

    # Resuming: the best match is often the same user's prompt from an earlier session.
    def other_session(resume: float) -> float:
        r = reuse(gen(3000, arrival=SLOW, return_prob=0.9, return_gap_h=2.0, resume_prob=resume))
        return r["same_user_share"] - r["same_session_share"]

    assert other_session(0.0) < 0.02 and other_session(1.0) > 0.08


def test_shared_clusters_make_strangers_write_alike_more_as_the_pool_grows():
    private = reuse(gen(4000, shared_prob=0.0))
    shared_trace = gen(4000, shared_prob=0.8, topics=500)
    shared = reuse(shared_trace)
    # Word overlap across users comes from shared clusters only.
    assert private["cross_user_share"] < 0.03 and shared["cross_user_share"] > 0.1
    assert shared["pool_curve"]["100"] > 5 * max(private["pool_curve"]["100"], 0.001)
    # Cross-user reuse grows with the trace: the later part finds more clusters already used.
    assert reuse(shared_trace, 1000)["cross_user_share"] < shared["cross_user_share"] - 0.05


def test_diurnal_load():
    t = gen(20_000, arrival=ArrivalConfig(process="diurnal", rate=0.1, diurnal_amplitude=0.8))
    since_epoch = (t.df["timestamp"] - EPOCH).dt.total_seconds().to_numpy()
    whole_days = since_epoch < (since_epoch[-1] // 86400) * 86400
    per_hour = np.bincount(t.df["timestamp"].dt.hour.to_numpy()[whole_days], minlength=24)
    assert per_hour.max() / per_hour.min() > 3  # peak (1.8x) over trough (0.2x), blurred by sessions
    assert np.argmax(per_hour) in range(19, 24) or np.argmax(per_hour) in range(0, 2)  # evening UTC peak


def test_topic_popularity_persists_and_drifts_by_day():
    times = np.arange(0, 4 * 86400, 2.0)  # 43k draws a day over four days

    def day_corr(drift: float) -> float:
        topics = topic_clusters(times, 200, 1.0, drift, np.random.default_rng(0))
        day = (times // 86400).astype(int)
        first, last = (np.bincount(topics[day == d], minlength=200) for d in (0, 3))
        return float(np.corrcoef(first, last)[0, 1])

    still, slow, fast = day_corr(0.0), day_corr(0.1), day_corr(1.0)
    assert still > 0.99  # same popularity every day (up to sampling)
    assert 0.5 < slow < 0.98 and fast < slow - 0.2  # persists, but drifts
    assert fast > 0.1  # the heavy-tailed base still ranks the clusters
    counts = np.sort(
        np.bincount(topic_clusters(times[:43200], 200, 1.0, 0.3, np.random.default_rng(1)), minlength=200)
    )
    assert counts[-20:].sum() / counts.sum() > 0.45  # heavy tail: the top 10% take about half


def test_cached_traces_and_sweep_runs_carry_the_generator_version(monkeypatch):
    exp = config.from_dict({"trace": {"source": "synthetic", "requests": 100}})
    key, run = trace_key(exp), run_name({}, exp)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    # A newer generator makes another trace: neither its cached trace nor a finished sweep or
    # plan run of the old one may be reused for it.
    assert trace_key(exp) != key and run_name({}, exp) != run
    parquet = config.from_dict({"trace": {"source": "parquet", "path": "x.parquet"}})
    before, run = trace_key(parquet), run_name({}, parquet)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    assert trace_key(parquet) == before and run_name({}, parquet) == run  # read traces do not depend on it


@pytest.mark.parametrize(
    ("knob", "value", "field"),
    [
        ("repeat_prob", 1.5, "repeat_prob"),
        ("edit_prob", -0.1, "edit_prob"),
        ("shared_prob", 2.0, "shared_prob"),
        ("return_prob", 1.0, "return_prob"),
        ("return_gap_h", 0.0, "return_gap_h"),
        ("session_mean", 0.5, "session_mean"),
        ("users", 0, "users"),
        ("topics", 0, "topics"),
        ("days", -1.0, "days"),
    ],
)
def test_bad_knobs(knob, value, field):
    with pytest.raises(ConfigError, match=f"trace.synthetic.{field}: "):
        gen(100, **{knob: value})
