"""DiffusionDB loaders: the real 1k CSV export, a metadata.parquet built from it in DiffusionDB's
schema, minute spreading, windowing, early stopping, and input errors."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import traces.diffusiondb as ddb
from sim.base.errors import InputError
from traces.diffusiondb import load_diffusiondb

if TYPE_CHECKING:
    from pathlib import Path


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


def test_real_csv_export(samples):
    t = load_diffusiondb(samples / "diffusiondb_2m_first1k.csv")
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


def test_parquet_in_diffusiondb_schema_matches_csv(samples, tmp_path):
    path = metadata_parquet(samples / "diffusiondb_2m_first1k.csv", tmp_path / "metadata.parquet")
    from_csv, from_parquet = load_diffusiondb(samples / "diffusiondb_2m_first1k.csv"), load_diffusiondb(path)
    pd.testing.assert_frame_equal(from_csv.df, from_parquet.df)


def test_requests_limit_takes_the_earliest_and_stops_reading_early(samples, tmp_path, monkeypatch):
    path = tmp_path / "metadata.parquet"
    raw = pd.read_csv(samples / "diffusiondb_2m_first1k.csv")
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
    full = load_diffusiondb(samples / "diffusiondb_2m_first1k.csv")
    last_minute = full.df["timestamp"].dt.floor("min").iloc[99]
    assert (t.df["timestamp"].dt.floor("min") <= last_minute).all()
    assert t.df["timestamp"].iloc[:90].equals(full.df["timestamp"].iloc[:90])


def test_window_on_original_minutes(samples, tmp_path):
    start, end = pd.Timestamp("2022-08-13T21:00Z"), pd.Timestamp("2022-08-13T22:00Z")
    t = load_diffusiondb(metadata_parquet(samples / "diffusiondb_2m_first1k.csv", tmp_path / "m.parquet"), start=start, end=end)
    raw = pd.to_datetime(pd.read_csv(samples / "diffusiondb_2m_first1k.csv")["timestamp"], utc=True)
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
    with pytest.raises(InputError, match=r"m.csv, line 3: not UTF-8"):
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


def diffusiondb_2m(path: Path, n: int = 2_000_000, seed: int = 0) -> Path:
    """A metadata.parquet with DiffusionDB's 13 columns and types, ``n`` rows in time order."""
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    words = pa.array(["a cat", "a castle", "portrait", "city at night", "dragon", "forest", "ship", "robot"])
    styles = pa.array(["artstation", "oil painting", "8k", "by greg rutkowski", "unreal engine", "trending"])
    prompt = pc.binary_join_element_wise(
        words.take(pa.array(rng.integers(0, len(words), n))),
        styles.take(pa.array(rng.integers(0, len(styles), n))),
        pc.cast(pa.array(rng.integers(0, n // 4, n)), pa.string()),
        ", ",
    )
    minutes = np.sort(rng.integers(0, 60 * 24 * 30, n))  # a month at minute resolution
    table = pa.table(
        {
            "image_name": pc.cast(pa.array(np.arange(n)), pa.string()),
            "prompt": prompt,
            "part_id": pa.array(rng.integers(1, 2001, n).astype(np.uint16)),
            "seed": pa.array(rng.integers(0, 2**32 - 1, n, dtype=np.uint32)),
            "step": pa.array(rng.integers(20, 80, n).astype(np.uint16)),
            "cfg": pa.array(rng.uniform(1, 20, n).astype(np.float32)),
            "sampler": pa.array(rng.integers(1, 9, n).astype(np.uint8)),
            "width": pa.array(np.full(n, 512, np.uint16)),
            "height": pa.array(np.full(n, 512, np.uint16)),
            "user_name": pc.cast(pa.array(rng.integers(0, 10_000, n)), pa.string()),
            "timestamp": pa.array(
                np.datetime64("2022-08-01T00:00", "ns") + minutes * np.timedelta64(60, "s"),
                pa.timestamp("ns", tz="UTC"),
            ),
            "image_nsfw": pa.array(rng.random(n).astype(np.float32)),
            "prompt_nsfw": pa.array(rng.random(n).astype(np.float32)),
        }
    )
    pq.write_table(table, path, row_group_size=100_000)
    return path


@pytest.mark.slow
def test_full_size_metadata_streams_only_the_row_groups_of_the_window(tmp_path, monkeypatch):
    path = diffusiondb_2m(tmp_path / "metadata.parquet")
    pf = pq.ParquetFile(path)
    assert pf.metadata.num_rows == 2_000_000 and pf.num_row_groups == 20
    read_groups: list[int] = []
    real_iter = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        read_groups.extend(kwargs["row_groups"])
        assert set(kwargs["columns"]) <= set(ddb.RENAME), "only the needed columns are read"
        return real_iter(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    start = pd.Timestamp("2022-08-20T06:00", tz="UTC")
    t = load_diffusiondb(path, requests=30_000, start=start)
    assert len(t) == 30_000
    # The window's rows, computed independently from the whole columns.
    whole = pq.read_table(path, columns=["prompt", "timestamp", "user_name"]).to_pandas()
    ts = whole["timestamp"]
    want = whole[ts >= start].sort_values("timestamp", kind="stable").iloc[:30_000]
    assert sorted(t.df["prompt"].tolist()) == sorted(want["prompt"].tolist())
    assert t.df["timestamp"].min() >= start
    assert t.df["timestamp"].dt.floor("min").max() == want["timestamp"].max()
    # Only the row groups holding the window were decoded (2 or 3 of the 20).
    first, last = int(want.index.min()) // 100_000, int(want.index.max()) // 100_000
    assert sorted(read_groups) == list(range(first, last + 1)) and len(read_groups) <= 3
