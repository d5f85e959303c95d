"""Figures from run and sweep directories written in the layout sim.app.run / sim.app.sweep produce."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import yaml

from plots import plot_results
from plots.data import Run, load_results, offered_load_rps, timeseries
from plots.figures import _frontier, ceiling_lines, slo_vs_load_data
from plots.style import color_for
from sim.base.errors import InputError
from sim.base.io import atomic_write_csv, atomic_write_parquet, atomic_write_text
from sim.base.records import COLUMNS

if TYPE_CHECKING:
    from pathlib import Path

SYSTEMS = {"vanilla": (0.0, 30.3), "gptcache": (0.35, 25.8), "nirvana": (0.2, 28.8)}  # (reuse share, CLIP)


def write_run(
    run_dir: Path,
    *,
    rate: float,
    seed: int,
    n: int = 3000,
    gpus: int = 4,
    full: bool = True,
    policy: str = "lcbfu",
    capacity: float = 15000,
) -> pd.DataFrame:
    """A run directory whose records come from a small FCFS multi-server queue (full mode)."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    rows = []
    for system, (reuse, clip) in SYSTEMS.items():
        hit = rng.random(n) < reuse * min(1.0, np.log10(capacity) / 6)
        steps = np.where(hit, 35, 50) if system != "gptcache" else np.where(hit, 0, 50)
        service = steps * 0.34
        free = np.zeros(gpus)
        start = np.empty(n)
        for i in range(n):  # FCFS onto the earliest free GPU
            g = int(np.argmin(free))
            start[i] = max(arrival[i], free[g])
            free[g] = start[i] + service[i]
        rec = pd.DataFrame({c: np.nan for c in COLUMNS}, index=range(n))
        rec["system"] = system
        rec["request"] = np.arange(n)
        rec["arrival_s"] = arrival
        rec["outcome"] = np.where(hit, "retrieval" if system == "gptcache" else "hit", "miss")
        rec["steps"] = steps
        if full:
            rec["start_s"], rec["queue_s"] = start, start - arrival
            rec["latency_s"] = rec["queue_s"] + service
        atomic_write_parquet(run_dir / "records" / f"{system}.parquet", rec)
        lat = rec["latency_s"]
        rows.append(
            {
                "system": system,
                "policy": None if system == "vanilla" else policy,
                "cache_capacity": capacity,
                "requests": n,
                "hit_rate": hit.mean(),
                "compute_saved": 1 - steps.mean() / 50,
                "p95_latency_s": lat.quantile(0.95),
                "slo_attainment": (lat <= 60).mean() if full else np.nan,
                "quality_clip": clip - 2 * hit.mean() * (system == "nirvana"),
                "cost_per_1k_images_usd": steps.mean() * 0.34 / 3600 * 1.006 * 1000 if full else np.nan,
            }
        )
    summary = pd.DataFrame(rows)
    atomic_write_text(
        run_dir / "config.yaml", yaml.safe_dump({"selector": {"slo_s": 60.0}, "cache": {"unit": "latents"}})
    )
    atomic_write_csv(run_dir / "summary.csv", summary)
    return summary


def write_sweep(root: Path, grid: dict[str, list], full: bool = True, n: int = 1500) -> None:
    """A sweep directory as sim.app.sweep lays it out: runs/<name>/, runs.csv, merged summary.csv."""
    keys = list(grid)
    combos = [dict(zip(keys, vals, strict=True)) for vals in pd.MultiIndex.from_product(grid.values())]
    frames, index = [], []
    for i, values in enumerate(combos):
        name = f"run{i}"
        s = write_run(
            root / "runs" / name,
            rate=values.get("trace.arrival.rate", 0.16),
            seed=values.get("seed", 1) + i,
            n=n,
            full=full,
            policy=values.get("cache.policy", "lcbfu"),
            capacity=values.get("cache.capacity", 15000),
        )
        atomic_write_text(root / "runs" / name / "done", json.dumps(values))
        frames.append(s.assign(**values).assign(run=name)[["run", *keys, *s.columns]])
        index.append({"run": name, **values, "status": "done", "elapsed_s": 1.0, "error": ""})
    atomic_write_csv(root / "summary.csv", pd.concat(frames, ignore_index=True))
    atomic_write_csv(root / "runs.csv", pd.DataFrame(index))
    atomic_write_text(
        root / "sweep.yaml", yaml.safe_dump({"selector": {"slo_s": 60.0}, "cache": {"unit": "latents"}})
    )


def _stems(paths: list[Path]) -> set[str]:
    return {p.stem for p in paths}


def _check_files(paths: list[Path]) -> None:
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF"), p
        assert p.stat().st_size > 5000, p


def test_single_full_run_draws_per_request_figures(tmp_path):
    write_run(tmp_path, rate=0.18, seed=3)
    paths = plot_results(tmp_path)
    _check_files(paths)
    assert {p.parent for p in paths} == {tmp_path / "plots"}
    # One run: no sweep axes, so no cache-size or load figure.
    assert _stems(paths) == {"latency_cdf", "cost_per_1k", "quality_pareto", "timeseries"}
    assert {p.suffix for p in paths} == {".png", ".pdf"}


def test_sweep_over_policy_and_capacity_draws_cache_size_figure(tmp_path):
    write_sweep(
        tmp_path,
        {"cache.policy": ["lru", "lcbfu", "belady"], "cache.capacity": [1500, 15000, 150000]},
        full=False,
        n=400,
    )
    paths = plot_results(tmp_path)
    _check_files(paths)
    # Cache-only runs have no latency, queue or cost: only the cache and quality figures.
    assert _stems(paths) == {"cache_size", "quality_pareto"}


def test_the_cache_size_figure_draws_a_ceiling_as_the_bound(tmp_path):
    """A ceiling system's rows (``is_ceiling``, ``bounds``) become one line per bounded system,
    whatever policy and capacity each run had; Belady is only an offline policy's curve."""
    write_sweep(
        tmp_path,
        {"cache.policy": ["lru", "belady"], "cache.capacity": [1500, 15000, 150000]},
        full=False,
        n=300,
    )
    summary = pd.read_csv(tmp_path / "summary.csv")
    summary["is_ceiling"] = False
    summary["bounds"] = None
    summary["caches"] = summary["system"] != "vanilla"
    summary["policy_offline"] = summary["policy"] == "belady"
    ceiling = summary[summary["system"] == "nirvana"].assign(
        system="ceiling", policy=None, caches=False, is_ceiling=True, bounds="nirvana", policy_offline=False
    )
    ceiling["hit_rate"], ceiling["compute_saved"] = 0.61, 0.25
    atomic_write_csv(tmp_path / "summary.csv", pd.concat([summary, ceiling], ignore_index=True))
    results = load_results(tmp_path)
    assert ceiling_lines(results, []) == {("nirvana", ""): ("ceiling", 0.61, 0.25)}
    paths = plot_results(tmp_path)
    _check_files(paths)
    assert "cache_size" in _stems(paths)


def test_sweep_over_load_draws_slo_figure(tmp_path):
    write_sweep(tmp_path, {"trace.arrival.rate": [0.12, 0.2, 0.28], "seed": [1, 2]}, n=300)
    results = load_results(tmp_path)
    assert results.varied == ["trace.arrival.rate", "seed"]
    assert len(results.runs) == 6
    paths = plot_results(tmp_path)
    _check_files(paths)
    assert "slo_vs_load" in _stems(paths)
    assert "cache_size" not in _stems(paths)
    # The figure's data: per system and rate, the mean over seeds of the runs' SLO attainment.
    curves = slo_vs_load_data(results)
    s = results.summary
    assert sorted(curves.systems) == sorted(SYSTEMS) and list(curves.settings) == [""]
    for system, g in curves.points.groupby("system"):
        assert g["load"].tolist() == [0.12, 0.2, 0.28]
        want = s[s["system"] == system].groupby("trace.arrival.rate")["slo_attainment"].mean()
        assert g["slo_attainment"].tolist() == pytest.approx(want.tolist())
    # Queueing: attainment falls with load for the system that reuses least.
    van = curves.points[curves.points["system"] == "vanilla"]["slo_attainment"].to_numpy()
    assert van[0] > van[-1]


def test_offered_load_and_derived_queue_from_records(tmp_path):
    # 4 requests arrive at 0, 10, 20, 130 s; the first three wait 100 s each.
    rec = pd.DataFrame({c: np.nan for c in COLUMNS}, index=range(4))
    rec["arrival_s"] = [0.0, 10.0, 20.0, 130.0]
    rec["queue_s"] = [100.0, 100.0, 100.0, 0.0]
    rec["outcome"] = ["miss", "hit", "hole", "miss"]
    atomic_write_parquet(tmp_path / "records" / "nirvana.parquet", rec)
    run = Run("", tmp_path, {})
    assert offered_load_rps(run) == pytest.approx(4 / 130)
    ts = timeseries(run, "nirvana")
    assert ts["minute"].tolist() == [0, 1, 2]
    # Boundary 60 s: three arrived, none started; 120 s: all three started (at 100, 110, 120).
    assert ts["queue"].tolist() == [3, 0, 0]
    assert ts["hit_rate"].iloc[0] == pytest.approx(2 / 3)
    assert np.isnan(ts["hit_rate"].iloc[1])
    assert ts["load_rps"].tolist() == pytest.approx([3 / 60, 0, 1 / 60])


def test_engine_timeseries_csv_is_read_and_incomplete_ones_fall_back_to_records(tmp_path):
    write_run(tmp_path, rate=0.2, seed=1, n=300)
    csv = pd.DataFrame(
        {
            "t_s": [0.0, 120.0, 240.0],
            "arrivals": [24, 12, 0],
            "queue_len": [7.5, 8.0, 9.0],
            "hit_rate": [0.5, 0.25, np.nan],
        }
    )
    atomic_write_csv(tmp_path / "timeseries" / "nirvana.csv", csv)
    ts = timeseries(Run("", tmp_path, {}), "nirvana")
    assert ts["minute"].tolist() == [0, 2, 4]
    assert ts["load_rps"].tolist() == pytest.approx([0.2, 0.1, 0.0])  # 2-minute bins
    assert ts["queue"].tolist() == [7.5, 8.0, 9.0]
    atomic_write_csv(tmp_path / "timeseries" / "nirvana.csv", csv.drop(columns="queue_len"))
    derived = timeseries(Run("", tmp_path, {}), "nirvana")
    assert len(derived) > 3 and derived["queue"].notna().all()


def test_pareto_frontier_keeps_only_undominated_points():
    x = np.array([0.0, 0.1, 0.2, 0.3, 0.15])
    y = np.array([30.0, 29.0, 28.5, 25.0, 28.0])
    assert _frontier(x, y).tolist() == [0, 1, 2, 3]
    assert _frontier(np.array([0.1, 0.2]), np.array([30.0, 31.0])).tolist() == [1]


def test_colours_are_stable_and_distinct_for_headline_names():
    names = ["vanilla", "exact", "gptcache", "nirvana", "fifo", "lru", "lfu", "lcbfu", "belady"]
    assert len({color_for(n) for n in names[:4]}) == 4
    assert len({color_for(n) for n in names[4:]}) == 5
    assert color_for("my-new-policy") == color_for("my-new-policy")


def test_missing_or_broken_results_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no summary.csv"):
        plot_results(tmp_path)
    (tmp_path / "summary.csv").write_text("policy,hit_rate\nlru,0.1\n")
    with pytest.raises(InputError, match="'system'"):
        plot_results(tmp_path)


def test_quality_metrics_and_the_paper_comparison(tmp_path):
    """Three-metric bars per system, and the paper's table beside the simulated one, joined on
    (system, predictor.kind) as the reference file says."""
    ref = tmp_path / "ref.csv"
    ref.write_text(
        "label,system,predictor,paper_trace,fid,fid_lo,fid_hi,clip,pickscore,source\n"
        "VANILLA,vanilla,none,DiffusionDB,6.52,6.12,6.92,30.28,20.86,paper\n"
        "NIRVANA,nirvana,ocsvm,DiffusionDB,4.68,,,28.81,20.41,paper\n"
        "NIRVANA w/o MP,nirvana,none,DiffusionDB,4.94,,,28.65,20.35,paper\n"
    )
    quality = {"vanilla": (6.52, 30.28, 20.86), "nirvana": (5.0, 29.0, 20.5)}
    frames, index = [], []
    for kind in ("none", "ocsvm"):
        for seed in (1, 2):
            name = f"{kind}-{seed}"
            rows = []
            for system, (fid, clip, pick) in quality.items():
                bump = 0.1 * seed + (0.2 if kind == "ocsvm" and system == "nirvana" else 0.0)
                rows.append({"system": system, "quality_fid": fid - bump, "quality_clip": clip + bump,
                             "quality_pickscore": pick + bump,
                             "compute_saved": 0.0 if system == "vanilla" else 0.2 + 0.01 * seed})
            s = pd.DataFrame(rows)
            atomic_write_csv(tmp_path / "runs" / name / "summary.csv", s)
            frames.append(s.assign(run=name, **{"predictor.kind": kind, "seed": seed}))
            index.append({"run": name, "predictor.kind": kind, "seed": seed, "status": "done"})
    summary = pd.concat(frames, ignore_index=True)[["run", "predictor.kind", "seed", *frames[0].columns[:5]]]
    atomic_write_csv(tmp_path / "summary.csv", summary)
    atomic_write_csv(tmp_path / "runs.csv", pd.DataFrame(index))
    atomic_write_text(tmp_path / "sweep.yaml", yaml.safe_dump({"reference": str(ref)}))
    paths = plot_results(tmp_path)
    _check_files(paths)
    assert {"quality_metrics", "paper_comparison", "quality_pareto"} <= _stems(paths)
    # The trade-off figure's published points: the paper's CLIP at acsim's mean compute saved for
    # the same (system, predictor), beside acsim's mean CLIP there.
    from plots.data import load_results
    from plots.reference import paper_points

    trace, pts = paper_points(load_results(tmp_path))
    pts = pts.set_index("label")
    assert trace == "DiffusionDB" and list(pts.index) == ["VANILLA", "NIRVANA", "NIRVANA w/o MP"]
    assert pts.loc["NIRVANA", ["compute_saved", "clip_paper", "clip_acsim"]].tolist() == pytest.approx([0.215, 28.81, 29.35])
    assert pts.loc["VANILLA", ["compute_saved", "clip_paper"]].tolist() == pytest.approx([0.0, 30.28])
    table = pd.read_csv(tmp_path / "plots" / "paper_comparison.csv").set_index(["label", "metric", "source"])
    # NIRVANA is nirvana under the one-class SVM, NIRVANA w/o MP the same system without a predictor:
    # seeds 1 and 2 give bumps 0.3 and 0.4 (with the predictor), 0.1 and 0.2 (without).
    assert table.loc[("NIRVANA", "CLIP score", "acsim: this run"), "mean"] == pytest.approx(29.35)
    assert table.loc[("NIRVANA w/o MP", "CLIP score", "acsim: this run"), "mean"] == pytest.approx(29.15)
    assert table.loc[("NIRVANA w/o MP", "FID", "acsim: this run"), ["lo", "hi"]].tolist() == pytest.approx([4.8, 4.9])
    assert table.loc[("VANILLA", "FID", "paper: DiffusionDB"), ["lo", "mean", "hi"]].tolist() == [6.12, 6.52, 6.92]
    md = (tmp_path / "plots" / "paper_comparison.md").read_text()
    assert md.splitlines()[0].startswith("| system | FID (paper: DiffusionDB) | FID (acsim: this run)")
    assert "| NIRVANA | 4.68 | 4.65 (4.60-4.70) |" in md


def test_a_bad_reference_file_names_row_and_column(tmp_path):
    from plots.reference import read_reference

    bad = tmp_path / "ref.csv"
    bad.write_text("label,system,predictor,paper_trace,fid,clip,pickscore\nX,vanilla,none,D,high,30,20\n")
    with pytest.raises(InputError, match="row 2, column 'fid'"):
        read_reference(bad)
    bad.write_text("label,system\nX,vanilla\n")
    with pytest.raises(InputError, match="missing columns"):
        read_reference(bad)


def test_topology_data_groups_bars_by_router_and_cache_layout(tmp_path):
    from plots.data import Results
    from plots.figures import topology, topology_data

    rows = []
    for router, hit in (("round-robin", 0.5), ("cache-affinity", 0.7)):
        for placement, cap in (("shared", 15000), ("per-replica", 3750)):
            for seed in (1, 2):
                for system, caches, base in (("vanilla", False, True), ("nirvana", True, False)):
                    rows.append(
                        {"run": f"{router}-{placement}-{seed}", "cluster.router.kind": router,
                         "cache.placement": placement, "cache.capacity": cap, "seed": seed, "system": system,
                         "caches": caches, "is_baseline": base,
                         "hit_rate": (hit + 0.1 * (placement == "shared") + 0.01 * seed) if caches else 0.0,
                         "p95_latency_s": 30.0 + seed if caches else 40.0}
                    )
    summary = pd.DataFrame(rows)
    varied = ["cluster.router.kind", "cache.placement", "cache.capacity", "seed"]
    results = Results(tmp_path, summary, [], varied, {})
    data = topology_data(results)
    assert data.routers == ["round-robin", "cache-affinity"] and data.systems == ["nirvana"]
    assert data.layouts == ["placement=shared, capacity=15000", "placement=per-replica, capacity=3750"]
    t = data.table.set_index(["system", "router", "layout"])
    assert t.loc[("nirvana", "cache-affinity", data.layouts[0]), "hit_rate"] == pytest.approx(0.815)  # seed mean
    assert t.loc[("nirvana", "round-robin", data.layouts[1]), "p95_latency_s"] == pytest.approx(31.5)
    assert data.baseline == {"round-robin": 40.0, "cache-affinity": 40.0}
    assert len(topology(results, tmp_path)) == 2
    no_routing = Results(tmp_path, summary, [], ["cache.capacity", "seed"], {})
    assert topology_data(no_routing) is None
