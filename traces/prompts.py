"""Plain prompt lists (one prompt per line, no times) turned into traces by an arrival process.

Real DiffusionDB prompt lists contain the odd empty prompt (line 3,972 of the shipped 5k file:
Stable Diffusion accepted an empty prompt). As every importer does
(:func:`traces.schema.drop_empty_prompts`), :func:`read_prompts` drops them and warns once with
their line numbers rather than refusing a real file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sim.base.errors import InputError
from traces.arrivals import arrival_times, check_span
from traces.schema import Trace, normalise, warn_dropped

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


def read_prompts(path: str | Path) -> list[str]:
    """Read a prompt list: one prompt per line, in file order (blank lines dropped with a warning)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "prompt list not found")
    lines = decode_utf8(p, p.read_bytes()).splitlines()
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise InputError(p, "the prompt list has no prompts")
    if len(prompts) < len(lines):
        warn_dropped(p, [i for i, line in enumerate(lines, start=1) if not line.strip()], "lines")
    return prompts


def prompts_trace(path: str | Path, arrival: ArrivalConfig, seed: int, requests: int | None = None) -> Trace:
    """A trace of the first ``requests`` prompts in ``path`` (file order; all if None) arriving by
    ``arrival`` from :data:`EPOCH`."""
    every = read_prompts(path)
    prompts = every[:requests] if requests is not None else every
    rng = np.random.default_rng([seed, 0x70726F])
    t = arrival_times(len(prompts), arrival, rng)
    check_span(t, arrival)
    df = pd.DataFrame({"timestamp": EPOCH + pd.to_timedelta(t, unit="s"), "prompt": prompts})
    return Trace(
        normalise(df, path),
        name=Path(path).stem,
        source=f"prompts:{path} arrival={arrival.process}",
        available=len(every) if len(every) > len(prompts) else None,
    )
