"""`acsim trace synth | import | stats` through a small argparse parser built by register()."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from sim.app.trace_commands import register
from sim.base.errors import ConfigError, InputError, OutputError
from traces.schema import read_parquet


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="acsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("sub", ["synth", "import", "stats", "compare"])
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
    assert stats["repeat_rate"] > 0.1  # the knob was raised to 15%
    reuse = stats["reuse"]
    assert set(reuse) >= {
        "cross_user_share",
        "pool_curve",
        "distance_requests",
        "distance_hours",
        "same_user_share",
    }
    assert (
        reuse["pool_curve"]["10"] <= reuse["pool_curve"]["100"]
        and "returning_sessions_share" in stats["sessions"]
    )
    assert run(["trace", "stats", str(out)]) == 0
    assert "trace synthetic-800-s3: 800 requests" in capsys.readouterr().out


def test_bad_knobs_are_config_errors(samples, tmp_path):
    with pytest.raises(ConfigError, match="trace.arrival.diurnal_amplitude: 1.5 is not valid"):
        run(["trace", "synth", "--diurnal-amplitude", "1.5", "--out", str(tmp_path / "x.parquet")])
    with pytest.raises(ConfigError, match="--embedder: 'nope' is not valid"):
        run(["trace", "stats", str(samples / "diffusiondb_2m_first1k.csv"), "--embedder", "nope"])
    with pytest.raises(InputError, match="file not found"):
        run(["trace", "stats", str(tmp_path / "none.parquet")])
    with pytest.raises(SystemExit):
        run(["trace", "import", "--source", "s3", "--path", "x", "--out", "y"])


def test_import_prompts_with_arrivals(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("a red fox\na blue fox\na red fox\n" + "".join(f"prompt {i}\n" for i in range(597)))

    def gaps(*options: str) -> np.ndarray:
        out = tmp_path / f"p{len(list(tmp_path.iterdir()))}.parquet"
        assert run(["trace", "import", "--source", "prompts", "--path", str(src), "--out", str(out), *options]) == 0
        t = read_parquet(out)
        assert t.prompt_ids[:3].tolist() == [0, 1, 0] and len(t) == 600
        return t, np.diff(t.df["timestamp"].astype("int64").to_numpy() / 1e9)

    t, bursty = gaps("--process", "bursty", "--rate", "0.2", "--burst-factor", "50", "--time-scale", "2")
    _, poisson = gaps("--process", "poisson", "--rate", "0.5")
    assert t.time_scale == 2.0
    # The rate is the one asked for (on the trace's own clock; time_scale only compresses replay).
    assert 0.07 < 1 / bursty.mean() < 0.35 and 0.4 < 1 / poisson.mean() < 0.6
    # On/off bursts make gaps far more variable than a Poisson process's (coefficient of variation 1).
    assert bursty.std() / bursty.mean() > 1.3 and 0.85 < poisson.std() / poisson.mean() < 1.15


def test_import_diffusiondb_window(samples, tmp_path, capsys):
    out = tmp_path / "d.parquet"
    assert (
        run(
            [
                "trace",
                "import",
                "--source",
                "diffusiondb",
                "--path",
                str(samples / "diffusiondb_2m_first1k.csv"),
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
    assert run(["trace", "stats", str(samples / "diffusiondb_2m_first1k.csv")]) == 0
    assert "1,000 requests, 917 unique prompts (repeat rate 8.3%), 173 users" in capsys.readouterr().out


def test_synth_help_reads_defaults_from_the_config(capsys):
    from sim.base.config import SyntheticConfig

    with pytest.raises(SystemExit):
        run(["trace", "synth", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"mean prompts per user session (default: {SyntheticConfig().session_mean})" in out
    assert f"chance a new idea comes from a shared cluster (default: {SyntheticConfig().shared_prob})" in out


def test_synth_default_duration_is_realistic(tmp_path):
    out = tmp_path / "s.parquet"
    assert run(["trace", "synth", "-n", "1000", "--out", str(out)]) == 0
    hours = read_parquet(out).arrival_s[-1] / 3600
    assert 4 < hours < 10  # the real 1k sample spans 6.7 h (not 26 minutes)


def test_import_table_with_columns(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text("when,text,who\n1660420800,a red fox,u1\n1660420830,,u2\n1660420860,a red fox,u2\n")
    out = tmp_path / "t.parquet"
    table = ["trace", "import", "--source", "table", "--path", str(src), "--out", str(out)]
    with pytest.warns(UserWarning, match="dropped 1 request"):
        code = run([*table, "--columns", "prompt=text,timestamp=when,user=who", "--requests", "1"])
    assert code == 0
    assert "1 requests (the first 1 of 2 requests: trace.requests)" in capsys.readouterr().out
    assert read_parquet(out).df["user"].tolist() == ["u1"]
    with pytest.raises(
        ConfigError, match="--columns: 'prompt' is not valid; expected TRACE_COLUMN=INPUT_COLUMN"
    ):
        run([*table, "--columns", "prompt"])


def test_compare_prints_side_by_side_and_draws(tmp_path, capsys):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path, seed in ((a, "1"), (b, "2")):
        assert run(["trace", "synth", "-n", "300", "--seed", seed, "--rate", "0.05", "--out", str(path)]) == 0
    capsys.readouterr()
    args = ["trace", "compare", str(a), str(b), "--embedder", "hashing", "--cache-dir", str(tmp_path / "emb")]
    assert run([*args, "--out", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["statistic", "synthetic-300-s1", "synthetic-300-s2"]
    assert "cross-user share >= 0.65" in out and "pool P(m=10)" in out and "reuse distance p50 (hours)" in out
    assert (tmp_path / "fig" / "plots" / "trace_compare.png").stat().st_size > 10_000
    table = pd.read_csv(tmp_path / "fig" / "summary.csv").set_index("key")
    assert list(table.columns) == ["statistic", "synthetic-300-s1", "synthetic-300-s2"]
    assert 0 <= table.loc["reuse/cross_user_share", "synthetic-300-s1"] <= 1
    # Run again: its own directory is replaced; a directory of someone else's files is refused.
    assert run([*args, "--out", str(tmp_path / "fig")]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="has no .acsim-result marker"):
        run([*args, "--out", str(mine)])
    assert (mine / "notes.txt").read_text() == "keep me" and not (mine / "plots").exists()
    capsys.readouterr()
    assert run([*args, "--out", str(tmp_path / "fig2"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in data["figure"]] == ["synthetic-300-s1", "synthetic-300-s2"]
    assert len(data["figure"][0]["distance_requests"]["x"]) == 101
