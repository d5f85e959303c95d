"""The figure of ``acsim calibrate serve``: simulated against real latency, per request and as CDFs,
and the real over the simulated service time of each job through the run (the machine's speed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from plots.style import DOUBLE_COLUMN_IN, color_for, paper_style, plt, save_figure

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd


def validation_figure(v: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``validation.png/.pdf``: left, each request's simulated latency against its real one (the
    diagonal is a perfect prediction; a cross marks a request whose decision differs); middle,
    the latency CDFs of both, one colour per system (real solid, simulated dashed); right, each GPU
    job's real service time over its simulated one against the time it started in its system's run
    (1: the profile's speed; what departs from 1 is the prediction's error before the queue
    multiplies it)."""
    with paper_style():
        fig, (ax, cdf, speed) = plt.subplots(1, 3, figsize=(DOUBLE_COLUMN_IN, 2.6))
        top = float(max(v["real_latency_s"].max(), v["sim_latency_s"].max())) * 1.05
        ax.plot([0, top], [0, top], color="#999999", lw=0.8, zorder=0)
        for name, g in v.groupby("system", sort=False):
            c = color_for(str(name))
            same = g["k_agrees"] & g["outcome_agrees"]
            ax.scatter(g.loc[same, "real_latency_s"], g.loc[same, "sim_latency_s"], s=9, color=c, alpha=0.7, label=str(name), lw=0)
            if (~same).any():
                ax.scatter(g.loc[~same, "real_latency_s"], g.loc[~same, "sim_latency_s"], s=22, color=c, marker="x", lw=0.9)
            for col, style in (("real_latency_s", "-"), ("sim_latency_s", "--")):
                x = np.sort(g[col].to_numpy())
                cdf.plot(x, np.arange(1, len(x) + 1) / len(x), style, color=c, lw=1.2)
            jobs = g[(g["real_steps"] > 0) & (g["sim_steps"] > 0)]
            minutes = (jobs["real_start_s"] - g["arrival_s"].min()) / 60.0
            speed.scatter(minutes, jobs["real_gpu_s"] / jobs["sim_gpu_s"], s=5, color=c, alpha=0.6, lw=0)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("real latency (s)")
        ax.set_ylabel("simulated latency (s)")
        ax.set_title("per request (x: decision differs)")
        ax.legend(frameon=False, fontsize=7)
        cdf.set_xlabel("latency (s)")
        cdf.set_ylabel("share of requests")
        cdf.set_title("CDF: real (solid), simulated (dashed)")
        cdf.set_ylim(0, 1)
        speed.axhline(1.0, color="#999999", lw=0.8, zorder=0)
        speed.set_xlabel("minutes into the system's run")
        speed.set_ylabel("real / simulated service time")
        speed.set_title("each GPU job")
        fig.tight_layout()
        return save_figure(fig, out_dir, "validation")
