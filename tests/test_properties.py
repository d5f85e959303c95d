"""Property-based: random values in every config and profile field end in a clean error or a valid object.

Hypothesis feeds NaN, infinities, negatives, huge and tiny numbers, wrong types and unknown keys
to every field of the experiment file (each ``params.<system>`` field too) and of a profile.
The only acceptable outcomes: :class:`ConfigError` / :class:`InputError` (what the CLI prints as
one line), or an object that loads back from its own dump and passes the checks a run does
(``preflight``, the sweep's expansion) with nothing but those errors.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.app.preflight import preflight
from sim.app.sweep import expand_sweep
from sim.base import config, strict_yaml
from sim.base.errors import ConfigError, InputError
from sim.base.profile import PROFILE_DIR, Profile, parse_profile
from sim.systems import SYSTEMS


def _leaf_paths(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out += _leaf_paths(hints[f.name], path + ".")
        else:
            out.append(path)
    return out


EXPERIMENT_FIELDS = _leaf_paths(config.Experiment) + [
    f"params.{name}.{f.name}"
    for name, cls in SYSTEMS.items()
    if cls.params_type is not None
    for f in dataclasses.fields(cls.params_type)
]

_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 1, 0.5, -0.5, 1e-300, 1e300, 2**31, 2**63, 10**30, -(10**30)]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
)
_scalars = st.one_of(_numbers, st.text(max_size=12), st.booleans(), st.none())
VALUES = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=4),
    st.lists(st.lists(st.one_of(_numbers, st.text(max_size=3)), max_size=3), max_size=3),  # ladder-shaped
    st.dictionaries(st.text(max_size=8), _scalars, max_size=3),
)
UNKNOWN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12)


def _experiment_edits() -> st.SearchStrategy[list[tuple[str, Any]]]:
    known = st.tuples(st.sampled_from(EXPERIMENT_FIELDS), VALUES)
    unknown = st.tuples(UNKNOWN, _scalars)
    return st.lists(st.one_of(known, known, known, unknown), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_experiment_edits())
def test_random_experiment_values_give_a_clean_error_or_a_valid_experiment(edits) -> None:
    data: dict[str, Any] = {"embedder": "hashing"}
    try:
        for path, value in edits:
            config.set_path(data, path, copy.deepcopy(value))
        exp = config.from_dict(data)
    except (ConfigError, InputError):
        return
    # A valid experiment writes a config that loads back to itself ...
    assert config.from_dict(strict_yaml.loads(config.dump(exp))) == exp
    # ... and the checks of a run end in a clean error or pass.
    try:
        checked = preflight(exp)
        if checked.sweep:
            expand_sweep(checked)
    except (ConfigError, InputError):
        return


def _profile_leaves(node: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        out = [prefix + (k,) for k in node] if prefix else []
        for k, v in node.items():
            out += _profile_leaves(v, prefix + (k,))
        return out
    if isinstance(node, list):
        out = []
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out += _profile_leaves(v, prefix + (i,))
        return out
    return []


BASE_PROFILE = strict_yaml.read(PROFILE_DIR / "sdxl-a10g.yaml")
PROFILE_FIELDS = _profile_leaves(BASE_PROFILE) + [(k,) for k in BASE_PROFILE]


def _profile_edits() -> st.SearchStrategy[list[tuple[tuple, Any, bool]]]:
    # (path, value, delete instead of set); a path ending in an unknown key adds it
    known = st.tuples(st.sampled_from(PROFILE_FIELDS), VALUES, st.booleans())
    unknown = st.tuples(
        st.tuples(st.sampled_from(["gpu", "latency", "storage", "quality"]), UNKNOWN), _scalars, st.just(False)
    )
    return st.lists(st.one_of(known, known, unknown), min_size=1, max_size=3)


def _edit(data: dict, path: tuple, value: Any, delete: bool) -> None:
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node or isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return  # an earlier edit replaced the parent: nothing to edit here
    last = path[-1]
    if isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if delete:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)


def _finite(*xs: float) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in xs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_profile_edits())
def test_random_profile_values_give_a_clean_error_or_a_profile_the_engine_can_use(edits) -> None:
    data = copy.deepcopy(BASE_PROFILE)
    for path, value, delete in edits:
        _edit(data, path, value, delete)
    try:
        p = parse_profile(data, "random.yaml")
    except InputError as exc:
        assert str(exc).startswith("random.yaml")
        return
    assert isinstance(p, Profile)
    # What the engine divides by, multiplies with and charges for is finite and in range.
    assert p.steps >= 2 and p.latent_bytes > 0
    assert p.denoise_step_s and all(b >= 1 and _finite(s) and s > 0 for b, s in p.denoise_step_s.items())
    assert _finite(p.save_overhead_step_s, p.text_encoder_s, p.vae_decode_s, p.embed_s)
    assert min(p.save_overhead_step_s, p.text_encoder_s, p.vae_decode_s, p.embed_s) >= 0
    assert _finite(p.gpu_price_per_hour_usd, p.index_per_hour_usd) and p.gpu_price_per_hour_usd >= 0
    assert all(1 <= k < p.steps for k in p.k_levels)
    assert all(-1 <= s <= 1 and k in p.k_levels for s, k in p.ladder)
    assert all(_finite(v) and v >= 0 for v in p.quality_relative_by_k.values())
    assert p.default_tier in p.tiers
    for t in p.tiers.values():
        assert _finite(t.latency_s, t.bandwidth_Bps, t.price_per_gb_month_usd)
        assert t.latency_s >= 0 and t.bandwidth_Bps > 0 and t.price_per_gb_month_usd >= 0
        assert t.capacity_bytes is None or (_finite(t.capacity_bytes) and t.capacity_bytes > 0)
        t.fetch_s(p.latent_bytes)
