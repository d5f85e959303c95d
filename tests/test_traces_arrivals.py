"""Arrival processes (mean rates checked statistically) and plain prompt lists."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest

from sim.base.config import ArrivalConfig
from sim.base.errors import InputError
from traces.arrivals import arrival_times, diurnal_rate, read_rate_series
from traces.prompts import prompts_trace, read_prompts

if TYPE_CHECKING:
    from pathlib import Path

N = 40_000


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_poisson_rate_and_exponential_gaps():
    t = arrival_times(N, ArrivalConfig(process="poisson", rate=2.0), rng())
    assert np.all(np.diff(t) >= 0)
    # N arrivals of a rate-2 process take Gamma(N, 2) time: sd of the mean gap is 0.5/sqrt(N) = 0.25%.
    assert N / t[-1] == pytest.approx(2.0, rel=4 * 0.5 / math.sqrt(N) / 0.5)
    gaps = np.diff(t)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.03)  # exponential: CV = 1


def test_diurnal_mean_rate_and_daily_shape():
    cfg = ArrivalConfig(process="diurnal", rate=0.5, diurnal_amplitude=0.6)
    t = arrival_times(4 * 43_200, cfg, rng(1))  # about four days
    days = t[-1] / 86400
    whole = t < math.floor(days) * 86400
    # Over whole days the mean rate is `rate`; the count's sd is ~sqrt(n) (0.3%), so 2% is > 5 sd.
    assert whole.sum() / (math.floor(days) * 86400) == pytest.approx(0.5, rel=0.02)
    hours = (t[whole] % 86400) // 3600
    per_hour = np.bincount(hours.astype(int), minlength=24) / math.floor(days) / 3600
    expected = diurnal_rate(np.arange(24) * 3600 + 1800, 0.5, 0.6)
    assert np.allclose(per_hour, expected, rtol=0.12)  # about 7k arrivals per bin: sd 1.2-2%
    assert per_hour.max() / per_hour.min() > 3  # (1 + 0.6) / (1 - 0.6) = 4 between peak and trough


def test_bursty_mean_rate_and_overdispersion():
    cfg = ArrivalConfig(process="bursty", rate=1.0, burst_factor=8, burst_on_s=60, burst_off_s=600)
    t = arrival_times(N * 2, cfg, rng(2))
    # The rate is modulated by on/off periods of ~11 min on average: ~240 cycles here, so the mean
    # rate has a few percent of relative error; 10% is a > 3 sd bound.
    assert len(t) / t[-1] == pytest.approx(1.0, rel=0.10)
    counts = np.bincount((t // 60).astype(int))
    assert counts.var() / counts.mean() > 5  # Poisson would give 1


def test_rate_series(tmp_path):
    path = tmp_path / "rate.csv"
    path.write_text("minute,rate\n0,1.0\n1,0\n3,3.0\n")  # minute 2 is missing: rate 0
    dense = read_rate_series(path)
    assert dense.tolist() == [1.0, 0.0, 0.0, 3.0]
    t = arrival_times(N, ArrivalConfig(process="rate", rate_path=str(path)), rng(3))
    minute = (t // 60).astype(int) % 4  # the series repeats
    share = np.bincount(minute, minlength=4) / N
    assert share[1] == share[2] == 0
    assert share[3] == pytest.approx(0.75, abs=0.01) and share[0] == pytest.approx(0.25, abs=0.01)
    assert N / t[-1] == pytest.approx(dense.mean(), rel=0.02)
    # rate_factor scales every rate (used for synthetic session starts).
    t2 = arrival_times(N, ArrivalConfig(process="rate", rate_path=str(path)), rng(3), rate_factor=2.0)
    assert N / t2[-1] == pytest.approx(2 * dense.mean(), rel=0.02)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("minute,speed\n0,1\n", "column 'rate': missing column 'rate'"),
        ("minute,rate\n0,1\n1,-2\n", r"row 2, column 'rate': '-2' is not a number"),
        ("minute,rate\n0,1\n1.5,2\n", r"row 2, column 'minute': .*is not an integer"),
        ("minute,rate\n0,1\n0,2\n", r"row 2, column 'minute': minute 0 appears twice"),
        ("minute,rate\n0,0\n", "every rate is 0"),
    ],
)
def test_rate_series_errors(tmp_path, text, match):
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_rate_series(path)


def test_rate_series_missing_file(tmp_path):
    with pytest.raises(InputError, match="rate series file not found"):
        read_rate_series(tmp_path / "none.csv")


def test_seeded():
    cfg = ArrivalConfig(process="bursty")
    assert np.array_equal(arrival_times(500, cfg, rng(5)), arrival_times(500, cfg, rng(5)))
    assert not np.array_equal(arrival_times(500, cfg, rng(5)), arrival_times(500, cfg, rng(6)))


def write(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "prompts.txt"
    p.write_bytes(data)
    return p


def test_prompt_list_trace(tmp_path):
    path = write(tmp_path, b"a cat \nan owl\r\na cat \n\ndragon\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = prompts_trace(path, ArrivalConfig(rate=2.0), seed=3)
        again = prompts_trace(path, ArrivalConfig(rate=2.0), seed=3)
        limited = prompts_trace(path, ArrivalConfig(), seed=3, requests=2)
    assert t.df["prompt"].tolist() == ["a cat ", "an owl", "a cat ", "dragon"]
    assert t.prompt_ids.tolist() == [0, 1, 0, 2]
    assert t.df["user"].isna().all() and t.user_codes.tolist() == [-1] * 4
    assert any("dropped 1 request(s) with an empty prompt (lines 4)" in str(w.message) for w in caught)
    assert np.array_equal(again.arrival_s, t.arrival_s)
    assert len(limited) == 2


def test_prompt_list_errors(tmp_path):
    with pytest.raises(InputError, match="prompt list not found"):
        read_prompts(tmp_path / "none.txt")
    with pytest.raises(InputError, match=r"prompts.txt, line 3: not UTF-8"):
        read_prompts(write(tmp_path, b"one\ntwo\nthr\xe9e\n"))
    with pytest.raises(InputError, match="has no prompts"):
        read_prompts(write(tmp_path, b"\n  \n"))


def test_real_prompt_list(samples):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its line 3972 is an empty prompt (real DiffusionDB data)
        prompts = read_prompts(samples / "diffusiondb_2m_first5k_prompts.txt")
    assert len(prompts) == 4999 and len(set(prompts)) == 4344
