"""The synthetic generator's statistics against the real DiffusionDB 1k sample, under MiniLM.

Real: the 1,000-request CSV export (6.7 h, 173 users) and the 5k prompt list. Synthetic: 1k-request
traces at the real sample's mean rate with the default knobs (so this also pins the defaults),
embedded with the packaged all-MiniLM-L6-v2 (once per test session; ~3.7k prompts).

The issue's acceptance tolerances: cross-user share <= 0.2; the pool curve at m = 10 and 100 within
a factor of 2; the median reuse distance within a factor of 2. They apply to the mean over SEEDS:
the real sample is a single draw whose 1,000 requests come in ~217 user sessions, so it carries
the information of ~200 independent draws, and one synthetic 1k trace varies as much (the printed
table shows the seed-to-seed spread: the pool curve's sd is ~30% of its value). The other
tolerances are stated with their reasons in TOLERANCES.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sim.base.config import ArrivalConfig, SyntheticConfig
from traces.diffusiondb import load_diffusiondb
from traces.embeddings import embed_prompts, get_embedder
from traces.prompts import read_prompts
from traces.stats import trace_stats
from traces.synthetic import generate

SEEDS = (1, 2, 3)


def flat(stats: dict) -> dict[str, float]:
    s, b, r = stats["sessions"], stats["best_earlier_similarity"], stats["reuse"]
    out = {
        "repeat_rate": stats["repeat_rate"],
        "users": stats["users"],
        "sessions": s["count"],
        "session_mean_length": s["mean_length"],
        "single_request_sessions": s["single_request_share"],
        "gap_p50_s": s["gap_s"]["p50"],
        "returning_sessions": s["returning_sessions_share"],
        "share_ge_0.65": r["share_ge_0.65"],
        "cross_user_share": r["cross_user_share"],
        "pool_10": r["pool_curve"]["10"],
        "pool_100": r["pool_curve"]["100"],
        "pool_700": r["pool_curve"]["700"],
        "distance_p50": r["distance_requests"]["p50"],
        "distance_p90": r["distance_requests"]["p90"],
        "distance_h_p50": r["distance_hours"]["p50"],
        "same_user": r["same_user_share"],
        "same_session": r["same_session_share"],
    }
    for q in ("p25", "p50", "p75"):
        out[f"words_{q}"] = stats["prompt_words"][q]
        out[f"sim_{q}"] = b[q]
    return out


# statistic: (check, tolerance, why). "ratio": within a factor; "max": at most; "abs": +- tolerance.
TOLERANCES = {
    "cross_user_share": ("max", 0.2, "the issue's bound (real 0.133)"),
    "pool_10": ("ratio", 2.0, "the issue's bound"),
    "pool_100": ("ratio", 2.0, "the issue's bound"),
    "distance_p50": ("ratio", 2.0, "the issue's bound"),
    "pool_700": ("ratio", 2.0, "same as the lower pool sizes"),
    "distance_p90": ("ratio", 2.5, "tail of ~670 clustered matches"),
    "distance_h_p50": ("ratio", 2.0, "as distance_p50, in time"),
    # Binomial sd of a 1k sample is 0.9 points; session clustering ~doubles it.
    "repeat_rate": ("abs", 0.025, "sampling sd ~1.7 points (clustered 1k sample)"),
    "share_ge_0.65": ("abs", 0.06, "clustered binomial sd ~3 points"),
    "same_user": ("abs", 0.06, "~670 matches in ~200 sessions: sd ~2-3 points"),
    "same_session": ("abs", 0.06, "as same_user"),
    # Users and sessions in a 6.7 h window: Poisson-like counts plus heavy-tailed session lengths.
    "users": ("abs", 35, "count sd ~15-25"),
    "sessions": ("abs", 50, "count sd ~20-35 (heavy-tailed lengths)"),
    "session_mean_length": ("abs", 1.2, "mean of ~217 heavy-tailed lengths (sd ~0.6-0.8)"),
    "single_request_sessions": ("abs", 0.10, "binomial sd of ~217 sessions: 3.4 points"),
    "returning_sessions": ("abs", 0.08, "~44 returning sessions of ~217: sd ~3-4 points"),
    # Minute-resolution real gaps (spread inside the minute) vs continuous synthetic ones.
    "gap_p50_s": ("abs", 45, "real gaps are whole minutes blurred by spreading: +-30 s"),
    # A session's prompts share their length, so a 1k window is ~200 draws.
    "words_p25": ("abs", 5, "sd ~2.5 words"),
    "words_p50": ("abs", 7, "sd ~3.5 words"),
    "words_p75": ("abs", 8, "sd ~4 words"),
    # Best similarity to any earlier request: upper quantiles come from repeats and edits in
    # sessions; the low tail is new ideas, which sit a little above real ones (see README).
    "sim_p25": ("abs", 0.08, "new ideas and edits: sd ~0.03, known shift ~+0.03"),
    "sim_p50": ("abs", 0.06, "edits and new subjects in sessions: sd ~0.03"),
    "sim_p75": ("abs", 0.04, "repeats and small edits: sd ~0.015"),
}


def within(check: str, tol: float, real: float, synth: float) -> bool:
    if check == "max":
        return synth <= tol
    if check == "ratio":
        return real / tol <= synth <= real * tol
    return abs(synth - real) <= tol


@pytest.fixture(scope="module")
def measured(samples, tmp_path_factory):
    embedder = get_embedder("minilm")
    cache = tmp_path_factory.mktemp("minilm-cache")
    real = load_diffusiondb(samples / "diffusiondb_2m_first1k.csv")
    real_stats = flat(trace_stats(real, embed_prompts(embedder, real.prompts, cache, progress=False)))
    rate = (len(real) - 1) / real.arrival_s[-1]
    synth = []
    for seed in SEEDS:
        t = generate(1000, SyntheticConfig(), ArrivalConfig(process="poisson", rate=rate), seed)
        synth.append(flat(trace_stats(t, embed_prompts(embedder, t.prompts, cache, progress=False))))
    return real_stats, synth


def table(real: dict, synth: list[dict]) -> str:
    lines = [f"{'statistic':24s} {'real':>9s} {'synth mean':>10s} {'synth sd':>9s} {'check':>12s}"]
    for k, (check, tol, _) in TOLERANCES.items():
        vals = np.array([s[k] for s in synth])
        lines.append(f"{k:24s} {real[k]:9.4g} {vals.mean():10.4g} {vals.std():9.3g} {check + ' ' + str(tol):>12s}")
    return "\n".join(lines)


def test_synthetic_matches_real_1k_sample(measured):
    real, synth = measured
    print(table(real, synth))
    failed = [
        k
        for k, (check, tol, _) in TOLERANCES.items()
        if not within(check, tol, real[k], float(np.mean([s[k] for s in synth])))
    ]
    assert not failed, f"outside tolerance: {failed}\n{table(real, synth)}"


def test_prompt_lengths_match_the_5k_prompt_list(samples):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the list's one empty prompt
        real = read_prompts(samples / "diffusiondb_2m_first5k_prompts.txt")
    # 20k synthetic requests: many sessions and ideas, so a steadier sample than one 1k window.
    synth = generate(20000, SyntheticConfig(), ArrivalConfig(process="poisson", rate=0.04), 1).df["prompt"].tolist()
    for unit, fn in (("words", lambda p: len(p.split())), ("chars", len)):
        r = np.quantile([fn(p) for p in real], [0.1, 0.25, 0.5, 0.75])
        s = np.quantile([fn(p) for p in synth], [0.1, 0.25, 0.5, 0.75])
        # The 5k list is cut at 385 characters by its source, so only quantiles up to p75 are fair;
        # 30% relative (~2 sd of a 1k-session-equivalent sample, see module doc) plus 2 units.
        assert np.all(np.abs(s - r) <= 0.3 * r + 2), f"{unit}: real {r} synthetic {s}"
