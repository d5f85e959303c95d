"""Trace schema: normalisation, parquet round trip, and every input error naming file/row/column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.base.errors import InputError
from traces.schema import COLUMNS, Trace, normalise, read_parquet, write_parquet


def raw(**cols):
    base = {
        "timestamp": [
            "2022-08-13 20:05:00+00:00",
            "2022-08-13 20:04:00+00:00",
            "2022-08-13 20:05:00+00:00",
            "2022-08-13 20:06:30+00:00",
        ],
        "prompt": ["a cat ", "a dog", "a cat ", "a fox"],
        "user": ["u1", None, "u1", "u2"],
        "seed": [1, 2, None, 4],
    }
    base.update(cols)
    return pd.DataFrame(base)


def test_normalise_sorts_stably_and_numbers_prompts_by_first_appearance():
    df = normalise(raw(), "x.csv")
    assert list(df.columns) == list(COLUMNS)
    assert df["prompt"].tolist() == ["a dog", "a cat ", "a cat ", "a fox"]
    assert df["prompt_id"].tolist() == [0, 1, 1, 2]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["prompt_id"].dtype == np.int32
    assert str(df["seed"].dtype) == "Int64" and df["seed"].isna().tolist() == [False, False, True, False]
    t = Trace(df)
    assert t.prompts == ["a dog", "a cat ", "a fox"]
    assert t.arrival_s.tolist() == [0.0, 60.0, 60.0, 150.0]
    assert t.prompt_ids.dtype == np.int32 and t.user_codes.tolist() == [-1, 0, 0, 1]
    assert len(t) == 4 and t.n_prompts == 3


def test_naive_timestamps_are_utc_and_time_scale_compresses():
    df = normalise(
        raw(
            timestamp=pd.to_datetime(
                ["2022-08-13 20:00", "2022-08-13 20:01", "2022-08-13 20:02", "2022-08-13 20:04"]
            )
        ),
        "x",
    )
    assert str(df["timestamp"].iloc[0]) == "2022-08-13 20:00:00+00:00"
    assert Trace(df, time_scale=4.0).arrival_s.tolist() == [0.0, 15.0, 30.0, 60.0]


def test_parquet_round_trip(tmp_path):
    t = Trace(normalise(raw(), "x"), name="demo", source="unit", time_scale=2.0)
    path = write_parquet(t, tmp_path / "sub" / "t.parquet")
    back = read_parquet(path)
    pd.testing.assert_frame_equal(back.df, t.df)
    assert (back.name, back.source, back.time_scale) == ("demo", "unit", 2.0)
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]  # no temp file left behind


def test_foreign_parquet_is_sorted_not_rejected(tmp_path):
    path = tmp_path / "foreign.parquet"
    raw().to_parquet(path)
    assert read_parquet(path).df["prompt"].iloc[0] == "a dog"


def test_unsorted_acsim_trace_is_an_error(tmp_path):
    t = Trace(normalise(raw(), "x"))
    path = write_parquet(t, tmp_path / "t.parquet")
    table = pq.read_table(path)
    shuffled = table.take([0, 2, 1, 3]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(shuffled.take([1, 0, 2, 3]), path)
    with pytest.raises(InputError) as exc:
        read_parquet(path)
    assert "row 2" in str(exc.value) and "'timestamp'" in str(exc.value) and "t.parquet" in str(exc.value)


@pytest.mark.parametrize(
    ("change", "row", "column", "words"),
    [
        (
            {"timestamp": ["2022-08-13 20:05:00", None, "2022-08-13 20:05:00", "2022-08-13 20:06:00"]},
            2,
            "timestamp",
            "missing timestamp",
        ),
        (
            {"timestamp": ["2022-08-13 20:05:00", "2022-08-13 20:04:00", "yesterday", "2022-08-13 20:06:00"]},
            3,
            "timestamp",
            "unparseable timestamp",
        ),
        ({"prompt": ["a", "b", "   ", "d"]}, 3, "prompt", "empty prompt"),
        ({"prompt": ["a", None, "c", "d"]}, 2, "prompt", "empty prompt"),
        ({"seed": [1, "x", 3, 4]}, 2, "seed", "must be an integer"),
        ({"seed": [1, 2.5, 3, 4]}, 2, "seed", "must be an integer"),
    ],
)
def test_bad_values_name_file_row_and_column(change, row, column, words):
    with pytest.raises(InputError) as exc:
        normalise(raw(**change), "data/trace.csv")
    msg = str(exc.value)
    assert msg.startswith(f"data/trace.csv, row {row}, column '{column}'") and words in msg


def test_missing_column_and_empty_trace():
    with pytest.raises(InputError, match=r"t.csv, column 'prompt': missing required column"):
        normalise(raw().drop(columns=["prompt"]), "t.csv")
    with pytest.raises(InputError, match="t.csv: the trace has no requests"):
        normalise(raw().iloc[:0], "t.csv")
    with pytest.raises(InputError, match="timestamp column has type"):
        normalise(raw(timestamp=[1.0, 2.0, 3.0, 4.0]), "t.csv")


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="trace file not found"):
        read_parquet(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="bad.parquet: not a readable parquet file"):
        read_parquet(bad)
    nocol = tmp_path / "nocol.parquet"
    pd.DataFrame({"time": [1], "prompt": ["a"]}).to_parquet(nocol)
    with pytest.raises(InputError, match="column 'timestamp'"):
        read_parquet(nocol)


def test_non_utf8_prompt_in_parquet_names_the_row(tmp_path):
    path = tmp_path / "latin1.parquet"
    table = pa.table(
        {
            "timestamp": pa.array(pd.to_datetime(["2022-08-13 20:00", "2022-08-13 20:01"], utc=True)),
            "prompt": pa.array([b"fine", "caf\xe9".encode("latin-1")], type=pa.binary()),
        }
    )
    pq.write_table(table, path)
    with pytest.raises(InputError) as exc:
        read_parquet(path)
    assert "row 2" in str(exc.value) and "'prompt'" in str(exc.value) and "not UTF-8" in str(exc.value)
