"""Published numbers beside simulated ones: the data of the ``paper_comparison`` figure and table.

An experiment names a reference CSV with its ``reference:`` field (e.g.
``experiments/paper_quality_reference.csv``, the Nirvana paper's quality table). Each row is one
published system on one of the paper's traces::

    label,system,predictor,paper_trace,fid,fid_lo,fid_hi,clip,pickscore,source

``system`` and ``predictor`` say which simulated rows it is compared with (an acsim system name
and a ``predictor.kind``): a plain join of two tables, so no system is singled out by name in
code. ``fid_lo``/``fid_hi`` hold a published range (empty otherwise).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from plots.data import distinguishing_keys
from plots.markdown import markdown_table
from sim.base.errors import InputError

if TYPE_CHECKING:
    from plots.data import Results

# (summary column, reference column, label, higher is better)
METRICS = (
    ("quality_fid", "fid", "FID", False),
    ("quality_clip", "clip", "CLIP score", True),
    ("quality_pickscore", "pickscore", "PickScore", True),
)
REQUIRED = ("label", "system", "predictor", "paper_trace", "fid", "clip", "pickscore")


def read_reference(path: str | Path) -> pd.DataFrame:
    """The reference CSV, checked; InputError naming the file, row and column otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "reference CSV not found")
    try:
        ref = pd.read_csv(p, dtype={"label": str, "system": str, "predictor": str, "paper_trace": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a readable CSV table: {exc}") from None
    missing = [c for c in REQUIRED if c not in ref.columns]
    if missing:
        raise InputError(p, f"missing columns {missing}; needs {', '.join(REQUIRED)}", column=missing[0])
    for col in ("fid", "clip", "pickscore"):
        bad = pd.to_numeric(ref[col], errors="coerce").isna() & ref[col].notna()
        if bad.any():
            raise InputError(p, f"{ref.loc[bad, col].iloc[0]!r} is not a number", row=int(bad.idxmax()) + 2, column=col)
    return ref


@dataclasses.dataclass
class Comparison:
    """Simulated quality per (paper label, setting) beside the paper's numbers."""

    table: pd.DataFrame  # label, metric, source ("paper: <trace>" or "acsim: <setting>"), mean, lo, hi, n
    labels: list[str]  # the reference's labels in its order
    sources: list[str]  # paper traces first, then the simulated settings
    systems: dict[str, str]  # label -> the acsim system it is compared with


def _predictor_kinds(results: Results) -> pd.Series | str:
    """Each summary row's ``predictor.kind`` (a sweep may vary it; otherwise the config's)."""
    s = results.summary
    if "predictor.kind" in s:
        return s["predictor.kind"]
    return (results.config.get("predictor") or {}).get("kind", "none")


def comparison_data(results: Results) -> Comparison | None:
    """The comparison, or None when the results' config names no reference or nothing matches."""
    path = results.config.get("reference")
    if not path:
        return None
    ref = read_reference(path)
    s = results.summary
    if not all(c in s.columns for c, *_ in METRICS):
        return None
    s = s.assign(_predictor=_predictor_kinds(results))
    s = s.assign(_setting=_setting_labels(s, [k for k in results.varied if k not in ("seed", "predictor.kind")]))
    rows = []
    labels = list(dict.fromkeys(ref["label"]))
    for col, ref_col, name, _ in METRICS:
        for _, r in ref.iterrows():
            hi = r.get("fid_hi") if ref_col == "fid" else None
            lo = r.get("fid_lo") if ref_col == "fid" else None
            v = float(r[ref_col])
            rows.append(
                {
                    "label": r["label"],
                    "metric": name,
                    "source": f"paper: {r['paper_trace']}",
                    "mean": v,
                    "lo": float(lo) if lo is not None and pd.notna(lo) else v,
                    "hi": float(hi) if hi is not None and pd.notna(hi) else v,
                    "n": 1,
                }
            )
        for label in labels:
            key = ref[ref["label"] == label].iloc[0]
            sim = s[(s["system"] == key["system"]) & (s["_predictor"] == key["predictor"])]
            for setting, g in sim.groupby("_setting", sort=False):
                vals = g[col].astype(float)
                rows.append(
                    {
                        "label": label,
                        "metric": name,
                        "source": f"acsim: {setting}",
                        "mean": float(vals.mean()),
                        "lo": float(vals.min()),
                        "hi": float(vals.max()),
                        "n": int(vals.notna().sum()),
                    }
                )
    table = pd.DataFrame(rows)
    if not table["source"].str.startswith("acsim").any():
        return None
    systems = dict(zip(ref["label"], ref["system"], strict=True))
    return Comparison(table=table, labels=labels, sources=list(dict.fromkeys(table["source"])), systems=systems)


def paper_points(results: Results) -> tuple[str, pd.DataFrame] | None:
    """The paper's CLIP score of each published system beside acsim's compute saved for it.

    The paper's quality table gives no per-system compute saved, so each published point sits at
    the mean compute saved of the acsim rows it is compared with (the same system and predictor
    kind), beside acsim's mean CLIP there. Returns the paper trace drawn (the reference's first)
    and a frame of label, system, compute_saved, clip_paper, clip_acsim; None without a
    ``reference:`` or a match.
    """
    path = results.config.get("reference")
    s = results.summary
    if not path or not {"quality_clip", "compute_saved"} <= set(s.columns):
        return None
    ref = read_reference(path)
    trace = str(ref["paper_trace"].iloc[0])
    s = s.assign(_predictor=_predictor_kinds(results))
    rows = []
    for _, r in ref[ref["paper_trace"] == trace].iterrows():
        sim = s[(s["system"] == r["system"]) & (s["_predictor"] == r["predictor"])]
        if sim.empty:
            continue
        rows.append(
            {
                "label": r["label"],
                "system": r["system"],
                "compute_saved": float(sim["compute_saved"].astype(float).mean()),
                "clip_paper": float(r["clip"]),
                "clip_acsim": float(sim["quality_clip"].astype(float).mean()),
            }
        )
    return (trace, pd.DataFrame(rows)) if rows else None


def _setting_labels(s: pd.DataFrame, keys: list[str]) -> pd.Series:
    """A label per row from the fewest varied keys that tell the settings apart."""
    chosen = distinguishing_keys(s, keys)
    if not chosen:
        return pd.Series("this run", index=s.index)
    return s[chosen].astype(str).apply(", ".join, axis=1)


def comparison_markdown(comp: Comparison) -> str:
    """The comparison as a Markdown table: one row per paper label, metric x source columns."""
    cols = [(m, src) for _, _, m, _ in METRICS for src in comp.sources]
    head = ["system", *(f"{m} ({src})" for m, src in cols)]
    rows = []
    t = comp.table.set_index(["label", "metric", "source"])
    for label in comp.labels:
        cells = [label]
        for m, src in cols:
            if (label, m, src) not in t.index:
                cells.append("")
                continue
            r = t.loc[(label, m, src)]
            if r["hi"] - r["lo"] > 1e-9:
                cells.append(f"{r['mean']:.2f} ({r['lo']:.2f}-{r['hi']:.2f})")
            else:
                cells.append(f"{r['mean']:.2f}")
        rows.append(cells)
    return markdown_table(head, rows)
