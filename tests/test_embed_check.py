"""The prepared GPU check of the 2M pipeline's embedding and lists (sim.app.embed_check), run
shrunk on the CPU: the path a CUDA machine runs, its figures and its budget."""

from __future__ import annotations

import json

import pytest

from sim.app.embed_check import main


@pytest.mark.usefixtures("torch_one_thread")
def test_the_smoke_check_embeds_every_prompt_builds_the_lists_and_keeps_its_budget(tmp_path):
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "embed_check.json").read_text())
    assert out["requests"] == 600 and 0 < out["prompts"] <= 600
    assert list(out["stages_s"]) == ["trace", "embedding", "neighbour lists, ivf"]
    assert out["list_entries"] > 0 and out["within_budget"] and out["device"] == "cpu"
    assert out["total_s"] >= sum(out["stages_s"].values()) - 1e-6
    # DiffusionDB's own prompts, and a budget the check cannot keep: exit 1, figures still written.
    assert main(["--smoke", "--trace", "sample:diffusiondb_2m_first1k.csv", "--budget-s", "0", "--out", str(tmp_path)]) == 1
    out = json.loads((tmp_path / "embed_check.json").read_text())
    assert out["requests"] == 1000 and out["prompts"] == 917 and not out["within_budget"]
