"""`acsim trace synth | import | stats` through a small argparse parser built by register()."""

from __future__ import annotations

import argparse
import json

import pytest

from sim.base.errors import ConfigError, InputError
from traces.commands import register
from traces.schema import read_parquet


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="acsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("sub", ["synth", "import", "stats"])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["trace", sub, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"acsim trace {sub}" in out


def test_synth_then_stats(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    assert (
        run(
            [
                "trace",
                "synth",
                "-n",
                "800",
                "--seed",
                "3",
                "--rate",
                "0.2",
                "--repeat-prob",
                "0.15",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    t = read_parquet(out)
    assert len(t) == 800 and t.name == "synthetic-800-s3"
    assert "wrote" in capsys.readouterr().out
    assert (
        run(
            [
                "trace",
                "stats",
                str(out),
                "--embedder",
                "hashing",
                "--cache-dir",
                str(tmp_path / "emb"),
                "--json",
            ]
        )
        == 0
    )
    stats = json.loads(capsys.readouterr().out)
    assert stats["requests"] == 800 and stats["best_earlier_similarity"]["measured_requests"] == 799
    assert stats["repeat_rate"] > 0.08  # the knob was raised to 15%
    assert run(["trace", "stats", str(out)]) == 0
    assert "trace synthetic-800-s3: 800 requests" in capsys.readouterr().out


def test_bad_knobs_are_config_errors(shared_data, tmp_path):
    with pytest.raises(ConfigError, match="trace.arrival.diurnal_amplitude: 1.5 is not valid"):
        run(["trace", "synth", "--diurnal-amplitude", "1.5", "--out", str(tmp_path / "x.parquet")])
    with pytest.raises(ConfigError, match="--embedder: 'nope' is not valid"):
        run(["trace", "stats", str(shared_data / "diffusiondb_2m_first1k.csv"), "--embedder", "nope"])
    with pytest.raises(InputError, match="file not found"):
        run(["trace", "stats", str(tmp_path / "none.parquet")])
    with pytest.raises(SystemExit):
        run(["trace", "import", "--source", "s3", "--path", "x", "--out", "y"])


def test_import_prompts_with_arrivals(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a red fox\na blue fox\na red fox\n")
    out = tmp_path / "p.parquet"
    assert (
        run(
            [
                "trace",
                "import",
                "--source",
                "prompts",
                "--path",
                str(src),
                "--out",
                str(out),
                "--process",
                "bursty",
                "--rate",
                "0.01",
                "--time-scale",
                "2",
            ]
        )
        == 0
    )
    t = read_parquet(out)
    assert t.prompt_ids.tolist() == [0, 1, 0] and t.time_scale == 2.0


def test_import_diffusiondb_window(shared_data, tmp_path, capsys):
    out = tmp_path / "d.parquet"
    assert (
        run(
            [
                "trace",
                "import",
                "--source",
                "diffusiondb",
                "--path",
                str(shared_data / "diffusiondb_2m_first1k.csv"),
                "--out",
                str(out),
                "--start",
                "2022-08-13T22:00Z",
                "--end",
                "2022-08-14T00:00Z",
                "--stats",
            ]
        )
        == 0
    )
    t = read_parquet(out)
    assert t.df["timestamp"].min().hour == 22 and t.df["timestamp"].max().hour == 23
    assert "sessions (gap < 30 min)" in capsys.readouterr().out
    # stats reads DiffusionDB files directly too
    assert run(["trace", "stats", str(shared_data / "diffusiondb_2m_first1k.csv")]) == 0
    assert "1,000 requests, 917 unique prompts (repeat rate 8.3%), 173 users" in capsys.readouterr().out
