"""Experiment files: loading, overrides, and the messages bad input gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.app.preflight import preflight
from sim.app.sweep import expand_sweep
from sim.base import config
from sim.base.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_every_shipped_experiment_is_valid() -> None:
    files = sorted((ROOT / "experiments").glob("*.yaml"))
    assert files, "experiments/ must ship YAML files"
    for f in files:
        exp = config.load(f)
        assert exp.name


def test_defaults_and_types(tmp_path: Path) -> None:
    exp = config.load(write(tmp_path, "cache: {capacity: 1500}\n"))
    assert exp.cache.capacity == 1500.0 and isinstance(exp.cache.capacity, float)
    assert exp.cache.policy == "lcbfu"
    assert exp.systems == ["vanilla", "gptcache", "exact", "nirvana"]


def test_overrides_by_dot_path(tmp_path: Path) -> None:
    exp = config.load(
        write(tmp_path, "name: x\n"),
        ["cache.capacity=1500", "trace.requests=5000", "cache.policy=lru", "systems=[vanilla, nirvana]"],
    )
    assert (exp.cache.capacity, exp.trace.requests, exp.cache.policy) == (1500, 5000, "lru")
    assert exp.systems == ["vanilla", "nirvana"]


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("cache: {policy: lruu}\n", "cache.policy", "did you mean 'lru'"),
        ("cache: {capacty: 10}\n", "cache.capacty", "did you mean 'capacity'"),
        ("cache: {unit: pages}\n", "cache.unit", "latents, prompts, bytes"),
        ("cache: {capacity: -5}\n", "cache.capacity", ">= 0"),
        ("trace: {requests: many}\n", "trace.requests", "integer"),
        ("systems: [vanilla, nirvanna]\n", "systems[1]", "did you mean 'nirvana'"),
        ("mode: fast\n", "mode", "full, cache-only"),
        ("cluster: {gpus: 0}\n", "cluster.gpus", "> 0"),
        ("trace: {source: prompts}\n", "trace.path", "needs a path"),
        ("selector: {ladder: [[0.9, -3]]}\n", "selector.ladder[0]", "threshold"),
        ("sweep: {cache.capacity: [10, -1]}\n", "sweep.cache.capacity", ">= 0"),
        ("sweep: {cache.polcy: [lru]}\n", "sweep.cache.polcy", "unknown field"),
        ("embedder: bert\n", "embedder", "minilm"),
        ("cluster: {router: {kind: sticky}}\n", "cluster.router.kind", "round-robin"),
        ("cluster: {gpus: 3, replicas: [{gpus: 2}]}\n", "cluster.gpus", "set it to 2"),
        ("cluster: {replicas: []}\n", "cluster.replicas", "at least one replica"),
        ("cluster: {replicas: [{gpu: h100}]}\n", "cluster.replicas[0].gpu", "a100, a10g"),
        ("cluster: {replicas: [{gpus: 0}]}\n", "cluster.replicas[0].gpus", "> 0"),
        ("cache: {placement: local}\n", "cache.placement", "shared, per-replica"),
        ("cache: {admission: some}\n", "cache.admission", "all, sample, when-idle"),
        ("cache: {admission: 'sample:2'}\n", "cache.admission", "probability"),
        ("metrics: {warmup: 2 hours}\n", "metrics.warmup", "duration"),
        ("metrics: {warmup: -3}\n", "metrics.warmup", ">= 0"),
        ("plan: {slo: ['p95>=3']}\n", "plan.slo[0]", "<= or <"),
        ("plan: {loads: [1, 0]}\n", "plan.loads[1]", "> 0"),
        (
            "mode: cache-only\ncache: {placement: per-replica}\ncluster: {replicas: [{copies: 2}]}\n",
            "cache.placement",
            "mode: full",
        ),
        ("mode: cache-only\ncluster: {replicas: [{gpu: a100}, {gpu: a10g}]}\n", "cluster.replicas", "mode: full"),
    ],
)
def test_invalid_field_names_path_value_and_allowed(tmp_path: Path, text: str, field: str, fragment: str) -> None:
    """What `acsim validate` checks: the file's own checks, the preflight step, every sweep configuration."""
    with pytest.raises(ConfigError) as err:
        expand_sweep(preflight(config.load(write(tmp_path, text))))
    assert str(err.value).startswith(field + ":"), str(err.value)
    assert fragment in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        config.load(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="line 2"):
        config.load(write(tmp_path, "name: x\ncache: {capacity: 1]\nseed: 2\n"))
    with pytest.raises(InputError, match="mapping"):
        config.load(write(tmp_path, "- a\n- b\n"))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        config.load(bad)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        config.load(write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n"))


def test_dump_round_trips(tmp_path: Path) -> None:
    exp = config.load(write(tmp_path, "cache: {capacity: 42, policy: fifo}\nseed: 7\n"))
    again = config.load(write(tmp_path, config.dump(exp)))
    assert again == exp


def test_replace_path_validates() -> None:
    exp = config.from_dict({})
    assert config.replace_path(exp, "cache.policy", "lru").cache.policy == "lru"
    with pytest.raises(ConfigError, match="cache.capacity"):
        config.replace_path(exp, "cache.capacity", -1)
    # Registry names are the preflight step's: the config itself cannot know the plug-ins.
    with pytest.raises(ConfigError, match="cache.policy"):
        preflight(config.replace_path(exp, "cache.policy", "nope"))
