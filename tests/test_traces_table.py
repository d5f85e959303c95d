"""The generic CSV/parquet importer (trace.source: table) and the one empty-prompt rule of every importer."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from sim.app.preflight import preflight
from sim.base.config import TraceConfig, from_dict
from sim.base.errors import ConfigError, InputError
from traces.diffusiondb import load_diffusiondb
from traces.load import kept_note, load_trace
from traces.prompts import prompts_trace
from traces.schema import read_parquet
from traces.table import load_table, parse_columns

if TYPE_CHECKING:
    from pathlib import Path

MAPPING = {"prompt": "text", "timestamp": "ts", "user": "uid"}


def csv(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_with_a_column_mapping_and_epoch_seconds(tmp_path):
    path = csv(
        tmp_path, "ts,text,uid,extra\n1660420800,a fox,u1,x\n1660420860.5,a cat,u2,y\n1660420830,a fox,u1,z\n"
    )
    t = load_table(path, MAPPING)
    assert t.df["prompt"].tolist() == ["a fox", "a fox", "a cat"]  # sorted by time
    assert t.df["timestamp"].iloc[0] == pd.Timestamp("2022-08-13 20:00:00", tz="UTC")
    assert t.arrival_s.tolist() == [0.0, 30.0, 60.5]
    assert t.df["user"].tolist() == ["u1", "u1", "u2"] and t.prompt_ids.tolist() == [0, 0, 1]


def test_iso_text_milliseconds_and_json_fields(tmp_path):
    iso = csv(tmp_path, "text,ts\nb,2022-08-13T20:01:00Z\na,2022-08-13 20:00:00\n", "iso.csv")
    assert load_table(iso, {"prompt": "text", "timestamp": "ts"}).df["prompt"].tolist() == ["a", "b"]
    meta = [json.dumps({"created": 1660420800000 + 1000 * i, "who": {"id": f"u{i % 2}"}}) for i in range(3)]
    df = pd.DataFrame({"text": ["x", "y", "z"], "meta": meta, "steps": [50, 25, 50]})
    path = tmp_path / "log.parquet"
    df.to_parquet(path)
    t = load_table(
        path, {"prompt": "text", "timestamp": "meta.created", "user": "meta.who.id"}, time_unit="ms"
    )
    assert t.arrival_s.tolist() == [0.0, 1.0, 2.0] and t.df["user"].tolist() == ["u0", "u1", "u0"]
    assert t.df["steps"].tolist() == [50, 25, 50]  # unmapped trace columns are read by their own name


def test_errors_name_file_row_and_column(tmp_path):
    with pytest.raises(InputError, match=r"log.csv, row 2, column 'ts': unparseable timestamp 'soon'"):
        load_table(
            csv(tmp_path, "ts,text\n2022-08-13T20:00Z,a\nsoon,b\n"), {"prompt": "text", "timestamp": "ts"}
        )
    with pytest.raises(
        InputError, match=r"log.csv, column 'time': no column 'time' \(mapped from 'timestamp'\)"
    ):
        load_table(csv(tmp_path, "ts,text\n1,a\n"), {"prompt": "text", "timestamp": "time"})
    with pytest.raises(InputError, match=r"column 'prompt': no column 'prompt' .*--columns prompt=COLUMN"):
        load_table(csv(tmp_path, "ts,text\n1,a\n"), {"timestamp": "ts"})
    with pytest.raises(InputError, match=r"row 2, column 'meta': not a JSON object"):
        load_table(
            csv(tmp_path, 'text,meta\na,"{""t"": 1}"\nb,{oops\n'), {"prompt": "text", "timestamp": "meta.t"}
        )
    with pytest.raises(InputError, match=r"row 1, column 'meta': no JSON field 't'"):
        load_table(csv(tmp_path, 'text,meta\na,"{""u"": 1}"\n'), {"prompt": "text", "timestamp": "meta.t"})
    with pytest.raises(InputError, match=r"row 2, column 'n': steps must be an integer"):
        load_table(
            csv(tmp_path, "ts,text,n\n1,a,50\n2,b,many\n"),
            {"prompt": "text", "timestamp": "ts", "steps": "n"},
        )
    with pytest.raises(InputError, match="expected a .csv or .parquet table"):
        load_table(csv(tmp_path, "x", "log.json"), MAPPING)
    with pytest.raises(ValueError, match="expected TRACE_COLUMN=INPUT_COLUMN"):
        parse_columns("prompt=text,timestamp")
    with pytest.raises(ConfigError, match=r"trace.columns: .*'txt' is not a trace column"):
        preflight(from_dict({"trace": {"source": "table", "path": "x.csv", "columns": {"txt": "a"}}}))


def _rows(n_empty_at: int) -> list[tuple[str, str]]:
    prompts = ["a red fox", "a blue fox", "a green fox"]
    prompts.insert(n_empty_at - 1, "  ")
    return [(f"2022-08-13 20:0{i}:00+00:00", p) for i, p in enumerate(prompts)]


@pytest.mark.parametrize(
    "kind", ["diffusiondb-csv", "diffusiondb-parquet", "table-csv", "foreign-parquet", "prompts"]
)
def test_every_importer_drops_empty_prompts_the_same_way(tmp_path, kind):
    rows = _rows(n_empty_at=2)  # data row 2 is blank
    df = pd.DataFrame(rows, columns=["timestamp", "prompt"])
    if kind == "diffusiondb-csv":
        df.assign(user_name="u").to_csv(tmp_path / "m.csv", index=False)
        load = lambda: load_diffusiondb(tmp_path / "m.csv")  # noqa: E731
    elif kind == "diffusiondb-parquet":
        df.assign(user_name="u").to_parquet(tmp_path / "m.parquet")
        load = lambda: load_diffusiondb(tmp_path / "m.parquet")  # noqa: E731
    elif kind == "table-csv":
        df.rename(columns={"prompt": "text"}).to_csv(tmp_path / "t.csv", index=False)
        load = lambda: load_table(tmp_path / "t.csv", {"prompt": "text"})  # noqa: E731
    elif kind == "foreign-parquet":
        df.to_parquet(tmp_path / "f.parquet")
        load = lambda: read_parquet(tmp_path / "f.parquet")  # noqa: E731
    else:
        (tmp_path / "p.txt").write_text("\n".join(p for _, p in rows) + "\n")
        load = lambda: prompts_trace(tmp_path / "p.txt", TraceConfig().arrival, seed=1)  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = load()
    assert t.df["prompt"].tolist() == ["a red fox", "a blue fox", "a green fox"]
    messages = [str(w.message) for w in caught]
    # The same row in every importer's words: a table's 2nd data row, a prompt list's 2nd line.
    where = "lines 2" if kind == "prompts" else "data rows 2"
    assert any(f"dropped 1 request(s) with an empty prompt ({where})" in m for m in messages), messages


def test_requests_default_to_the_whole_file_and_a_kept_prefix_is_reported(tmp_path):
    n = 30
    df = pd.DataFrame({"ts": range(n), "text": [f"prompt {i}" for i in range(n)]})
    df.to_csv(tmp_path / "t.csv", index=False)
    base = {
        "source": "table",
        "path": str(tmp_path / "t.csv"),
        "columns": {"prompt": "text", "timestamp": "ts"},
    }
    whole = load_trace(from_dict({"trace": base}).trace, seed=1)
    assert len(whole) == n and kept_note(whole) == ""
    part = load_trace(from_dict({"trace": {**base, "requests": 20}}).trace, seed=1)
    assert len(part) == 20 and kept_note(part) == " (the first 20 of 30 requests: trace.requests)"


def test_a_log_without_prompts_takes_a_prompt_lists_in_time_order(tmp_path):
    # Five logged requests, out of time order; a list of three prompts: the three earliest requests
    # get them in order, and keep their users and models.
    log = pd.DataFrame({"ts": [50, 10, 40, 20, 30], "uid": ["e", "a", "d", "b", "c"], "base": ["m5", "m1", "m4", "m2", "m3"]})
    log.to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "prompts.txt").write_text("a red fox\na blue bird\na red fox\n")
    trace = load_table(tmp_path / "log.csv", {"timestamp": "ts", "user": "uid", "model": "base"},
                       prompts_from=tmp_path / "prompts.txt")
    assert trace.df["prompt"].tolist() == ["a red fox", "a blue bird", "a red fox"]
    assert trace.df["user"].tolist() == ["a", "b", "c"] and trace.df["model"].tolist() == ["m1", "m2", "m3"]
    assert trace.df["prompt_id"].tolist() == [0, 1, 0]
    assert (trace.arrival_s == [0.0, 10.0, 20.0]).all()
    # A trace parquet's prompts, in its time order, serve as the list too (a synthetic stream).
    from traces.schema import write_parquet

    write_parquet(load_table(tmp_path / "log.csv", {"timestamp": "ts", "prompt": "uid"}), tmp_path / "stream.parquet")
    trace = load_table(tmp_path / "log.csv", {"timestamp": "ts"}, prompts_from=tmp_path / "stream.parquet")
    assert trace.df["prompt"].tolist() == ["a", "b", "c", "d", "e"]
    # Through the config: the table source takes the list; other sources and a missing list are refused.
    data = {"trace": {"source": "table", "path": str(tmp_path / "log.csv"), "prompts_from": str(tmp_path / "prompts.txt"),
                      "columns": {"timestamp": "ts", "user": "uid"}}, "systems": ["vanilla"], "embedder": "hashing"}
    assert len(load_trace(preflight(from_dict(data)).trace, 1)) == 3
    with pytest.raises(ConfigError, match=r"trace\.prompts_from.*no such file"):
        preflight(from_dict({**data, "trace": {**data["trace"], "prompts_from": str(tmp_path / "none.txt")}}))
    with pytest.raises(ConfigError, match=r"trace\.prompts_from.*allowed with: table"):
        preflight(from_dict({**data, "trace": {"source": "synthetic", "prompts_from": str(tmp_path / "prompts.txt")}}))
    with pytest.raises(ConfigError, match="placeholder_prompts"):
        from_dict({"trace": {**data["trace"], "placeholder_prompts": True}})
