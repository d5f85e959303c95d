"""``acsim bench`` end to end on a tiny trace: every figure is printed with a real value."""

from __future__ import annotations

import json
import math

import pytest

from sim.app.cli import main

FIGURES = (
    "inputs: 4,000-request trace + lists BUILT",
    "synthetic trace generation",
    "embedding, hashing",
    "neighbour precompute",
    "neighbour rows complete",
    "replay kernel load",
    "cache-only replay, nirvana LCBFU",
    "cache-only replay, nirvana LRU",
    "full SimPy replay, nirvana",
    "cache-only replay LCBFU, 2,000 req",
    "cache-only replay LCBFU, 4,000 req",
    "replay time growth exponent",
    "replay peak RSS growth exponent",
)


def test_tiny_bench_prints_every_figure(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--requests",
        "3000",
        "--scale",
        "2000,4000",
        "--precompute",
        "1500",
        "--full",
        "500",
        "--no-minilm",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    for name in FIGURES:
        assert name in table, f"{name!r} missing from the bench table:\n{table}"
    rows = {r["name"]: r for r in json.loads(out.read_text())}
    for name, row in rows.items():
        assert math.isfinite(row["value"]), name
    replay = rows["cache-only replay, nirvana LRU"]
    assert replay["value"] > 0 and replay["reference_value"] > 0 and replay["peak_rss_mb"] > 50
    # The second run reuses the cached trace and lists and says so.
    assert main(argv[:-2]) == 0
    assert "inputs: 4,000-request trace + lists REUSED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "sizes, values, exponent", [([1, 10], [2.0, 20.0], 1.0), ([1, 100], [3.0, 3.0], 0.0)]
)
def test_fit_exponent(sizes, values, exponent) -> None:
    from sim.app.bench.figures import fit_exponent

    assert fit_exponent(sizes, values) == pytest.approx(exponent)


def test_plan_stage_prints_its_figures(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "--only", "plan", "--plan", "1500", "--json", str(tmp_path / "b.json")]) == 0
    table = capsys.readouterr().out
    assert "plan, 4 systems x 2 GPU types (1,500 req)" in table and "<=120" in table
    rows = {r["name"]: r for r in json.loads((tmp_path / "b.json").read_text())}
    plan = rows["plan, 4 systems x 2 GPU types (1,500 req)"]
    assert plan["value"] > plan["reference_value"] > 0  # the repeat reuses every run
    runs = next(r for name, r in rows.items() if "runs the plan evaluated" in name)
    assert 8 <= runs["value"] < runs["reference_value"]
    assert main(["bench", "--only", "plan,warp"]) == 2


def test_recall_figures_against_exact_lists() -> None:
    import numpy as np

    from sim.app.bench.neighbours import recall, sampled_recall
    from sim.neighbours import build_neighbours

    rng = np.random.default_rng(5)
    fam = rng.standard_normal((300, 16))
    emb = fam[rng.integers(0, 300, 1500)] + 0.35 * rng.standard_normal((1500, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids = np.concatenate([np.arange(1500), rng.integers(0, 1500, 500)]).astype(np.int32)
    exact = build_neighbours(emb, pids, 8, 0.5, index="exact", progress=False)
    rows = np.arange(1000, 2000, 7)
    assert recall(exact, exact, 800) == 1.0
    assert sampled_recall(exact, emb, pids, rows) == 1.0  # the brute force agrees with the exact lists
    assert sampled_recall(exact, emb, pids, rows, block=97) == 1.0  # best kept across blocks
    # Lists that lose every other entry have a recall near one half on both measures.
    keep = np.arange(len(exact.ids)) % 2 == 0
    counts = np.add.reduceat(keep, exact.offsets[:-1]) * (np.diff(exact.offsets) > 0)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    half = type(exact)(offsets, exact.ids[keep], exact.sims[keep], exact.complete, 8, 0.5, prompt_ids=pids)
    assert 0.4 < recall(half, exact, 800) < 0.6
    assert 0.4 < sampled_recall(half, emb, pids, rows) < 0.6
    assert sampled_recall(half, emb, pids, rows, block=97) == sampled_recall(half, emb, pids, rows)
