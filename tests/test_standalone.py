"""acsim stands on its own: a copy of the repository with nothing beside it validates every shipped
experiment, and no file a user runs or reads names a folder beside the checkout or a path of the
machine that wrote it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import USER_DATA

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))

# A folder beside the checkout, or a path that only the machine that wrote a file has. Examples
# in the docs name made-up places (/models/..., /data/...), which are not these.
MACHINE_PATHS = re.compile(r"(^|[^.\w])\.\./shared\b|\bshared/data\b|/work/|/root/|/home/\w|/tmp/pytest|\.pyenv/")
# .ci/run passes this workplace's data directory to the external-data tests when it exists (the
# one place that names it); tests/ reads it by default.
NOT_PRODUCT = ("tests/", ".ci/")


def tracked_files() -> list[str]:
    """Files a clone holds (tracked, plus new ones not yet committed and not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [f for f in out if (ROOT / f).is_file()]


def test_no_product_file_names_paths_beside_the_checkout_or_of_this_machine() -> None:
    found = []
    for name in tracked_files():
        if name.startswith(NOT_PRODUCT):
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # figures and other binary files
        for n, line in enumerate(text.splitlines(), start=1):
            if MACHINE_PATHS.search(line):
                found.append(f"{name}:{n}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_the_pattern_catches_what_it_is_for() -> None:
    for bad in ("see ../shared/DESIGN.md", "path: [../shared/data/x.csv]", "/work/notes/paper_notes.md", "/root/.cache"):
        assert MACHINE_PATHS.search(bad), bad
    for fine in ("--model /models/stable-diffusion-xl-base-1.0", "sample:diffusiondb_2m_first1k.csv", "a shared/ store"):
        assert not MACHINE_PATHS.search(fine), fine


@pytest.fixture(scope="module")
def lone_copy(tmp_path_factory) -> Path:
    """The repository's files copied to an empty directory (no ../shared beside it)."""
    dest = tmp_path_factory.mktemp("clone") / "acsim"
    for name in tracked_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    assert not (dest.parent.parent / "shared").exists()
    return dest


SCRIPT = """
import json, sys
from sim.app.cli import main
codes = {path: main(["validate", path]) for path in sys.argv[1:]}
print("CODES", json.dumps(codes))
"""


def validate_in(copy: Path, cache: Path, names: list[str]) -> tuple[dict[str, int], str]:
    """Exit codes of ``acsim validate`` on ``names`` in ``copy`` (its own packages), and stderr."""
    env = {**os.environ, "PYTHONPATH": str(copy), "ACSIM_CACHE": str(cache)}
    env.pop("ACSIM_TEST_DATA", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *names], cwd=copy, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("CODES", 1)[1]), proc.stdout + proc.stderr


def test_every_experiment_validates_from_a_lone_copy(lone_copy: Path, tmp_path: Path) -> None:
    assert EXPERIMENTS, "no experiment files"
    names = [f"experiments/{p.name}" for p in EXPERIMENTS if f"experiments/{p.name}" not in USER_DATA]
    # The copy's own packages were imported (not the checkout's), so the samples came from the copy.
    codes, out = validate_in(lone_copy, tmp_path / "cache", names)
    assert codes == dict.fromkeys(names, 0), out[-3000:]


@pytest.mark.parametrize(("name", "data"), sorted((name, file) for name, (file, _) in USER_DATA.items()))
def test_an_experiment_on_data_acsim_cannot_ship_names_the_file_to_fetch(lone_copy: Path, tmp_path: Path, name, data):
    # A lone copy refuses it, naming the file the user is to fetch.
    assert (ROOT / name).is_file()
    codes, out = validate_in(lone_copy, tmp_path / "cache", [name])
    assert codes == {name: 2}
    assert "trace.path" in out and data in out and "no such file" in out
    assert "github.com" in (ROOT / name).read_text()  # the header says where the data comes from


def test_the_lone_copy_reads_its_own_samples(lone_copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(lone_copy)}
    code = "from traces.samples import resolve; print(resolve('sample:diffusiondb_2m_first1k.csv'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=lone_copy, env=env, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == lone_copy / "traces" / "data" / "diffusiondb_2m_first1k.csv"
