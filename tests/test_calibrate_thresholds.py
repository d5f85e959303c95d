"""``acsim calibrate thresholds``: carrying a ladder to another embedder by matching quantiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from support import calibrate_cli, write_match_log

from calibrate import thresholds as th
from sim.base.errors import ConfigError, InputError
from sim.base.profile import load_profile

PUBLISHED = [(0.95, 25), (0.9, 20), (0.85, 15), (0.75, 10), (0.65, 5)]


@pytest.fixture(autouse=True)
def private_embedding_cache(tmp_path, monkeypatch):
    # Embeddings are cached on disk; a test must not read or fill the user's cache.
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def log(external_data):
    return th.read_match_log(str(external_data / "accuscale_match_log_20k.csv"))


@pytest.fixture
def own_log(tmp_path):
    """A small match log the test writes (the commands' behaviour on any clone)."""
    return write_match_log(tmp_path / "own_log.csv")


@pytest.mark.external_data
def test_shipped_ladders_were_carried_on_this_log(external_data):
    for path in sorted((Path(__file__).resolve().parents[1] / "calibrate" / "ladders").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert raw["transfer"]["log_sha256"] == th.file_sha256(external_data / raw["transfer"]["log"]), path.name


@pytest.mark.external_data
def test_reads_the_real_match_log_skipping_rows_without_a_cached_prompt(log):
    assert len(log.queries) == len(log.caches) == log.scores.size == 15_501
    # 4,498 rows have no cached prompt; one has a cached prompt but an empty query.
    assert log.skipped_empty == 20_000 - 15_501
    assert all(c.strip() for c in log.caches)
    assert log.scores.min() >= 0.65 and log.scores.max() <= 1.0 + 1e-5


@pytest.mark.external_data
def test_quantile_map_is_monotone_and_preserves_the_share_above_each_threshold(log):
    rng = np.random.default_rng(0)
    # A different, noisy similarity scale for the same pairs (a stand-in target, real source scores).
    target = np.tanh(2.5 * (log.scores - 0.6)) + rng.normal(0, 0.05, log.scores.size)
    ts = np.sort(rng.uniform(0.5, 1.0, 200))
    mapped, q = th.quantile_map(ts, log.scores, target)
    assert np.all(np.diff(mapped) >= 0) and np.all(np.diff(q) >= 0)
    for t, t2 in zip(ts[::20], mapped[::20], strict=True):
        share_src = np.mean(log.scores >= t)
        share_tgt = np.mean(target >= t2)
        assert share_tgt == pytest.approx(share_src, abs=2 / log.scores.size + 1e-3)
    # The identity target maps every threshold (inside the data) to itself, up to interpolation.
    same, _ = th.quantile_map([0.7, 0.8, 0.9], log.scores, log.scores)
    assert same == pytest.approx([0.7, 0.8, 0.9], abs=2e-3)


@pytest.mark.external_data
def test_transfer_to_the_hashing_embedder_is_monotone(log):
    small = th.MatchLog(log.path, log.queries[:1000], log.caches[:1000], log.scores[:1000], log.skipped_empty)
    tr = th.transfer(PUBLISHED, small, "clip", "hashing")
    new = [t for t, _ in tr.mapped]
    assert [k for _, k in tr.mapped] == [25, 20, 15, 10, 5]
    assert all(a >= b for a, b in zip(new, new[1:], strict=False))
    assert tr.target_scores.shape == (1000,) and np.all(np.abs(tr.target_scores) <= 1 + 1e-5)
    # Hashing similarities of these paraphrases are far below CLIP's: the ladder must move.
    assert new[2] < 0.85
    table = tr.table()
    assert list(table.columns) == ["k", "threshold_clip", "share_at_or_above", "threshold_hashing"]
    assert table["share_at_or_above"].is_monotonic_increasing
    # The log holds only pairs with CLIP >= 0.65, so the 0.65 rung sits on its floor.
    assert tr.at_floor() == [(0.65, 5)] and new[-1] == pytest.approx(tr.target_scores.min())


def test_thresholds_cli_writes_a_valid_profile(own_log, tmp_path, capsys):
    out = tmp_path / "sdxl-hashing.yaml"
    rc = calibrate_cli(
        [
            "calibrate",
            "thresholds",
            "--pairs",
            str(own_log),
            "--from",
            "clip",
            "--to",
            "hashing",
            "--limit",
            "250",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "threshold_hashing" in capsys.readouterr().out
    profile = load_profile(str(out))
    raw = yaml.safe_load(out.read_text())
    assert raw["ladder"]["embedder"] == "hashing" and raw["ladder"]["kind"] == "measured"
    assert raw["ladder"]["transfer"]["pairs"] == 250
    # The log is named by its file name and content, not by this machine's path.
    assert raw["ladder"]["transfer"]["log"] == "own_log.csv"
    assert raw["ladder"]["transfer"]["log_sha256"] == th.file_sha256(own_log)
    assert raw["ladder"]["transfer"]["from_thresholds"] == [list(r) for r in PUBLISHED]
    assert [k for _, k in profile.ladder] == [25, 20, 15, 10, 5]
    assert raw["latency"] == load_profile("sdxl-a10g").raw["latency"]


def test_thresholds_cli_writes_the_ladder_alone(own_log, tmp_path):
    out = tmp_path / "hashing.yaml"
    argv = ["calibrate", "thresholds", "--pairs", str(own_log)]
    assert calibrate_cli([*argv, "--to", "hashing", "--limit", "300", "--ladder-out", str(out)]) == 0
    raw = yaml.safe_load(out.read_text())
    assert raw["embedder"] == "hashing" and [k for _, k in raw["thresholds"]] == [25, 20, 15, 10, 5]
    assert "--ladder-out" in raw["command"]
    assert raw["command"].startswith("acsim calibrate thresholds --pairs own_log.csv ")
    assert [f.name for f in tmp_path.glob("*.yaml")] == ["hashing.yaml"]  # and no profile
    # A ladder path that cannot be written is refused before any pair is embedded.
    with pytest.raises(InputError, match="--ladder-out"):
        calibrate_cli([*argv, "--to", "hashing", "--limit", "300", "--ladder-out", str(tmp_path / "ladder.txt")])


def test_explicit_ladder_and_bad_inputs(own_log, tmp_path):
    assert th.parse_ladder("0.8:10,0.9:20") == [(0.9, 20), (0.8, 10)]
    with pytest.raises(ConfigError, match="threshold:K"):
        th.parse_ladder("0.9=20")
    bad = tmp_path / "log.csv"
    bad.write_text("Scores,Queries\n0.9,a\n")
    with pytest.raises(InputError, match="missing columns"):
        th.read_match_log(bad)
    bad.write_text("Scores,Queries,Caches\n0.9,a,b\nhigh,c,d\n0.8,e,f\n")
    with pytest.raises(InputError, match="row 2, column 'Scores'"):
        th.read_match_log(bad)
    with pytest.raises(ConfigError, match="allowed"):
        calibrate_cli(
            [
                "calibrate",
                "thresholds",
                "--pairs",
                str(own_log),
                "--to",
                "word2vec",
                "--limit",
                "10",
                "--out",
                str(tmp_path / "x.yaml"),
            ]
        )

