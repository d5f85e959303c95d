"""The trace comparison figure (``acsim trace compare``): the drawing step of
:func:`traces.compare.figure_data`.

Four panels, one line per trace: CDF of the distance to the best earlier match in requests and in
hours (log x), the pool curve P(some of m random other users' requests is similar) against m
(log-log), and the similarity histograms (each request's best earlier match, solid; random pairs
of different users' requests, dashed) with the threshold marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from plots.style import DOUBLE_COLUMN_IN, LINESTYLES, paper_style, save_figure, setting_color


def draw_trace_comparison(
    data: list[dict[str, Any]], out_dir: str | Path, stem: str = "trace_compare"
) -> list[Path]:
    """Draw the comparison of the traces in ``data`` (one :func:`traces.compare.figure_data`
    each) into ``out_dir/<stem>.png`` and ``.pdf``; returns the paths."""
    with paper_style():
        fig, axes = plt.subplots(2, 2, figsize=(DOUBLE_COLUMN_IN, 5.0))
        (ax_req, ax_h), (ax_pool, ax_sim) = axes
        for i, d in enumerate(data):
            color, style = setting_color(i), LINESTYLES[i % len(LINESTYLES)]
            for ax, key in ((ax_req, "distance_requests"), (ax_h, "distance_hours")):
                cdf = d[key]
                if cdf["x"]:
                    ax.plot(cdf["x"], cdf["p"], color=color, linestyle=style, label=d["name"])
            pool = {int(m): p for m, p in d["pool_curve"].items() if p > 0}
            if pool:
                ax_pool.plot(
                    list(pool), list(pool.values()), color=color, linestyle=style, marker="o", label=d["name"]
                )
            for key, ls, suffix in (
                ("best_similarity", "-", "best earlier"),
                ("pair_similarity", "--", "random pairs"),
            ):
                h = d[key]
                if any(h["density"]):
                    mids = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:], strict=True)]
                    ax_sim.plot(mids, h["density"], color=color, linestyle=ls, label=f"{d['name']}: {suffix}")
        threshold = data[0]["threshold"] if data else 0.65
        ax_req.set(xscale="log", xlabel="requests back to the best earlier match", ylabel="CDF")
        ax_h.set(xscale="log", xlabel="hours back to the best earlier match", ylabel="CDF")
        ax_pool.set(
            xscale="log",
            yscale="log",
            xlabel="m random requests of other users",
            ylabel=f"P(some similarity >= {threshold:.2f})",
        )
        ax_sim.axvline(threshold, color="0.5", linewidth=0.8, linestyle=":")
        ax_sim.set(xlabel="cosine similarity", ylabel="density", xlim=(-0.2, 1.0))
        ax_req.set_title(f"reuse distance (matches >= {threshold:.2f})")
        ax_h.set_title("reuse distance in time")
        ax_pool.set_title("cross-user pool curve")
        ax_sim.set_title("similarity histograms")
        for ax in (ax_req, ax_h, ax_pool):
            ax.legend(loc="best")
        ax_sim.legend(loc="upper left", fontsize=6)
        fig.tight_layout()
        return save_figure(fig, Path(out_dir), stem)
