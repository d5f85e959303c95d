"""A static cluster against autoscaled ones, over the day (``experiments/autoscaling.yaml``).

Drawn when a sweep varied ``cluster.autoscale.rule``: one column per value of the sweep's other
settings (e.g. the day's swing), the offered load on top and the GPUs each cluster held below
(one colour per rule, one line style per system). A markdown table (``autoscaling.md``) beside it
gives each run's GPUs held, provisioned cost, p95 latency and SLO attainment, for the docs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from plots.data import raw_timeseries
from plots.markdown import markdown_table
from plots.style import DOUBLE_COLUMN_IN, LINESTYLES, paper_style, save_figure, setting_color
from sim.base.io import atomic_write_text
from sim.results.metrics import held_per_1k_images

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from plots.data import Results, Run

RULE = "cluster.autoscale.rule"


def _held(run: Run, system: str, static_gpus: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(hours, requests/s, GPUs held) per minute of one system's run; a static cluster holds its size."""
    ts = raw_timeseries(run, system)
    if ts is None or len(ts) < 2:
        return None
    t = ts["t_s"].to_numpy(dtype=float)
    bin_s = float(np.median(np.diff(t)))
    held = ts["gpus_held"].to_numpy(dtype=float) if "gpus_held" in ts else np.full(len(ts), static_gpus)
    return t / 3600.0, ts["arrivals"].to_numpy(dtype=float) / bin_s, held


def _windowed(values: np.ndarray, window: int) -> np.ndarray:
    cut = len(values) // window * window
    return values[:cut].reshape(-1, window).mean(axis=1) if cut else values


def markdown(summary: pd.DataFrame, others: list[str]) -> str:
    """Per run and system: GPUs held (mean, max), provisioned $/1k images, p95 latency, SLO met."""
    head = [*others, "rule", "system", "GPUs held (mean / max)", "$ / 1k images held", "p95 latency s", "SLO met"]
    rows = []
    for _, r in summary.iterrows():
        cells = [str(r[k]) for k in others] + [
            str(r[RULE]),
            str(r["system"]),
            f"{r['gpus_mean']:.2f} / {int(r['gpus_peak'])}",
            f"{held_per_1k_images(r):.3f}",
            f"{r['p95_latency_s']:.1f}",
            f"{r['slo_attainment']:.1%}",
        ]
        rows.append(cells)
    return markdown_table(head, rows)


def autoscaling(results: Results, out_dir: Path) -> list[Path]:
    """Offered load and GPUs held over time, static against autoscaled, per other setting."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    s = results.summary
    if RULE not in results.varied or "gpus_mean" not in s:
        return []
    others = [k for k in results.varied if k != RULE and s[k].nunique() > 1]
    groups = list(s.groupby(others, sort=False)) if others else [((), s)]
    # A setting run under one rule only (e.g. a static cluster's other controllers) compares nothing.
    groups = [(key, rows) for key, rows in groups if rows[RULE].nunique() > 1] or groups
    rules = list(dict.fromkeys(s[RULE].astype(str)))
    systems = list(dict.fromkeys(s["system"].astype(str)))
    with paper_style():
        fig, axes = plt.subplots(2, len(groups), figsize=(DOUBLE_COLUMN_IN, 3.8), sharex="col", squeeze=False)
        for col, (key, rows) in enumerate(groups):
            top, bottom = axes[0, col], axes[1, col]
            drew_load, unit = False, "hours"
            for _, r in rows.iterrows():
                got = _held(results.run(r["run"]), str(r["system"]), float(r["gpus_mean"]))
                if got is None:
                    continue
                hours, load, held = got
                window = max(1, math.ceil(len(hours) / 150))  # ~150 points per line stay readable
                unit = "days" if hours[-1] > 72 else "hours"  # a production trace's weeks read in days
                h = _windowed(hours / 24 if unit == "days" else hours, window)
                if not drew_load:
                    top.plot(h, _windowed(load, window), color="0.25", linewidth=1)
                    drew_load = True
                style = LINESTYLES[systems.index(str(r["system"])) % len(LINESTYLES)]
                bottom.plot(h, _windowed(held, window), color=setting_color(rules.index(str(r[RULE]))), linestyle=style, linewidth=1)
            values = key if isinstance(key, tuple) else (key,)
            top.set_title(", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, values, strict=True)) or "load")
            bottom.set_xlabel(unit)
        axes[0, 0].set_ylabel("offered load\n(requests/s)")
        axes[1, 0].set_ylabel("GPUs held")
        fig.tight_layout()
        handles = [Line2D([], [], color=setting_color(i)) for i in range(len(rules))]
        handles += [Line2D([], [], color="0.35", linestyle=LINESTYLES[j % len(LINESTYLES)]) for j in range(len(systems))]
        labels = [("static" if r == "none" else r) for r in rules] + systems
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
        paths = save_figure(fig, out_dir, "autoscaling")
    table = out_dir / "autoscaling.md"
    atomic_write_text(table, markdown(s, others))
    return [*paths, table]
