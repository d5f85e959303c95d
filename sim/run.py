"""One experiment end to end: config -> trace -> embeddings -> neighbours -> systems -> records -> summary.

``prepare_inputs`` does the expensive work that every configuration of a sweep shares
(trace, embeddings, neighbour lists); its pieces are cached on disk so that worker
processes reuse them. ``run_experiment`` replays every system and writes the run directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sim import config as cfg
from sim.io import atomic_write_csv, atomic_write_parquet, atomic_write_text
from sim.neighbours import NeighbourLists, build_neighbours
from sim.profile import Profile, load_profile
from traces.embeddings import embed_prompts, get_embedder
from traces.load import kept_note, load_trace
from traces.schema import Trace
from traces.sources import get_source, source_version

# Systems that only need exact prompt identity, not similarity.
_NO_SIMILARITY = {"vanilla", "exact"}


def cache_dir() -> Path:
    """Where embeddings, neighbour lists and generated traces are cached."""
    return Path(os.environ.get("ACSIM_CACHE", Path.home() / ".cache" / "acsim"))


@dataclass
class Inputs:
    """What every configuration of one (trace, embedder) shares."""

    trace: Trace
    profile: Profile
    embeddings: np.ndarray | None
    neighbours: NeighbourLists | None


def _digest(obj: object) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trace_key(exp: cfg.Experiment) -> str:
    """A key that changes whenever the trace would."""
    key: dict[str, object] = {"trace": asdict(exp.trace), "seed": exp.seed}
    version = source_version(exp.trace.source)
    if version is not None:  # a newer generator never reuses an older one's cached trace
        key["generator"] = version
    if exp.trace.path:
        p = Path(exp.trace.path)
        if p.exists():
            st = p.stat()
            key["file"] = [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return _digest(key)


def min_similarity(exp: cfg.Experiment, profile: Profile) -> float:
    """The lowest similarity any configured system can act on (neighbour lists stop there)."""
    if exp.neighbours.min_similarity is not None:
        return exp.neighbours.min_similarity
    ladder = exp.selector.ladder or [list(r) for r in profile.ladder]
    lows = [min(float(r[0]) for r in ladder)]
    if "gptcache" in exp.systems:
        lows.append(exp.gptcache.threshold)
    if exp.selector.load_aware:
        lows.append(exp.selector.floor)
    return min(lows)


def needs_similarity(exp: cfg.Experiment) -> bool:
    """Whether any configured system looks up similar prompts."""
    return any(s not in _NO_SIMILARITY for s in exp.systems) or exp.predictor.kind == "learned"


def prepare_inputs(exp: cfg.Experiment, progress: bool = True) -> Inputs:
    """Load the profile and trace, embed the prompts and build the causal neighbour lists."""
    profile = load_profile(exp.profile)
    trace = _cached_trace(exp)
    embeddings = neighbours = None
    if needs_similarity(exp):
        embedder = get_embedder(exp.embedder)
        embeddings = embed_prompts(embedder, trace.prompts, cache_dir() / "embeddings", progress=progress)
        neighbours = build_neighbours(
            embeddings,
            trace.prompt_ids,
            top_m=exp.neighbours.top_m,
            min_similarity=min_similarity(exp, profile),
            index=exp.neighbours.index,
            cache_dir=cache_dir() / "neighbours",
            cache_key=f"{trace_key(exp)}-{_digest(embedder.name)}",
            progress=progress,
        )
    return Inputs(trace=trace, profile=profile, embeddings=embeddings, neighbours=neighbours)


def _cached_trace(exp: cfg.Experiment) -> Trace:
    """Synthetic traces are cached as parquet: big ones take a while to generate."""
    from traces.schema import read_parquet, write_parquet

    if not get_source(exp.trace.source).generated:
        return load_trace(exp.trace, exp.seed)
    path = cache_dir() / "traces" / f"{trace_key(exp)}.parquet"
    if path.exists():
        return read_parquet(path)
    trace = load_trace(exp.trace, exp.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(trace, path)
    return trace


def run_system(name: str, exp: cfg.Experiment, inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """Replay one system; returns (records, per-minute time series or None, system stats)."""
    from sim.engine import simulate
    from sim.replay import replay
    from sim.systems import build_system

    trace = inputs.trace
    system = build_system(name, exp, trace, inputs.neighbours, inputs.profile)
    if exp.mode == "cache-only":
        records = replay(system, trace.arrival_s, trace.prompt_ids, trace.user_codes)
        series = None
    else:
        records, series = simulate(
            system,
            trace.arrival_s,
            trace.prompt_ids,
            trace.user_codes,
            exp,
            inputs.profile,
            seed=exp.seed,
            embeddings=inputs.embeddings,
        )
    return records, series, system.stats()


def run_experiment(
    exp: cfg.Experiment,
    out_dir: Path | str | None = None,
    inputs: Inputs | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every system of ``exp`` and write its result directory; returns the summary."""
    from sim.metrics import summarize

    out = Path(out_dir if out_dir is not None else exp.output)
    inputs = inputs or prepare_inputs(exp, progress=progress)
    rows = []
    # Everything is written into a scratch directory that replaces ``out`` only when the
    # whole run succeeded, so a failure never leaves a half-written result behind.
    with staging_dir(out) as tmp:
        for name in exp.systems:
            records, series, stats = run_system(name, exp, inputs)
            rows.append(summarize(records, profile=inputs.profile, exp=exp, system_stats=stats))
            atomic_write_parquet(tmp / "records" / f"{name}.parquet", records)
            if series is not None:
                atomic_write_csv(tmp / "timeseries" / f"{name}.csv", series)
        summary = pd.DataFrame(rows)
        atomic_write_text(tmp / "config.yaml", cfg.dump(exp))
        atomic_write_text(tmp / "profile.yaml", yaml.safe_dump(inputs.profile.raw, sort_keys=False))
        atomic_write_csv(tmp / "summary.csv", summary)
    return summary


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A scratch directory beside ``out`` that becomes ``out`` if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def describe_inputs(exp: cfg.Experiment, inputs: Inputs, stream=sys.stdout) -> None:
    """A short description of the trace and embeddings a run is about to use."""
    t = inputs.trace
    dur_h = float(t.arrival_s[-1] - t.arrival_s[0]) / 3600 if len(t) > 1 else 0.0
    print(
        f"trace: {len(t):,} requests{kept_note(t)}, {len(t.prompts):,} unique prompts, "
        f"{dur_h:.1f} h ({exp.trace.source}); profile: {inputs.profile.name}",
        file=stream,
    )
    if inputs.neighbours is not None:
        nb = inputs.neighbours
        print(
            f"embedder: {exp.embedder}; neighbour lists: top-{nb.top_m} above "
            f"similarity {nb.min_similarity:.2f}, {len(nb.ids):,} entries",
            file=stream,
        )
