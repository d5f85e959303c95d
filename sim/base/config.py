"""Typed experiment configuration: YAML loading, --set overrides and the checks of each field.

An experiment file maps onto the :class:`Experiment` dataclass tree below. Loading walks the
YAML mapping against the dataclass fields, so every error names the dotted field path, the bad
value and what is allowed; unknown keys get a did-you-mean. Each dataclass checks its own values
in ``check()`` (ranges, consistency), on defaults and explicit values alike, so a resolved config
written by one run always loads back.

What depends on the machine is not checked here: names of plug-ins (policies, systems, embedders,
predictors, queues) against their registries, files that must exist, installed models. Those
checks run in one step, :func:`sim.app.preflight.preflight`, before ``validate``, ``run`` and
``sweep`` do anything. Per-system parameters (``params.<system>``) are typed by the system that
owns them and resolved there too.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sim.base.errors import ConfigError, DeprecatedField, InputError


@dataclass
class ArrivalConfig:
    """Arrival process for traces without timestamps (prompt lists) or synthetic traces."""

    process: Literal["poisson", "diurnal", "bursty", "rate"] = "poisson"
    rate: float = 0.5  # mean requests per second
    diurnal_amplitude: float = 0.5  # peak-to-mean swing of the daily cycle, 0..1
    burst_factor: float = 5.0  # rate multiplier while a burst is on
    burst_on_s: float = 120.0  # mean length of a burst
    burst_off_s: float = 1800.0  # mean gap between bursts
    rate_path: str | None = None  # CSV with columns minute,rate (requests/s) for process=rate

    def check(self) -> None:
        positive("rate", self.rate)
        if not 0 <= self.diurnal_amplitude < 1:
            raise ConfigError("diurnal_amplitude", self.diurnal_amplitude, "must be in [0, 1)")
        positive("burst_factor", self.burst_factor)
        positive("burst_on_s", self.burst_on_s)
        positive("burst_off_s", self.burst_off_s)
        if self.process == "rate" and self.rate_path is None:
            raise ConfigError("rate_path", None, "process=rate needs a CSV of minute,rate")


@dataclass
class SyntheticConfig:
    """Knobs of the DiffusionDB-style synthetic generator (defaults fitted to the real sample)."""

    users: int | None = None  # None: scales with the request count
    topics: int | None = None
    zipf_s: float = 1.1
    session_mean: float = 4.0  # prompts per user session (fits the real 1k sample: 217 sessions, mean 4.6 in its window)
    edit_prob: float = 0.55  # chance the next prompt in a session is an edit of the last
    repeat_prob: float = 0.08  # chance a request repeats an earlier prompt exactly
    drift_per_day: float = 0.3  # fraction of topic popularity reshuffled per day
    days: float | None = None  # None: derived from requests / arrival rate

    def check(self) -> None:
        positive("users", self.users)
        positive("topics", self.topics)
        positive("days", self.days)


@dataclass
class TraceConfig:
    """Where requests come from."""

    source: Literal["synthetic", "diffusiondb", "prompts", "parquet"] = "synthetic"
    # A list means the first of those files that exists (e.g. the full dataset, else a shipped sample);
    # the preflight step resolves it, so the config saved beside a result names the file used.
    path: str | list[str] | None = None
    requests: int | None = 20000  # keep the first N requests (None: all)
    start: str | None = None  # ISO time window on the trace's own clock
    end: str | None = None
    time_scale: float = 1.0  # >1 compresses time (more load), <1 stretches it
    arrival: ArrivalConfig = field(default_factory=ArrivalConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def check(self) -> None:
        positive("requests", self.requests)
        positive("time_scale", self.time_scale)
        if isinstance(self.path, list) and not self.path:
            raise ConfigError("path", self.path, "list at least one candidate file")
        if self.source != "synthetic" and self.path is None:
            raise ConfigError("path", None, f"trace.source={self.source!r} needs a path to read")


@dataclass
class SelectorConfig:
    """Similarity -> K mapping and the load-aware (Argus-like) variant."""

    ladder: list[list[float]] | None = None  # [[threshold, K], ...]; None: the profile's
    load_aware: bool = False
    slo_s: float = 60.0  # latency SLO the load-aware selector defends
    floor: float = 0.65  # minimum similarity to reuse at all under load
    max_k: int = 25

    def check(self) -> None:
        if self.ladder is not None:
            for i, rung in enumerate(self.ladder):
                if len(rung) != 2 or not (-1 <= rung[0] <= 1) or int(rung[1]) != rung[1] or rung[1] <= 0:
                    raise ConfigError(f"ladder[{i}]", rung, "expected [similarity threshold, K > 0]")
        positive("slo_s", self.slo_s)
        if not -1 <= self.floor <= 1:
            raise ConfigError("floor", self.floor, "must be a cosine in [-1, 1]")
        positive("max_k", self.max_k)


@dataclass
class CacheConfig:
    """The approximate cache of intermediate latents."""

    capacity: float = 15000
    unit: Literal["latents", "prompts", "bytes"] = "latents"
    policy: str = "lcbfu"  # a name of sim.cache.policies.POLICIES (checked by the preflight step)
    granularity: Literal["latent", "prompt"] = "latent"  # evict one latent or all of a prompt's
    store_on_hit: bool = True  # a hit stores the new prompt's trajectory (false: only misses store)
    # A hit at K makes the new prompt's latents at levels <= K the matched prompt's: "reference"
    # shares those bytes (no storage), "copy" stores copies (a latent each), "computed" stores
    # only the levels above K that the generation computed itself.
    trajectory: Literal["reference", "copy", "computed"] = "reference"
    isolation: Literal["shared", "per-user"] = "shared"
    tier: str | None = None  # storage tier name; None: the profile's default_tier

    def check(self) -> None:
        positive("capacity", self.capacity, allow_zero=True)


@dataclass
class NeighbourConfig:
    """Causal top-m neighbour lists, precomputed once per (trace, embedder)."""

    # A cap, not a fixed length: a row holds every indexed neighbour above the floor up to
    # top_m (99.7% of rows on the 200k-request bench trace), so the replay's fallback to
    # the exhaustive search is rare.
    top_m: int = 1024
    min_similarity: float | None = None  # None: the lowest threshold in use
    index: Literal["hnsw", "exact"] = "hnsw"

    def check(self) -> None:
        positive("top_m", self.top_m)
        if self.min_similarity is not None and not -1 <= self.min_similarity <= 1:
            raise ConfigError("min_similarity", self.min_similarity, "must be a cosine in [-1, 1]")


@dataclass
class BatchConfig:
    max_batch: int = 1
    max_wait_s: float = 0.0

    def check(self) -> None:
        positive("max_batch", self.max_batch)
        positive("max_wait_s", self.max_wait_s, allow_zero=True)


@dataclass
class ClusterConfig:
    """The GPU serving cluster."""

    gpus: int = 4
    queue: str = "fcfs"  # a name of sim.engine.queues.QUEUES (checked by the preflight step)
    batch: BatchConfig = field(default_factory=BatchConfig)

    def check(self) -> None:
        positive("gpus", self.gpus)


@dataclass
class PredictorConfig:
    """Match predictor that skips the lookup for prompts likely to miss."""

    kind: str = "none"  # a name of sim.engine.predictor.PREDICTORS (checked by the preflight step)
    precision: float = 0.9  # for kind=model
    recall: float = 0.9
    warmup: int = 2000  # requests used to train kind=learned

    def check(self) -> None:
        for name in ("precision", "recall"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(name, v, "must be in (0, 1]")
        positive("warmup", self.warmup, allow_zero=True)


@dataclass
class Experiment:
    """One experiment file."""

    name: str = "experiment"
    seed: int = 1
    trace: TraceConfig = field(default_factory=TraceConfig)
    embedder: str = "minilm"  # a name traces.embeddings accepts (checked by the preflight step)
    profile: str = "sdxl-a10g"
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    # Names of sim.systems.SYSTEMS, compared in this order (checked by the preflight step).
    systems: list[str] = field(default_factory=lambda: ["vanilla", "gptcache", "exact", "nirvana"])
    # Per-system parameters, ``params.<system>.<field>``; each system types and checks its own
    # (the preflight step writes every default out for the systems in use).
    params: dict[str, Any] = field(default_factory=dict)
    mode: Literal["full", "cache-only"] = "full"
    output: str = "results/experiment"
    plots: bool = True
    sweep: dict[str, Any] | None = None

    def check(self) -> None:
        if self.seed < 0:
            raise ConfigError("seed", self.seed, "must be >= 0")
        if not self.systems:
            raise ConfigError("systems", self.systems, "list at least one system")
        for i, name in enumerate(self.systems):
            if name in self.systems[:i]:
                raise ConfigError(f"systems[{i}]", name, "is listed twice; list each system once")
        for name, block in self.params.items():
            if not isinstance(block, Mapping):
                raise ConfigError(f"params.{name}", block, "expected a mapping of the system's parameters")
        if self.sweep is not None:
            sweep_axes(self.sweep)


# Old top-level keys that are accepted and moved to their new place, with a note.
_ALIASES = {"gptcache": "params.gptcache"}


# ---------------------------------------------------------------------------
# Value checks shared by the dataclasses


def positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is None or a number > 0 (>= 0 with ``allow_zero``)."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, value, "must be " + (">= 0" if allow_zero else "> 0"))


# ---------------------------------------------------------------------------
# Building typed dataclasses from plain data


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


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, f"expected a mapping of {tp.__name__} fields")
        return build(tp, value, path)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(path, value, arg)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, value, f"expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(path, value, "allowed: " + ", ".join(map(str, allowed)), did_you_mean(value, allowed))
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, value, "expected a list")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value)]
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
        if not math.isfinite(value):
            raise ConfigError(path, value, "expected a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "expected a string")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")


def did_you_mean(value: Any, allowed: Any) -> str:
    """A hint naming the allowed value closest to ``value`` (empty when none is close)."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """A ``cls`` dataclass from plain data, typed and checked; errors name ``prefix.field``.

    Every dataclass in the tree runs its ``check()`` (defaults included). Used for the
    experiment file and for the parameter blocks that plug-ins declare.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(path, value, "unknown field; allowed: " + ", ".join(fields), did_you_mean(key, fields))
        kwargs[key] = _coerce(path, value, hints[key])
    obj = cls(**kwargs)
    _check_tree(obj, prefix, built=set(kwargs))
    return obj


def _check_tree(obj: Any, prefix: str, built: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Run ``check()`` of ``obj`` and of its default-made dataclass fields (those not in ``built``)."""
    for f in dataclasses.fields(obj):
        child = getattr(obj, f.name)
        if f.name not in built and dataclasses.is_dataclass(child):
            _check_tree(child, f"{prefix}.{f.name}" if prefix else f.name)
    check = getattr(obj, "check", None)
    if check is None:
        return
    try:
        check()
    except ConfigError as exc:
        if not prefix:
            raise
        raise ConfigError(f"{prefix}.{exc.field}", exc.value, exc.allowed, exc.hint) from None


# ---------------------------------------------------------------------------
# Files and overrides


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


def _apply_aliases(data: Mapping[str, Any]) -> dict[str, Any]:
    """Move deprecated top-level keys to their new place (explicit new values win)."""
    data = dict(data)
    for old, new in _ALIASES.items():
        if old not in data:
            continue
        value = data.pop(old)
        warnings.warn(DeprecatedField(old, new), stacklevel=3)
        head, _, rest = new.partition(".")
        block = copy.deepcopy(dict(data.get(head) or {}))
        if isinstance(value, Mapping):
            value = {**value, **(block.get(rest) or {})}
        block[rest] = value
        data[head] = block
    return data


def from_dict(data: Mapping[str, Any]) -> Experiment:
    """Validate a plain mapping into an :class:`Experiment` (field types and value checks)."""
    return build(Experiment, _apply_aliases(data))


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
    """A new validated Experiment with one dotted field changed."""
    data = to_dict(exp)
    data.pop("sweep", None)
    set_path(data, dotted, value)
    return from_dict(data)


# ---------------------------------------------------------------------------
# The sweep block's grammar (one parser, used to check a file and to expand it)

SWEEP_KEYS = ("grid", "zip", "seeds")


def sweep_axes(sweep: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """The axes of a ``sweep:`` block: each a list of {dotted path: value} assignments, in file order.

    Two forms: a plain grid ``{path: [values], ..., seeds: [...]}``, or blocks
    ``{grid: {path: [values]}, zip: {path: [values]}, seeds: [...]}`` where grid axes are crossed
    and zip lists advance together (one axis). ``seeds`` adds an axis over ``seed``. Raises
    ConfigError naming ``sweep.<key>`` for anything else. Whether each value suits its field is
    checked when the configurations are built (``sim.app.sweep.expand_sweep``).
    """
    if not isinstance(sweep, Mapping):
        raise ConfigError("sweep", sweep, "expected a mapping of field.path: [values]")
    blocks = "grid" in sweep or "zip" in sweep
    axes: list[list[dict[str, Any]]] = []
    if blocks:
        for key in sweep:
            if key not in SWEEP_KEYS:
                raise ConfigError(f"sweep.{key}", sweep[key], "with grid/zip blocks, allowed keys: grid, zip, seeds")
        for block in ("grid", "zip"):
            part = sweep.get(block) or {}
            if not isinstance(part, Mapping):
                raise ConfigError(f"sweep.{block}", part, "expected a mapping of field.path: [values]")
            for path, values in part.items():
                _check_axis(f"sweep.{block}.{path}", values)
        grid = sweep.get("grid") or {}
        axes += [[{path: v} for v in values] for path, values in grid.items()]
        zipped = sweep.get("zip") or {}
        if zipped:
            lengths = {len(v) for v in zipped.values()}
            if len(lengths) > 1:
                raise ConfigError("sweep.zip", dict(zipped), "zipped lists must all have the same length")
            paths = list(zipped)
            axes.append([dict(zip(paths, combo, strict=True)) for combo in zip(*zipped.values(), strict=True)])
    else:
        for path, values in sweep.items():
            if path != "seeds":
                _check_axis(f"sweep.{path}", values)
                axes.append([{path: v} for v in values])
    seeds = sweep.get("seeds")
    if seeds is not None:
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ConfigError("sweep.seeds", seeds, "expected a non-empty list of integer seeds")
        axes.append([{"seed": s} for s in seeds])
    return axes


def _check_axis(shown: str, values: Any) -> None:
    if not isinstance(values, list) or not values:
        raise ConfigError(shown, values, "expected a non-empty list of values")
