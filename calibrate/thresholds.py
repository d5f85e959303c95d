"""Carry a similarity->K ladder from one embedder to another by matching quantiles on logged pairs.

A ladder's thresholds only mean something for the embedder they were set with (the published
one: CLIP text cosine). Given logged (query, cached prompt) pairs with their CLIP similarity
(the approximate-cache prototype's ``pipeline/cache_logs/log_prompts_sample.csv``,
github.com/skejriwal44/Argus_T2I: Scores, Queries, Caches), the same pairs are embedded
with the target embedder, and each threshold ``t`` becomes the target similarity at the same
quantile: ``t' = Q_target(F_source(t))`` where ``F_source(t)`` is the share of logged pairs scoring
below ``t``. The share of pairs that clears every rung is unchanged, and the map is monotone by
construction (an empirical CDF composed with an empirical quantile function). Rows whose cached
prompt is empty (the prototype found no match) have nothing to embed and are skipped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from calibrate.writer import MEASURED
from sim.base.config import check_ladder
from sim.base.errors import ConfigError, InputError
from traces.embeddings import check_embedder_name, embed_prompts, get_embedder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# Source names that mean "the similarity the log already holds" (CLIP text cosine); a CLIP model
# directory (clip:PATH) re-embeds the pairs instead.
LOGGED = ("clip", "logged")


@dataclass(frozen=True)
class MatchLog:
    """Logged (query, cached prompt, similarity) pairs that have a cached prompt."""

    path: Path
    queries: list[str]
    caches: list[str]
    scores: np.ndarray
    skipped_empty: int


def read_match_log(path: str | Path, limit: int | None = None) -> MatchLog:
    """Read a match log CSV (columns Scores, Queries, Caches); keep rows with a cached prompt."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "match log not found")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(p, f"not a readable CSV: {exc}") from None
    missing = [c for c in ("Scores", "Queries", "Caches") if c not in df.columns]
    if missing:
        raise InputError(p, f"missing columns {missing}; a match log has Scores, Queries, Caches")
    scores = pd.to_numeric(df["Scores"], errors="coerce")
    bad = scores.isna() & (df["Scores"].str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(p, f"score {df['Scores'].iloc[i]!r} is not a number", row=i + 1, column="Scores")
    keep = (df["Caches"].str.strip() != "") & (df["Queries"].str.strip() != "") & scores.notna()
    kept = df[keep]
    if limit is not None:
        if limit < 1:
            raise ConfigError("--limit", limit, "a positive number of pairs")
        kept = kept.head(limit)
    if len(kept) < 2:
        raise InputError(p, "fewer than two logged pairs with both a query and a cached prompt")
    return MatchLog(
        path=p,
        queries=kept["Queries"].tolist(),
        caches=kept["Caches"].tolist(),
        scores=scores[kept.index].to_numpy(dtype=np.float64),
        skipped_empty=int((~keep).sum()),
    )


def parse_ladder(text: str) -> list[tuple[float, int]]:
    """``"0.95:25,0.9:20"`` -> [(0.95, 25), (0.9, 20)], thresholds descending."""
    rungs = []
    for part in text.split(","):
        t, sep, k = part.partition(":")
        try:
            if not sep:
                raise ValueError
            rungs.append((float(t), int(k)))
        except ValueError:
            raise ConfigError(
                "--ladder", text, "rungs as threshold:K separated by commas, e.g. 0.95:25,0.9:20"
            ) from None
    return sorted(rungs, reverse=True)


def check_ladder_for(ladder: Sequence[tuple[float, int]], profile: dict[str, Any], text: str) -> None:
    """A ``--ladder``: thresholds in [-1, 1], K never growing as similarity falls, and every K one the
    (raw) base ``profile`` caches. Raises ConfigError naming ``--ladder``."""
    try:
        check_ladder("--ladder", [[t, k] for t, k in ladder])
    except ConfigError as exc:
        raise ConfigError("--ladder", text, exc.allowed, f"rung {exc.value}") from None
    levels = sorted(int(k) for k in profile["k_levels"])
    for t, k in ladder:
        if k not in levels:
            raise ConfigError("--ladder", text, f"K={k} (rung {t}:{k}) is not one of the base profile's cached levels {levels}")


def ladder_of(profile: dict[str, Any]) -> list[tuple[float, int]]:
    """The (threshold, K) rungs of a raw profile mapping, thresholds descending."""
    return sorted(((float(t), int(k)) for t, k in profile["ladder"]["thresholds"]), reverse=True)


def quantile_map(
    thresholds: Sequence[float], source: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Target thresholds at the source thresholds' quantiles; also returns those quantiles.

    ``q = share of source scores below t``; ``t' = quantile(target, q)`` (linear interpolation).
    """
    src = np.sort(np.asarray(source, dtype=np.float64))
    tgt = np.asarray(target, dtype=np.float64)
    q = np.searchsorted(src, np.asarray(thresholds, dtype=np.float64), side="left") / src.size
    return np.quantile(tgt, q), q


def pair_similarity(
    embed: Callable[[list[str]], np.ndarray], a: Sequence[str], b: Sequence[str]
) -> np.ndarray:
    """Cosine similarity of ``a[i]`` and ``b[i]``; ``embed`` is called once on the distinct texts."""
    texts = sorted(set(a) | set(b))
    index = {t: i for i, t in enumerate(texts)}
    vecs = np.asarray(embed(texts), dtype=np.float32)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    ia = np.fromiter((index[t] for t in a), dtype=np.int64, count=len(a))
    ib = np.fromiter((index[t] for t in b), dtype=np.int64, count=len(b))
    return np.einsum("ij,ij->i", vecs[ia], vecs[ib]).astype(np.float64)


@dataclass
class Transfer:
    """A ladder carried from ``source`` to ``target`` similarities."""

    ladder: list[tuple[float, int]]  # original (threshold, K), descending
    mapped: list[tuple[float, int]]  # (target threshold, K), descending
    quantiles: np.ndarray  # share of logged pairs below each original threshold
    source: str
    target: str
    log: MatchLog
    source_scores: np.ndarray
    target_scores: np.ndarray

    def at_floor(self) -> list[tuple[float, int]]:
        """Rungs at or below every logged source similarity: the log cannot place them, so they
        map to the target's minimum (the most permissive choice)."""
        return [rung for rung, q in zip(self.ladder, self.quantiles, strict=True) if q == 0.0]

    def table(self) -> pd.DataFrame:
        """One row per rung: K, both thresholds and the share of logged pairs at or above it."""
        return pd.DataFrame(
            {
                "k": [k for _, k in self.ladder],
                f"threshold_{self.source}": [t for t, _ in self.ladder],
                "share_at_or_above": 1.0 - self.quantiles,
                f"threshold_{self.target}": [t for t, _ in self.mapped],
            }
        )


def _cached_embedder(name: str) -> Callable[[list[str]], np.ndarray]:
    # Through the shared on-disk embedding cache: a second run (or the simulator) reuses the vectors.

    problem = check_embedder_name(name)
    if problem:
        raise ConfigError("--to/--from", name, problem)
    embedder = get_embedder(name)
    return lambda texts: embed_prompts(embedder, texts)


def similarities(
    log: MatchLog, name: str, embed: Callable[[list[str]], np.ndarray] | None = None
) -> np.ndarray:
    """The log's pair similarities under embedder ``name`` (``clip``/``logged``: the Scores column).

    ``embed`` replaces the registered embedder (texts -> rows); by default ``name`` is looked up in
    ``traces.embeddings`` and its vectors are cached on disk.
    """
    if name in LOGGED and embed is None:
        return log.scores
    return pair_similarity(embed or _cached_embedder(name), log.queries, log.caches)


def transfer(
    ladder: Sequence[tuple[float, int]],
    log: MatchLog,
    source: str = "clip",
    target: str = "minilm",
    embed_target: Callable[[list[str]], np.ndarray] | None = None,
) -> Transfer:
    """Carry ``ladder`` from ``source`` to ``target`` similarities on the logged pairs."""
    if not ladder:
        raise ConfigError("ladder", list(ladder), "at least one threshold:K rung")
    rungs = sorted(((float(t), int(k)) for t, k in ladder), reverse=True)
    src = similarities(log, source)
    tgt = similarities(log, target, embed_target)
    new, q = quantile_map([t for t, _ in rungs], src, tgt)
    return Transfer(
        ladder=rungs,
        mapped=[(float(t), k) for t, (_, k) in zip(new, rungs, strict=True)],
        quantiles=q,
        source=source,
        target=target,
        log=log,
        source_scores=src,
        target_scores=tgt,
    )


def to_profile(base: dict[str, Any], tr: Transfer) -> dict[str, Any]:
    """The base profile with its ladder replaced by the carried one, with the mapping as provenance."""

    data = copy.deepcopy(base)
    old = data.get("ladder") or {}
    lowest = float(np.min(tr.source_scores))
    data["ladder"] = {
        "embedder": tr.target,
        "thresholds": [[t, k] for t, k in tr.mapped],
        "transfer": {
            "method": "quantile matching",
            "from_embedder": tr.source,
            "from_thresholds": [[t, k] for t, k in tr.ladder],
            "share_at_or_above": [float(x) for x in 1.0 - tr.quantiles],
            "pairs": len(tr.log.queries),
            "skipped_without_cached_prompt": tr.log.skipped_empty,
            # By name and content: the path is the machine's that ran it, and means nothing elsewhere.
            "log": tr.log.path.name,
            "log_sha256": file_sha256(tr.log.path),
            "from_min_similarity": lowest,
            "rungs_at_log_floor": [[t, k] for t, k in tr.at_floor()],
            "from_ladder_source": old.get("source"),
        },
        "kind": MEASURED,
        "source": (
            f"ladder of {data.get('_base_name', 'the base profile')} ({tr.source}) carried to {tr.target} by matching "
            f"quantiles on {len(tr.log.queries)} logged pairs of {tr.log.path.name}; the log only holds pairs with "
            f"{tr.source} similarity >= {lowest:.3f}, so a rung at or below it maps to the target's minimum"
        ),
    }
    return data


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (names a match log whatever it is called or where it lies)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def extrapolate_floor_rungs(block: dict[str, Any]) -> dict[str, Any]:
    """The ladder block with rungs the log cannot place extrapolated instead of put at its minimum.

    A rung at or below every logged source similarity lands on the target's minimum (a threshold
    nearly every pair clears). Instead, such a rung is placed on the line through the two lowest
    rungs the log does place (source threshold -> target threshold), as ``experiments/embedders.yaml``
    does by hand; the block records which rungs were extrapolated.
    """
    out = copy.deepcopy(block)
    tr = out["transfer"]
    floor = {(float(t), int(k)) for t, k in tr["rungs_at_log_floor"]}
    if not floor:
        return out
    pairs = [
        (float(s), float(t), int(k))
        for (s, k), (t, _) in zip(tr["from_thresholds"], out["thresholds"], strict=True)
        if (float(s), int(k)) not in floor
    ]
    if len(pairs) < 2:
        return out
    (s1, t1, _), (s2, t2, _) = sorted(pairs)[:2]
    slope = (t2 - t1) / (s2 - s1)
    rungs = []
    for (s, k), (t, _) in zip(tr["from_thresholds"], out["thresholds"], strict=True):
        if (float(s), int(k)) in floor:
            t = round(float(np.clip(t1 + (float(s) - s1) * slope, -1.0, 1.0)), 6)
        rungs.append([t, k])
    out["thresholds"] = rungs
    tr["extrapolated"] = {
        "rungs": [[s, k] for s, k in sorted(floor, reverse=True)],
        "method": f"linear through the carried rungs at {s1} and {s2}",
    }
    out["source"] += f"; rungs {sorted(floor, reverse=True)} extrapolated linearly from the rungs at {s1} and {s2}"
    return out


def write_ladder(path: str | Path, block: dict[str, Any], command: str) -> Path:
    """Write a carried ladder alone (``sim.reuse.ladders`` reads it): the profile's ladder block, rungs the
    log cannot place extrapolated, plus the command that produced it and the schema."""
    import datetime

    import yaml

    from calibrate.writer import LADDER_HEADER
    from sim.base.io import atomic_write_text
    from sim.reuse.ladders import SCHEMA

    data = {"schema": SCHEMA, **extrapolate_floor_rungs(block), "command": command}
    data["created"] = datetime.date.today().isoformat()
    text = LADDER_HEADER + f"# Made by: {command}\n" + yaml.safe_dump(data, sort_keys=False)
    return atomic_write_text(path, text)
