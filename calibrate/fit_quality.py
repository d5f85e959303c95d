"""Fit the quality model's free retrieval parameter to the paper's *system* averages.

The profile's retrieval line gives the expected CLIP score of another prompt's finished image
returned at CLIP-text similarity s: ``at_1 - slope * (1 - s)``. ``at_1`` is the vanilla score (an
identical prompt's image scores as the prompt's own); ``slope`` is not measured anywhere. The
paper reports GPT-CACHE's average over *all* requests (hits and the fresh images of misses), so
the slope is what makes a simulated GPT-CACHE run, on the same trace, average that number:

    n * target = (n - h) * vanilla + sum over the h hits of (vanilla - slope * (1 - s_i))
    slope      = n * (vanilla - target) / sum over hits of (1 - s_i)

with s_i each hit's similarity in CLIP-text space. PickScore and FID of a retrieved image follow
from its CLIP loss by a ratio (``per_clip_loss``); under the same mixture rule that ratio is the
ratio of the two metrics' relative system losses, whatever the hit set, so the fitted line keeps
the GPT-CACHE row's PickScore and FID once its CLIP matches. Everything else is held out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sim.base.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "GateFit",
    "RetrievalFit",
    "fit_gate",
    "fit_retrieval_slope",
    "held_out",
    "reference_rows",
    "relative_to_vanilla",
    "row_ratio",
]

METRICS = ("clip", "pickscore", "fid")


@dataclass(frozen=True)
class RetrievalFit:
    """The solved slope and what it was solved from."""

    slope: float
    at_1: float
    target: float  # the paper's system average it reproduces
    requests: int
    hits: int
    mean_gap: float  # mean of (1 - s) over the hits, s in CLIP-text similarity


def fit_retrieval_slope(retrieved: np.ndarray, s_clip: np.ndarray, vanilla: float, target: float) -> RetrievalFit:
    """The slope whose retrieval line makes the run's mean CLIP equal ``target`` (module docstring).

    ``retrieved`` marks the requests served by retrieval; ``s_clip`` is every request's
    similarity in CLIP-text space (read only where ``retrieved``). Raises ValueError when no
    slope can: no hits, or a target above vanilla.
    """
    retrieved = np.asarray(retrieved, dtype=bool)
    n, h = len(retrieved), int(retrieved.sum())
    if h == 0:
        raise ValueError("the run retrieved nothing, so no retrieval line can be fitted to it")
    gap = 1.0 - np.minimum(np.asarray(s_clip, dtype=np.float64)[retrieved], 1.0)
    if not vanilla > target:
        raise ValueError(f"target {target} is not below vanilla {vanilla}")
    slope = n * (vanilla - target) / float(gap.sum())
    return RetrievalFit(slope, vanilla, target, n, h, float(gap.mean()))


@dataclass(frozen=True)
class GateFit:
    """The solved gate, the system average it gives and how many evaluations found it."""

    gate: float
    average: float
    target: float
    evaluations: int


def fit_gate(average: Callable[[float], float], target: float, lo: float, hi: float, tol: float = 1e-5) -> GateFit:
    """The gate in [lo, hi] whose ``average(gate)`` is nearest ``target``, by bisection.

    ``average`` must not fall as the gate rises (a stricter gate returns fewer, better images).
    It is a step function on a finite trace, so the answer is the better of the two gates that
    bracket the target once they are ``tol`` apart. Raises ValueError when the target lies
    outside [average(lo), average(hi)].
    """
    if not lo < hi:
        raise ValueError(f"empty gate range [{lo}, {hi}]")
    a_lo, a_hi = average(lo), average(hi)
    calls = 2
    if not a_lo <= target <= a_hi:
        raise ValueError(
            f"target {target} is outside what the gate can reach: {a_lo:.4f} at {lo:.4f} to {a_hi:.4f} at {hi:.4f}"
        )
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        a_mid = average(mid)
        calls += 1
        if a_mid < target:
            lo, a_lo = mid, a_mid
        else:
            hi, a_hi = mid, a_mid
    best = (lo, a_lo) if abs(a_lo - target) <= abs(a_hi - target) else (hi, a_hi)
    return GateFit(best[0], best[1], target, calls)


def row_ratio(vanilla: dict[str, float], row: dict[str, float], metric: str) -> float:
    """A metric's per-image ratio to the CLIP loss, from one system's row under the mixture rule:
    (1 - row/vanilla) of the metric over (1 - row/vanilla) of CLIP."""
    clip_loss = 1.0 - row["clip"] / vanilla["clip"]
    if clip_loss == 0:
        raise ValueError("the row loses no CLIP score, so no ratio follows from it")
    return (1.0 - row[metric] / vanilla[metric]) / clip_loss


def reference_rows(path: str, paper_trace: str) -> pd.DataFrame:
    """The paper's rows for ``paper_trace`` (DiffusionDB or System-X) from a reference CSV."""
    ref = pd.read_csv(path)
    missing = {"label", "system", "predictor", "paper_trace", *METRICS} - set(ref.columns)
    if missing:
        raise InputError(path, f"missing column(s) {sorted(missing)}", column=sorted(missing)[0])
    rows = ref[ref["paper_trace"] == paper_trace]
    if rows.empty:
        raise InputError(path, f"no rows for paper_trace {paper_trace!r}", column="paper_trace")
    return rows.reset_index(drop=True)


def held_out(summary: pd.DataFrame, reference: pd.DataFrame, fitted: tuple[str, ...]) -> pd.DataFrame:
    """acsim beside the paper for every reference row with a predictor of ``none`` that the run
    has, each metric with its error; ``fitted`` names the systems the fit saw."""
    out = []
    for _, ref in reference.iterrows():
        row = summary[summary["system"] == ref["system"]]
        if row.empty or ref["predictor"] != "none":
            continue
        rec = {"paper row": ref["label"], "system": ref["system"], "fit": "fitted" if ref["system"] in fitted else "held out"}
        for m in METRICS:
            ours = float(row.iloc[0][f"quality_{m}"])
            rec[f"{m} acsim"], rec[f"{m} paper"], rec[f"{m} error"] = ours, float(ref[m]), ours - float(ref[m])
        out.append(rec)
    return pd.DataFrame(out)


def relative_to_vanilla(table: pd.DataFrame) -> pd.DataFrame:
    """Each row's loss relative to its own column's vanilla (acsim's and the paper's), and the error:
    how the System-X column, whose vanilla differs, is compared."""
    base = table[table["system"] == "vanilla"]
    if base.empty:
        raise ValueError("the table has no vanilla row to compare against")
    out = table[["paper row", "system", "fit"]].copy()
    for m in METRICS:
        for side in ("acsim", "paper"):
            v = float(base.iloc[0][f"{m} {side}"])
            out[f"{m} {side} rel"] = table[f"{m} {side}"] / v - 1.0 if v and not math.isnan(v) else math.nan
        out[f"{m} rel error"] = out[f"{m} acsim rel"] - out[f"{m} paper rel"]
    return out
