"""Similarity -> K ladders carried to other embedders, shipped in ``calibrate/ladders/<embedder>.yaml``.

The published ladder is in CLIP-text cosines (the profile's ``ladder`` block says so with
``embedder: clip``); another embedder measures similarity on another scale. ``acsim calibrate
thresholds --ladder-out`` carries the ladder across by quantile matching on logged pairs and
writes one file per embedder: its rungs, ``kind: measured``, the command and the data that
produced it. A run opts in with ``selector.carried: true``: the selector then uses the file
named after the run's embedder (``minilm-onnx`` -> ``calibrate/ladders/minilm-onnx.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sim.base.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sim.base.config import Experiment
    from sim.base.profile import Profile

__all__ = ["LADDER_DIR", "SCHEMA", "carried_ladder", "ladder_for", "ladder_path", "shipped_ladders"]

SCHEMA = "acsim-ladder/1"
LADDER_DIR = Path(__file__).resolve().parents[2] / "calibrate" / "ladders"


def ladder_path(embedder: str) -> Path:
    """Where the carried ladder of ``embedder`` ships (``:`` and ``/`` of path names made safe)."""
    safe = embedder.replace("/", "_").replace(":", "_")
    return LADDER_DIR / f"{safe}.yaml"


def shipped_ladders() -> list[str]:
    """Embedder names that have a carried ladder."""
    return sorted(p.stem for p in LADDER_DIR.glob("*.yaml"))


def carried_ladder(embedder: str) -> tuple[tuple[tuple[float, int], ...], dict[str, Any]]:
    """((threshold, K) rungs descending, the file's full mapping) of ``embedder``'s carried ladder.

    Raises ConfigError naming the embedders that have one when none ships for ``embedder``.
    """
    path = ladder_path(embedder)
    if not path.is_file():
        raise ConfigError(
            "selector.carried",
            True,
            f"no carried ladder for embedder {embedder!r}; shipped for: {', '.join(shipped_ladders())} "
            f"(make one with `acsim calibrate thresholds --to {embedder} --ladder-out {path}`)",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA or data.get("embedder") != embedder:
            raise ValueError(f"schema {data.get('schema')!r}, embedder {data.get('embedder')!r}")
        if data.get("kind") not in ("measured", "published", "assumed") or not data.get("source"):
            raise ValueError("a ladder must carry kind and source")
        rungs = tuple(sorted(((float(t), int(k)) for t, k in data["thresholds"]), reverse=True))
    except (OSError, yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(path, f"not a carried ladder ({SCHEMA}): {exc}") from None
    return rungs, data


def ladder_for(exp: Experiment, profile: Profile) -> list[tuple[float, int]]:
    """The ladder a run uses: the config's, else the carried one if asked for, else the profile's."""
    if exp.selector.ladder is not None:
        return [(float(s), int(k)) for s, k in exp.selector.ladder]
    if exp.selector.carried and embedder_space(exp.embedder) != "clip":
        return _carried_for(exp.embedder, profile)
    return list(profile.ladder)


def _carried_for(embedder: str, profile: Profile) -> list[tuple[float, int]]:
    """The carried ladder of ``embedder`` at the profile's K levels.

    The file pairs published CLIP-text thresholds with carried ones. When every rung of the
    profile's ladder is one of those thresholds, each is replaced by its carried value and keeps
    the profile's K, so a model whose ladder takes SDXL's thresholds at its own K levels (the 2026
    zoo) is carried alike; otherwise (a profile calibrated with its own thresholds) the file's
    rungs are used as they are."""
    rungs, data = carried_ladder(embedder)
    pairs = zip(data["transfer"]["from_thresholds"], data["thresholds"], strict=True)
    carried = {round(float(src[0]), 9): float(dst[0]) for src, dst in pairs}
    mine = [(carried.get(round(float(s), 9)), int(k)) for s, k in profile.ladder]
    if any(t is None for t, _ in mine):
        return list(rungs)
    return sorted(mine, reverse=True)


def embedder_space(embedder: str) -> str:
    """``clip`` when ``embedder`` measures in the published CLIP-text space itself (its class says
    ``similarity_space = "clip"``), else ``embedder``: its cosines need a carried map."""
    from traces.embeddings import EMBEDDERS

    kind = embedder.partition(":")[0]
    return "clip" if getattr(EMBEDDERS.get(kind), "similarity_space", None) == "clip" else "embedder"
