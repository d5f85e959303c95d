"""Atomic writes: the destination is either the old file or the complete new one."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from sim.base.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_parquet,
    atomic_write_text,
)


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_text_and_bytes_create_parents_and_replace(tmp_path):
    dest = tmp_path / "a" / "b" / "note.txt"
    assert atomic_write_text(dest, "first\n") == dest
    assert dest.read_text() == "first\n"
    atomic_write_text(dest, "second, ünïcode\r\n")
    assert dest.read_bytes() == "second, ünïcode\r\n".encode()  # newlines are written as given
    blob = tmp_path / "x.bin"
    atomic_write_bytes(blob, bytes(range(256)))
    assert blob.read_bytes() == bytes(range(256))
    assert _leftovers(dest.parent) == [] and _leftovers(tmp_path) == []


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    dest = tmp_path / "summary.csv"
    atomic_write_text(dest, "old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_path(dest) as tmp:
        tmp.write_text("half of the new conte")
        raise Boom
    assert dest.read_text() == "old"
    assert _leftovers(tmp_path) == []

    bad = pd.DataFrame({"a": [object()]})  # pyarrow cannot store an arbitrary object
    with pytest.raises(Exception, match="(?i)conversion|object|type"):
        atomic_write_parquet(tmp_path / "t.parquet", bad)
    assert not (tmp_path / "t.parquet").exists()
    assert _leftovers(tmp_path) == []


def test_csv_and_parquet_round_trip(tmp_path):
    df = pd.DataFrame(
        {"system": ["vanilla", "nirvana"], "hit_rate": [0.0, 0.173], "n": np.array([5, 7], "int32")}
    )
    atomic_write_csv(tmp_path / "s.csv", df)
    assert pd.read_csv(tmp_path / "s.csv").equals(df.astype({"n": "int64"}))
    atomic_write_parquet(tmp_path / "r.parquet", df)
    back = pd.read_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(back, df)
    assert list(back.columns) == ["system", "hit_rate", "n"]  # no index column


def test_written_files_get_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        # sim.base.io reads the umask once at import; the usual 022 gives 0644.
        path = atomic_write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)
