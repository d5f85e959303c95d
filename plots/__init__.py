"""Figures for acsim results: one function per figure in :mod:`plots.figures`.

``plot_results(results_dir)`` draws every figure that a run or sweep directory's files
support into ``<results_dir>/plots/`` (PNG at 200 dpi and PDF) and returns their paths.
"""

from __future__ import annotations

from pathlib import Path

from plots.data import load_results
from plots.figures import FIGURES

__all__ = ["plot_results"]


def plot_results(results_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw every figure the results support; returns the written PNG and PDF paths.

    Raises :class:`sim.base.errors.InputError` when ``results_dir`` holds no summary.csv.
    """
    results = load_results(results_dir)
    dest = Path(out_dir) if out_dir is not None else results.root / "plots"
    written: list[Path] = []
    for draw in FIGURES.values():
        written += draw(results, dest)
    return written
