"""Figures of ``acsim plan``: each in a data step (tested) and a drawing step.

* ``plan``: each objective's metric, the SLO attainment and the provisioned cost against the GPU
  count, one line per (system, GPU type) through the counts the search evaluated, the
  recommended cluster starred, the objective's bound dashed; one row of panels per load.
* ``capacity``: the GPUs each system needs and what they cost per hour against the offered load
  (when the plan covered several loads), one line per (system, GPU type).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from plots.style import DOUBLE_COLUMN_IN, LINESTYLES, MARKERS, color_for, paper_style, save_figure

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from sim.base.slo import Slo

_MAX_LOADS = 4  # rows of the plan figure
_COST = ("usd_per_hour", "provisioned cost ($/hour)")


@dataclasses.dataclass
class Curve:
    """One (system, GPU type) at one load: the evaluated counts and what each gave."""

    system: str
    gpu: str
    load: float
    gpus: np.ndarray  # ascending
    values: dict[str, np.ndarray]  # metric column -> value at each count
    meets: np.ndarray  # bool per count
    recommended: int | None  # the recommended count, if any


@dataclasses.dataclass
class PlanFigure:
    """What :func:`draw_plan` draws."""

    loads: list[float]  # one row of panels each
    panels: list[tuple[str, str]]  # (summary column, axis label), the cost panel last
    bounds: dict[str, float]  # column -> the tightest objective's bound
    curves: list[Curve]
    gpu_types: list[str]
    systems: list[str]


def plan_data(points: pd.DataFrame, recs: pd.DataFrame, slos: list[Slo]) -> PlanFigure | None:
    """The curves of the plan figure from ``points.csv`` and ``plan.csv``; None when there are no points."""
    if not len(points):
        return None
    panels: list[tuple[str, str]] = []
    bounds: dict[str, float] = {}
    for s in slos:
        if s.column not in points:
            continue
        if s.column not in bounds:
            panels.append((s.column, _axis_label(s)))
            bounds[s.column] = s.value
        else:  # several objectives on one metric: the binding one
            bounds[s.column] = min(bounds[s.column], s.value) if s.upper else max(bounds[s.column], s.value)
    if "slo_attainment" in points and "slo_attainment" not in bounds:  # always shown, bound or not
        panels.append(("slo_attainment", "SLO attainment (%)"))
    panels.append(_COST)
    loads = sorted(points["load"].unique())[:_MAX_LOADS]
    rec_gpus = {
        (r["load"], r["system"], r["gpu"]): int(r["gpus"])
        for _, r in recs.iterrows()
        if bool(r["meets"]) and not math.isnan(r["gpus"])
    }
    curves = []
    for (load, system, gpu), g in points.groupby(["load", "system", "gpu"], sort=False):
        if load not in loads:
            continue
        g = g.sort_values("gpus").drop_duplicates("gpus")
        curves.append(
            Curve(
                system=str(system),
                gpu=str(gpu),
                load=float(load),
                gpus=g["gpus"].to_numpy(dtype=int),
                values={c: g[c].to_numpy(dtype=float) for c, _ in panels},
                meets=g["meets"].to_numpy(dtype=bool),
                recommended=rec_gpus.get((load, system, gpu)),
            )
        )
    return PlanFigure(
        loads=[float(x) for x in loads],
        panels=panels,
        bounds=bounds,
        curves=curves,
        # In the plan's order (the recommendations list them as planned).
        gpu_types=list(dict.fromkeys(str(x) for x in (recs["gpu"] if len(recs) else points["gpu"]))),
        systems=list(dict.fromkeys(str(x) for x in (recs["system"] if len(recs) else points["system"]))),
    )


def _axis_label(s: Slo) -> str:
    if s.metric == "attainment":
        return "SLO attainment (%)"
    if s.metric == "quality":
        return "expected CLIP score"
    return f"{s.metric} latency (s)"


def draw_plan(points: pd.DataFrame, recs: pd.DataFrame, slos: list[Slo], out_dir: Path) -> list[Path]:
    """Draw the plan figure into ``out_dir`` (PNG and PDF); nothing when there are no points."""
    import matplotlib.pyplot as plt

    fig_data = plan_data(points, recs, slos)
    if fig_data is None:
        return []
    rows, cols = len(fig_data.loads), len(fig_data.panels)
    styles = {gpu: LINESTYLES[j % len(LINESTYLES)] for j, gpu in enumerate(fig_data.gpu_types)}
    with paper_style():
        fig, axes = plt.subplots(
            rows, cols, figsize=(DOUBLE_COLUMN_IN, 0.4 + 2.1 * rows), squeeze=False, sharex="col"
        )
        for c in fig_data.curves:
            row = fig_data.loads.index(c.load)
            color = color_for(c.system)
            marker = MARKERS[fig_data.systems.index(c.system) % len(MARKERS)]
            for col, (column, _) in enumerate(fig_data.panels):
                ax = axes[row][col]
                y = c.values[column]
                ax.plot(c.gpus, y, color=color, linestyle=styles[c.gpu], linewidth=1)
                ax.scatter(c.gpus[c.meets], y[c.meets], color=color, marker=marker, s=14, zorder=3)
                ax.scatter(
                    c.gpus[~c.meets],
                    y[~c.meets],
                    facecolor="white",
                    edgecolor=color,
                    marker=marker,
                    s=14,
                    zorder=3,
                )
                if c.recommended is not None and c.recommended in c.gpus:
                    k = int(np.flatnonzero(c.gpus == c.recommended)[0])
                    ax.scatter(
                        [c.gpus[k]],
                        [y[k]],
                        marker="*",
                        s=70,
                        color=color,
                        edgecolor="black",
                        linewidth=0.5,
                        zorder=4,
                    )
        for row, load in enumerate(fig_data.loads):
            for col, (column, label) in enumerate(fig_data.panels):
                ax = axes[row][col]
                if column in fig_data.bounds:
                    ax.axhline(fig_data.bounds[column], color="0.3", linestyle=":", linewidth=1)
                if column == "slo_attainment":
                    narrow = ax.dataLim.y1 - ax.dataLim.y0 < 0.1
                    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1 if narrow else 0))
                elif column.endswith("latency_s"):
                    lo, hi = ax.dataLim.y0, ax.dataLim.y1
                    if lo > 0 and hi / lo > 30:
                        ax.set_yscale("log")
                ax.set_ylabel(label if rows == 1 else f"load {load:g}x: {label}")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[-1]:
            ax.set_xlabel("GPUs")
        fig.tight_layout()
        handles = [
            Line2D([], [], color=color_for(s), marker=MARKERS[i % len(MARKERS)])
            for i, s in enumerate(fig_data.systems)
        ]
        labels = list(fig_data.systems)
        if len(fig_data.gpu_types) > 1:
            handles += [Line2D([], [], color="0.35", linestyle=styles[g]) for g in fig_data.gpu_types]
            labels += [str(g).upper() for g in fig_data.gpu_types]
        handles += [
            Line2D([], [], color="0.35", marker="o", markerfacecolor="white", linestyle="none"),
            Line2D([], [], color="0.35", marker="*", markersize=9, markeredgecolor="black", linestyle="none"),
        ]
        labels += ["misses an objective", "recommended"]
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 0.0))
        return save_figure(fig, out_dir, "plan")


@dataclasses.dataclass
class CapacityFigure:
    """What :func:`draw_capacity` draws: per (system, GPU type), GPUs and $/hour by offered load."""

    curves: list[dict[str, Any]]  # system, gpu, offered_rps, gpus, usd_per_hour (NaN where not met)
    systems: list[str]
    gpu_types: list[str]


def capacity_data(recs: pd.DataFrame) -> CapacityFigure | None:
    """The capacity curves from ``plan.csv``; None unless it covers at least two loads."""
    if not len(recs) or recs["load"].nunique() < 2:
        return None
    curves = []
    for (system, gpu), g in recs.groupby(["system", "gpu"], sort=False):
        g = g.sort_values("offered_rps")
        met = g["meets"].to_numpy(dtype=bool)
        curves.append(
            {
                "system": str(system),
                "gpu": str(gpu),
                "offered_rps": g["offered_rps"].to_numpy(dtype=float),
                "gpus": np.where(met, g["gpus"].to_numpy(dtype=float), np.nan),
                "usd_per_hour": np.where(met, g["usd_per_hour"].to_numpy(dtype=float), np.nan),
            }
        )
    return CapacityFigure(
        curves=curves,
        systems=list(dict.fromkeys(str(x) for x in recs["system"])),
        gpu_types=list(dict.fromkeys(str(x) for x in recs["gpu"])),
    )


def draw_capacity(recs: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Draw the capacity figure into ``out_dir``; nothing for a plan of one load."""
    import matplotlib.pyplot as plt

    data = capacity_data(recs)
    if data is None:
        return []
    styles = {gpu: LINESTYLES[j % len(LINESTYLES)] for j, gpu in enumerate(data.gpu_types)}
    with paper_style():
        fig, axes = plt.subplots(1, 2, figsize=(DOUBLE_COLUMN_IN, 2.6))
        for c in data.curves:
            marker = MARKERS[data.systems.index(c["system"]) % len(MARKERS)]
            kw = {"color": color_for(c["system"]), "linestyle": styles[c["gpu"]], "marker": marker}
            axes[0].plot(c["offered_rps"], c["gpus"], **kw)
            axes[1].plot(c["offered_rps"], c["usd_per_hour"], **kw)
        axes[0].set_ylabel("GPUs needed")
        axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
        axes[1].set_ylabel("provisioned cost ($/hour)")
        for ax in axes:
            ax.set_xlabel("offered load (requests/s)")
            ax.set_ylim(bottom=0)
        fig.tight_layout()
        handles = [
            Line2D([], [], color=color_for(s), marker=MARKERS[i % len(MARKERS)])
            for i, s in enumerate(data.systems)
        ]
        labels = list(data.systems)
        if len(data.gpu_types) > 1:
            handles += [Line2D([], [], color="0.35", linestyle=styles[g]) for g in data.gpu_types]
            labels += [g.upper() for g in data.gpu_types]
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 0.0))
        return save_figure(fig, out_dir, "capacity")
