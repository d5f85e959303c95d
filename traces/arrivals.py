"""Arrival processes for requests that come without timestamps (prompt lists, synthetic sessions).

:func:`arrival_times` draws ``n`` sorted arrival times (float64 seconds from the process start)
from a :class:`sim.base.config.ArrivalConfig`, seeded by a numpy Generator:

- ``poisson``: exponential gaps at ``rate``.
- ``diurnal``: a sinusoidal daily rate ``rate * (1 + A sin(...))`` peaking at :data:`PEAK_HOUR_UTC`,
  drawn by thinning a Poisson process at the peak rate; the daily mean rate is ``rate``.
- ``bursty``: a two-state Markov-modulated Poisson process (exponential off and on periods of
  mean ``burst_off_s`` and ``burst_on_s``; the on rate is ``burst_factor`` times the off rate),
  scaled so that the long-run mean rate is ``rate``.
- ``rate``: a per-minute rate series from a CSV with columns ``minute,rate`` (requests/s,
  piecewise constant, minutes not listed have rate 0); the series repeats if it is too short.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim.base.config import MAX_TRACE_YEARS, YEAR_S
from sim.base.errors import ConfigError, InputError, unknown_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from sim.base.config import ArrivalConfig

DAY_S = 86400.0
# The synthetic clock starts at midnight UTC; the Stable Diffusion Discord was busiest in the
# (US) evening, which is around 20:00-02:00 UTC in the real DiffusionDB sample.
PEAK_HOUR_UTC = 22.0


@dataclasses.dataclass(frozen=True)
class ArrivalProcess:
    """One arrival process of :data:`ARRIVALS` (the config's ``trace.arrival.process``)."""

    name: str
    help: str  # one line for --help and the docs
    # (n, cfg, rng, rate multiplier, time of day at the start in s) -> n sorted times in s
    draw: Callable[[int, ArrivalConfig, np.random.Generator, float, float], np.ndarray]
    mean_rate: Callable[[ArrivalConfig], float] = lambda cfg: cfg.rate  # long-run requests/s
    needs_rate_path: bool = False  # reads the per-minute series at trace.arrival.rate_path


def _poisson(n: int, cfg: ArrivalConfig, rng: np.random.Generator, factor: float, t0_s: float) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / (cfg.rate * factor), n))


def _diurnal_times(
    n: int, cfg: ArrivalConfig, rng: np.random.Generator, factor: float, t0_s: float
) -> np.ndarray:
    return _diurnal(n, cfg.rate * factor, cfg.diurnal_amplitude, rng, t0_s)


def _bursty_times(
    n: int, cfg: ArrivalConfig, rng: np.random.Generator, factor: float, t0_s: float
) -> np.ndarray:
    return _bursty(n, dataclasses.replace(cfg, rate=cfg.rate * factor), rng)


def _series_times(
    n: int, cfg: ArrivalConfig, rng: np.random.Generator, factor: float, t0_s: float
) -> np.ndarray:
    return _from_rate_series(n, read_rate_series(cfg.rate_path) * factor, rng)


ARRIVALS: dict[str, ArrivalProcess] = {
    p.name: p
    for p in (
        ArrivalProcess("poisson", "exponential gaps at trace.arrival.rate", _poisson),
        ArrivalProcess(
            "diurnal",
            "a daily cycle around the mean rate, peak-to-mean swing diurnal_amplitude",
            _diurnal_times,
        ),
        ArrivalProcess("bursty", "on/off bursts (burst_factor x the rate for ~burst_on_s)", _bursty_times),
        ArrivalProcess(
            "rate",
            "a per-minute rate series read from rate_path (CSV minute,rate)",
            _series_times,
            mean_rate=lambda cfg: float(read_rate_series(cfg.rate_path).mean()),
            needs_rate_path=True,
        ),
    )
}


def get_arrival(cfg: ArrivalConfig) -> ArrivalProcess:
    """The process ``cfg.process`` names (ConfigError naming ``trace.arrival.process`` otherwise)."""
    try:
        return ARRIVALS[cfg.process]
    except KeyError:
        raise unknown_name("trace.arrival.process", cfg.process, ARRIVALS) from None


def arrival_times(
    n: int, cfg: ArrivalConfig, rng: np.random.Generator, *, rate_factor: float = 1.0, t0_s: float = 0.0
) -> np.ndarray:
    """``n`` sorted arrival times in seconds from the process start.

    ``rate_factor`` multiplies every rate (the synthetic generator draws session starts at the
    request rate divided by the mean session length). ``t0_s`` is the time of day (s after
    midnight UTC) at which the process starts; it only matters for the diurnal phase.
    """
    if n <= 0:
        return np.zeros(0)
    return get_arrival(cfg).draw(n, cfg, rng, rate_factor, t0_s)


def check_span(t: np.ndarray, cfg: ArrivalConfig) -> None:
    """Generated arrival times must fit on the timestamp clock (:data:`MAX_TRACE_YEARS` from 2022)."""
    if len(t) and t[-1] > MAX_TRACE_YEARS * YEAR_S:
        field, value = ("trace.arrival.rate_path", cfg.rate_path) if get_arrival(cfg).needs_rate_path else ("trace.arrival.rate", cfg.rate)
        raise ConfigError(
            field,
            value,
            f"{len(t):,} arrivals span {t[-1] / YEAR_S:,.0f} years; generated arrivals must fit in "
            f"{MAX_TRACE_YEARS:.0f} years (raise the rate or lower trace.requests)",
        )


def diurnal_rate(t_s: np.ndarray, rate: float, amplitude: float, t0_s: float = 0.0) -> np.ndarray:
    """Instantaneous rate of the diurnal process at times ``t_s``."""
    hours = ((t_s + t0_s) / 3600.0 - PEAK_HOUR_UTC) / 24.0
    return rate * (1.0 + amplitude * np.cos(2 * np.pi * hours))


def _diurnal(n: int, rate: float, amp: float, rng: np.random.Generator, t0_s: float) -> np.ndarray:
    peak = rate * (1.0 + amp)
    out: list[np.ndarray] = []
    got, t = 0, 0.0
    while got < n:
        # Draw a chunk of candidates; the acceptance rate is 1 / (1 + amp) on average.
        m = int((n - got) * (1.0 + amp) * 1.1) + 64
        cand = t + np.cumsum(rng.exponential(1.0 / peak, m))
        keep = cand[rng.random(m) * peak < diurnal_rate(cand, rate, amp, t0_s)]
        out.append(keep)
        got += len(keep)
        t = cand[-1]
    return np.concatenate(out)[:n]


def _bursty(n: int, cfg: ArrivalConfig, rng: np.random.Generator) -> np.ndarray:
    p_on = cfg.burst_on_s / (cfg.burst_on_s + cfg.burst_off_s)
    r_off = cfg.rate / (1.0 - p_on + cfg.burst_factor * p_on)
    rates = (r_off, r_off * cfg.burst_factor)
    means = (cfg.burst_off_s, cfg.burst_on_s)
    out: list[np.ndarray] = []
    got, t, state = 0, 0.0, 0
    while got < n:
        # A chunk of alternating off/on periods, each with a Poisson count placed uniformly.
        k = max(16, int((n - got) / (cfg.rate * (cfg.burst_on_s + cfg.burst_off_s)) * 2) + 2)
        states = (state + np.arange(k)) % 2
        dur = rng.exponential(np.take(means, states))
        starts = t + np.concatenate(([0.0], np.cumsum(dur)[:-1]))
        counts = rng.poisson(np.take(rates, states) * dur)
        times = np.repeat(starts, counts) + rng.random(counts.sum()) * np.repeat(dur, counts)
        # Sort within each period only: periods are already in order.
        order = np.lexsort((times, np.repeat(np.arange(k), counts)))
        out.append(times[order])
        got += len(times)
        t = starts[-1] + dur[-1]
        state = (state + k) % 2
    return np.concatenate(out)[:n]


def read_rate_series(path: str | Path | None) -> np.ndarray:
    """Read a ``minute,rate`` CSV into a dense per-minute array of requests/s."""
    import pandas as pd  # only this process reads a file

    p = Path(str(path))
    if path is None or not p.is_file():
        raise InputError(p, "rate series file not found")
    try:
        df = pd.read_csv(p, encoding="utf-8", dtype=str, keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise InputError(p, f"not UTF-8 text (byte {exc.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(p, f"not a readable CSV ({exc})") from None
    for col in ("minute", "rate"):
        if col not in df.columns:
            raise InputError(p, f"missing column {col!r}; expected a header line `minute,rate`", column=col)
    if len(df) == 0:
        raise InputError(p, "the rate series has no rows")
    minute = pd.to_numeric(df["minute"], errors="coerce").to_numpy(dtype=np.float64)
    rate = pd.to_numeric(df["rate"], errors="coerce").to_numpy(dtype=np.float64)
    for name, ok in (
        ("minute", np.isfinite(minute) & (minute >= 0) & (minute == np.round(minute))),
        ("rate", np.isfinite(rate) & (rate >= 0)),
    ):
        bad = np.flatnonzero(~ok)
        if len(bad):
            i = int(bad[0])
            what = "an integer >= 0" if name == "minute" else "a number of requests/s >= 0"
            raise InputError(p, f"{df[name].iloc[i]!r} is not {what}", row=i + 1, column=name)
    idx = minute.astype(np.int64)
    _, first = np.unique(idx, return_index=True)
    if len(first) < len(idx):
        dup = int(np.setdiff1d(np.arange(len(idx)), first)[0])
        raise InputError(p, f"minute {idx[dup]} appears twice", row=dup + 1, column="minute")
    if rate.sum() <= 0:
        raise InputError(p, "every rate is 0: no request would ever arrive", column="rate")
    dense = np.zeros(int(idx.max()) + 1)
    dense[idx] = rate
    return dense


def rate_series(times_s: np.ndarray) -> np.ndarray:
    """Requests/s per minute of ``times_s`` (seconds, any order), minute 0 at the first request:
    the series :func:`read_rate_series` reads back (``acsim trace rate``)."""
    t = np.asarray(times_s, dtype=np.float64)
    if not len(t):
        raise ValueError("no timestamps to count")
    minute = np.floor((t - t.min()) / 60.0).astype(np.int64)
    return np.bincount(minute) / 60.0


def _from_rate_series(n: int, per_minute: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Time-change a unit Poisson process through the cumulative intensity of the series."""
    unit = np.cumsum(rng.exponential(1.0, n))
    per_cycle = per_minute.sum() * 60.0
    cycles = np.floor(unit / per_cycle)
    rest = unit - cycles * per_cycle
    cum = np.concatenate(([0.0], np.cumsum(per_minute * 60.0)))
    # The first minute whose cumulative intensity reaches `rest`; zero-rate minutes are skipped.
    m = np.searchsorted(cum, rest, side="left") - 1
    m = np.clip(m, 0, len(per_minute) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(per_minute[m] > 0, (rest - cum[m]) / (per_minute[m] * 60.0), 0.0)
    return cycles * len(per_minute) * 60.0 + (m + np.clip(frac, 0.0, 1.0)) * 60.0


def mean_rate(cfg: ArrivalConfig) -> float:
    """Long-run mean arrival rate (requests/s) of the process."""
    return get_arrival(cfg).mean_rate(cfg)
