"""``acsim trace rate``: a log's per-minute request rate, replayed by ``trace.arrival.process: rate``."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from support import assert_one_clean_line, cli

from sim.base.config import ArrivalConfig
from traces.arrivals import read_rate_series
from traces.prompts import EPOCH, prompts_trace
from traces.samples import resolve


def write_log(path, times: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ts", "other"])
        w.writerows([t, i] for i, t in enumerate(times))


def test_counts_each_minute_from_the_first_request(tmp_path, capsys):
    log = tmp_path / "log.csv"
    # Out of order on purpose: minute 0 is the earliest request, wherever it sits in the file.
    write_log(log, ["2024-01-01T00:02:30Z", "2024-01-01T00:00:10Z", "2024-01-01T00:00:59Z", "2024-01-01T00:02:00Z"])
    code, out, _ = cli(["trace", "rate", "--path", log, "--column", "ts", "--out", tmp_path / "rate.csv"], capsys)
    assert code == 0 and "4 requests" in out
    # 00:00:10 is minute 0; 00:00:59 too; 00:02:00 is 110 s later, minute 1; 00:02:30 is minute 2.
    assert read_rate_series(tmp_path / "rate.csv").tolist() == pytest.approx([2 / 60, 1 / 60, 1 / 60])


def test_numeric_times_in_milliseconds(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_log(log, ["0", "61000", "61500", "250000"])
    code, _, _ = cli(["trace", "rate", "--path", log, "--column", "ts", "--time-unit", "ms", "--out", tmp_path / "r.csv"], capsys)
    assert code == 0
    assert (read_rate_series(tmp_path / "r.csv") * 60).tolist() == [1, 2, 0, 0, 1]


@pytest.mark.parametrize(
    ("times", "column", "fragments"),
    [
        (["2024-01-01T00:00:00Z"], "nope", ["log.csv", "column 'nope'", "columns: ts, other"]),
        (["2024-01-01T00:00:00Z", "yesterday"], "ts", ["log.csv", "row 2", "column 'ts'", "'yesterday'"]),
        (["2024-01-01T00:00:00Z", ""], "ts", ["log.csv", "row 2", "column 'ts'", "empty"]),
    ],
)
def test_bad_logs_name_the_row_and_column(tmp_path, capsys, times, column, fragments):
    log = tmp_path / "log.csv"
    write_log(log, times)
    code, _, err = cli(["trace", "rate", "--path", log, "--column", column, "--out", tmp_path / "r.csv"], capsys)
    assert_one_clean_line(code, err, *fragments)
    assert not (tmp_path / "r.csv").exists()


def test_never_overwrites_a_file_it_did_not_write(tmp_path, capsys):
    log, theirs = tmp_path / "log.csv", tmp_path / "notes.csv"
    write_log(log, ["2024-01-01T00:00:00Z"])
    theirs.write_text("minute,count\n0,1\n", encoding="utf-8")
    code, _, err = cli(["trace", "rate", "--path", log, "--column", "ts", "--out", theirs], capsys)
    assert_one_clean_line(code, err, "--out", "never overwrites")
    assert theirs.read_text(encoding="utf-8") == "minute,count\n0,1\n"
    # Its own output it replaces.
    ours = tmp_path / "rate.csv"
    assert cli(["trace", "rate", "--path", log, "--column", "ts", "--out", ours], capsys)[0] == 0
    assert cli(["trace", "rate", "--path", log, "--column", "ts", "--out", ours], capsys)[0] == 0


@pytest.mark.external_data
def test_the_production_trace_replays_with_its_daily_volume(external_data, tmp_path, capsys):
    """GenTD26's 26,823 requests over 24 days: the series holds every request, and the shipped
    5,000 DiffusionDB prompts arriving by it fall on the days the log's first 5,000 requests did."""
    raw = pd.read_csv(external_data / "gentd26_request_trace.csv", usecols=["gmt_create"])
    out = tmp_path / "gentd26_rate.csv"
    code, _, _ = cli(["trace", "rate", "--path", external_data / "gentd26_request_trace.csv", "--column", "gmt_create", "--out", out], capsys)
    assert code == 0
    rate = read_rate_series(out)
    assert rate.sum() * 60 == pytest.approx(len(raw))
    t = pd.to_datetime(raw["gmt_create"])
    day_of = ((t - t.min()).dt.total_seconds() // 86400).astype(int).to_numpy()
    assert np.bincount(day_of).max() / np.bincount(day_of).min() > 20  # the growth the issue cites
    trace = prompts_trace(resolve("sample:diffusiondb_2m_first5k_prompts.txt"), ArrivalConfig(process="rate", rate_path=str(out)), seed=1)
    n = len(trace)
    want = np.bincount(day_of[:n], minlength=8)[:7]  # whole days only: the stream stops in day 7
    # On the process's clock (from EPOCH, not from the first arrival, which comes a while later).
    clock = (trace.df["timestamp"] - EPOCH).dt.total_seconds().to_numpy()
    got = np.bincount((clock // 86400).astype(int), minlength=8)[:7]
    # Poisson counts around the log's: within 5 standard deviations (and 10 requests) every day.
    assert np.all(np.abs(got - want) <= 5 * np.sqrt(want) + 10), (got, want)
