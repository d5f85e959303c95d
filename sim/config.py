"""Typed experiment configuration: YAML loading, --set overrides and validation.

An experiment file maps onto the :class:`Experiment` dataclass tree below. Loading
walks the YAML mapping against the dataclass fields, so every error names the dotted
field path, the bad value and what is allowed; unknown keys get a did-you-mean.
Names that select plug-ins (policies, systems, embedders, ...) are checked against
their registries; nothing named in a config is ever imported or executed by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sim.errors import ConfigError, InputError


def _choices(names: Callable[[], list[str]]) -> dict[str, Any]:
    """Field metadata: the value must be one of a registry's names (resolved lazily)."""
    return {"choices": names}


def _policy_names() -> list[str]:
    from sim.cache.policies import POLICIES

    return sorted(POLICIES)


def _system_names() -> list[str]:
    from sim.systems import SYSTEMS

    return sorted(SYSTEMS)


def _embedder_check(value: str) -> str | None:
    from traces.embeddings import check_embedder_name

    return check_embedder_name(value)


def _predictor_names() -> list[str]:
    from sim.engine.predictor import PREDICTORS

    return sorted(PREDICTORS)


def _queue_names() -> list[str]:
    from sim.engine.queues import QUEUES

    return sorted(QUEUES)


def _source_names() -> list[str]:
    from traces.sources import SOURCES

    return list(SOURCES)


def _arrival_names() -> list[str]:
    from traces.arrivals import ARRIVALS

    return list(ARRIVALS)


@dataclass
class ArrivalConfig:
    """Arrival process for traces without timestamps (prompt lists) or synthetic traces."""

    process: str = field(default="poisson", metadata=_choices(_arrival_names))  # traces.arrivals.ARRIVALS
    rate: float = 0.5  # mean requests per second
    diurnal_amplitude: float = 0.5  # peak-to-mean swing of the daily cycle, 0..1
    burst_factor: float = 5.0  # rate multiplier while a burst is on
    burst_on_s: float = 120.0  # mean length of a burst
    burst_off_s: float = 1800.0  # mean gap between bursts
    rate_path: str | None = None  # CSV with columns minute,rate (requests/s) for process=rate


@dataclass
class SyntheticConfig:
    """Knobs of the DiffusionDB-style synthetic generator (:mod:`traces.synthetic`).

    Defaults are fitted to the real DiffusionDB 1k sample (MiniLM, rate-matched; see README
    "Synthetic traces"); the ones the 6.7-hour sample cannot show are marked assumed.
    """

    users: int | None = None  # cap on distinct users (None: as many as the return process creates)
    topics: int = 20000  # shared topic clusters (fitted with zipf_s and shared_prob to the pool curve)
    zipf_s: float = 1.0  # Zipf exponent of cluster popularity (fitted: pool curve at m = 10/100/700)
    session_mean: float = 4.6  # prompts per user session (fitted: 217 sessions, mean 4.6, in the 1k window)
    edit_prob: float = 0.55  # chance the next prompt in a session is an edit of the last (fitted: similarity quantiles)
    repeat_prob: float = 0.07  # share of requests that repeat an earlier prompt exactly (fitted: 8.3%)
    drift_per_day: float = 0.3  # share of a cluster's popularity score renewed per day (assumed)
    shared_prob: float = 0.2  # chance a new idea comes from a shared cluster (fitted: cross-user share 0.133)
    return_prob: float = 0.4  # mean chance a user comes back after a session (fitted: 173 users, 79% one session)
    return_gap_h: float = 4.0  # median pause between a user's sessions, hours (fitted to the window; tail assumed)
    new_idea_prob: float = 0.17  # chance a later prompt in a session starts a new idea (fitted: share >= 0.65)
    resume_prob: float = 0.3  # chance a returning user resumes their last prompt (fitted: 3% of matches)
    days: float | None = None  # None: derived from requests / arrival rate


@dataclass
class TraceConfig:
    """Where requests come from."""

    source: str = field(default="synthetic", metadata=_choices(_source_names))  # traces.sources.SOURCES
    # A list means the first of those files that exists (e.g. the full dataset, else a shipped sample).
    path: str | list[str] | None = None
    requests: int | None = None  # keep the first N requests (None: the whole file; 20,000 synthetic ones)
    start: str | None = None  # ISO time window on the trace's own clock
    end: str | None = None
    time_scale: float = 1.0  # >1 compresses time (more load), <1 stretches it
    # source: table: trace column -> input column (or COLUMN.FIELD of JSON in a column); None: same names
    columns: dict[str, str] | None = None
    time_unit: Literal["s", "ms", "us", "ns"] = "s"  # source: table: unit of numeric timestamps
    arrival: ArrivalConfig = field(default_factory=ArrivalConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class SelectorConfig:
    """Similarity -> K mapping and the load-aware (Argus-like) variant."""

    ladder: list[list[float]] | None = None  # [[threshold, K], ...]; None: the profile's
    load_aware: bool = False
    slo_s: float = 60.0  # latency SLO the load-aware selector defends
    floor: float = 0.65  # minimum similarity to reuse at all under load
    max_k: int = 25


@dataclass
class CacheConfig:
    """The approximate cache of intermediate latents."""

    capacity: float = 15000
    unit: Literal["latents", "prompts", "bytes"] = "latents"
    policy: str = field(default="lcbfu", metadata=_choices(_policy_names))
    granularity: Literal["latent", "prompt"] = "latent"  # evict one latent or all of a prompt's
    store_on_hit: bool = True  # a hit at K stores the levels above K for the new prompt
    isolation: Literal["shared", "per-user"] = "shared"
    tier: str | None = None  # storage tier name; None: the profile's default_tier


@dataclass
class NeighbourConfig:
    """Causal top-m neighbour lists, precomputed once per (trace, embedder)."""

    # A cap, not a fixed length: a row holds every indexed neighbour above the floor up to
    # top_m (99.7% of rows on the 200k-request bench trace), so the replay's fallback to
    # the exhaustive search is rare.
    top_m: int = 1024
    min_similarity: float | None = None  # None: the lowest threshold in use
    index: Literal["hnsw", "exact"] = "hnsw"


@dataclass
class BatchConfig:
    max_batch: int = 1
    max_wait_s: float = 0.0


@dataclass
class ClusterConfig:
    """The GPU serving cluster."""

    gpus: int = 4
    queue: str = field(default="fcfs", metadata=_choices(_queue_names))
    batch: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class PredictorConfig:
    """Match predictor that skips the lookup for prompts likely to miss."""

    kind: str = field(default="none", metadata=_choices(_predictor_names))
    precision: float = 0.9  # for kind=model
    recall: float = 0.9
    warmup: int = 2000  # requests used to train kind=learned


@dataclass
class GptCacheConfig:
    threshold: float = 0.8
    evict_fraction: float = 0.2  # GPTCache evicts this share of entries at once when full


@dataclass
class Experiment:
    """One experiment file."""

    name: str = "experiment"
    seed: int = 1
    trace: TraceConfig = field(default_factory=TraceConfig)
    embedder: str = field(default="minilm", metadata={"check": _embedder_check})
    profile: str = "sdxl-a10g"
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    gptcache: GptCacheConfig = field(default_factory=GptCacheConfig)
    systems: list[str] = field(
        default_factory=lambda: ["vanilla", "gptcache", "exact", "nirvana"],
        metadata=_choices(_system_names),
    )
    mode: Literal["full", "cache-only"] = "full"
    output: str = "results/experiment"
    plots: bool = True
    sweep: dict[str, Any] | None = None


# ---------------------------------------------------------------------------
# Loading and validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(path: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, f"expected a mapping of {tp.__name__} fields")
        return _build(tp, value, path)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(path, value, arg, meta)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, value, f"expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(path, value, "allowed: " + ", ".join(map(str, allowed)), _did_you_mean(value, allowed))
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, value, "expected a list")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(f"{path}[{i}]", v, item_tp, meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, "expected a mapping")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(path, value, "expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, "expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "expected a string")
        names_fn = meta.get("choices")
        if names_fn is not None:
            names = names_fn()
            if value not in names:
                raise ConfigError(path, value, "allowed: " + ", ".join(names), _did_you_mean(value, names))
        check = meta.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(path, value, problem)
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")


def _did_you_mean(value: Any, allowed: Any) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(path, value, "unknown field; allowed: " + ", ".join(fields), _did_you_mean(key, fields))
        f = fields[key]
        if f.metadata.get("choices") is not None and hints[key] == list[str]:
            kwargs[key] = [_coerce(f"{path}[{i}]", v, str, f.metadata) for i, v in enumerate(_as_list(path, value))]
        else:
            kwargs[key] = _coerce(path, value, hints[key], f.metadata)
    obj = cls(**kwargs)
    _check_ranges(obj, prefix)
    return obj


def _as_list(path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(path, value, "expected a list")
    return value


def _positive(path: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(path, value, "must be " + (">= 0" if allow_zero else "> 0"))


def _first_existing(field: str, candidates: list[str]) -> str:
    """The first candidate path that exists (what the resolved config records)."""
    for candidate in candidates:
        if Path(candidate).expanduser().exists():
            return candidate
    raise ConfigError(field, candidates, "none of these files exists")


def _check_ranges(obj: Any, prefix: str) -> None:
    """Value checks that a type annotation cannot express."""
    p = (prefix + ".") if prefix else ""
    if isinstance(obj, TraceConfig):
        _positive(p + "requests", obj.requests)
        _positive(p + "time_scale", obj.time_scale)
        if isinstance(obj.path, list):
            obj.path = _first_existing(p + "path", obj.path)
        from traces.sources import check_columns, get_source

        if get_source(obj.source).needs_path and obj.path is None:
            raise ConfigError(p + "path", None, f"trace.source={obj.source!r} needs a path to read")
        problem = check_columns(obj.columns)
        if problem:
            raise ConfigError(p + "columns", obj.columns, problem)
    elif isinstance(obj, ArrivalConfig):
        _positive(p + "rate", obj.rate)
        if not 0 <= obj.diurnal_amplitude < 1:
            raise ConfigError(p + "diurnal_amplitude", obj.diurnal_amplitude, "must be in [0, 1)")
        from traces.arrivals import ARRIVALS

        if ARRIVALS[obj.process].needs_rate_path and obj.rate_path is None:
            raise ConfigError(p + "rate_path", None, f"process={obj.process} needs a CSV of minute,rate")
    elif isinstance(obj, CacheConfig):
        _positive(p + "capacity", obj.capacity, allow_zero=True)
    elif isinstance(obj, NeighbourConfig):
        _positive(p + "top_m", obj.top_m)
        if obj.min_similarity is not None and not -1 <= obj.min_similarity <= 1:
            raise ConfigError(p + "min_similarity", obj.min_similarity, "must be a cosine in [-1, 1]")
    elif isinstance(obj, ClusterConfig):
        _positive(p + "gpus", obj.gpus)
    elif isinstance(obj, BatchConfig):
        _positive(p + "max_batch", obj.max_batch)
        _positive(p + "max_wait_s", obj.max_wait_s, allow_zero=True)
    elif isinstance(obj, PredictorConfig):
        for name in ("precision", "recall"):
            v = getattr(obj, name)
            if not 0 < v <= 1:
                raise ConfigError(p + name, v, "must be in (0, 1]")
    elif isinstance(obj, GptCacheConfig):
        if not -1 <= obj.threshold <= 1:
            raise ConfigError(p + "threshold", obj.threshold, "must be a cosine in [-1, 1]")
        if not 0 < obj.evict_fraction <= 1:
            raise ConfigError(p + "evict_fraction", obj.evict_fraction, "must be in (0, 1]")
    elif isinstance(obj, SelectorConfig):
        if obj.ladder is not None:
            for i, rung in enumerate(obj.ladder):
                if len(rung) != 2 or not (-1 <= rung[0] <= 1) or int(rung[1]) != rung[1] or rung[1] <= 0:
                    raise ConfigError(f"{p}ladder[{i}]", rung, "expected [similarity threshold, K > 0]")
        _positive(p + "slo_s", obj.slo_s)
    elif isinstance(obj, Experiment) and not obj.systems:
        raise ConfigError(p + "systems", obj.systems, "list at least one system")


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as a YAML scalar or list."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, creating mappings as needed."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(dotted, value, f"{k!r} is not a mapping, so it has no sub-field")
        node = child
    node[keys[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment file safely (no tags that construct Python objects)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "experiment file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(p, f"not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise InputError(p, f"not valid YAML: {getattr(exc, 'problem', exc)}", row=row) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(p, "an experiment file must be a YAML mapping of fields")
    return data


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Split ``["a.b=1", ...]`` into ``[("a.b", 1), ...]``."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", item, "expected FIELD.PATH=VALUE, e.g. cache.capacity=1500")
        key, text = item.split("=", 1)
        out.append((key.strip(), parse_value(text)))
    return out


def from_dict(data: Mapping[str, Any]) -> Experiment:
    """Validate a plain mapping into an :class:`Experiment`."""
    exp = _build(Experiment, data)
    if exp.sweep is not None:
        validate_sweep(exp)
    return exp


def load(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Load an experiment file, apply ``--set`` overrides and validate the result."""
    data = read_yaml(path)
    for key, value in parse_overrides(overrides or []):
        set_path(data, key, value)
    return from_dict(data)


def to_dict(exp: Experiment) -> dict[str, Any]:
    """The resolved config as plain data (what is saved beside every result)."""
    return dataclasses.asdict(exp)


def dump(exp: Experiment) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(exp), sort_keys=False)


def replace_path(exp: Experiment, dotted: str, value: Any) -> Experiment:
    """A new validated Experiment with one dotted field changed (used by sweeps)."""
    data = to_dict(exp)
    data.pop("sweep", None)
    set_path(data, dotted, value)
    return from_dict(data)


def validate_sweep(exp: Experiment) -> None:
    """Check that every swept path names a real field and every value is valid for it."""
    sweep = exp.sweep or {}
    reserved = {"mode", "seeds", "grid", "zip"}
    base = to_dict(exp)
    base.pop("sweep")
    axes: dict[str, Any] = {}
    if "grid" in sweep or "zip" in sweep:
        for key in sweep:
            if key not in reserved:
                raise ConfigError(f"sweep.{key}", sweep[key], "with grid/zip blocks, allowed keys: grid, zip, seeds")
        for block in ("grid", "zip"):
            part = sweep.get(block) or {}
            if not isinstance(part, Mapping):
                raise ConfigError(f"sweep.{block}", part, "expected a mapping of field.path: [values]")
            axes.update({f"{block}:{k}": v for k, v in part.items()})
        lengths = {len(v) for v in (sweep.get("zip") or {}).values() if isinstance(v, list)}
        if len(lengths) > 1:
            raise ConfigError("sweep.zip", sweep.get("zip"), "zipped lists must all have the same length")
    else:
        axes = {k: v for k, v in sweep.items() if k != "seeds"}
    seeds = sweep.get("seeds")
    if seeds is not None and not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
        raise ConfigError("sweep.seeds", seeds, "expected a list of integer seeds")
    for raw_key, values in axes.items():
        key = raw_key.split(":", 1)[-1]
        shown = f"sweep.{raw_key.replace(':', '.')}"
        if not isinstance(values, list) or not values:
            raise ConfigError(shown, values, "expected a non-empty list of values")
        for v in values:
            data = dict(base)
            data = _deep_copy(data)
            try:
                set_path(data, key, v)
                _build(Experiment, data)
            except ConfigError as exc:
                raise ConfigError(shown, v, f"not valid for {exc.field}: {exc.allowed}") from None


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
