"""``acsim calibrate quality``: pairs, ladder derivation, and a full run on a tiny SDXL pipeline."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml
from PIL import Image
from support import calibrate_cli

from calibrate.pairs import read_pairs
from calibrate.quality import assign_bins, derive_ladder
from calibrate.scorers import get_scorer
from sim.base.errors import ConfigError, InputError
from sim.base.profile import load_profile

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.external_data
def test_reads_the_prototypes_pair_log(external_data):
    shared = read_pairs(str(external_data / "accuscale_cache_prompts_100.csv"))
    assert len(shared) == 100
    assert shared[0].new.startswith("succulent plant") and shared[0].cached.startswith("succulents in pots")
    assert shared[0].similarity == pytest.approx(0.7267)


def test_reads_both_pair_layouts(tmp_path):
    log = tmp_path / "prompts.csv"  # the prototype's layout: Prompt (new), Noise (cached), score
    log.write_text('Prompt,Noise,score,which_folder\n"succulent plant","succulents in pots",0.7267,10\n')
    shared = read_pairs(log)
    assert len(shared) == 1 and shared[0].new == "succulent plant" and shared[0].cached == "succulents in pots"
    assert shared[0].similarity == pytest.approx(0.7267)
    own = tmp_path / "pairs.csv"
    own.write_text('cached_prompt,new_prompt\n"a cat, oil","a dog, oil"\nx,y\n')
    pairs = read_pairs(own, limit=1)
    assert len(pairs) == 1 and pairs[0].cached == "a cat, oil" and math.isnan(pairs[0].similarity)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n", "do not match a pairs layout"),
        ("cached_prompt,new_prompt,similarity\nx,y,high\n", "row 1, column 'similarity'"),
        ("cached_prompt,new_prompt,similarity\nx,y,0.5\nx,,0.5\n", "row 2, column 'new_prompt'"),
        ("cached_prompt,new_prompt,similarity\nx,y,1.7\n", "outside"),
    ],
)
def test_bad_pairs_name_file_row_and_column(tmp_path, text, match):
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        read_pairs(f)
    assert str(f) in str(err.value)


def test_bins_close_the_last_edge():
    got = assign_bins(pd.Series([0.1, 0.65, 0.7, 1.0, 1.2, float("nan")]).to_numpy(), [0.0, 0.65, 0.9, 1.0])
    assert got.tolist() == [0, 1, 1, 2, -1, -1]


def _table(losses: dict[float, dict[int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"bin_lo": lo, "k": k, "relative_loss": v} for lo, row in losses.items() for k, v in row.items()]
    )


def test_ladder_takes_the_largest_acceptable_k_and_never_falls_with_similarity():
    table = _table(
        {
            0.65: {5: 0.04, 10: 0.08, 15: 0.2},
            0.75: {5: 0.01, 10: 0.03, 15: 0.04},  # K=15 acceptable here ...
            0.85: {5: 0.01, 10: 0.02, 15: 0.06},  # ... but not in the more similar bin: capped to 10
            0.95: {5: 0.0, 10: 0.01, 15: 0.02},
        }
    )
    assert derive_ladder(table, 0.05) == [(0.95, 15), (0.75, 10), (0.65, 5)]
    # Nothing acceptable below 0.85 -> no rung there (a miss); stricter loss lowers every K.
    assert derive_ladder(table, 0.015) == [(0.95, 10), (0.75, 5)]
    assert derive_ladder(table, 0.001) == [(0.95, 5)]
    assert derive_ladder(table, 0.0) == [(0.95, 5)]
    assert derive_ladder(_table({0.9: {5: 0.5}}), 0.05) == []


def test_tiny_scorer_scores_and_similarities():
    scorer = get_scorer("tiny")
    img = Image.new("RGB", (32, 32), (200, 30, 30))
    s = scorer.score([img, img], ["a red square", "a red square"])
    assert s.shape == (2,) and s[0] == pytest.approx(s[1]) and (s >= 0).all()
    sim = scorer.text_similarity(["a cat", "a cat"], ["a cat", "the moon over water"])
    assert sim[0] == pytest.approx(1.0, abs=1e-5) and sim[1] < sim[0]
    with pytest.raises(ConfigError, match="clip:PATH"):
        get_scorer("clip")
    with pytest.raises(ConfigError, match="one of"):
        get_scorer("fid")


def test_quality_cli_on_tiny_sdxl(tmp_path, capsys):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "cached_prompt,new_prompt,similarity\n"
        "a red fox in the snow,a red fox in a snowy forest,0.93\n"
        "a lighthouse at dusk,a castle on a hill,0.70\n"
    )
    out = tmp_path / "q"
    rc = calibrate_cli(
        [
            "calibrate",
            "quality",
            "--model",
            "tiny-sdxl",
            "--pairs",
            str(pairs),
            "--scorer",
            "tiny",
            "--k",
            "3,6",
            "--steps",
            "10",
            "--max-loss",
            "0.05",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ladder" in printed
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 2 * 4  # retrieved, vanilla, K=3, K=6 per pair
    steps = scores.set_index(["pair", "method"])["steps_run"]
    assert steps[(0, "vanilla")] == 10 and steps[(0, "k3")] == 7 and steps[(1, "k6")] == 4
    # Image paths are relative to the output directory (written in a scratch one, moved whole).
    assert all(p.startswith("images/") and (out / p).is_file() for p in scores["image"])
    assert sorted(x.name for x in out.iterdir()) == [
        ".acsim-result", "contact_sheet.png", "images", "profile.yaml", "quality_by_bin_k.csv", "scores.csv"
    ]
    table = pd.read_csv(out / "quality_by_bin_k.csv")
    assert set(table["k"]) == {3, 6} and set(table["bin_lo"]) == {0.65, 0.9}
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size == (260 + 192 * 4, 34 + 192 * 2)

    profile = load_profile(str(out / "profile.yaml"))
    raw = yaml.safe_load((out / "profile.yaml").read_text())
    assert profile.steps == 10 and profile.k_levels == (3, 6)
    assert set(profile.quality_relative_by_k) == {0, 3, 6}
    vanilla = scores[scores["method"] == "vanilla"]["score"].mean()
    k3 = scores[scores["method"] == "k3"]["score"].mean()
    assert profile.quality_vanilla == pytest.approx(vanilla, rel=1e-5)
    assert profile.quality_relative_by_k[3] == pytest.approx(k3 / vanilla, rel=1e-5)
    assert raw["ladder"]["kind"] == raw["quality"]["kind"] == "measured"
    assert raw["ladder"]["embedder"] == "clip"
    assert raw["quality"]["fields"]["pickscore"]["kind"] == "assumed"  # not measured: carried over
    assert raw["small_model"] == load_profile("sdxl-a10g").raw["small_model"]
    assert raw["latency"] == load_profile("sdxl-a10g").raw["latency"]  # carried over untouched
    assert all(0 < k < 10 for _, k in profile.ladder)


def test_quality_needs_an_sdxl_pipeline(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("cached_prompt,new_prompt\na,b\n")
    with pytest.raises(ConfigError, match="SDXL"):
        calibrate_cli(
            [
                "calibrate",
                "quality",
                "--scorer",
                "tiny",
                "--model",
                "tiny",
                "--pairs",
                str(pairs),
                "--k",
                "3",
                "--steps",
                "10",
                "--out",
                str(tmp_path / "q"),
            ]
        )
    with pytest.raises(ConfigError, match="K=5 runs 4"):
        calibrate_cli(
            [
                "calibrate",
                "quality",
                "--scorer",
                "tiny",
                "--model",
                "tiny-sdxl",
                "--pairs",
                str(pairs),
                "--k",
                "5",
                "--steps",
                "30",
                "--out",
                str(tmp_path / "q"),
            ]
        )
    with pytest.raises(ConfigError, match="between 1 and 9"):
        calibrate_cli(
            [
                "calibrate",
                "quality",
                "--scorer",
                "tiny",
                "--model",
                "tiny-sdxl",
                "--pairs",
                str(pairs),
                "--k",
                "3,10",
                "--steps",
                "10",
                "--out",
                str(tmp_path / "q"),
            ]
        )


def test_without_a_similarity_column_the_scorer_measures_it(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("cached_prompt,new_prompt\na red fox in the snow,a red fox in a snowy forest\n")
    out = tmp_path / "q"
    assert (
        calibrate_cli(
            [
                "calibrate",
                "quality",
                "--scorer",
                "tiny",
                "--model",
                "tiny-sdxl",
                "--pairs",
                str(pairs),
                "--k",
                "5",
                "--steps",
                "10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = pd.read_csv(out / "scores.csv")
    expected = get_scorer("tiny").text_similarity(["a red fox in the snow"], ["a red fox in a snowy forest"])[
        0
    ]
    assert scores["similarity"].iloc[0] == pytest.approx(expected, abs=1e-5)
    raw = yaml.safe_load((out / "profile.yaml").read_text())
    assert raw["ladder"]["embedder"] == "tiny" and "tiny text cosine" in raw["ladder"]["similarity"]
