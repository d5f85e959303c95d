"""``calibrate.validation``: the comparison of a real run with its simulation, on hand-made records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibrate.validation import compare, queue_replay, service_windows


def _records(arrival, ready, start, gpu, steps) -> pd.DataFrame:
    """Records as the server (real) or the simulator writes them, for requests 0..n-1."""
    arrival, ready, start, gpu = (np.asarray(x, float) for x in (arrival, ready, start, gpu))
    steps = np.asarray(steps)
    finish = np.where(steps > 0, start + gpu, ready)
    n = len(arrival)
    return pd.DataFrame(
        {
            "request": np.arange(n),
            "prompt_id": np.arange(n),
            "arrival_s": arrival,
            "embed_s": np.zeros(n),
            "lookup_s": ready - arrival,
            "fetch_s": np.zeros(n),
            "ready_s": ready,
            "start_s": np.where(steps > 0, start, ready),
            "finish_s": finish,
            "completed_before": np.zeros(n, int),
            "outcome": np.where(steps > 0, "miss", "retrieval"),
            "matched": np.full(n, -1),
            "k_used": np.where(steps > 0, 0, 50),
            "steps": steps,
            "queue_s": np.where(steps > 0, start - ready, 0.0),
            "latency_s": finish - arrival,
            "gpu_s": np.where(steps > 0, gpu, 0.0),
        }
    )


def _one_worker_starts(ready: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Start times of FCFS jobs on one worker (Lindley's recursion)."""
    start = np.empty(len(ready))
    free = 0.0
    for i in range(len(ready)):
        start[i] = max(free, ready[i])
        free = start[i] + service[i]
    return start


def test_the_queue_replay_is_fcfs_over_the_workers_from_the_definition() -> None:
    # One worker: request 1 waits for 0, request 2 is returned whole at the front end, request 3
    # finds the worker idle.
    arrival = [0.0, 0.2, 0.3, 5.0]
    ready = [0.1, 0.3, 0.35, 5.1]
    gpu = [1.0, 0.5, 0.0, 0.4]
    steps = [50, 50, 0, 50]
    real = _records(arrival, ready, [0.1, 1.1, 0.35, 5.1], gpu, steps)
    v, _ = compare(real, real, 0.0)
    # By hand: 0 runs 0.1-1.1; 1 waits, runs 1.1-1.6; 2 done when ready (0.35); 3 runs 5.1-5.5.
    np.testing.assert_allclose(v["replayed_latency_s"], [1.1, 1.4, 0.05, 0.5])
    # Two workers: 1 starts at once on the second.
    np.testing.assert_allclose(queue_replay(v, 2), [1.1, 0.6, 0.05, 0.5])


def test_a_perfect_prediction_has_no_error_and_a_slower_machine_shows_in_the_service_ratio() -> None:
    rng = np.random.default_rng(3)
    n = 60
    arrival = np.cumsum(rng.exponential(0.7, n))
    ready = arrival + 0.02
    gpu = np.full(n, 0.5)
    sim = _records(arrival, ready, _one_worker_starts(ready, gpu), gpu, np.full(n, 50))
    _, same = compare(sim, sim, 0.02)
    assert same["k_agreement"] == 1.0 and same["mean_latency_error"] == 0.0
    assert same["replayed_mean_latency_error"] == pytest.approx(0.0, abs=1e-12)
    # The real machine ran the second half 10% slower than the profile said.
    slow = gpu * np.where(np.arange(n) >= n // 2, 1.1, 1.0)
    real = _records(arrival, ready, _one_worker_starts(ready, slow), slow, np.full(n, 50))
    v, s = compare(real, sim, 0.02)
    assert s["mean_latency_error"] < 0  # the simulator, on the faster profile, predicts less
    assert s["replayed_mean_latency_error"] == pytest.approx(0.0, abs=1e-9)  # the queue itself is right
    windows = service_windows(v)
    assert windows[0] == pytest.approx(1.0) and windows[-1] == pytest.approx(1.1)
    assert s["service_ratio_spread"] == pytest.approx(0.1)
