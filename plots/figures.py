"""One function per figure. Each reads a :class:`plots.data.Results`, draws what the files
support and returns the PNG and PDF paths it wrote (nothing when the data cannot show it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator, PercentFormatter

from plots.autoscaling import autoscaling
from plots.data import (
    LOAD_FIELDS,
    Results,
    Run,
    distinguishing_keys,
    offered_load_rps,
    read_records,
    timeseries,
)
from plots.reference import METRICS, comparison_data, comparison_markdown, paper_points
from plots.step_cache import step_cache
from plots.style import (
    DOUBLE_COLUMN_IN,
    LINESTYLES,
    MARKERS,
    SINGLE_COLUMN_IN,
    color_for,
    paper_style,
    save_figure,
    setting_color,
)
from plots.successors import successors
from sim.base.io import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

FigureFn = Callable[[Results, Path], list[Path]]
_MAX_RUNS_SHOWN = 4  # per-request figures (CDF, time series) overlay at most this many runs


def _has(df: pd.DataFrame, *cols: str) -> bool:
    return all(c in df.columns and df[c].notna().any() for c in cols)


def _short(key: str) -> str:
    """A swept field's name as a legend shows it: the last part of its path (the parent for ``.kind``)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "kind" and len(parts) > 1 else parts[-1]


def _fmt_value(value: Any) -> str:
    """A swept value as a legend shows it (a ladder as its thresholds; null as 'default')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "default"
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{value:g}"
    if isinstance(value, str) and value.startswith("["):
        with contextlib.suppress(ValueError):
            return _fmt_value(json.loads(value))
    if isinstance(value, list):
        if all(isinstance(r, list) and len(r) == 2 for r in value):  # a similarity -> K ladder
            return "/".join(f"{float(t):.2f}".lstrip("0") for t, _ in value)
        return ",".join(_fmt_value(v) for v in value)
    return str(value)


def _compact(x: float) -> str:
    """1500 -> '1.5k', 1500000 -> '1.5M' (tick labels)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def _text(col: pd.Series) -> pd.Series:
    """A column of swept values as legend text (NaN-safe, unlike ``astype(str)`` on pandas 3)."""
    return col.map(_fmt_value)


def _run_labels(results: Results, runs: list[Run], skip: tuple[str, ...] = ()) -> dict[str, str]:
    """A short label per run from the varied values that differ between ``runs``."""
    keys = [k for k in results.varied if k not in skip and len({str(r.values.get(k)) for r in runs}) > 1]
    return {r.name: ", ".join(f"{_short(k)}={_fmt_value(r.values.get(k))}" for k in keys) for r in runs}


def _loads(results: Results) -> dict[str, float]:
    return {r.name: offered_load_rps(r) for r in results.runs}


def _focus_runs(results: Results) -> list[Run]:
    """Runs worth overlaying in per-request figures: the heaviest offered load, the first seed."""
    runs = [r for r in results.runs if r.systems]
    if len(runs) <= 1:
        return runs
    loads = _loads(results)
    finite = [v for v in loads.values() if math.isfinite(v)]
    if finite and max(finite) > 1.01 * min(finite):
        runs = [r for r in runs if math.isfinite(loads[r.name]) and loads[r.name] >= 0.99 * max(finite)]
    if "seed" in results.varied:
        first = min(r.values["seed"] for r in runs)
        runs = [r for r in runs if r.values["seed"] == first]
    return runs[:_MAX_RUNS_SHOWN]


def _legend_below(fig: Any, handles: list[Any], labels: list[str]) -> None:
    """A figure legend under the axes (``bbox_inches="tight"`` grows the canvas to fit it)."""
    entry_in = 0.45 + 0.055 * max(map(len, labels))  # line sample + text at 7 pt
    ncol = max(1, min(len(labels), int(fig.get_figwidth() / entry_in)))
    fig.legend(handles, labels, loc="upper center", ncol=ncol, bbox_to_anchor=(0.5, 0.0), handlelength=2.4)


def _system_setting_legend(systems: list[str], settings: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """Proxies: one colour per system, one line style per setting (run)."""
    handles = [Line2D([], [], color=color_for(s)) for s in systems]
    labels = list(systems)
    if len(settings) > 1:
        handles += [Line2D([], [], color="0.35", linestyle=ls) for ls in settings.values()]
        labels += list(settings)
    return handles, labels


# ---------------------------------------------------------------------------
# Figures


def ceiling_lines(results: Results, others: list[str]) -> dict[tuple[str, str], tuple[str, float, float]]:
    """The bound a ceiling system puts on a caching system: {(bounded system, setting): (ceiling
    system, hit rate, compute saved)}, the mean over the runs of the ceiling's rows (the same
    value in every run of a policy or capacity sweep). ``setting`` joins the values of the swept
    fields ``others``, as the cache-size figure labels its lines."""
    s = results.summary
    if "is_ceiling" not in s or "bounds" not in s:
        return {}
    c = s[s["is_ceiling"].astype(str).str.lower().eq("true") & s["bounds"].notna()]
    if not len(c):
        return {}
    setting = c[others].apply(lambda r: ", ".join(map(_fmt_value, r)), axis=1) if others else ""
    means = c.assign(setting=setting).groupby(["bounds", "setting", "system"])[["hit_rate", "compute_saved"]]
    return {
        (str(b), str(st)): (str(name), float(r["hit_rate"]), float(r["compute_saved"]))
        for (b, st, name), r in means.mean().iterrows()
    }


def cache_size(results: Results, out_dir: Path) -> list[Path]:
    """Hit rate and compute saved against cache size, one line per policy (log x).

    One row of two panels per caching system. Other swept settings (e.g. isolation) get a line
    each (line style, or colour when one policy is swept); seeds draw their mean and min-max band.
    A ceiling system (``is_ceiling``) that bounds the row's system is drawn as the bound: a
    horizontal black line, what an unbounded cache would give. Offline policies (Belady, an
    offline heuristic for approximate caching, not a bound) are dashed.
    """
    import matplotlib.pyplot as plt

    s = results.summary
    if not _has(s, "cache_capacity", "hit_rate", "compute_saved", "policy"):
        return []
    caches = s["caches"].astype(bool) if "caches" in s else s["policy"].notna()
    s = s[caches & s["policy"].notna() & (s["cache_capacity"] > 0)]
    # Systems that never reuse anything (no cache) would draw a flat zero line per policy.
    s = s[s.groupby("system")["hit_rate"].transform("max") > 0]
    if s["cache_capacity"].nunique() < 2:
        return []
    others = [
        k
        for k in results.varied
        if k not in ("cache.capacity", "cache.policy", "seed") and _text(s[k]).nunique() > 1
    ]
    s = s.assign(setting=s[others].apply(lambda r: ", ".join(map(_fmt_value, r)), axis=1) if others else "")
    setting_labels = {
        v: ", ".join(f"{_short(k)}={_fmt_value(s.loc[s['setting'] == v, k].iloc[0])}" for k in others)
        for v in dict.fromkeys(s["setting"])
    }
    systems = list(dict.fromkeys(s["system"]))
    ceilings = ceiling_lines(results, others)
    caps = np.sort(s["cache_capacity"].unique())
    offline = set(s.loc[s["policy_offline"].astype(bool), "policy"]) if "policy_offline" in s else set()
    policies = sorted(s["policy"].unique(), key=lambda p: (p in offline, p))
    by_policy = len(policies) > 1
    unit = (results.config.get("cache") or {}).get("unit", "latents")
    with paper_style():
        fig, axes = plt.subplots(
            len(systems), 2, figsize=(DOUBLE_COLUMN_IN, 0.3 + 2.2 * len(systems)), sharex=True, squeeze=False
        )
        handles: dict[str, Any] = {}
        for row, system in zip(axes, systems, strict=True):
            curves: list[dict[str, Any]] = []
            for i, policy in enumerate(policies):
                for j, setting in enumerate(setting_labels):
                    g = s[(s["system"] == system) & (s["policy"] == policy) & (s["setting"] == setting)]
                    if not len(g):
                        continue
                    stats = g.groupby("cache_capacity")[["hit_rate", "compute_saved"]].agg(
                        ["mean", "min", "max"]
                    )
                    same = next((c for c in curves if c["j"] == j and c["stats"].equals(stats)), None)
                    if same is not None:  # policies that decide identically share one line and one label
                        same["names"].append(str(policy))
                        continue
                    curves.append(
                        {
                            "names": [str(policy)],
                            "i": i,
                            "j": j,
                            "stats": stats,
                            "seeds": g.groupby("cache_capacity").size().max() > 1,
                        }
                    )
            for c in curves:
                i, j, stats = c["i"], c["j"], c["stats"]
                dashed = all(n in offline for n in c["names"])
                name = " = ".join(c["names"]) + (" (offline heuristic)" if dashed else "")
                label = ", ".join(
                    x
                    for x in (
                        name if by_policy or not others else "",
                        setting_labels[list(setting_labels)[j]],
                    )
                    if x
                )
                style = {
                    "color": color_for(c["names"][0]) if by_policy or not others else setting_color(j),
                    "linestyle": "--" if dashed else LINESTYLES[j % len(LINESTYLES)] if by_policy else "-",
                    "marker": None if dashed else MARKERS[(i if by_policy else j) % len(MARKERS)],
                }
                x = stats.index.to_numpy(dtype=float)
                for ax, col in zip(row, ("hit_rate", "compute_saved"), strict=True):
                    (handles[label],) = ax.plot(x, stats[(col, "mean")], label=label, **style)
                    if c["seeds"]:  # several seeds: show their spread
                        ax.fill_between(
                            x,
                            stats[(col, "min")],
                            stats[(col, "max")],
                            color=style["color"],
                            alpha=0.15,
                            linewidth=0,
                        )
            for j, setting in enumerate(setting_labels):
                bound = ceilings.get((system, setting))
                if bound is None:
                    continue
                name, *values = bound
                label = ", ".join(x for x in (f"{name} (unbounded cache)", setting_labels[setting]) if x)
                span = [float(caps[0]), float(caps[-1])]
                for ax, value in zip(row, values, strict=True):
                    (handles[label],) = ax.plot(
                        span,
                        [value, value],
                        color=color_for(name),
                        linestyle=LINESTYLES[j % len(LINESTYLES)] if others and not by_policy else "-",
                        linewidth=1.6,
                        zorder=1,
                    )
            for ax, title in zip(row, ("hit rate", "GPU compute saved"), strict=True):
                ax.set_xscale("log")
                ax.set_ylabel(f"{title} (%)" if len(systems) == 1 else f"{system}: {title} (%)")
                top = max(ax.dataLim.y1 * 1.08, 0.01)  # headroom so a flat line is not on the frame
                ax.set_ylim(0, top)
                ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))  # no 2.5% steps
                ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if top > 0.06 else 1))
        for ax in axes.flat:
            ax.xaxis.set_minor_formatter(NullFormatter())
            if len(caps) <= 8:  # tick exactly the swept sizes
                ax.set_xticks(caps, [_compact(c) for c in caps])
                ax.xaxis.set_minor_locator(NullLocator())
        for ax in axes[-1]:
            ax.set_xlabel(f"cache size ({unit}, log scale)")
        fig.tight_layout()
        _legend_below(fig, list(handles.values()), list(handles))
        return save_figure(fig, out_dir, "cache_size")


def latency_cdf(results: Results, out_dir: Path) -> list[Path]:
    """CDF of end-to-end latency per system (per run at the heaviest load, for sweeps)."""
    import matplotlib.pyplot as plt

    runs = _focus_runs(results)
    labels = _run_labels(results, runs, skip=("seed",))
    styles = {labels[r.name]: LINESTYLES[j % len(LINESTYLES)] for j, r in enumerate(runs)}
    curves = []
    for run in runs:
        for system in run.systems:
            rec = read_records(run, system, ["latency_s"])
            lat = rec["latency_s"].dropna().to_numpy() if rec is not None else np.array([])
            if len(lat):
                curves.append((system, styles[labels[run.name]], np.sort(lat)))
    if not curves:
        return []
    slo = (results.config.get("selector") or {}).get("slo_s")
    with paper_style():
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN_IN, 2.6))
        for system, ls, lat in curves:
            y = np.arange(1, len(lat) + 1) / len(lat)
            ax.step(lat, y, where="post", color=color_for(system), linestyle=ls)
        lo = min(c[2][0] for c in curves)
        hi = max(c[2][-1] for c in curves)
        if lo > 0 and hi / lo > 30:
            ax.set_xscale("log")
        if slo:
            ax.axvline(slo, color="0.3", linestyle=":", linewidth=1)
            ax.annotate(
                f"SLO {slo:g} s",
                (slo, 0.04),
                xytext=(3, 0),
                textcoords="offset points",
                fontsize=6.5,
                color="0.3",
            )
        ax.set_xlabel("end-to-end latency (s)" + (", log scale" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel("fraction of requests")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylim(0, 1.01)
        handles, names = _system_setting_legend(list(dict.fromkeys(c[0] for c in curves)), styles)
        if len(names) > 4:
            fig.tight_layout()
            _legend_below(fig, handles, names)
        else:
            ax.legend(handles, names, loc="upper left")
        return save_figure(fig, out_dir, "latency_cdf")


def cost(results: Results, out_dir: Path) -> list[Path]:
    """Cost per 1,000 images per system (bars; several runs: grouped, or mean with min-max)."""
    import matplotlib.pyplot as plt

    s = results.summary
    if not _has(s, "cost_per_1k_images_usd"):
        return []
    s = s[s["cost_per_1k_images_usd"].notna()]
    systems = list(dict.fromkeys(s["system"]))
    run_names = list(dict.fromkeys(s["run"]))
    if len(systems) < 2 and len(run_names) > _MAX_RUNS_SHOWN:
        return []  # one bar with a sweep's spread says nothing; cache_size / pareto show that sweep
    grouped = 1 < len(run_names) <= _MAX_RUNS_SHOWN
    labels = _run_labels(results, [results.run(n) for n in run_names]) if grouped else {}
    hatches = ("", "///", "...", "xx")
    with paper_style():
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN_IN, 2.4))
        x = np.arange(len(systems))
        if grouped:
            width = 0.8 / len(run_names)
            for j, run in enumerate(run_names):
                vals = [
                    s[(s["system"] == sy) & (s["run"] == run)]["cost_per_1k_images_usd"].mean()
                    for sy in systems
                ]
                bars = ax.bar(
                    x + (j - (len(run_names) - 1) / 2) * width,
                    vals,
                    width,
                    color=[color_for(sy) for sy in systems],
                    hatch=hatches[j % len(hatches)],
                    edgecolor="white",
                    linewidth=0.5,
                )
                ax.bar_label(
                    bars, fmt="%.2f", fontsize=5.5, padding=1, rotation=90 if len(run_names) > 2 else 0
                )
            proxies = [
                plt.Rectangle(
                    (0, 0), 1, 1, facecolor="0.6", hatch=hatches[j % len(hatches)], edgecolor="white"
                )
                for j in range(len(run_names))
            ]
            fig.tight_layout()
            _legend_below(fig, proxies, [labels[r] for r in run_names])
        else:
            stats = (
                s.groupby("system", sort=False)["cost_per_1k_images_usd"]
                .agg(["mean", "min", "max"])
                .loc[systems]
            )
            err = None
            if len(run_names) > 1:
                err = np.vstack([stats["mean"] - stats["min"], stats["max"] - stats["mean"]])
            bars = ax.bar(
                x,
                stats["mean"],
                0.65,
                color=[color_for(sy) for sy in systems],
                yerr=err,
                capsize=2,
                error_kw={"linewidth": 0.8},
            )
            ax.bar_label(bars, labels=[f"${v:.2f}" for v in stats["mean"]], fontsize=6.5, padding=2)
        ax.set_xticks(x, systems, rotation=20 if len(systems) > 4 else 0)
        ax.set_ylabel("cost per 1,000 images (USD)")
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.15)
        return save_figure(fig, out_dir, "cost_per_1k")


def _frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated in (higher x, higher y), by increasing x."""
    order = np.lexsort((-y, -x))  # x descending, then y descending
    keep, best = [], -np.inf
    for i in order:
        if y[i] > best:
            keep.append(i)
            best = y[i]
    return np.array(keep[::-1], dtype=int)


def quality_pareto(results: Results, out_dir: Path) -> list[Path]:
    """Expected image quality (CLIP score) against compute saved, with the Pareto frontier; with
    ``reference:``, the paper's CLIP score of each published system beside acsim's (open markers
    at acsim's compute saved for it, joined to acsim's mean by a dotted line)."""
    import matplotlib.pyplot as plt

    s = results.summary
    if not _has(s, "quality_clip", "compute_saved"):
        return []
    s = s[s["quality_clip"].notna() & s["compute_saved"].notna()].reset_index(drop=True)
    if len(s) < 2:
        return []
    x = s["compute_saved"].to_numpy(float)
    y = s["quality_clip"].to_numpy(float)
    # Colour by system; a sweep of one system is coloured by the settings it varied (e.g. the
    # policy; sizes, loads and seeds are what each colour's points spread over).
    keys = [
        k
        for k in results.varied
        if k not in ("seed", "cache.capacity", *LOAD_FIELDS) and _text(s[k]).nunique() > 1
    ]
    if s["system"].nunique() == 1 and keys:
        group = s[keys].apply(
            lambda r: ", ".join(f"{_short(k)}={_fmt_value(v)}" for k, v in r.items()), axis=1
        )
        named = len(keys) == 1 and keys[0] in ("cache.policy", "systems")
        colors = {
            g: color_for(s.loc[group == g, keys[0]].iloc[0]) if named else setting_color(i)
            for i, g in enumerate(dict.fromkeys(group))
        }
    else:
        group = s["system"].astype(object)
        colors = {g: color_for(g) for g in dict.fromkeys(group)}
    with paper_style():
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN_IN, 2.7))
        front = _frontier(x, y)
        ax.plot(
            x[front], y[front], color="0.55", linewidth=1, linestyle="--", zorder=1, drawstyle="steps-pre"
        )
        for k, (label, color) in enumerate(colors.items()):
            m = (group == label).to_numpy()
            ax.scatter(
                x[m],
                y[m],
                s=18,
                color=color,
                marker=MARKERS[k % len(MARKERS)],
                label=label,
                zorder=3,
                edgecolor="white",
                linewidth=0.4,
            )
        on_front = np.zeros(len(s), bool)
        on_front[front] = True
        ax.scatter(x[on_front], y[on_front], s=46, facecolor="none", edgecolor="0.2", linewidth=0.7, zorder=2)
        paper = paper_points(results)
        if paper is not None:
            trace, pts = paper
            for _, p in pts.iterrows():
                ax.plot([p["compute_saved"]] * 2, [p["clip_acsim"], p["clip_paper"]], color="0.45", linestyle=":", linewidth=0.8, zorder=1)
            ax.scatter(
                pts["compute_saved"], pts["clip_paper"], s=30, marker="D", facecolor="none",
                edgecolor=[color_for(n) for n in pts["system"]], linewidth=1.0, zorder=4,
                label=f"paper ({trace}), at acsim's saving",
            )
        handles, labels = ax.get_legend_handles_labels()
        handles.append(
            Line2D(
                [],
                [],
                color="0.55",
                linestyle="--",
                marker="o",
                markerfacecolor="none",
                markeredgecolor="0.2",
            )
        )
        labels.append("Pareto frontier")
        if len(labels) > 5 or max(map(len, labels)) > 24:
            fig.tight_layout()
            _legend_below(fig, handles, labels)
        else:
            ax.legend(handles, labels, loc="best")
        ax.set_xlabel("GPU compute saved (%)")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if np.ptp(x) > 0.06 else 1))
        ax.set_ylabel("expected CLIP score")
        ax.margins(0.08)
        return save_figure(fig, out_dir, "quality_pareto")


@dataclasses.dataclass
class SloCurves:
    """What :func:`slo_vs_load` draws: one curve per (system, setting) of SLO attainment by load."""

    points: pd.DataFrame  # system, setting, load (requests/s, ascending), slo_attainment (mean over seeds)
    systems: list[str]  # in the order of the results
    settings: dict[str, str]  # setting label -> line style
    xlabel: str


def slo_vs_load_data(results: Results) -> SloCurves | None:
    """The curves of the SLO figure, or None when the results hold no load sweep in full mode.

    A swept arrival rate is the x axis as configured; otherwise (e.g. a swept time scale) the
    load each run's trace actually offered: requests over its span. Runs that differ only by
    seed are averaged per load level.
    """
    s = results.summary
    if not _has(s, "slo_attainment") or not any(f in results.varied for f in LOAD_FIELDS):
        return None
    if "trace.arrival.rate" in results.varied:
        s = s.assign(offered_rps=s["trace.arrival.rate"].astype(float))
        xlabel = "mean arrival rate (requests/s, configured)"
    else:
        s = s.assign(offered_rps=s["run"].map(_loads(results)))
        xlabel = "offered load (requests/s, measured)"
    s = s[s["slo_attainment"].notna() & s["offered_rps"].notna()]
    if s["offered_rps"].round(6).nunique() < 2:
        return None
    others = [k for k in results.varied if k not in (*LOAD_FIELDS, "seed") and _text(s[k]).nunique() > 1]
    s = s.assign(setting=s[others].apply(lambda r: ", ".join(map(_fmt_value, r)), axis=1) if others else "")
    settings: dict[str, str] = {}
    labels: dict[str, str] = {}
    for v in dict.fromkeys(s["setting"]):
        row = s[s["setting"] == v].iloc[0]
        label = ", ".join(f"{_short(k)}={_fmt_value(row[k])}" for k in others)
        labels[v] = label
        settings[label] = LINESTYLES[len(settings) % 6]
    points = (
        s.assign(load=s["offered_rps"].round(3), setting=s["setting"].map(labels))
        .groupby(["system", "setting", "load"], sort=False)["slo_attainment"]
        .mean()
        .reset_index()
        .sort_values("load", kind="stable")
    )
    return SloCurves(points=points, systems=list(dict.fromkeys(s["system"])), settings=settings, xlabel=xlabel)


def slo_vs_load(results: Results, out_dir: Path) -> list[Path]:
    """SLO attainment against offered load: colour per system, line style per other varied setting."""
    import matplotlib.pyplot as plt

    curves = slo_vs_load_data(results)
    if curves is None:
        return []
    settings = curves.settings
    slo = (results.config.get("selector") or {}).get("slo_s")
    systems = curves.systems
    with paper_style():
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN_IN, 2.6))
        for (system, setting), g in curves.points.groupby(["system", "setting"], sort=False):
            ax.plot(
                g["load"].to_numpy(),
                g["slo_attainment"].to_numpy(),
                color=color_for(system),
                linestyle=settings[setting],
                marker=MARKERS[systems.index(system) % len(MARKERS)],
            )
        ax.set_xlabel(curves.xlabel)
        ax.set_ylabel(f"requests within the {slo:g} s SLO (%)" if slo else "SLO attainment (%)")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylim(-0.02, 1.02)
        handles, names = _system_setting_legend(systems, settings)
        for h, name in zip(handles, names, strict=True):
            if name in systems:
                h.set_marker(MARKERS[systems.index(name) % len(MARKERS)])
        fig.tight_layout()
        _legend_below(fig, handles, names)
        return save_figure(fig, out_dir, "slo_vs_load")


def load_timeseries(results: Results, out_dir: Path) -> list[Path]:
    """Offered load, queue length and hit rate over time (per-minute data, averaged into windows)."""
    import matplotlib.pyplot as plt

    runs = _focus_runs(results)
    labels = _run_labels(results, runs, skip=("seed",))
    styles = {labels[r.name]: LINESTYLES[j % len(LINESTYLES)] for j, r in enumerate(runs)}
    series = []
    for run in runs:
        for system in run.systems:
            ts = timeseries(run, system)
            if ts is not None and len(ts) > 1 and ts["queue"].notna().any():
                series.append((run, system, styles[labels[run.name]], ts))
    if not series:
        return []
    n_min = max(len(ts) for *_, ts in series)
    window = max(1, math.ceil(n_min / 150))  # ~150 points per line stay readable at print size
    with paper_style():
        fig, axes = plt.subplots(3, 1, figsize=(DOUBLE_COLUMN_IN, 4.2), sharex=True)
        seen_runs = set()
        for run, system, ls, ts in series:
            # Window averages; the hit rate is pooled over the window's requests, not averaged per minute.
            ts = ts.assign(hits=ts["hit_rate"].fillna(0.0) * ts["load_rps"])
            w = ts.groupby(ts["minute"] // window).mean(numeric_only=True)
            w["hit_rate"] = (w["hits"] / w["load_rps"]).where(w["load_rps"] > 0)
            hours = (w.index.to_numpy() * window + window / 2) / 60.0
            if run.name not in seen_runs:  # the load is the same for every system of a run
                seen_runs.add(run.name)
                axes[0].plot(hours, w["load_rps"], color="0.25", linestyle=ls, linewidth=1)
            axes[1].plot(hours, w["queue"], color=color_for(system), linestyle=ls, linewidth=1)
            if w["hit_rate"].fillna(0.0).max() > 0:  # systems without a cache would only add a zero line
                axes[2].plot(hours, w["hit_rate"], color=color_for(system), linestyle=ls, linewidth=1)
        avg = f"{window}-min averages" if window > 1 else "per minute"
        axes[0].set_ylabel("offered load\n(requests/s)")
        axes[1].set_ylabel("queued requests")
        axes[2].set_ylabel("hit rate (%)")
        axes[2].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        axes[0].set_ylim(bottom=0)
        axes[1].set_ylim(bottom=0)
        axes[2].set_ylim(-0.02, 1.02)
        axes[2].set_xlabel(f"time since the first request (h); {avg}")
        fig.align_ylabels(axes)
        fig.tight_layout(h_pad=0.4)
        handles, names = _system_setting_legend(list(dict.fromkeys(x[1] for x in series)), styles)
        _legend_below(fig, handles, names)
        return save_figure(fig, out_dir, "timeseries")


def quality_metrics(results: Results, out_dir: Path) -> list[Path]:
    """FID, CLIP score and PickScore per system, one panel each (bars; mean and min-max over runs).

    Runs that differ in other settings than the seed get a bar each (hatched by setting).
    """
    import matplotlib.pyplot as plt

    s = results.summary
    if not all(_has(s, col) for col, *_ in METRICS) or s["system"].nunique() < 2:
        return []
    others = distinguishing_keys(s, [k for k in results.varied if k != "seed"])
    label = (lambda r: ", ".join(f"{_short(k)}={_fmt_value(v)}" for k, v in r.items())) if others else None
    s = s.assign(setting=s[others].apply(label, axis=1) if others else "")
    settings = list(dict.fromkeys(s["setting"]))
    if len(settings) > _MAX_RUNS_SHOWN:
        return []  # too many bars to read; the paper comparison or cache_size figures show sweeps
    systems = list(dict.fromkeys(s["system"]))
    hatches = ("", "///", "...", "xx")
    width = 0.8 / len(settings)
    with paper_style():
        fig, axes = plt.subplots(1, 3, figsize=(DOUBLE_COLUMN_IN, 2.4))
        x = np.arange(len(systems))
        for ax, (col, _, name, higher) in zip(axes, METRICS, strict=True):
            for j, setting in enumerate(settings):
                g = s[s["setting"] == setting].groupby("system")[col].agg(["mean", "min", "max"]).reindex(systems)
                # Clipped at 0: equal runs leave a rounding error of either sign.
                err = (
                    np.maximum(np.vstack([g["mean"] - g["min"], g["max"] - g["mean"]]), 0.0)
                    if len(s) > len(systems)
                    else None
                )
                ax.bar(
                    x + (j - (len(settings) - 1) / 2) * width,
                    g["mean"],
                    width,
                    yerr=err,
                    capsize=1.5,
                    error_kw={"linewidth": 0.6},
                    color=[color_for(sy) for sy in systems],
                    hatch=hatches[j % len(hatches)],
                    edgecolor="white",
                    linewidth=0.4,
                )
            ax.set_xticks(x, systems, rotation=35, ha="right")
            ax.set_title(f"{name} ({'higher' if higher else 'lower'} is better)")
            ax.grid(axis="x", visible=False)
            lo, hi = np.nanmin(s[col]), np.nanmax(s[col])
            ax.set_ylim(max(0.0, lo - 0.25 * (hi - lo + 1e-9)), hi + 0.15 * (hi - lo + 1e-9))
        fig.tight_layout()
        if len(settings) > 1:
            proxies = [Patch(facecolor="0.6", hatch=hatches[j % len(hatches)], edgecolor="white") for j in range(len(settings))]
            _legend_below(fig, proxies, settings)
        return save_figure(fig, out_dir, "quality_metrics")


def paper_comparison(results: Results, out_dir: Path) -> list[Path]:
    """The paper's quality table beside the simulated one: FID, CLIP score and PickScore per
    published system; the paper's traces as outlined bars, each simulated setting filled in the
    system's colour (bars: mean over seeds; whiskers: min-max, or the paper's published range).
    Also writes the table as ``paper_comparison.md`` and ``.csv`` beside the figure. Needs
    ``reference:``."""
    import matplotlib.pyplot as plt

    comp = comparison_data(results)
    if comp is None:
        return []
    t = comp.table
    sources = comp.sources
    papers = [x for x in sources if x.startswith("paper")]
    hatches = ("", "///", "...", "xx")
    sims = [x for x in sources if x.startswith("acsim")]
    width = 0.8 / len(sources)
    with paper_style():
        fig, axes = plt.subplots(3, 1, figsize=(DOUBLE_COLUMN_IN, 5.4), sharex=True)
        x = np.arange(len(comp.labels))
        for ax, (_, _, name, higher) in zip(axes, METRICS, strict=True):
            part = t[t["metric"] == name].set_index(["label", "source"])
            for j, src in enumerate(sources):
                rows = [part.loc[(lab, src)] if (lab, src) in part.index else None for lab in comp.labels]
                mean = np.array([r["mean"] if r is not None else np.nan for r in rows])
                lo = np.array([r["lo"] if r is not None else np.nan for r in rows])
                hi = np.array([r["hi"] if r is not None else np.nan for r in rows])
                if src in papers:  # published: outlined, hatched per paper trace
                    style = {"color": "white", "edgecolor": "0.15", "hatch": hatches[papers.index(src) % 4]}
                else:  # simulated: the colour of the acsim system the label is compared with
                    style = {
                        "color": [color_for(comp.systems[lab]) for lab in comp.labels],
                        "edgecolor": "white",
                        "hatch": hatches[sims.index(src) % len(hatches)],
                    }
                ax.bar(
                    x + (j - (len(sources) - 1) / 2) * width,
                    mean,
                    width,
                    yerr=np.maximum(np.vstack([mean - lo, hi - mean]), 0.0),
                    capsize=1.2,
                    error_kw={"linewidth": 0.6},
                    linewidth=0.5,
                    **style,
                )
            ax.set_ylabel(f"{name}\n({'higher' if higher else 'lower'} is better)")
            ax.grid(axis="x", visible=False)
            vals = part[["lo", "hi"]].to_numpy(dtype=float)
            lo_v, hi_v = np.nanmin(vals), np.nanmax(vals)
            ax.set_ylim(max(0.0, lo_v - 0.3 * (hi_v - lo_v)), hi_v + 0.1 * (hi_v - lo_v))
        axes[-1].set_xticks(x, comp.labels, rotation=20, ha="right")
        fig.tight_layout()
        proxies = [Patch(facecolor="white", edgecolor="0.15", hatch=hatches[i % 4]) for i in range(len(papers))]
        proxies += [Patch(facecolor="0.6", hatch=hatches[i % len(hatches)], edgecolor="white") for i in range(len(sims))]
        _legend_below(fig, proxies, [*papers, *(f"{src} (system colours)" for src in sims)])
        paths = save_figure(fig, out_dir, "paper_comparison")
    atomic_write_text(Path(out_dir) / "paper_comparison.md", comparison_markdown(comp))
    t.to_csv(Path(out_dir) / "paper_comparison.csv", index=False)
    return paths


ROUTING_FIELDS = ("cluster.router.kind", "cache.placement")


@dataclasses.dataclass
class TopologyBars:
    """What :func:`topology` draws: hit rate and p95 latency per (router, cache layout) and system."""

    table: pd.DataFrame  # system, router, layout, hit_rate, p95_latency_s (mean over seeds)
    routers: list[str]
    layouts: list[str]  # labels of the other settings (placement, tier, capacity, ...)
    systems: list[str]  # caching systems, one row of panels each
    baseline: dict[str, float]  # router -> the baseline system's p95 (mean over layouts)


def topology_data(results: Results) -> TopologyBars | None:
    """The bars of the topology figure, or None unless a sweep varied the router or the placement
    in full mode."""
    s = results.summary
    if not any(k in results.varied for k in ROUTING_FIELDS) or not _has(s, "hit_rate", "p95_latency_s"):
        return None
    router_default = ((results.config.get("cluster") or {}).get("router") or {}).get("kind", "round-robin")
    router = s["cluster.router.kind"].astype(str) if "cluster.router.kind" in results.varied else router_default
    others = [k for k in results.varied if k not in ("cluster.router.kind", "seed") and _text(s[k]).nunique() > 1]
    layout = (
        s[others].apply(lambda r: ", ".join(f"{_short(k)}={_fmt_value(v)}" for k, v in r.items()), axis=1)
        if others
        else ""
    )
    s = s.assign(router=router, layout=layout)
    table = (
        s.groupby(["system", "router", "layout"], sort=False)[["hit_rate", "p95_latency_s"]].mean().reset_index()
    )
    caching = s["caches"].astype(bool) if "caches" in s else s["hit_rate"] > 0
    # The baseline is what the system says it is (summary column is_baseline), never a name.
    base = s["is_baseline"].to_numpy(dtype=bool) if "is_baseline" in s else np.zeros(len(s), dtype=bool)
    baseline = s[base].groupby("router")["p95_latency_s"].mean().to_dict()
    return TopologyBars(
        table=table,
        routers=list(dict.fromkeys(s["router"])),
        layouts=list(dict.fromkeys(s["layout"])),
        systems=list(dict.fromkeys(s.loc[caching, "system"])),
        baseline=baseline,
    )


def topology(results: Results, out_dir: Path) -> list[Path]:
    """Hit rate and p95 latency by router (groups) and cache layout (bars), per caching system."""
    import matplotlib.pyplot as plt

    data = topology_data(results)
    if data is None or not data.systems:
        return []
    t = data.table
    width = 0.8 / len(data.layouts)
    x = np.arange(len(data.routers))
    with paper_style():
        fig, axes = plt.subplots(
            len(data.systems), 2, figsize=(DOUBLE_COLUMN_IN, 0.4 + 2.2 * len(data.systems)), squeeze=False
        )
        for row, system in zip(axes, data.systems, strict=True):
            for j, layout in enumerate(data.layouts):
                g = t[(t["system"] == system) & (t["layout"] == layout)].set_index("router").reindex(data.routers)
                offset = (j - (len(data.layouts) - 1) / 2) * width
                for ax, col in zip(row, ("hit_rate", "p95_latency_s"), strict=True):
                    bars = ax.bar(x + offset, g[col], width, color=setting_color(j), label=layout or None)
                    fmt = "{:.0%}" if col == "hit_rate" else "{:.0f}"
                    ax.bar_label(bars, labels=[fmt.format(v) if v == v else "" for v in g[col]], fontsize=5.5, padding=1)
            if data.baseline:
                for k, r in enumerate(data.routers):
                    if r in data.baseline:
                        row[1].hlines(data.baseline[r], k - 0.45, k + 0.45, color="0.2", linestyle="--", linewidth=1)
            row[0].set_ylabel(f"{system}: hit rate (%)" if len(data.systems) > 1 else "hit rate (%)")
            row[0].yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            row[1].set_ylabel(f"{system}: p95 latency (s)" if len(data.systems) > 1 else "p95 latency (s)")
            for ax in row:
                ax.set_xticks(x, data.routers)
                ax.grid(axis="x", visible=False)
                ax.margins(y=0.15)
        fig.tight_layout()
        handles = [plt.Rectangle((0, 0), 1, 1, color=setting_color(j)) for j in range(len(data.layouts))]
        labels = [lay or "cache" for lay in data.layouts]
        if data.baseline:
            handles.append(Line2D([], [], color="0.2", linestyle="--"))
            labels.append("baseline p95 (no cache)")
        _legend_below(fig, handles, labels)
        return save_figure(fig, out_dir, "topology")


FIGURES: dict[str, FigureFn] = {
    "cache_size": cache_size,
    "latency_cdf": latency_cdf,
    "cost_per_1k": cost,
    "quality_pareto": quality_pareto,
    "slo_vs_load": slo_vs_load,
    "timeseries": load_timeseries,
    "quality_metrics": quality_metrics,
    "paper_comparison": paper_comparison,
    "topology": topology,
    "step_cache": step_cache,
    "autoscaling": autoscaling,
    "successors": successors,
}
