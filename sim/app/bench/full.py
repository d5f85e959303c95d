"""Stage ``full``: the full SimPy replay's rate, beside a bare SimPy M/M/1 queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import simpy

from sim.app.bench.figures import Figure, peak_rss_mb
from sim.app.bench.inputs import experiment, load_prefix
from sim.base.profile import load_profile
from sim.engine import simulate
from sim.systems import build_system

if TYPE_CHECKING:
    from pathlib import Path


def stage_full(src: Path, requests: int) -> list[Figure]:
    """Full SimPy replay of nirvana on a prefix, against a bare SimPy M/M/1 queue."""
    inp = load_prefix(src, requests)
    profile = load_profile("sdxl-a10g")
    exp = experiment(requests, mode="full")
    system = build_system("nirvana", exp, inp.arrays, inp.neighbours, profile)
    a = inp.arrays
    t0 = time.perf_counter()
    simulate(system, a.arrival_s, a.prompt_ids, a.user_codes, exp, profile, seed=1, embeddings=inp.embeddings)
    rate = requests / (time.perf_counter() - t0)
    return [
        Figure(
            f"full SimPy replay, nirvana ({requests:,} req)",
            rate,
            "requests/s",
            "bare SimPy M/M/1 queue",
            _simpy_mm1_rate(requests),
            peak_rss_mb(),
        )
    ]


def _simpy_mm1_rate(customers: int) -> float:
    rng = np.random.default_rng(1)
    inter = rng.exponential(1.0, customers).tolist()
    service = rng.exponential(0.8, customers).tolist()
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)

    def customer(s: float):
        with server.request() as req:
            yield req
            yield env.timeout(s)

    def source():
        for a, s in zip(inter, service, strict=True):
            yield env.timeout(a)
            env.process(customer(s))

    env.process(source())
    t0 = time.perf_counter()
    env.run()
    return customers / (time.perf_counter() - t0)
