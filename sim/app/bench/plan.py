"""Stage ``plan``: ``acsim plan`` over four systems and two GPU types, cold and repeated."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from sim.app.bench.figures import Figure
from sim.app.plan import PlanSettings, run_plan
from sim.app.preflight import preflight
from sim.app.run import prepare_inputs
from sim.base import config
from sim.base.slo import parse_slo

PLAN_GPUS = {"a10g": "sdxl-a10g", "a100": "sdxl-a100"}


def _plan_experiment(requests: int):
    """The quickstart's shape (four systems, diurnal load near 70% of four A10Gs), hashing embeddings."""
    return preflight(
        config.from_dict(
            {
                "name": "bench-plan",
                "seed": 1,
                "mode": "full",
                "trace": {
                    "source": "synthetic",
                    "requests": requests,
                    "arrival": {"process": "diurnal", "rate": 0.16, "diurnal_amplitude": 0.3},
                },
                "embedder": "hashing",
                "selector": {"carried": False},  # as experiment: the workload of the earlier figures
                "params": {"gptcache": {"threshold": 0.8, "space": "embedder"}},
                "cache": {"capacity": 15000, "policy": "lcbfu"},
                "systems": ["vanilla", "gptcache", "exact", "nirvana"],
                "plots": False,
            }
        )
    )


def stage_plan(src: Path, requests: int) -> list[Figure]:
    """``acsim plan`` over 4 systems x 2 GPU types (p95 <= 30 s), on every core, from no finished run.

    The trace and its lists are prepared (and cached) before the clock starts, as a plan over a
    trace someone has already run would find them. The reference is the same plan repeated, when
    every run is found finished.
    """
    exp = _plan_experiment(requests)
    for profile in PLAN_GPUS.values():
        prepare_inputs(config.replace_path(exp, "profile", profile), progress=False)
    settings = PlanSettings(
        slos=[parse_slo("p95<=30")], systems=list(exp.systems), gpus=dict(PLAN_GPUS), loads=[1.0]
    )
    with tempfile.TemporaryDirectory(prefix="acsim-bench-plan-") as tmp:
        t0 = time.perf_counter()
        first = run_plan(exp, settings, Path(tmp), progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_plan(exp, settings, Path(tmp), progress=False)
        warm = time.perf_counter() - t0
    recs = first.recommendations
    brute = int(recs["gpus"].fillna(0).max() + 1) * len(recs)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return [
        Figure(
            f"plan, 4 systems x 2 GPU types ({requests:,} req)",
            cold,
            "s",
            f"same plan repeated ({again.reused} runs reused)",
            warm,
        ),
        Figure(
            f"  runs the plan evaluated ({cores} cores)",
            first.evaluated,
            "runs",
            "a sweep of 1..(max + 1) GPUs for every row",
            brute,
        ),
    ]
