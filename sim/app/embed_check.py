"""The prepared GPU check of the 2M pipeline's first half: every unique prompt embedded by MiniLM on
a CUDA GPU, then the causal neighbour lists built, timed against an 8-minute budget.

    python -m sim.app.embed_check --out results/embed-gpu                    # on a CUDA machine
    python -m sim.app.embed_check --trace metadata.parquet --out results/embed-gpu   # DiffusionDB's own
    python -m sim.app.embed_check --smoke --out results/embed-smoke          # the same path, shrunk, on a CPU

Stages, each timed: the trace (by default the bench's synthetic 2M requests, about 1.8M unique
prompts; ``--trace`` reads DiffusionDB's metadata, 1.5M unique prompts in its 2M rows), the
embedding of every unique prompt with ``minilm`` (PyTorch fp32, the reference the ladders were
carried for) on ``--device`` in batches of ``--batch`` (sentence-transformers sorts each batch's
texts by length, so little of the work is padding), into a fresh cache, and the ``ivf`` neighbour
lists at the bench's top_m of 256 on every CPU core. It prints each stage's seconds and the
embedding's prompts/s, and writes ``OUT/embed_check.json``; it exits 1 when the total is over
``--budget-s`` (480).

The budget is an estimate, since no GPU has run it yet: MiniLM-L6 at batch 512 encodes on the
order of 10,000 prompts/s on an A10G-class GPU (2.5 min for 1.5M), the lists took 4.5 min for 2M
requests on 2 CPU cores (README, Performance), and the trace a minute. ``--smoke`` runs the same
path on the CPU with 600 requests in seconds; the tests run it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.base.io import atomic_write_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

EMBEDDER = "minilm"
TOP_M = 256  # the bench e2e's (sim.app.bench.figures.E2E_TOP_M)
BUDGET_S = 480.0


class _Batched:
    """An embedder whose every encode runs in batches of ``batch`` (a GPU wants large ones)."""

    def __init__(self, inner: Any, batch: int) -> None:
        self.inner = inner
        self.name = inner.name  # the same vectors: the cache key of the embedder itself
        self.batch = batch

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.inner.encode(texts, batch_size=self.batch)


def run_check(trace_path: str | None, requests: int, device: str, batch: int) -> dict[str, Any]:
    """The timed stages (see the module docstring) as a dict of figures."""
    from sim.app.bench.inputs import experiment
    from sim.app.run import min_similarity
    from sim.base import config
    from sim.base.profile import load_profile
    from sim.neighbours import build_neighbours
    from traces.embeddings import embed_prompts, get_embedder
    from traces.load import load_trace

    exp = experiment(requests, embedder=EMBEDDER)
    if trace_path is not None:
        exp = config.from_dict({**config.to_dict(exp), "trace": {"source": "diffusiondb", "path": trace_path}})
    exp.selector.carried = True  # the published thresholds carried to MiniLM, as every run does
    stages: dict[str, float] = {}
    t0 = start = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    stages["trace"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder = _Batched(get_embedder(EMBEDDER, device), batch)
    with tempfile.TemporaryDirectory() as cold:  # nothing reused: the point is the cold pipeline
        emb = embed_prompts(embedder, trace.prompts, cold, progress=sys.stderr.isatty())
    stages["embedding"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    threads = len(os.sched_getaffinity(0))
    floor = min_similarity(exp, load_profile(exp.profile))
    lists = build_neighbours(emb, trace.prompt_ids, TOP_M, floor, index="ivf", progress=False, num_threads=threads)
    stages["neighbour lists, ivf"] = time.perf_counter() - t0
    return {
        "requests": len(trace),
        "prompts": len(trace.prompts),
        "device": device,
        "batch": batch,
        "threads": threads,
        "min_similarity": floor,
        "list_entries": len(lists.ids),
        "stages_s": stages,
        "embedding_prompts_per_s": len(trace.prompts) / stages["embedding"],
        "total_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the check; exit 1 when it is over its time budget."""
    p = argparse.ArgumentParser(prog="python -m sim.app.embed_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="directory for embed_check.json")
    p.add_argument("--trace", help="DiffusionDB metadata (parquet or CSV) instead of the synthetic trace")
    p.add_argument("--requests", type=int, default=2_000_000, help="synthetic requests (default 2,000,000)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--batch", type=int, default=512, help="prompts per encoder batch (default 512)")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="seconds the whole check may take (480)")
    p.add_argument("--smoke", action="store_true", help="the same path on the CPU with 600 requests")
    args = p.parse_args(argv)
    if args.smoke:
        args.requests, args.device, args.batch = 600, "cpu", 64
    out = run_check(args.trace, args.requests, args.device, args.batch)
    out["budget_s"] = args.budget_s
    out["within_budget"] = out["total_s"] <= args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "embed_check.json", json.dumps(out, indent=2) + "\n")
    for name, secs in out["stages_s"].items():
        print(f"{name:<22} {secs:9.1f} s")
    print(f"{'total':<22} {out['total_s']:9.1f} s  (budget {args.budget_s:.0f} s: "
          f"{'within' if out['within_budget'] else 'OVER'})")
    print(f"{out['prompts']:,} prompts of {out['requests']:,} requests embedded at "
          f"{out['embedding_prompts_per_s']:,.0f} prompts/s on {out['device']} (batch {out['batch']}); "
          f"{out['list_entries']:,} list entries; {args.out / 'embed_check.json'}")
    return 0 if out["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
