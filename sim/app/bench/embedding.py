"""Stages ``trace`` and ``minilm``: trace generation and the embedders' rates."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sim.app.bench.figures import Figure, peak_rss_mb, set_threads
from sim.app.bench.inputs import experiment
from traces.embeddings import MiniLMEmbedder, MiniLMOnnxEmbedder, MiniLMStaticEmbedder, get_embedder
from traces.load import load_trace
from traces.model_store import read_meta
from traces.schema import read_parquet

if TYPE_CHECKING:
    from pathlib import Path


def stage_trace(src: Path, requests: int) -> list[Figure]:
    """Generate a synthetic trace and embed its prompts with `hashing`."""
    exp = experiment(requests)
    t0 = time.perf_counter()
    trace = load_trace(exp.trace, exp.seed)
    gen_s = time.perf_counter() - t0
    emb_hash = get_embedder("hashing")
    t0 = time.perf_counter()
    emb_hash.encode(trace.prompts)
    hash_s = time.perf_counter() - t0
    return [
        Figure(f"synthetic trace generation ({requests:,} req)", requests / gen_s, "requests/s"),
        Figure("embedding, hashing", len(trace.prompts) / hash_s, "prompts/s", peak_rss_mb=peak_rss_mb()),
    ]


def _rate(embedder: Any, prompts: list[str]) -> tuple[float, float]:
    """(prompts per wall second, per CPU second of all threads) of one ``encode`` call, after a
    warm-up that loads the model. On a shared machine the CPU rate is the steadier one."""
    embedder.encode(prompts[:8])
    t0, c0 = time.perf_counter(), time.process_time()
    embedder.encode(prompts)
    return len(prompts) / (time.perf_counter() - t0), len(prompts) / (time.process_time() - c0)




def stage_minilm(src: Path, n_prompts: int) -> list[Figure]:
    """PyTorch MiniLM, minilm-onnx and minilm-static on the same prompts, at 1 and at 2 threads.

    Model artefacts (the ONNX export, the static table) are built first if missing, untimed;
    their build time is printed as its own figure. The static rate is measured on every prompt
    of the bench trace: its tokenizer memory pays off on long traces, not on a thousand prompts.
    """
    everything = list(read_parquet(src / "trace.parquet").prompts)
    prompts = everything[:n_prompts]
    figures = []
    for cls in (MiniLMOnnxEmbedder, MiniLMStaticEmbedder):
        t0 = time.perf_counter()
        directory = cls(device="cpu").artefact()
        meta = read_meta(directory)
        built = time.perf_counter() - t0 > 1.0
        figures.append(
            Figure(
                f"model build, {cls.name.split(':')[0]}",
                meta["build_s"],
                "s",
                f"{'BUILT now' if built else 'cached'} in {directory.parent}",
            )
        )
    for threads in (1, 2):
        set_threads(threads)
        label = f"({threads} thread{'s' if threads > 1 else ''})"
        ref, ref_cpu = _rate(MiniLMEmbedder(device="cpu"), prompts)
        figures.append(Figure(f"embedding, minilm {label}", ref, "prompts/s", "PyTorch, sentence-transformers"))
        onnx, onnx_cpu = _rate(MiniLMOnnxEmbedder(device="cpu"), prompts)
        figures.append(
            Figure(f"embedding, minilm-onnx {label}", onnx, "prompts/s", f"minilm {label}, same prompts", ref)
        )
        figures.append(Figure(f"  minilm-onnx / minilm {label}", onnx / ref, "x", "target >= 4"))
        figures.append(
            Figure(f"  same, per CPU second {label}", onnx_cpu, "prompts/s", "minilm per CPU second", ref_cpu)
        )
        static, static_cpu = _rate(MiniLMStaticEmbedder(device="cpu"), everything)
        figures.append(
            Figure(
                f"embedding, minilm-static {label}",
                static,
                "prompts/s",
                f"minilm {label}; {len(everything):,} prompts",
                ref,
                peak_rss_mb(),
            )
        )
        figures.append(Figure(f"  same, per CPU second {label}", static_cpu, "prompts/s", "minilm per CPU second", ref_cpu))
    return figures


def minilm_rate(prompts: list[str]) -> tuple[float, float]:
    """PyTorch MiniLM's rate on ``prompts``: prompts per second and per CPU second (see _rate)."""
    return _rate(MiniLMEmbedder(device="cpu"), prompts)
