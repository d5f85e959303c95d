"""The engine against queueing theory: M/D/1, M/D/c, M/M/c and Little's law.

No cache (a vanilla system), Poisson arrivals, FCFS, one job per GPU. Deterministic
service: every request runs 50 steps of D/50 s. Exponential service: steps drawn from a
geometric distribution with mean 1000 (squared coefficient of variation 0.999, so the
M/M/c formulas apply to within 0.1%).

Reference values:
* M/D/1: Pollaczek-Khinchine, Wq = rho D / (2 (1 - rho)).
* M/D/c: numerically exact. With deterministic service D, the number in system N obeys
  N(t + D) = max(N(t) - c, 0) + A, A ~ Poisson(lambda D) (everyone in service at t has left
  by t + D; everyone waiting at t or arriving later is still there), so the stationary law
  of that chain is the time-stationary law of N; Lq follows, and Wq = Lq / lambda (Little).
  It is checked against Pollaczek-Khinchine (c = 1) and Cosmetatos' approximation.
* M/M/c: Erlang C, Wq = C(c, a) / (c mu - lambda).

Estimator: a plain mean of 100,000 simulated waits at rho = 0.9 has a standard error of
about 3.5% (the queue's slow fluctuations), so each run also drives a *twin* queue with a
known mean over the same arrival times, by the textbook recursion: c servers of speed 1
are paired with one server of speed c (M/D/1 or M/M/1, same service draws scaled), and
M/D/1 is paired with M/D/2 at the same load. The control-variate estimate
``engine mean - twin mean + twin's exact mean`` is unbiased and, measured over independent
seeds, has a standard error of 0.1-0.2%, so the band below is 1% (tighter than the 3% asked
for). The sample-path test checks the engine against the FCFS recursion request by request.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from scipy.stats import poisson
from support import Vanilla, assert_littles_law, service_only_profile

from sim.base.config import from_dict
from sim.engine import simulate


def pk_wq(lam: float, d: float) -> float:
    rho = lam * d
    return rho * d / (2 * (1 - rho))


def mdc_wq(lam: float, d: float, c: int) -> float:
    """Exact mean wait in queue of M/D/c (stationary law of the chain above, truncated far in the tail)."""
    a = lam * d
    m = int(a + 40 * math.sqrt(a) + 20 * c + 200)
    pk = poisson.pmf(np.arange(m + 1), a)
    p = np.zeros((m + 1, m + 1))
    for j in range(m + 1):
        base = max(j - c, 0)
        p[j, base:] = pk[: m + 1 - base]
        p[j, m] += 1.0 - p[j].sum()  # the truncated tail stays in the last state
    lhs = p.T - np.eye(m + 1)
    lhs[-1, :] = 1.0
    rhs = np.zeros(m + 1)
    rhs[-1] = 1.0
    pi = np.linalg.solve(lhs, rhs)
    lq = float(np.dot(np.maximum(np.arange(m + 1) - c, 0), pi))
    return lq / lam


def erlang_c(c: int, a: float) -> float:
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) / (1 - a / c)
    return tail / (head + tail)


def mmc_wq(lam: float, mu: float, c: int) -> float:
    return erlang_c(c, lam / mu) / (c * mu - lam)


def cosmetatos_wq(lam: float, d: float, c: int) -> float:
    rho = lam * d / c
    corr = 1 + (1 - rho) * (c - 1) * (math.sqrt(4 + 5 * c) - 2) / (16 * rho * c)
    return 0.5 * mmc_wq(lam, 1 / d, c) * corr


def kiefer_wolfowitz_starts(arrival: np.ndarray, service: np.ndarray, c: int) -> np.ndarray:
    """Service start times of FCFS with c identical servers, by the textbook recursion."""
    free = [0.0] * c
    out = np.empty(len(arrival))
    for k, (a, s) in enumerate(zip(arrival.tolist(), service.tolist(), strict=True)):
        f = heapq.heappop(free)
        st = a if a > f else f
        out[k] = st
        heapq.heappush(free, st + s)
    return out


def run_queue(lam: float, c: int, n: int, seed: int, *, d: float = 1.0, exponential: bool = False):
    """Poisson(lam) arrivals to c GPUs; deterministic service d, or exponential with mean d."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / lam, n))
    if exponential:
        steps = rng.geometric(1e-3, n)
        profile = service_only_profile(d, steps=1000)
        system = Vanilla(steps)
    else:
        steps = np.full(n, 50)
        profile = service_only_profile(d, steps=50)
        system = Vanilla(50)
    exp = from_dict({"cluster": {"gpus": c}, "systems": ["vanilla"]})
    records, series = simulate(
        system, arrival, np.arange(n), np.zeros(n, dtype=np.int32), exp, profile, seed=seed
    )
    assert_littles_law(records)
    return records, series, steps * profile.step_s(1)


def test_reference_formulas_agree_with_each_other():
    for rho in (0.5, 0.7, 0.9):
        assert mdc_wq(rho, 1.0, 1) == pytest.approx(pk_wq(rho, 1.0), rel=1e-9)
        assert mmc_wq(rho, 1.0, 1) == pytest.approx(rho / (1 - rho), rel=1e-12)
        for c in (2, 4):
            assert mdc_wq(rho * c, 1.0, c) == pytest.approx(cosmetatos_wq(rho * c, 1.0, c), rel=0.01)
    # M/D/c waits less than M/M/c, and about half of it at high load.
    assert 0.45 < mdc_wq(3.6, 1.0, 4) / mmc_wq(3.6, 1.0, 4) < 0.55


def test_engine_equals_the_fcfs_recursion_request_by_request():
    n, c = 20000, 3
    records, _, service = run_queue(0.85 * c, c, n, seed=5, exponential=True)
    arrival = records["arrival_s"].to_numpy()
    expect = kiefer_wolfowitz_starts(arrival, service, c)
    np.testing.assert_allclose(records["start_s"].to_numpy(), expect, rtol=0, atol=1e-6)
    np.testing.assert_allclose(records["finish_s"].to_numpy(), expect + service, rtol=0, atol=1e-6)
    assert records["gpu_s"].to_numpy() == pytest.approx(service)


def control_variate_wait(records, service: np.ndarray, c: int, twin_c: int, twin_exact: float) -> float:
    """Engine mean wait corrected by a twin queue on the same arrivals (see the module docstring)."""
    arrival = records["arrival_s"].to_numpy()
    twin_service = service * twin_c / c  # same load: twin_c servers at c/twin_c times the speed
    twin = kiefer_wolfowitz_starts(arrival, twin_service, twin_c) - arrival
    return float(records["queue_s"].mean() - twin.mean() + twin_exact)


N = 100_000


@pytest.mark.parametrize("rho", [0.5, 0.7, 0.9])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho):
    records, series, service = run_queue(rho, 1, N, seed=1)
    est = control_variate_wait(records, service, 1, 2, mdc_wq(rho, 2.0, 2))
    assert est == pytest.approx(pk_wq(rho, 1.0), rel=0.01)
    # Utilisation is the offered load.
    eng = records.attrs["engine"]
    assert eng["gpu_busy_s"] / eng["horizon_s"] == pytest.approx(rho, rel=0.02)
    # The per-minute series integrates to the same queue (Little's law per bin).
    assert (series["queue_len"] * 60).sum() == pytest.approx(records["queue_s"].sum(), rel=1e-6)


@pytest.mark.parametrize(("c", "rho"), [(4, 0.6), (4, 0.9), (2, 0.8)])
def test_mdc_mean_wait_matches_exact_value(c, rho):
    records, _, service = run_queue(rho * c, c, N, seed=2)
    est = control_variate_wait(records, service, c, 1, pk_wq(rho * c, 1.0 / c))
    assert est == pytest.approx(mdc_wq(rho * c, 1.0, c), rel=0.01)


@pytest.mark.parametrize(("c", "rho"), [(2, 0.8), (4, 0.9)])
def test_mmc_mean_wait_matches_erlang_c(c, rho):
    records, _, service = run_queue(rho * c, c, N, seed=3, exponential=True)
    est = control_variate_wait(records, service, c, 1, mmc_wq(rho * c, float(c), 1))
    assert est == pytest.approx(mmc_wq(rho * c, 1.0, c), rel=0.01)
