"""Nirvana against its successors (``experiments/successors.yaml``): MoDM-style image reuse with a
small model and a DiffServe-style cascade, beside vanilla generation and NIRVANA.

Drawn when the summary holds a two-model system (one that declares ``pool_models``). One group of
bars per load (the sweep's ``trace.arrival.rate``, or one group): p95 latency (log scale), SLO
attainment and CLIP score per system, and the cost per 1,000 images against quality. When the
sweep varied ``cluster.autoscale.rule``, a second row sets the static cluster's bill for the GPUs
it held against each rule's, per load, with the share within the SLO on each bar. A markdown
table (``successors.md``) beside it carries every run's figures for the docs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from plots.markdown import markdown_table
from plots.style import DOUBLE_COLUMN_IN, color_for, paper_style, save_figure, setting_color
from sim.base.io import atomic_write_text
from sim.results.metrics import held_per_1k_images
from sim.systems import SYSTEMS

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from plots.data import Results

LOAD = "trace.arrival.rate"
RULE = "cluster.autoscale.rule"
_PANELS = (("p95_latency_s", "p95 latency (s)"), ("slo_attainment", "SLO met"), ("quality_clip", "CLIP score"))


def markdown(summary: pd.DataFrame, varied: list[str]) -> str:
    """Per run and system: hit rate, compute saved, p95 latency, SLO met, CLIP, PickScore, $/1k images."""
    head = [*varied, "system", "hit rate", "compute saved", "p95 latency s", "SLO met", "CLIP", "PickScore", "$ / 1k images"]
    rows = []
    for _, r in summary.iterrows():
        cells = [str(r[k]) for k in varied] + [
            str(r["system"]),
            f"{r['hit_rate']:.1%}",
            f"{r['compute_saved']:.1%}",
            f"{r['p95_latency_s']:.1f}",
            f"{r['slo_attainment']:.1%}",
            f"{r['quality_clip']:.2f}",
            f"{r['quality_pickscore']:.2f}",
            f"{r['cost_per_1k_images_usd']:.3f}",
        ]
        rows.append(cells)
    return markdown_table(head, rows)


def successors(results: Results, out_dir: Path) -> list[Path]:
    """p95 latency, SLO attainment and quality per system and load, and cost against quality."""
    import matplotlib.pyplot as plt

    s = results.summary
    names = list(dict.fromkeys(s["system"].astype(str)))
    if not any(n in SYSTEMS and SYSTEMS[n].pool_models for n in names) or "p95_latency_s" not in s:
        return []
    # One row per system and load: the first value of any other varied setting.
    others = [k for k in results.varied if k != LOAD]
    rows = s.drop_duplicates([*([LOAD] if LOAD in s else []), "system"]) if others else s
    loads = list(dict.fromkeys(rows[LOAD])) if LOAD in rows else [None]
    scaled = RULE in results.varied and "cost_provisioned_usd" in s
    with paper_style():
        fig = plt.figure(figsize=(DOUBLE_COLUMN_IN, 4.8 if scaled else 2.4))
        grid = fig.add_gridspec(2 if scaled else 1, 4)
        _static_panels([fig.add_subplot(grid[0, c]) for c in range(4)], rows, names, loads)
        if scaled:
            # The static cluster against each autoscaling rule (the first value of other settings).
            rest = [k for k in others if k != RULE]
            part = s[(s[rest] == s[rest].iloc[0]).all(axis=1)] if rest else s
            for j, load in enumerate(loads[:2]):
                ax = fig.add_subplot(grid[1, 2 * j : 2 * j + 2])
                _held_panel(ax, part if load is None else part[part[LOAD] == load], names)
                ax.set_title(("" if load is None else f"{load} req/s: ") + "$ / 1k images held (SLO met above)")
        fig.tight_layout()
        paths = save_figure(fig, out_dir, "successors")
    table = out_dir / "successors.md"
    atomic_write_text(table, markdown(s, results.varied))
    return [*paths, table]


def _static_panels(axes: list, rows: pd.DataFrame, names: list[str], loads: list) -> None:
    """p95 latency, SLO met and CLIP per system (a bar per load), and cost against CLIP."""
    width = 0.8 / len(loads)
    x = np.arange(len(names))
    for j, load in enumerate(loads):
        part = rows if load is None else rows[rows[LOAD] == load]
        by = part.set_index("system")
        label = "load" if load is None else f"{load} req/s"
        for ax, (col, _) in zip(axes[:3], _PANELS, strict=True):
            ax.bar(x + (j - (len(loads) - 1) / 2) * width, [by[col].get(n, np.nan) for n in names], width,
                   color=setting_color(j), label=label)
        for n in names:
            if n in by.index:
                axes[3].scatter(by.loc[n, "quality_clip"], by.loc[n, "cost_per_1k_images_usd"], color=color_for(n),
                                marker="os^D"[j % 4], s=18)
    for ax, (_, title) in zip(axes[:3], _PANELS, strict=True):
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_title(title)
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, 1.05)
    axes[2].set_ylim(20, None)  # the scores differ by a few points: bars from 0 hide them
    axes[3].set_xlabel("CLIP score")
    axes[3].set_title("$ / 1k images")
    for n in names:
        axes[3].scatter([], [], color=color_for(n), label=n, s=18)
    axes[3].legend(fontsize="x-small", loc="best")
    axes[0].legend(fontsize="x-small", loc="upper left")


def _held_panel(ax, part: pd.DataFrame, names: list[str]) -> None:
    """Per system, a bar per autoscaling rule (none: the static cluster) of the bill for the GPUs
    held per 1,000 images, labelled with the share of requests within the SLO."""
    rules = list(dict.fromkeys(part[RULE].astype(str)))
    width = 0.8 / len(rules)
    x = np.arange(len(names))
    for j, rule in enumerate(rules):
        by = part[part[RULE].astype(str) == rule].drop_duplicates("system").set_index("system")
        held = [held_per_1k_images(by.loc[n]) if n in by.index else np.nan for n in names]
        xs = x + (j - (len(rules) - 1) / 2) * width
        ax.bar(xs, held, width, color=setting_color(j), label="static" if rule == "none" else rule)
        for xi, h, n in zip(xs, held, names, strict=True):
            if n in by.index:
                ax.annotate(f"{by.loc[n, 'slo_attainment']:.0%}", (xi, h), ha="center", va="bottom", fontsize="xx-small")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.3 * float(np.nanmax(ax.get_ylim())))  # room for the legend above the bars
    ax.legend(fontsize="x-small", loc="upper center", ncol=len(rules))
