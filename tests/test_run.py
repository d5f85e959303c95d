"""The run's contracts: what prepare_inputs reads, the preflight step, per-system params and old keys."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from sim.app.preflight import preflight
from sim.app.run import INPUT_FIELDS, prepare_inputs
from sim.base import config
from sim.base.errors import ConfigError, DeprecatedField

ROOT = Path(__file__).resolve().parents[1]


class Recording:
    """An Experiment that notes which of its top-level fields are read."""

    def __init__(self, exp: config.Experiment) -> None:
        self._exp = exp
        self.read: set[str] = set()

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self._exp, name)


@pytest.mark.parametrize(
    "fields",
    [
        {"systems": ["vanilla", "exact", "gptcache", "nirvana"]},
        {"systems": ["exact"], "predictor": {"kind": "learned"}},
        {"systems": ["nirvana"], "selector": {"load_aware": True, "floor": 0.5}},
    ],
)
def test_prepare_inputs_reads_only_the_declared_input_fields(tmp_path, monkeypatch, fields) -> None:
    """Sweeps share prepared inputs between configurations that agree on INPUT_FIELDS, so
    prepare_inputs must not read anything else (or a sweep would reuse wrong inputs)."""
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path))
    exp = preflight(
        config.from_dict(
            {"trace": {"requests": 300}, "embedder": "hashing", "neighbours": {"index": "exact"}, **fields}
        )
    )
    rec = Recording(exp)
    inputs = prepare_inputs(rec, progress=False)
    assert rec.read <= set(INPUT_FIELDS), rec.read - set(INPUT_FIELDS)
    assert len(inputs.trace) == 300
    # Lists only for systems that search by similarity; embeddings also for the learned predictor.
    assert (inputs.neighbours is None) == (fields["systems"] == ["exact"])
    assert inputs.embeddings is not None


def test_old_gptcache_block_is_read_as_params_with_a_note(tmp_path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = config.from_dict(
            {"gptcache": {"threshold": 0.9}, "params": {"gptcache": {"evict_fraction": 0.5}}}
        )
    assert [type(w.message) for w in caught] == [DeprecatedField]
    resolved = preflight(exp)
    assert resolved.params["gptcache"] == {"threshold": 0.9, "space": "clip", "evict_fraction": 0.5}
    path = tmp_path / "old.yaml"
    path.write_text("gptcache: {threshold: 0.85}\nsystems: [gptcache]\n")
    res = subprocess.run(
        [sys.executable, "-m", "sim", "validate", str(path), "--show"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("acsim: note:") == 1 and "params.gptcache" in res.stderr
    assert "threshold: 0.85" in res.stdout and "evict_fraction: 0.2" in res.stdout


def test_per_system_params_are_typed_by_their_system() -> None:
    with pytest.raises(ConfigError, match=r"params\.gptcache\.threshold: 2\.0 .*cosine"):
        preflight(config.from_dict({"params": {"gptcache": {"threshold": 2.0}}}))
    with pytest.raises(ConfigError, match=r"params\.gptcach: .*did you mean 'gptcache'"):
        preflight(config.from_dict({"params": {"gptcach": {}}}))
    with pytest.raises(
        ConfigError, match=r"params\.gptcache\.treshold: .*unknown field.*did you mean 'threshold'"
    ):
        preflight(config.from_dict({"params": {"gptcache": {"treshold": 0.9}}}))
    # Defaults are written out for the systems in use, so the saved config says what ran.
    assert preflight(config.from_dict({"systems": ["gptcache"]})).params == {
        "gptcache": {"threshold": 0.65, "space": "clip", "evict_fraction": 0.2}
    }


def test_a_resolved_config_loads_back_anywhere(tmp_path) -> None:
    """What preflight resolves (a path list, params) is written in, and the dump passes every check."""
    sample = tmp_path / "trace.csv"
    sample.write_text("prompt,timestamp\n")
    exp = preflight(
        config.from_dict(
            {"trace": {"source": "diffusiondb", "path": [str(tmp_path / "absent.parquet"), str(sample)]}}
        )
    )
    assert exp.trace.path == str(sample)
    again = config.from_dict(yaml.safe_load(config.dump(exp)))
    assert again == exp
    # The config's own checks do not need the machine: a missing file is the preflight's error.
    gone = config.from_dict({"trace": {"source": "parquet", "path": str(tmp_path / "gone.parquet")}})
    with pytest.raises(ConfigError, match="trace.path.*no such file"):
        preflight(gone)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cluster": {"queue": "lifo"}}, "cluster.queue"),
        ({"predictor": {"kind": "psychic"}}, "predictor.kind"),
        ({"cache": {"tier": "floppy"}}, "cache.tier"),
        ({"selector": {"ladder": [[0.9, 7]]}}, "selector.ladder[0]"),
        ({"profile": "sdxl-nope"}, "sdxl-nope"),
    ],
)
def test_preflight_names_the_field(data, field) -> None:
    with pytest.raises(Exception, match=field.replace("[", r"\[").replace("]", r"\]")):
        preflight(config.from_dict(data))
