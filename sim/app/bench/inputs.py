"""The bench trace: generated, embedded and listed once, cached, and read back as prefixes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.app.bench.figures import TOP_M, Figure, peak_rss_mb
from sim.app.run import min_similarity
from sim.base import config
from sim.base.cache_root import cache_root
from sim.base.io import atomic_path, atomic_write_text
from sim.base.profile import load_profile
from sim.neighbours import NeighbourLists, build_neighbours
from sim.neighbours.lists import FORMAT
from sim.systems import TraceArrays
from traces.embeddings import get_embedder
from traces.load import load_trace
from traces.schema import write_parquet

if TYPE_CHECKING:
    from pathlib import Path


def experiment(
    requests: int,
    policy: str = "lcbfu",
    capacity: float = 15000,
    mode: str = "cache-only",
    embedder: str = "hashing",
):
    return config.from_dict(
        {
            "name": "bench",
            "seed": 1,
            "mode": mode,
            "trace": {
                "source": "synthetic",
                "requests": requests,
                "arrival": {"process": "poisson", "rate": 0.2},
            },
            "embedder": embedder,
            # The workload every earlier figure was measured on: the published thresholds read as
            # the embedder's cosines (carried to hashing, the K=5 rung would list nearly every pair).
            "selector": {"carried": False},
            "cache": {"capacity": capacity, "policy": policy},
            "neighbours": {"top_m": TOP_M},
            "systems": ["nirvana"],
            "plots": False,
        }
    )


def inputs_dir(requests: int) -> Path:
    """Where the bench trace of ``requests`` requests, its embeddings and lists are cached.

    A cached trace at least that long is reused (its prefix serves), so measuring a large
    size once makes every later smaller run warm.
    """
    root = cache_root() / "bench"
    suffix = f"-seed1-hashing-top{TOP_M}-nb{FORMAT}-ivf"
    built = sorted(
        (int(p.name.split("-")[1]), p)
        for p in root.glob(f"synthetic-*{suffix}")
        if (p / "meta.json").exists() and p.name.split("-")[1].isdigit()
    )
    return next((p for size, p in built if size >= requests), root / f"synthetic-{requests}{suffix}")


@dataclass
class Inputs:
    """A prefix of the cached bench trace: arrays, embeddings and neighbour lists."""

    arrays: Any  # sim.systems.TraceArrays
    embeddings: np.ndarray
    neighbours: Any  # sim.neighbours.NeighbourLists


def load_prefix(src: Path, n: int) -> Inputs:
    """The first ``n`` requests of the cached trace with their (causal, hence exact) lists.

    The arrays are memory-mapped, so a small prefix costs no more memory than its own size.
    """
    pids = np.load(src / "prompt_ids.npy", mmap_mode="r")
    if n > len(pids):
        raise ValueError(f"the cached bench trace has {len(pids)} requests, not {n}")
    pids = np.array(pids[:n])
    # Left memory-mapped: only the rare exhaustive-search fallback reads the embeddings.
    emb = np.load(src / "embeddings.npy", mmap_mode="r")[: int(pids.max()) + 1]
    nb = NeighbourLists.load(src / "neighbours.npz")
    end = int(nb.offsets[n])
    lists = NeighbourLists(
        offsets=nb.offsets[: n + 1].copy(),
        ids=nb.ids[:end].copy(),
        sims=nb.sims[:end].copy(),
        complete=nb.complete[:n].copy(),
        top_m=nb.top_m,
        min_similarity=nb.min_similarity,
        index=nb.index,
        prompt_ids=pids,
    ).attach(emb)
    del nb
    arrays = TraceArrays(
        pids,
        np.array(np.load(src / "user_codes.npy", mmap_mode="r")[:n]),
        np.array(np.load(src / "arrival_s.npy", mmap_mode="r")[:n]),
    )
    return Inputs(arrays, emb, lists)


def stage_inputs(src: Path, requests: int) -> list[Figure]:
    """Generate, embed and list the bench trace once; later runs reuse it from the cache."""
    meta_path = src / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return [
            Figure(
                f"inputs: {meta['requests']:,}-request trace + lists REUSED",
                meta["build_s"],
                "s",
                f"cached in {src}",
            )
        ]
    src.mkdir(parents=True, exist_ok=True)
    exp = experiment(requests)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    t0 = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    write_parquet(trace, src / "trace.parquet")
    emb = get_embedder(exp.embedder).encode(trace.prompts)
    nb = build_neighbours(
        emb,
        trace.prompt_ids,
        top_m=TOP_M,
        min_similarity=min_similarity(exp, load_profile(exp.profile)),
        index="ivf",
        progress=False,
        num_threads=threads,  # set-up, not a measured figure: every core helps
    )
    build_s = time.perf_counter() - t0
    for name, arr in (
        ("embeddings", emb),
        ("prompt_ids", trace.prompt_ids),
        ("user_codes", trace.user_codes),
        ("arrival_s", trace.arrival_s),
    ):
        with atomic_path(src / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr))
    nb.save(src / "neighbours.npz")
    atomic_write_text(meta_path, json.dumps({"build_s": build_s, "requests": requests, "top_m": TOP_M}))
    return [
        Figure(
            f"inputs: {requests:,}-request trace + lists BUILT",
            build_s,
            "s",
            f"{threads} threads; cached in {src}",
            peak_rss_mb=peak_rss_mb(),
        )
    ]
