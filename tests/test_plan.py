"""``acsim plan``: SLO grammar, the two searches against exhaustive oracles, and a real plan
checked against a brute-force sweep over every GPU count."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from sim.app.plan import CountSearch, PlanSettings, ScaleSearch, format_plan, round_load, run_plan
from sim.app.preflight import preflight
from sim.app.sweep import run_sweep
from sim.base import config as cfg
from sim.base.errors import ConfigError
from sim.base.slo import parse_duration, parse_slo

if TYPE_CHECKING:
    from pathlib import Path

# -- objectives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "op", "value"),
    [
        ("p95<=30", "p95_latency_s", "<=", 30.0),
        (" p99 < 2min ", "p99_latency_s", "<", 120.0),
        ("mean<=800ms", "mean_latency_s", "<=", 0.8),
        ("P50<=12s", "p50_latency_s", "<=", 12.0),
        ("attainment>=0.99", "slo_attainment", ">=", 0.99),
        ("attainment>99%", "slo_attainment", ">", 0.99),
        ("quality>=29", "quality_clip", ">=", 29.0),
    ],
)
def test_objectives_parse(text, column, op, value):
    s = parse_slo(text)
    assert (s.column, s.op) == (column, op) and s.value == pytest.approx(value)
    row = {column: value}
    assert s.met(row) == (op in ("<=", ">="))
    assert not s.met({column: math.nan})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p95", "METRIC OP VALUE"),
        ("p90<=30", "unknown metric 'p90'"),
        ("p95==30", "unknown operator '=='"),
        ("p95>=30", "bound it with <= or <"),
        ("attainment<=0.9", "bound it with >= or >"),
        ("p95<=30h", "latency unit 'h'"),
        ("p95<=0", "> 0 seconds"),
        ("attainment>=1.5", "(0, 1]"),
        ("attainment>=0.9s", "fraction"),
        ("quality>=29%", "takes no unit"),
        ("p95<=abc", "METRIC OP VALUE"),
    ],
)
def test_bad_objectives_name_the_flag(text, fragment):
    with pytest.raises(ConfigError) as err:
        parse_slo(text, "--slo")
    assert str(err.value).startswith("--slo:") and fragment in str(err.value)


def test_durations():
    assert parse_duration("90s", "x") == 90 and parse_duration("1.5h", "x") == 5400
    with pytest.raises(ConfigError, match="x: '2 hours'"):
        parse_duration("2 hours", "x")


# -- the searches, against every monotone oracle ----------------------------------------------


def drive_count(search: CountSearch, ok, queued=lambda g: True) -> tuple[int | None, list[int]]:
    asked = []
    while (g := search.next()) is not None:
        assert 1 <= g <= search.max_gpus and g not in asked
        asked.append(g)
        search.tell(g, ok(g), queued(g))
    return search.result, asked


def test_count_search_finds_the_smallest_passing_count_from_any_start():
    for answer in range(1, 21):
        for start in range(1, 21):
            result, asked = drive_count(CountSearch(start, 32), lambda g, a=answer: g >= a)
            assert result == answer, (answer, start)
            assert len(asked) <= 2 * math.ceil(math.log2(32)) + 1, (answer, start, asked)


def test_count_search_never_asks_below_the_systems_least_gpus():
    """A two-model system runs on one GPU per model: the search starts and ends at 2 or more."""
    for answer in range(2, 12):
        for start in range(1, 12):
            result, asked = drive_count(CountSearch(start, 16, least=2), lambda g, a=answer: g >= a)
            assert result == answer and min(asked) >= 2, (answer, start, asked)


def test_count_search_gives_up_where_more_gpus_cannot_help():
    result, asked = drive_count(CountSearch(3, 16), lambda g: False)
    assert result is None and asked[-1] == 16
    # Failing with nothing queued: latency is service time, more GPUs change nothing.
    search = CountSearch(3, 256)
    result, asked = drive_count(search, lambda g: False, queued=lambda g: g < 6)
    assert result is None and max(asked) < 16 and "cannot help" in search.infeasible


def test_scale_search_brackets_the_highest_sustained_load():
    rng = np.random.default_rng(0)
    for threshold in np.exp(rng.uniform(np.log(0.01), np.log(100), 200)):
        search = ScaleSearch(1.0, 0.02)
        while (x := search.next()) is not None:
            search.tell(x, x <= threshold)
        assert search.result is not None and search.result <= threshold < search.result * 1.02 + 1e-3
    low = ScaleSearch(1.0, 0.02)
    while (x := low.next()) is not None:
        low.tell(x, False)
    assert low.result is None and low.infeasible
    assert round_load(1.23456789) == 1.235


# -- a real plan against a brute-force sweep --------------------------------------------------


def _experiment(tmp_path: Path) -> cfg.Experiment:
    return preflight(
        cfg.from_dict(
            {
                "name": "tiny-plan",
                "trace": {
                    "source": "synthetic",
                    "requests": 1200,
                    "arrival": {"process": "poisson", "rate": 0.2},
                },
                "embedder": "hashing",
                "cache": {"capacity": 3000},
                "systems": ["vanilla", "nirvana"],
                "selector": {"slo_s": 60.0},
                "output": str(tmp_path / "tiny"),
                "plots": False,
            }
        )
    )


def test_plan_agrees_with_a_brute_force_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    exp = _experiment(tmp_path)
    slos = [parse_slo("p95<=45"), parse_slo("attainment>=0.95")]
    settings = PlanSettings(
        slos=slos,
        systems=["vanilla", "nirvana"],
        gpus={"a10g": "sdxl-a10g", "a100": "sdxl-a100"},
        loads=[1.0],
    )
    res = run_plan(exp, settings, tmp_path / "plan", jobs=1, progress=False)
    recs = res.recommendations.set_index(["system", "gpu"])
    assert res.evaluated == len(res.points) and not res.failed

    # Brute force: every count from 1 to 8 on both GPU types, every system in one run each.
    data = cfg.to_dict(exp)
    data["sweep"] = {"profile": ["sdxl-a10g", "sdxl-a100"], "cluster.gpus": list(range(1, 9))}
    data["output"] = str(tmp_path / "brute")
    brute = run_sweep(cfg.from_dict(data), jobs=1, progress=False).summary
    brute["meets"] = [all(s.met(r) for s in slos) for _, r in brute.iterrows()]
    for (system, profile), g in brute.groupby(["system", "profile"]):
        g = g.sort_values("cluster.gpus")
        meets = g["meets"].to_numpy()
        assert meets.any() and (np.diff(meets.astype(int)) >= 0).all(), "more GPUs never hurt on this trace"
        first = int(g["cluster.gpus"].to_numpy()[meets.argmax()])
        rec = recs.loc[(system, "a10g" if profile == "sdxl-a10g" else "a100")]
        assert rec["gpus"] == first and rec["meets"]
        at = g[g["cluster.gpus"] == first].iloc[0]
        assert rec["p95_latency_s"] == pytest.approx(at["p95_latency_s"], rel=1e-9)
        assert rec["hit_rate"] == pytest.approx(at["hit_rate"], rel=1e-9)
    assert len(res.points) < len(brute)  # the search ran fewer points than the sweep
    assert recs["cheapest"].sum() == 1
    cheapest = recs[recs["cheapest"]].iloc[0]
    assert cheapest["usd_per_hour"] == recs.loc[recs["meets"].astype(bool), "usd_per_hour"].min()

    # A repeated plan, even with a looser objective, reuses every run it needs.
    again = run_plan(exp, settings, tmp_path / "plan", jobs=1, progress=False)
    assert again.evaluated == 0 and again.reused > 0
    pd.testing.assert_frame_equal(again.recommendations, res.recommendations)
    assert (tmp_path / "plan" / "plan.csv").is_file() and (tmp_path / "plan" / "points.csv").is_file()
    # --verify runs the counts below each answer (and the next) and finds the bisection right.
    checked = run_plan(exp, dataclasses.replace(settings, verify=True), tmp_path / "plan", jobs=1, progress=False)
    assert (checked.recommendations["verified"] == "yes").all()


def test_highest_load_of_a_fixed_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    exp = _experiment(tmp_path)
    settings = PlanSettings(
        slos=[parse_slo("p95<=45")],
        systems=["vanilla"],
        gpus={"a10g": "sdxl-a10g"},
        loads=[1.0],
        at=4,
        max_scale=True,
        scale_tolerance=0.05,
    )
    res = run_plan(exp, settings, tmp_path / "plan", jobs=1, progress=False)
    rec = res.recommendations.iloc[0]
    assert rec["gpus"] == 4 and rec["max_load"] > 0
    pts = res.points
    passing = pts[pts["meets"]]["load"]
    failing = pts[~pts["meets"]]["load"]
    assert passing.max() == rec["max_load"]
    assert failing.min() <= rec["max_load"] * 1.05 + 1e-3 and failing.min() > rec["max_load"]
    assert rec["max_offered_rps"] == pytest.approx(rec["offered_rps"] * rec["max_load"])


def test_an_autoscaled_comparison_runs_each_answer_once_more(tmp_path, monkeypatch):
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    exp = _experiment(tmp_path)
    settings = PlanSettings(
        slos=[parse_slo("attainment>=0.95")], systems=["vanilla", "nirvana"], gpus={"a10g": "sdxl-a10g"}, loads=[1.0]
    )
    plain = run_plan(exp, settings, tmp_path / "plain", jobs=1, progress=False)
    res = run_plan(exp, dataclasses.replace(settings, autoscale="queue-delay"), tmp_path / "plan", jobs=1, progress=False)
    # The answers and the search's points are those of the plain plan; two more runs, autoscaled.
    assert res.evaluated == plain.evaluated + 2 and len(res.points) == len(plain.points)
    recs = res.recommendations.set_index("system")
    for system, rec in recs.iterrows():
        assert rec["gpus"] == plain.recommendations.set_index("system").loc[system, "gpus"]
        assert 1 <= rec["autoscaled_gpus_mean"] <= rec["gpus"]  # within min_gpus..the answer
        auto = res.out_dir / "runs"
        run = next(d for d in auto.iterdir() if "_rule-queue-delay" in d.name and f"system-{system}_" in d.name)
        summary = pd.read_csv(run / "summary.csv").iloc[0]
        assert rec["autoscaled_usd_per_1k"] == pytest.approx(1000 * summary["cost_provisioned_usd"] / summary["requests"])
    assert "queue-delay: $/1k" in format_plan(res.recommendations, dataclasses.replace(settings, autoscale="queue-delay"))


def test_plan_command_errors_name_the_flag(tmp_path, capsys):
    from sim.app.cli import main

    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\nembedder: hashing\n")
    for argv, flag in (
        (["--slo", "p95>=3"], "--slo"),
        (["--slo", "p95<=3", "--gpus", "h100"], "--gpus"),
        (["--slo", "p95<=3", "--systems", "vanila"], "--systems"),
        (["--slo", "p95<=3", "--loads", "1,x"], "--loads"),
        ([], "--slo"),
    ):
        assert main(["plan", str(spec), *argv]) == 2
        assert f"error: {flag}:" in capsys.readouterr().err
    spec.write_text("name: e\nmode: cache-only\n")
    assert main(["plan", str(spec), "--slo", "p95<=30", "-o", str(tmp_path / "p")]) == 2
    assert "mode: 'cache-only'" in capsys.readouterr().err
    spec.write_text("name: e\ncluster: {replicas: [{gpus: 2}]}\n")
    assert main(["plan", str(spec), "--slo", "p95<=30", "-o", str(tmp_path / "p")]) == 2
    assert "cluster.replicas" in capsys.readouterr().err


# -- the figures' data steps ----------------------------------------------------------------------


def _frames():
    rows = []
    for load in (1.0, 2.0):
        for system, gpu, answer in (("vanilla", "a10g", 5), ("nirvana", "a10g", 4), ("nirvana", "a100", 2)):
            for g in (answer - 1, answer * int(load), answer * int(load) - 1):
                if g < 1:
                    continue
                need = answer * load
                rows.append(
                    {
                        "load": load,
                        "system": system,
                        "gpu": gpu,
                        "gpus": g,
                        "meets": g >= need,
                        "p95_latency_s": 20.0 if g >= need else 200.0,
                        "slo_attainment": 1.0 if g >= need else 0.5,
                        "usd_per_hour": g * (1.0 if gpu == "a10g" else 4.0),
                    }
                )
    points = pd.DataFrame(rows)
    recs = pd.DataFrame(
        [
            {
                "load": load,
                "offered_rps": 0.1 * load,
                "system": s,
                "gpu": gpu,
                "gpus": float(a * load),
                "meets": not (s == "vanilla" and load == 2.0),
                "usd_per_hour": a * load * (1.0 if gpu == "a10g" else 4.0),
            }
            for load in (1.0, 2.0)
            for s, gpu, a in (("vanilla", "a10g", 5), ("nirvana", "a10g", 4), ("nirvana", "a100", 2))
        ]
    )
    return points, recs


def test_plan_figure_data(tmp_path):
    from plots.plan import draw_plan, plan_data

    points, recs = _frames()
    slos = [parse_slo("p95<=30"), parse_slo("p95<60"), parse_slo("attainment>=0.9")]
    data = plan_data(points, recs, slos)
    assert [c for c, _ in data.panels] == ["p95_latency_s", "slo_attainment", "usd_per_hour"]
    assert data.bounds == {"p95_latency_s": 30.0, "slo_attainment": 0.9}  # the binding p95 bound
    assert data.loads == [1.0, 2.0] and len(data.curves) == 6
    c = next(c for c in data.curves if (c.system, c.gpu, c.load) == ("nirvana", "a100", 1.0))
    assert c.gpus.tolist() == [1, 2] and c.meets.tolist() == [False, True] and c.recommended == 2
    v = next(c for c in data.curves if (c.system, c.load) == ("vanilla", 2.0))
    assert v.recommended is None  # it missed the objectives at that load
    assert plan_data(points.iloc[:0], recs, slos) is None
    only_p95 = plan_data(points, recs, [parse_slo("p95<=30")])
    assert [c for c, _ in only_p95.panels] == ["p95_latency_s", "slo_attainment", "usd_per_hour"]
    assert {p.suffix for p in draw_plan(points, recs, slos, tmp_path)} == {".png", ".pdf"}


def test_capacity_figure_data(tmp_path):
    from plots.plan import capacity_data, draw_capacity

    points, recs = _frames()
    data = capacity_data(recs)
    assert [(c["system"], c["gpu"]) for c in data.curves] == [
        ("vanilla", "a10g"),
        ("nirvana", "a10g"),
        ("nirvana", "a100"),
    ]
    v = data.curves[0]
    assert v["offered_rps"].tolist() == [0.1, 0.2]
    assert v["gpus"][0] == 5 and math.isnan(v["gpus"][1])  # not met at 2x: no point drawn
    assert data.curves[2]["usd_per_hour"].tolist() == [8.0, 16.0]
    assert capacity_data(recs[recs["load"] == 1.0]) is None
    assert len(draw_capacity(recs, tmp_path)) == 2


@pytest.mark.xdist_group("ray")
def test_plan_on_a_local_ray_matches_the_local_pool(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    exp = _experiment(tmp_path)
    settings = PlanSettings(
        slos=[parse_slo("p95<=45")], systems=["vanilla"], gpus={"a10g": "sdxl-a10g"}, loads=[1.0]
    )
    local = run_plan(exp, settings, tmp_path / "local", jobs=1, progress=False)
    ray = run_plan(exp, settings, tmp_path / "ray", executor="ray", jobs=1, progress=False)
    assert not ray.failed and ray.evaluated == local.evaluated
    cols = ["load", "system", "gpu", "gpus", "p95_latency_s"]
    pd.testing.assert_frame_equal(ray.recommendations[cols], local.recommendations[cols])
