"""Figure style shared by every plot: paper-size fonts, one colour per policy/system, atomic saving.

Colours are fixed per name so that a policy or system looks the same in every figure of a
paper; names we do not know get a stable colour from a hash of the name.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from sim.base.io import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.0
DPI = 200

# Tableau colours, assigned so that the headline names never share one.
_NAMED = {
    # systems
    "vanilla": "#7f7f7f",
    "exact": "#8c564b",
    "gptcache": "#ff7f0e",
    "nirvana": "#1f77b4",
    "nirvana-np": "#17becf",
    "small-model": "#bcbd22",
    "smallmodel": "#bcbd22",
    "pinecone": "#e377c2",
    "crs": "#9467bd",
    "argus": "#2ca02c",
    "load-aware": "#2ca02c",
    # policies
    "fifo": "#9467bd",
    "lru": "#d62728",
    "lfu": "#2ca02c",
    "lfu-noaging": "#98df8a",
    "lcbfu": "#1f77b4",
    "lcbfu-noaging": "#aec7e8",
    "lcbfu-modm": "#17becf",
    "lcbfu-modm-noaging": "#9edae5",
    "s3fifo": "#e377c2",
    "sieve": "#bcbd22",
    "gdsf": "#8c564b",
    "belady": "#4d4d4d",
    "ceiling": "#000000",
}
# Unknown names and swept settings draw from a dark palette unlike the named (Tableau) colours.
_FALLBACK = plt.get_cmap("Dark2").colors
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def setting_color(i: int) -> tuple[float, float, float]:
    """The colour of the i-th value of a swept setting that has no colour of its own."""
    return _FALLBACK[i % len(_FALLBACK)]


def color_for(name: str) -> str | tuple[float, float, float]:
    """The colour of a policy or system name (stable across figures and runs)."""
    key = str(name).lower()
    if key in _NAMED:
        return _NAMED[key]
    return _FALLBACK[zlib.crc32(key.encode()) % len(_FALLBACK)]


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings that stay readable when a figure is printed 3.5 or 7 inches wide."""
    rc = {
        "font.size": 8,
        "axes.titlesize": 8,
        "axes.labelsize": 8,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "legend.fontsize": 7,
        "legend.frameon": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "grid.linewidth": 0.5,
        "lines.linewidth": 1.4,
        "lines.markersize": 4,
        "savefig.bbox": "tight",
        "savefig.pad_inches": 0.03,
        "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by paper venues
    }
    with plt.rc_context(rc):
        yield


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` (200 dpi) and ``<stem>.pdf`` atomically; close the figure."""
    paths = []
    try:
        for ext in ("png", "pdf"):
            dest = Path(out_dir) / f"{stem}.{ext}"
            with atomic_path(dest) as tmp:
                fig.savefig(tmp, format=ext, dpi=DPI)
            paths.append(dest)
    finally:
        plt.close(fig)
    return paths
