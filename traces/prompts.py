"""Plain prompt lists (one prompt per line, no times) turned into traces by an arrival process.

Real DiffusionDB prompt lists contain the odd empty prompt (line 3,972 of the shipped 5k file:
Stable Diffusion accepted an empty prompt). An empty prompt cannot be embedded meaningfully and
no trace may hold one, so :func:`read_prompts` drops blank lines and warns with their line
numbers rather than refusing a real file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sim.base.errors import InputError
from traces.arrivals import arrival_times, check_span
from traces.schema import Trace, normalise

if TYPE_CHECKING:
    from sim.base.config import ArrivalConfig

# Arrival times of prompt lists and synthetic traces count from this instant (DiffusionDB's era).
EPOCH = pd.Timestamp("2022-08-01T00:00:00Z")


def decode_utf8(path: Path, data: bytes) -> str:
    """Decode bytes as UTF-8 (a leading BOM is dropped); on failure name the line and byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            path, f"not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r})", line=line
        ) from None


def read_prompts(path: str | Path, limit: int | None = None) -> list[str]:
    """Read a prompt list: one prompt per line, in file order (the first ``limit`` if given)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "prompt list not found")
    lines = decode_utf8(p, p.read_bytes()).splitlines()
    prompts, blank = [], []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            prompts.append(line)
            if limit is not None and len(prompts) >= limit:
                break
        else:
            blank.append(i)
    if not prompts:
        raise InputError(p, "the prompt list has no prompts")
    if blank:
        shown = ", ".join(map(str, blank[:5])) + (" ..." if len(blank) > 5 else "")
        warnings.warn(f"{p}: skipped {len(blank)} empty prompt line(s): {shown}", stacklevel=2)
    return prompts


def prompts_trace(path: str | Path, arrival: ArrivalConfig, seed: int, requests: int | None = None) -> Trace:
    """A trace of the prompts in ``path`` (file order) arriving by ``arrival`` from :data:`EPOCH`."""
    prompts = read_prompts(path, requests)
    rng = np.random.default_rng([seed, 0x70726F])
    t = arrival_times(len(prompts), arrival, rng)
    check_span(t, arrival)
    df = pd.DataFrame({"timestamp": EPOCH + pd.to_timedelta(t, unit="s"), "prompt": prompts})
    return Trace(
        normalise(df, path), name=Path(path).stem, source=f"prompts:{path} arrival={arrival.process}"
    )
