"""The synthetic generator's statistics against the real DiffusionDB samples.

Real: the 1k-request CSV export (6.7 h, 173 users) and the 5k prompt list. Synthetic: 1k-request
traces at the real sample's mean rate, averaged over SEEDS seeds with the default knobs (so this
also pins the defaults). Each tolerance below is stated with its reason. The dominant one is the
sampling error of the real sample itself: its 1,000 requests come in ~217 user sessions whose
prompts are strongly alike, so it carries roughly the information of ~200 independent draws, not
1,000; the synthetic seed-to-seed spread at 1k requests (printed on failure) shows the same size.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sim.base.config import ArrivalConfig, SyntheticConfig
from traces.diffusiondb import load_diffusiondb
from traces.embeddings import get_embedder
from traces.prompts import read_prompts
from traces.stats import trace_stats
from traces.synthetic import generate

SEEDS = range(1, 7)


def flat(stats: dict) -> dict[str, float]:
    s, b = stats["sessions"], stats["best_earlier_similarity"]
    out = {
        "repeat_rate": stats["repeat_rate"],
        "repeat_same_user_share": stats["repeat_same_user_share"],
        "users": stats["users"],
        "sessions": s["count"],
        "session_mean_length": s["mean_length"],
        "single_request_sessions": s["single_request_share"],
        "session_length_p90": s["length"]["p90"],
        "gap_p50_s": s["gap_s"]["p50"],
        "gap_p90_s": s["gap_s"]["p90"],
    }
    for q in ("p10", "p25", "p50", "p75", "p90"):
        out[f"words_{q}"] = stats["prompt_words"][q]
        out[f"chars_{q}"] = stats["prompt_chars"][q]
    for q in ("p10", "p25", "p50", "p75"):
        out[f"sim_{q}"] = b[q]
    out["sim_share_ge_0.65"] = b["share_ge_0.65"]
    out["sim_share_ge_0.85"] = b["share_ge_0.85"]
    return out


# statistic: (absolute tolerance, why)
TOLERANCES = {
    # Binomial sd of a 1k sample is 0.9 points; session clustering ~doubles it. 2.5 points ~ 1.5 sd
    # of the real sample plus the seed-mean's own error; the knob's default is 8%.
    "repeat_rate": (0.025, "sampling sd ~1.7 points (clustered 1k sample)"),
    # Real: every exact repeat is the same user's; the generator copies across users rarely.
    "repeat_same_user_share": (0.08, "cross-user copies are 3% of repeats by design"),
    # Users and sessions in a 6.7 h window: Poisson-like counts (sd ~sqrt(200) = 14) plus the
    # heavy-tailed session lengths (one 70-request session moves the count by ~15).
    "users": (35, "count sd ~15-20"),
    "sessions": (50, "count sd ~20-25 (heavy-tailed lengths)"),
    "session_mean_length": (1.2, "mean of ~217 heavy-tailed lengths (sd ~0.5-0.6)"),
    "single_request_sessions": (0.10, "binomial sd of ~217 sessions: 3.4 points"),
    "session_length_p90": (4, "p90 of ~217 lengths (sd ~2)"),
    # Minute-resolution real gaps (spread inside the minute) vs continuous synthetic ones.
    "gap_p50_s": (45, "real gaps are whole minutes blurred by spreading: +-30 s"),
    "gap_p90_s": (200, "tail of ~780 clustered gaps (sd ~80 s)"),
    # Prompt lengths: a session's prompts share their length, so a 1k window is ~200 draws; the
    # sd of a middle quantile is then ~3-4 words (~25 chars); upper ones more.
    "words_p10": (3, "short prompts: sd ~1.5 words"),
    "words_p25": (5, "sd ~2.5 words"),
    "words_p50": (7, "sd ~3.5 words"),
    "words_p75": (8, "sd ~4 words"),
    "words_p90": (12, "sd ~6 words (long tail)"),
    "chars_p10": (20, "sd ~10 chars"),
    "chars_p25": (35, "sd ~17 chars"),
    "chars_p50": (45, "sd ~22 chars"),
    "chars_p75": (50, "sd ~25 chars"),
    "chars_p90": (80, "sd ~40 chars (long tail)"),
    # Best similarity to any earlier request (hashing embedder). Upper quantiles come from repeats
    # and in-session edits and match closely. The low tail is a KNOWN deviation: synthetic prompts
    # draw on a closed vocabulary (plus made-up names), so unrelated prompts share more words than
    # real ones; it sits ~0.15-0.2 above the real tail. The tolerance admits that and no more.
    "sim_p10": (0.25, "known deviation ~0.15 (closed vocabulary) + sd ~0.05"),
    "sim_p25": (0.30, "known deviation ~0.2 + sd ~0.05"),
    "sim_p50": (0.08, "edits/new subjects in sessions: sd ~0.03"),
    "sim_p75": (0.04, "repeats and small edits: sd ~0.015"),
    "sim_share_ge_0.65": (0.15, "known deviation ~0.08 + binomial sd ~0.03"),
    "sim_share_ge_0.85": (0.12, "binomial sd ~0.03 (clustered: ~0.05)"),
}


@pytest.fixture(scope="module")
def stats(shared_data):
    embedder = get_embedder("hashing")
    real = load_diffusiondb(shared_data / "diffusiondb_2m_first1k.csv")
    real_stats = flat(trace_stats(real, embedder.encode(real.prompts)))
    rate = (len(real) - 1) / real.arrival_s[-1]
    synth = []
    for seed in SEEDS:
        t = generate(1000, SyntheticConfig(), ArrivalConfig(process="poisson", rate=rate), seed)
        synth.append(flat(trace_stats(t, embedder.encode(t.prompts))))
    return real_stats, synth


def table(real: dict, synth: list[dict]) -> str:
    lines = [f"{'statistic':26s} {'real':>9s} {'synth mean':>10s} {'synth sd':>9s} {'tol':>7s}"]
    for k, (tol, _) in TOLERANCES.items():
        vals = np.array([s[k] for s in synth])
        lines.append(f"{k:26s} {real[k]:9.3f} {vals.mean():10.3f} {vals.std():9.3f} {tol:7.3f}")
    return "\n".join(lines)


def test_synthetic_matches_real_1k_sample(stats):
    real, synth = stats
    print(table(real, synth))
    failed = [k for k, (tol, _) in TOLERANCES.items() if abs(np.mean([s[k] for s in synth]) - real[k]) > tol]
    assert not failed, f"outside tolerance: {failed}\n{table(real, synth)}"


def test_prompt_lengths_match_the_5k_prompt_list(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the list's one empty prompt
        real = read_prompts(shared_data / "diffusiondb_2m_first5k_prompts.txt")
    # 20k synthetic requests: many sessions and topics, so a steadier sample than one 1k window.
    synth = (
        generate(20000, SyntheticConfig(), ArrivalConfig(process="poisson", rate=0.04), 1)
        .df["prompt"]
        .tolist()
    )
    for unit, fn in (("words", lambda p: len(p.split())), ("chars", len)):
        r = np.quantile([fn(p) for p in real], [0.1, 0.25, 0.5, 0.75])
        s = np.quantile([fn(p) for p in synth], [0.1, 0.25, 0.5, 0.75])
        # The 5k list is cut at 385 characters by its source, so only quantiles up to p75 are fair;
        # 30% relative (~2 sd of a 1k-session-equivalent sample, see module doc) plus 2 units.
        assert np.all(np.abs(s - r) <= 0.3 * r + 2), f"{unit}: real {r} synthetic {s}"
