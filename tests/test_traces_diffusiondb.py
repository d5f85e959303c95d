"""DiffusionDB loaders: the real 1k CSV export, a metadata.parquet built from it in DiffusionDB's
schema, minute spreading, windowing, early stopping, and input errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import traces.diffusiondb as ddb
from sim.errors import InputError
from traces.diffusiondb import load_diffusiondb

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CSV = DATA / "diffusiondb_2m_first1k.csv"
needs_data = pytest.mark.skipif(not CSV.is_file(), reason=f"real DiffusionDB sample not found at {CSV}")


def metadata_parquet(csv: Path, out: Path, row_group_size: int = 128) -> Path:
    """A metadata.parquet in DiffusionDB's own schema (column names and types) from the CSV export."""
    df = pd.read_csv(csv, dtype={"user_name": str, "prompt": str}, keep_default_na=False)
    table = pa.table(
        {
            "image_name": pa.array([f"{i:08d}.png" for i in range(len(df))]),
            "prompt": pa.array(df["prompt"].tolist(), pa.string()),
            "part_id": pa.array(np.ones(len(df), dtype=np.uint16)),
            "seed": pa.array(df["seed"].to_numpy(np.uint32)),
            "step": pa.array(df["step"].to_numpy(np.uint16)),
            "cfg": pa.array(df["cfg"].to_numpy(np.float32)),
            "sampler": pa.array(df["sampler"].tolist(), pa.string()),
            "width": pa.array(df["width"].to_numpy(np.uint16)),
            "height": pa.array(df["height"].to_numpy(np.uint16)),
            "user_name": pa.array(df["user_name"].tolist(), pa.string()),
            "timestamp": pa.array(
                pd.to_datetime(df["timestamp"], utc=True)
                .dt.tz_convert(None)
                .astype("datetime64[us]")
                .to_numpy(),
                pa.timestamp("us", tz="UTC"),
            ),
            "image_nsfw": pa.array(df["image_nsfw"].to_numpy(np.float32)),
            "prompt_nsfw": pa.array(df["prompt_nsfw"].to_numpy(np.float32)),
        }
    )
    pq.write_table(table, out, row_group_size=row_group_size)
    return out


@needs_data
def test_real_csv_export():
    t = load_diffusiondb(CSV)
    df = t.df
    assert len(t) == 1000 and t.n_prompts == 917 and df["user"].nunique() == 173
    assert df["timestamp"].is_monotonic_increasing
    assert str(df["timestamp"].iloc[0]).startswith("2022-08-13 20:04") and str(
        df["timestamp"].iloc[-1]
    ).startswith("2022-08-14 02:47")
    # Spread inside the minute: no two requests share a time; each stays in its original minute.
    assert df["timestamp"].is_unique
    assert (df["steps"] == 50).sum() == 671 and df["width"].notna().all()
    assert t.prompts[t.prompt_ids[0]] == df["prompt"].iloc[0]


@needs_data
def test_parquet_in_diffusiondb_schema_matches_csv(tmp_path):
    path = metadata_parquet(CSV, tmp_path / "metadata.parquet")
    from_csv, from_parquet = load_diffusiondb(CSV), load_diffusiondb(path)
    pd.testing.assert_frame_equal(from_csv.df, from_parquet.df)


@needs_data
def test_requests_limit_takes_the_earliest_and_stops_reading_early(tmp_path, monkeypatch):
    path = tmp_path / "metadata.parquet"
    raw = pd.read_csv(CSV)
    # Put the file in time order (as DiffusionDB parts nearly are) so the earliest rows come first.
    raw.sort_values("timestamp", kind="stable").to_csv(tmp_path / "sorted.csv", index=False)
    metadata_parquet(tmp_path / "sorted.csv", path)
    monkeypatch.setattr(ddb, "BATCH_ROWS", 50)
    seen = []
    real_iter = pq.ParquetFile.iter_batches

    def counting(self, *args, **kwargs):
        for b in real_iter(self, *args, **kwargs):
            seen.append(b.num_rows)
            assert set(b.schema.names) <= set(ddb.RENAME), "only the needed columns are read"
            yield b

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    t = load_diffusiondb(path, requests=100)
    assert len(t) == 100
    assert sum(seen) <= 150, "reading stops after the batch holding the last wanted row"
    full = load_diffusiondb(CSV)
    last_minute = full.df["timestamp"].dt.floor("min").iloc[99]
    assert (t.df["timestamp"].dt.floor("min") <= last_minute).all()
    assert t.df["timestamp"].iloc[:90].equals(full.df["timestamp"].iloc[:90])


@needs_data
def test_window_on_original_minutes(tmp_path):
    start, end = pd.Timestamp("2022-08-13T21:00Z"), pd.Timestamp("2022-08-13T22:00Z")
    t = load_diffusiondb(metadata_parquet(CSV, tmp_path / "m.parquet"), start=start, end=end)
    raw = pd.to_datetime(pd.read_csv(CSV)["timestamp"], utc=True)
    assert len(t) == int(((raw >= start) & (raw < end)).sum()) > 0
    assert t.df["timestamp"].min() >= start and t.df["timestamp"].max() < end
    with pytest.raises(InputError, match="no request in the window"):
        load_diffusiondb(tmp_path / "m.parquet", start=pd.Timestamp("2030-01-01T00:00Z"))


def test_minute_spreading_is_deterministic_and_order_free():
    df = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2022-08-13 20:04"] * 3 + ["2022-08-13 20:05"], utc=True),
            "prompt": ["a", "b", "c", "d"],
            "user": ["u", "v", "u", "w"],
            "seed": [1, 2, 3, 4],
        }
    )
    spread = ddb.spread_within_minute(df)
    offsets = sorted((spread.iloc[:3] - pd.Timestamp("2022-08-13 20:04", tz="UTC")).dt.total_seconds())
    assert offsets == [10.0, 30.0, 50.0]  # (k + 0.5) / 3 * 60
    assert (spread.iloc[3] - pd.Timestamp("2022-08-13 20:05", tz="UTC")).total_seconds() == 30.0
    shuffled = df.iloc[[2, 0, 3, 1]]
    assert ddb.spread_within_minute(shuffled).sort_index().equals(spread)
    # Times with seconds are left alone.
    df.loc[0, "timestamp"] += pd.Timedelta(seconds=7)
    assert ddb.spread_within_minute(df).equals(df["timestamp"])


def write(tmp_path: Path, text: str | bytes, name: str = "m.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


HEADER = "prompt,seed,step,cfg,sampler,width,height,user_name,timestamp,image_nsfw,prompt_nsfw\n"


def test_csv_errors(tmp_path):
    ok = "a cat,1,50,7,k_lms,512,512,u1,2022-08-13 20:04:00+00:00,0.1,0.1\n"
    with pytest.raises(InputError, match="not found"):
        load_diffusiondb(tmp_path / "missing.csv")
    bad_bytes = (HEADER + ok).encode() + "caf\xe9,1,50,7,k,512,512,u,2022-08-13 20:04:00+00:00,0,0\n".encode(
        "latin-1"
    )
    with pytest.raises(InputError, match=r"m.csv, row 3: not UTF-8"):
        load_diffusiondb(write(tmp_path, bad_bytes))
    with pytest.raises(InputError, match=r"column 'timestamp': missing DiffusionDB column"):
        load_diffusiondb(write(tmp_path, "prompt,seed\na,1\n"))
    with pytest.raises(InputError, match=r"row 2, column 'timestamp': unparseable timestamp"):
        load_diffusiondb(write(tmp_path, HEADER + ok + ok.replace("2022-08-13 20:04:00+00:00", "soon")))
    with pytest.raises(InputError, match=r"row 1, column 'step': steps must be an integer"):
        load_diffusiondb(write(tmp_path, HEADER + ok.replace(",50,", ",fifty,")))
    with pytest.raises(InputError, match="expected a DiffusionDB metadata"):
        load_diffusiondb(write(tmp_path, "x", name="m.json"))
    with pytest.raises(InputError, match="not a readable parquet"):
        load_diffusiondb(write(tmp_path, b"garbage", name="m.parquet"))


def test_empty_prompts_are_dropped_with_a_warning(tmp_path):
    rows = [
        f"{p},1,50,7,k_lms,512,512,u1,2022-08-13 20:0{i}:00+00:00,0,0\n" for i, p in enumerate(["a", "", "b"])
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = load_diffusiondb(write(tmp_path, HEADER + "".join(rows)))
    assert t.df["prompt"].tolist() == ["a", "b"]
    assert any("dropped 1 request(s) with an empty prompt (data rows 2)" in str(w.message) for w in caught)
