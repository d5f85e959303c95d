"""Approximate caching with and without a step cache, per model (``experiments/models_2026.yaml``).

Drawn when a sweep varied ``step_cache.kind``: for each model (profile) and each system, the
compute, mean latency and cost per image it takes, each as a share of vanilla's without a step
cache on the same model, with and without the step cache. A markdown table of the same figures
(``step_cache.md``) is written beside it for the docs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from plots.style import DOUBLE_COLUMN_IN, paper_style, save_figure, setting_color
from sim.base.io import atomic_write_text

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from plots.data import Results

# (summary column, panel title): each drawn as a share of the model's vanilla run without a step cache.
PANELS = (
    ("compute_used", "GPU compute"),
    ("mean_latency_s", "mean latency"),
    ("cost_per_1k_images_usd", "$ per 1k images"),
)


@dataclasses.dataclass
class StepCacheBars:
    """The figure's numbers: one row per (model, system, step cache), shares of the plain vanilla run."""

    table: pd.DataFrame  # columns profile, system, step_cache, and each PANELS column as a share
    models: list[str]
    bars: list[tuple[str, str]]  # (system, step cache) in drawing order


def step_cache_data(results: Results) -> StepCacheBars | None:
    """The bars, or None unless the sweep varied ``step_cache.kind`` and ran a baseline system."""
    s = results.summary
    if "step_cache.kind" not in results.varied or "is_baseline" not in s:
        return None
    s = s.assign(
        profile=s["profile"].astype(str) if "profile" in s else str(results.config.get("profile")),
        step_cache=s["step_cache.kind"].astype(str),
        compute_used=1.0 - s["compute_saved"].astype(float),
    )
    base = s[s["is_baseline"].astype(bool) & (s["step_cache"] == "none")].set_index("profile")
    if base.empty:
        return None
    rows = []
    for _, r in s.iterrows():
        if r["profile"] not in base.index:
            continue
        ref = base.loc[r["profile"]]
        shares = {col: float(r[col]) / float(ref[col]) if float(ref[col]) else np.nan for col, _ in PANELS}
        rows.append({"profile": r["profile"], "system": r["system"], "step_cache": r["step_cache"], **shares})
    import pandas as pd

    table = pd.DataFrame(rows)
    # Per model, "none" first, then the model's step cache, whatever it is called.
    table["with_cache"] = table["step_cache"] != "none"
    bars = list(dict.fromkeys((sy, w) for sy in dict.fromkeys(table["system"]) for w in (False, True)))
    return StepCacheBars(
        table=table,
        models=list(dict.fromkeys(table["profile"])),
        bars=[(sy, "step cache" if w else "none") for sy, w in bars],
    )


def markdown(data: StepCacheBars) -> str:
    """The figure's numbers as a markdown table (shares of plain vanilla on the same model)."""
    t = data.table
    head = "| model | system | step cache | GPU compute | mean latency | $ / 1k images |\n|---|---|---|---|---|---|\n"
    lines = [
        f"| {r.profile} | {r.system} | {r.step_cache} | {r.compute_used:.0%} | {r.mean_latency_s:.0%} "
        f"| {r.cost_per_1k_images_usd:.0%} |"
        for r in t.itertuples()
    ]
    return head + "\n".join(lines) + "\n"


def step_cache(results: Results, out_dir: Path) -> list[Path]:
    """Grouped bars per model: compute, latency and cost of each system with and without a step cache."""
    import matplotlib.pyplot as plt

    data = step_cache_data(results)
    if data is None:
        return []
    t = data.table
    x = np.arange(len(data.models))
    width = 0.8 / len(data.bars)
    with paper_style():
        fig, axes = plt.subplots(1, len(PANELS), figsize=(DOUBLE_COLUMN_IN, 2.6), sharey=True)
        for ax, (col, title) in zip(axes, PANELS, strict=True):
            for j, (system, cache) in enumerate(data.bars):
                pick = t[(t["system"] == system) & (t["with_cache"] == (cache != "none"))]
                values = pick.set_index("profile").reindex(data.models)[col].to_numpy(dtype=float)
                offset = (j - (len(data.bars) - 1) / 2) * width
                hatch = "//" if cache != "none" else None
                ax.bar(x + offset, values, width, color=setting_color(j // 2), hatch=hatch, edgecolor="white")
            ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle="--")
            ax.set_title(title, fontsize=8)
            ax.set_xticks(x, [m.replace("-a100", "").replace("-h100", "") for m in data.models], rotation=30, ha="right")
            ax.grid(axis="x", visible=False)
        axes[0].set_ylabel("share of vanilla without step cache")
        fig.tight_layout()
        handles = [
            plt.Rectangle((0, 0), 1, 1, facecolor=setting_color(j // 2), hatch="//" if c != "none" else None, edgecolor="white")
            for j, (_, c) in enumerate(data.bars)
        ]
        labels = [f"{sy} + step cache" if c != "none" else sy for sy, c in data.bars]
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=7)
        fig.subplots_adjust(bottom=0.34)
        paths = save_figure(fig, out_dir, "step_cache")
    table = out_dir / "step_cache.md"
    atomic_write_text(table, markdown(data))
    return [*paths, table]
