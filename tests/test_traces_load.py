"""load_trace: dispatch on the source, windowing, request limits and time scaling."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from sim.base.config import ArrivalConfig, TraceConfig, from_dict
from sim.base.errors import ConfigError, InputError
from traces.load import load_trace
from traces.schema import Trace, normalise, write_parquet
from traces.sources import SYNTHETIC_DEFAULT_REQUESTS

if TYPE_CHECKING:
    from pathlib import Path


def stored(tmp_path: Path) -> Path:
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2022-08-13 20:00", periods=6, freq="10min", tz="UTC"),
            "prompt": ["a", "b", "a", "c", "d", "b"],
            "user": ["u", "v", "u", "w", "u", "v"],
        }
    )
    return write_parquet(Trace(normalise(df, "x"), name="six"), tmp_path / "six.parquet")


def test_parquet_window_limit_and_time_scale(tmp_path):
    path = str(stored(tmp_path))
    t = load_trace(TraceConfig(source="parquet", path=path, requests=None), seed=1)
    assert len(t) == 6 and t.arrival_s[-1] == 3000.0
    w = load_trace(
        TraceConfig(source="parquet", path=path, requests=2, start="2022-08-13T20:15:00Z", time_scale=5.0),
        seed=1,
    )
    assert w.df["prompt"].tolist() == ["a", "c"]
    assert w.prompt_ids.tolist() == [0, 1]  # renumbered densely inside the window
    assert w.arrival_s.tolist() == [0.0, 120.0]  # 600 s compressed 5x
    naive_end = load_trace(
        TraceConfig(source="parquet", path=path, requests=None, end="2022-08-13 20:30"), seed=1
    )
    assert len(naive_end) == 3  # a time without a zone is UTC; the end is exclusive


def test_time_scale_composes_with_a_stored_scale(tmp_path):
    t = load_trace(
        TraceConfig(source="parquet", path=str(stored(tmp_path)), requests=None, time_scale=2.0), 1
    )
    scaled = write_parquet(t, tmp_path / "scaled.parquet")
    again = load_trace(TraceConfig(source="parquet", path=str(scaled), requests=None, time_scale=3.0), 1)
    assert again.time_scale == 6.0 and again.arrival_s[-1] == 500.0


def test_window_errors(tmp_path):
    path = str(stored(tmp_path))
    with pytest.raises(ConfigError, match=r"trace.start: .*no request in the window.*spans 2022-08-13 20:00"):
        load_trace(TraceConfig(source="parquet", path=path, start="2023-01-01"), 1)
    with pytest.raises(ConfigError, match="trace.start: 'noon' is not valid; expected an ISO 8601 time"):
        load_trace(TraceConfig(source="parquet", path=path, start="noon"), 1)
    with pytest.raises(ConfigError, match="trace.end: .* must be after trace.start"):
        load_trace(TraceConfig(source="parquet", path=path, start="2022-08-14", end="2022-08-13"), 1)
    with pytest.raises(InputError, match="trace file not found"):
        load_trace(TraceConfig(source="parquet", path=str(tmp_path / "none.parquet")), 1)


def test_synthetic_and_prompts_sources(tmp_path):
    cfg = from_dict({"trace": {"source": "synthetic", "requests": 500, "arrival": {"rate": 2.0}}}).trace
    a, b = load_trace(cfg, seed=3), load_trace(cfg, seed=3)
    assert len(a) == 500 and a.df.equals(b.df)
    # trace.requests: null means the whole file for file sources, the default count for synthetic.
    assert len(load_trace(TraceConfig(source="synthetic", requests=None), 1)) == SYNTHETIC_DEFAULT_REQUESTS
    p = tmp_path / "p.txt"
    p.write_text("one\ntwo\nthree\n")
    t = load_trace(
        TraceConfig(
            source="prompts", path=str(p), requests=2, arrival=ArrivalConfig(process="diurnal", rate=0.1)
        ),
        seed=2,
    )
    assert t.df["prompt"].tolist() == ["one", "two"] and np.all(np.diff(t.arrival_s) > 0)


def test_diffusiondb_csv_source(samples):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 1k sample has no empty prompt
        t = load_trace(TraceConfig(source="diffusiondb", path=str(samples / "diffusiondb_2m_first1k.csv"), requests=300, time_scale=2.0), seed=1)
    assert len(t) == 300 and t.time_scale == 2.0
    full = load_trace(TraceConfig(source="diffusiondb", path=str(samples / "diffusiondb_2m_first1k.csv"), requests=None), seed=1)
    assert np.allclose(t.arrival_s, full.arrival_s[:300] / 2)
