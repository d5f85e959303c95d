"""The readable tables acsim prints: the comparison at the end of a run, and the list of profiles."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, TextIO

import pandas as pd

from sim.engine.workers import job_work
from sim.results.metrics import held_per_1k_images

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

# (column, header, format); a column missing from the summary (e.g. latency in
# cache-only mode) is left out of the table.
_COLUMNS = (
    ("system", "system", "{}"),
    ("hit_rate", "hit rate", "{:.1%}"),
    ("compute_saved", "compute saved", "{:.1%}"),
    ("quality_clip", "CLIP", "{:.2f}"),
    ("quality_pickscore", "PickScore", "{:.2f}"),
    ("quality_fid", "FID", "{:.2f}"),
    ("mean_latency_s", "mean lat s", "{:.2f}"),
    ("p95_latency_s", "p95 lat s", "{:.2f}"),
    ("mean_queue_s", "queue s", "{:.2f}"),
    ("gpu_utilization", "GPU util", "{:.0%}"),
    ("offered_load", "offered load", "{:.0%}"),
    ("slo_attainment", "SLO met", "{:.1%}"),
    ("cost_per_1k_images_usd", "$/1k img", "{:.3f}"),
    ("holes", "holes", "{:,.0f}"),
    ("evictions", "evictions", "{:,.0f}"),
)


def _fmt(fmt: str, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def format_summary(summary: pd.DataFrame) -> str:
    """Render summary rows as an aligned text table, with the savings against the baseline below it.

    The baseline is the row whose system declares ``is_baseline`` (vanilla generation).
    """
    cols = [c for c in _COLUMNS if c[0] in summary.columns and summary[c[0]].notna().any()]
    if "gpus_mean" in summary and (summary["gpus_mean"] != summary["gpus_peak"]).any():
        # An autoscaled cluster: what it held, and the bill of holding it (not only the busy time).
        summary = summary.assign(
            gpus_held=[f"{m:.1f} (max {p})" for m, p in zip(summary["gpus_mean"], summary["gpus_peak"], strict=True)],
            held_per_1k=held_per_1k_images(summary),
        )
        at = next(i for i, c in enumerate(cols) if c[0] == "cost_per_1k_images_usd") + 1
        cols[at:at] = [("gpus_held", "GPUs held", "{}"), ("held_per_1k", "$/1k held", "{:.3f}")]
    ceiling = summary["is_ceiling"].astype(bool) if "is_ceiling" in summary else pd.Series(False, summary.index)
    rows = [[h for _, h, _ in cols]]
    rows += [
        [_fmt(f, r[c]) + (" (bound)" if c == "system" and is_bound else "") for c, _, f in cols]
        for (_, r), is_bound in zip(summary.iterrows(), ceiling, strict=True)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    is_base = summary["is_baseline"].astype(bool) if "is_baseline" in summary else pd.Series(False, summary.index)
    base = summary[is_base]
    if len(base) == 1:
        b = base.iloc[0]
        notes = []
        for _, r in summary[~is_base].iterrows():
            parts = [f"compute {-r['compute_saved']:+.1%}"]
            for col, label in (("mean_latency_s", "latency"), ("cost_usd", "cost")):
                if col in r and pd.notna(r.get(col)) and pd.notna(b.get(col)) and b[col] > 0:
                    parts.append(f"{label} {r[col] / b[col] - 1:+.1%}")
            if pd.notna(r.get("quality_clip")) and pd.notna(b.get("quality_clip")):
                parts.append(f"CLIP {r['quality_clip'] - b['quality_clip']:+.2f}")
            notes.append(f"  {r['system']:>10s}: " + ", ".join(parts))
        if notes:
            lines += ["", f"against {b['system']}:", *notes]
    for _, r in summary[ceiling].iterrows():
        lines.append(
            f"\n{r['system']} (bound): every request at the K of its best earlier match, as from an "
            f"unbounded cache; no {r['bounds']} policy or cache size can save more."
        )
    return "\n".join(lines)


def describe_cluster(exp: Experiment) -> str:
    """``gpus=4`` or ``gpus=5 in 4 replicas (3 x 1 sdxl-a10g, 1 x 2 a100), round-robin, per-replica caches``."""
    cl = exp.cluster
    scale = cl.autoscale
    if scale.on:
        return (
            f"gpus={cl.gpus} at the start, autoscaled by {scale.rule} within {scale.min_gpus}..{scale.max_gpus} "
            f"(a new GPU serves {scale.provision_s or 0:g} + {scale.model_load_s or 0:g} s after the ask)"
        )
    if cl.replicas is None:
        return f"gpus={cl.gpus}"
    parts = [f"{rc.copies} x {rc.gpus} {rc.gpu or rc.profile or exp.profile}" for rc in cl.replicas]
    copies = sum(rc.copies for rc in cl.replicas)
    return (
        f"gpus={cl.gpus} in {copies} replicas ({', '.join(parts)}), router={cl.router.kind}, "
        f"{exp.cache.placement} cache" + ("s" if exp.cache.placement == "per-replica" else "")
    )


def describe_warmup(summary: pd.DataFrame) -> str:
    """What the warm-up left out of the figures (empty when nothing was)."""
    if "warmup_excluded" not in summary or not (summary["warmup_excluded"] > 0).any():
        return ""
    row = summary.iloc[0]
    return (
        f"warm-up: the first {int(row['warmup_excluded']):,} requests (arrivals before "
        f"{row['measured_from_s'] / 3600:.2f} h) are left out of every figure"
    )


def print_summary(summary: pd.DataFrame, exp: Experiment, stream: TextIO | None = None) -> None:
    """Print the run's comparison table with its key settings (to stdout by default)."""
    # Looked up at call time: a default bound at import would keep a stream that was replaced since.
    stream = stream or sys.stdout
    c = exp.cache
    admission = "" if c.admission == "all" else f", admission={c.admission}"
    offline = "policy_offline" in summary and summary["policy_offline"].astype(bool).any()
    print(
        f"\n{exp.name}: mode={exp.mode}, policy={c.policy}"
        + (" (offline heuristic: it knows the future)" if offline else "")
        + f", capacity={c.capacity:,.0f} {c.unit}{admission}, {describe_cluster(exp)}, profile={exp.profile}"
        + ("" if exp.step_cache.kind == "none" else f", step cache={exp.step_cache.kind}"),
        file=stream,
    )
    warm = describe_warmup(summary)
    if warm:
        print(warm, file=stream)
    print(format_summary(summary), file=stream)


def profile_rows(profiles: list[Profile], sources: bool = False) -> str:
    """One line per profile: model, GPU, steps, seconds per image, price and the kind of its latency
    and quality numbers (quality "extrapolated" when not published for the model); with ``sources``
    the sources of latency, price and quality under each line."""
    head = f"{'profile':20s} {'model':42s} {'GPU':5s} {'steps':>5s} {'s/image':>7s} {'$/GPU-h':>8s}  latency    quality"
    lines = [head, "-" * len(head)]
    for p in profiles:
        raw = p.raw
        image_s = job_work(p.gpu_model(), p.steps, False)
        model = str((raw.get("model") or {}).get("name") or "?")
        quality = "extrapolated" if p.quality_extrapolated else str(raw["quality"].get("kind", "?"))
        lines.append(
            f"{p.name:20s} {model[:42]:42s} {p.gpu_name:5s} {p.steps:5d} {image_s:7.2f} "
            f"{p.gpu_price_per_hour_usd:8.3f}  {raw['latency'].get('kind', '?'):10s} {quality}"
        )
        if sources:
            for block in ("latency", "gpu", "quality"):
                lines.append(f"    {block}: {raw[block].get('source', '')}")
            if p.quality_extrapolated:
                lines.append(f"    extrapolated: {p.quality_extrapolated}")
    return "\n".join(lines)
