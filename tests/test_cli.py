"""The acsim command as a user meets it: help, validate, and clean failures on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.app.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=300
    )


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for cmd in ("run", "validate", "sweep", "plot", "profiles", "trace", "calibrate", "bench"):
        assert cmd in text


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("run", "validate", "sweep", "plot", "profiles", "bench", "trace", "calibrate"):
        with pytest.raises(SystemExit) as ex:
            main([cmd, "--help"])
        assert ex.value.code == 0
        assert len(capsys.readouterr().out) > 100


def test_validate_ok_and_bad(tmp_path: Path) -> None:
    ok = run_cli("validate", "experiments/quickstart.yaml")
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    for text, fragments in (
        ("cache: {policy: lruu}\n", ("cache.policy", "'lruu'", "did you mean 'lru'")),
        ("foo: 1\n", ("foo", "unknown field")),
    ):
        bad.write_text(text)
        res = run_cli("validate", str(bad))
        assert res.returncode == 2
        assert all(f in res.stderr for f in fragments), res.stderr
        assert "Traceback" not in res.stderr
    res = run_cli("validate", "experiments/quickstart.yaml", "--set", "cluster.gpus=zero")
    assert res.returncode == 2 and "cluster.gpus" in res.stderr


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["profile=sdxl-h999"], "sdxl-h999"),
        (["trace.source=prompts", "trace.path=/nonexistent/prompts.txt"], "/nonexistent/prompts.txt"),
        (["trace.source=parquet", "trace.path={bad}"], "bad.parquet"),
    ],
)
def test_run_fails_cleanly_without_partial_output(tmp_path: Path, overrides: list[str], fragment: str) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    out = tmp_path / "out"
    args = ["run", "experiments/quickstart.yaml", "--output", str(out), "--set", "trace.requests=50", "--no-plots"]
    for o in overrides:
        args += ["--set", o.replace("{bad}", str(tmp_path / "bad.parquet"))]
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert fragment in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() or not any(out.rglob("*")), "no partial output may be left behind"
