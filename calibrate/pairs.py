"""Prompt pairs for ``calibrate quality``: (cached prompt, new prompt, optional similarity).

Two CSV layouts are read: ``cached_prompt,new_prompt[,similarity]``, and the AccuScale log
layout (the prototype's ``pipeline/cache_logs/prompts.csv``, github.com/skejriwal44/Argus_T2I) where ``Noise`` is the cached prompt,
``Prompt`` the new one and ``score`` their CLIP-text similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sim.base.errors import InputError

_LAYOUTS = (
    ("cached_prompt", "new_prompt", "similarity"),
    ("Noise", "Prompt", "score"),
)


@dataclass(frozen=True)
class Pair:
    """One cached prompt whose latent a new prompt reuses; ``similarity`` is NaN when not given."""

    cached: str
    new: str
    similarity: float = math.nan


def read_pairs(path: str | Path, limit: int | None = None) -> list[Pair]:
    """Read and validate a pairs CSV (first ``limit`` rows when given)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "pairs file not found")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a readable CSV: {exc}") from None
    for layout in _LAYOUTS:
        if layout[0] in df.columns and layout[1] in df.columns:
            cached_col, new_col, sim_col = layout
            break
    else:
        allowed = " or ".join(f"{a},{b}[,{c}]" for a, b, c in _LAYOUTS)
        raise InputError(p, f"columns {list(df.columns)} do not match a pairs layout: {allowed}")
    if limit is not None:
        if limit < 1:
            raise InputError(p, f"--limit {limit}: must be a positive number of pairs")
        df = df.head(limit)
    pairs = []
    for i, rec in enumerate(df.to_dict("records"), start=1):  # data rows (sim.base.errors)
        cached, new = str(rec[cached_col]).strip(), str(rec[new_col]).strip()
        for col, text in ((cached_col, cached), (new_col, new)):
            if not text:
                raise InputError(p, "empty prompt", row=i, column=col)
        sim = math.nan
        raw = str(rec.get(sim_col, "")).strip() if sim_col in df.columns else ""
        if raw:
            try:
                sim = float(raw)
            except ValueError:
                raise InputError(p, f"similarity {raw!r} is not a number", row=i, column=sim_col) from None
            # Logged cosines reach 1.000001 from float rounding.
            if not -1.0 - 1e-4 <= sim <= 1.0 + 1e-4:
                raise InputError(p, f"similarity {sim} is outside [-1, 1]", row=i, column=sim_col)
            sim = min(max(sim, -1.0), 1.0)
        pairs.append(Pair(cached, new, sim))
    if not pairs:
        raise InputError(p, "no pairs in the file")
    return pairs
