"""Synthetic DiffusionDB-style traces of any size, seeded and deterministic.

The model (every knob is a field of :class:`sim.base.config.SyntheticConfig`; its comment there and the
README say what it was fitted to):

1. **Sessions.** Session lengths are heavy-tailed (1 + floor of a log-normal, mean
   ``session_mean``). Session starts follow the configured arrival process at the request rate
   divided by the mean session length (so diurnal load and bursts apply); requests inside a
   session are spaced by log-normal think times (median 110 s, as between a user's consecutive
   requests in the real sample), capped below the 30-minute session gap. Sessions start
   :data:`WARMUP_S` before the trace and the first ``n`` requests from its start are kept, so the
   trace opens mid-stream like a window cut from real traffic: at the steady-state rate, with
   users who were already active before it.
2. **Users who return.** A session belongs to a returning user when one is due, else to a new
   user. After each session a user comes back with their own probability (Beta-distributed
   around ``return_prob``: a few loyal heavy users, many who never return) after a log-normal
   pause (median ``return_gap_h`` hours, a tail of days). A returning user resumes their last
   prompt (an edit of it, or the same prompt again) with probability ``resume_prob``.
3. **Ideas: private, or from shared topic clusters.** A session that does not resume starts a
   new idea. With probability ``shared_prob`` it is taken from one of ``topics`` shared clusters
   (a user's variant of the cluster's prompt: its style and most of its subject), else it is the
   user's own. Cluster popularity is heavy-tailed and persists but drifts: a Zipf(``zipf_s``) base
   times a log-normal factor whose score follows a daily AR(1) process (a share ``drift_per_day``
   of it renewed per day). So two strangers rarely write alike, but the more traffic a trace
   holds, the more of it falls in clusters someone used before, over hours and days.
4. **Prompts inside a session.** Each later prompt repeats the previous one exactly, is a small
   edit of it (``edit_prob``: add/remove/replace a modifier, change a word of the subject, add or
   drop a detail or an artist), or writes a new subject in the same idea and style. The repeat
   probability is set so that the overall share of exact repeats is ``repeat_prob``. The text
   model is :mod:`traces.prompt_model`.

Random numbers are drawn in bulk; prompts are small tuples of vocabulary ids rendered only when
they change. ``acsim bench`` reports the generation rate (about 2M requests a minute of CPU).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sim.base.errors import ConfigError
from traces.arrivals import arrival_times, check_span, mean_rate
from traces.prompt_model import Draws, Idea, Prompt, PromptModel, render
from traces.prompts import EPOCH
from traces.schema import Trace, normalise

if TYPE_CHECKING:
    from sim.base.config import ArrivalConfig, SyntheticConfig

# Bumped whenever the same (config, seed) would give a different trace: cached traces carry it.
GENERATOR_VERSION = 3

DAY_S = 86400.0
SESSION_SIGMA = 1.6  # log-normal shape of session lengths (real sample: 43% single, median 2, p90 10)
GAP_MEDIAN_S, GAP_SIGMA, GAP_MAX_S = 110.0, 1.0, 1500.0  # think times inside a session (real: p50 116 s)
SESSION_GAP_S = 1800.0  # a user's requests further apart than this are separate sessions
WARMUP_S = 2 * DAY_S  # sessions (and returns) already under way when the trace opens
RETURN_GAP_SIGMA = 2.0  # log-normal shape of the pause between a user's sessions (assumed: a tail of days)
POPULARITY_SIGMA = 1.0  # log-normal swing of a cluster's popularity around its Zipf base (assumed)
LOYALTY_CONCENTRATION = 2.0  # Beta(a, b) with a + b = this: most users loyal or not at all (assumed)
# Steps and image sizes as in the real sample (per user: users keep their settings).
STEPS = ((50, 0.67), (150, 0.26), (100, 0.05), (75, 0.02))
SIZES = (((512, 512), 0.7), ((512, 768), 0.08), ((768, 512), 0.08), ((512, 640), 0.07), ((704, 512), 0.07))


def generate(n: int, cfg: SyntheticConfig, arrival: ArrivalConfig, seed: int) -> Trace:
    """A synthetic trace of ``n`` requests (see the module docstring for the model)."""
    if n <= 0:
        raise ConfigError("trace.requests", n, "must be > 0")
    check(cfg)
    rng = np.random.default_rng([seed, 0x5E7])
    s = _sessions(n, cfg, arrival, rng)
    check_span(s.t, arrival)
    users, returning = _users(s.start, s.end, cfg, rng)
    clusters = topic_clusters(s.t, cfg.topics, cfg.zipf_s, cfg.drift_per_day, rng)
    kept = np.flatnonzero(s.kept)
    lengths = s.kept[kept]
    texts, key_of = _prompts(lengths, returning[kept], users[kept], clusters, cfg, rng)

    session_of = np.repeat(np.arange(len(kept)), lengths)
    request_user = users[kept][session_of]
    n_users = int(users.max()) + 1
    steps = _pick(STEPS, n_users, rng)[request_user]
    size_idx = _pick(tuple((i, w) for i, (_, w) in enumerate(SIZES)), n_users, rng)[request_user]
    sizes = np.array([sz for sz, _ in SIZES])[size_idx]
    seeds = rng.integers(0, 2**32, n)
    # Build the table in time order so that validation finds nothing to sort (no 2M-row copy).
    order = np.argsort(s.t, kind="stable")
    used, user_code = np.unique(request_user, return_inverse=True)
    user_names = np.char.add("user", used.astype(str)).astype(object)
    df = pd.DataFrame(
        {
            "timestamp": EPOCH + pd.to_timedelta(np.round(s.t[order] * 1e6).astype(np.int64), unit="us"),
            "prompt": pd.array(np.asarray(texts, dtype=object)[key_of[order]], dtype="str"),
            "user": pd.array(user_names[user_code[order]], dtype="str"),
            "seed": seeds[order],
            "steps": steps[order],
            "width": sizes[order, 0],
            "height": sizes[order, 1],
        }
    )
    del texts, key_of
    name = f"synthetic-{n}-s{seed}"
    return Trace(
        normalise(df, f"<{name}>"), name=name, source=f"synthetic seed={seed} arrival={arrival.process}"
    )


def check(cfg: SyntheticConfig) -> None:
    """The config's own checks, for callers that built ``cfg`` directly (errors name ``trace.synthetic.*``)."""
    try:
        cfg.check()
    except ConfigError as exc:
        raise ConfigError("trace.synthetic." + exc.field, exc.value, exc.allowed, exc.hint) from None


def _pick(table: tuple[tuple[int, float], ...], size: int, rng: np.random.Generator) -> np.ndarray:
    values = np.array([v for v, _ in table])
    weights = np.array([w for _, w in table])
    return values[rng.choice(len(values), size, p=weights / weights.sum())]


def _session_lengths(m: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """``m`` heavy-tailed session lengths (1 + floor of a log-normal) with mean ``mean``."""
    mu = math.log(max(mean - 0.5, 0.51)) - SESSION_SIGMA**2 / 2
    return 1 + np.floor(rng.lognormal(mu, SESSION_SIGMA, m)).astype(np.int64)


@dataclass(frozen=True)
class _Sessions:
    """Every session drawn up to the last one that holds a kept request, in start order."""

    start: np.ndarray  # float64 s from the trace start (negative: before it)
    end: np.ndarray  # time of the session's last request
    kept: np.ndarray  # int64 number of its requests kept in the trace (0: all before the trace)
    t: np.ndarray  # kept request times, session by session (kept requests of a session are contiguous)


def _sessions(n: int, cfg: SyntheticConfig, arrival: ArrivalConfig, rng: np.random.Generator) -> _Sessions:
    """Sessions from :data:`WARMUP_S` before the trace, and the first ``n`` requests from its start."""
    mean_len = max(cfg.session_mean, 1.01)
    req_rate = n / (cfg.days * DAY_S) if cfg.days else mean_rate(arrival)
    factor = req_rate / mean_len / mean_rate(arrival)
    m = int((WARMUP_S * req_rate + n) / mean_len * 1.2) + 32
    while True:
        starts = arrival_times(m, arrival, rng, rate_factor=factor, t0_s=-WARMUP_S % DAY_S) - WARMUP_S
        lengths = _session_lengths(m, mean_len, rng)
        total = int(lengths.sum())
        session_of = np.repeat(np.arange(m), lengths)
        first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        gaps = np.minimum(rng.lognormal(math.log(GAP_MEDIAN_S), GAP_SIGMA, total), GAP_MAX_S)
        gaps[first] = 0.0
        cum = np.cumsum(gaps)
        t = starts[session_of] + cum - cum[first][session_of]
        after = np.flatnonzero(t >= 0)
        # Complete only if every session that could hold one of the first n requests was drawn.
        if len(after) >= n:
            cut = np.partition(t[after], n - 1)[n - 1]
            if starts[-1] > cut:
                break
        m = int(m * 1.5)
    keep = after[np.argsort(t[after], kind="stable")[:n]]
    keep.sort()  # session order: kept requests of a session are contiguous
    counts = np.bincount(session_of[keep], minlength=m)
    last = int(np.flatnonzero(counts)[-1]) + 1
    ends = t[first + lengths - 1]
    return _Sessions(starts[:last], ends[:last], counts[:last], t[keep])


def _users(
    start: np.ndarray, end: np.ndarray, cfg: SyntheticConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The user of every session, and whether that user had an earlier session.

    Users due back take the sessions first (earliest due first); the rest go to new users. With
    ``cfg.users`` set, no user is created beyond that many: the earliest-due user (or, if none is
    due at all, a random one) takes the session early.
    """
    m = len(start)
    mean = cfg.return_prob
    loyalty = (
        rng.beta(mean * LOYALTY_CONCENTRATION, (1 - mean) * LOYALTY_CONCENTRATION, m)
        if mean > 0
        else np.zeros(m)
    )
    u_back = rng.random(m).tolist()
    pause = SESSION_GAP_S + rng.lognormal(math.log(cfg.return_gap_h * 3600.0), RETURN_GAP_SIGMA, m)
    due_at = (end + pause).tolist()
    u_any = rng.random(m).tolist()
    loyal = loyalty.tolist()
    cap = cfg.users
    user = np.empty(m, dtype=np.int64)
    returning = np.zeros(m, dtype=bool)
    heap: list[tuple[float, int, int]] = []
    n_users = 0
    for k, t in enumerate(start.tolist()):
        full = cap is not None and n_users >= cap
        if heap and (heap[0][0] <= t or full):
            who = heapq.heappop(heap)[2]
            returning[k] = True
        elif full:
            who = int(u_any[k] * n_users)
            returning[k] = True
        else:
            who = n_users
            n_users += 1
        user[k] = who
        if u_back[k] < loyal[who]:
            heapq.heappush(heap, (due_at[k], k, who))
    return user, returning


def topic_clusters(
    times: np.ndarray, topics: int, zipf_s: float, drift: float, rng: np.random.Generator
) -> np.ndarray:
    """A shared topic cluster for every time in ``times`` (s), by the cluster popularity of its day.

    Cluster k's popularity on day d is w_k * exp(POPULARITY_SIGMA * x_k(d)): a heavy-tailed base
    w_k = 1 / k^zipf_s that persists, modulated by a score x that is AR(1) from day to day,
    x' = sqrt(1 - drift) x + sqrt(drift) e with e ~ N(0, 1). ``drift`` = 0 keeps the popularity
    forever; 1 draws a new modulation every day (the base still ranks the clusters).
    """
    base = np.log(1.0 / np.arange(1, topics + 1) ** zipf_s)
    day = np.floor(times / DAY_S).astype(np.int64)
    out = np.empty(len(times), dtype=np.int64)
    if len(times) == 0:
        return out
    x = rng.standard_normal(topics)
    keep, renew = math.sqrt(1.0 - drift), math.sqrt(drift)
    order = np.argsort(day, kind="stable")
    bounds = np.searchsorted(day[order], np.arange(day.min(), day.max() + 2))
    for i in range(int(day.max() - day.min()) + 1):
        if i:
            x = keep * x + renew * rng.standard_normal(topics)
        idx = order[bounds[i] : bounds[i + 1]]
        if len(idx):
            w = np.exp(base + POPULARITY_SIGMA * x - (base + POPULARITY_SIGMA * x).max())
            out[idx] = rng.choice(topics, len(idx), p=w / w.sum())
    return out


def _prompts(
    lengths: np.ndarray,
    returning: np.ndarray,
    users: np.ndarray,
    clusters: np.ndarray,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> tuple[list[str], np.ndarray]:
    """Prompts of every kept request in session order: (unique texts, index into them per request).

    ``clusters`` holds, per request, the shared cluster a new idea started there would take.
    """
    n = int(lengths.sum())
    # Exact repeats happen at later prompts that do not start a new idea, and when a user resumes.
    resumed_est = float(returning.sum()) * cfg.resume_prob
    chances = (n - len(lengths)) * (1.0 - cfg.new_idea_prob) + resumed_est
    p_repeat = min(1.0, cfg.repeat_prob * n / max(1.0, chances))
    p_change = p_repeat + (1 - p_repeat) * cfg.edit_prob  # below: repeat; below p_change: edit
    draws = Draws(rng)
    model = PromptModel(draws)
    u = draws.u
    shared: dict[int, tuple[Idea, Prompt]] = {}
    last: dict[int, tuple[Idea, Prompt]] = {}
    # Keyed by text, not state: 1.7M state tuples would cost ~0.7 GB more at 2M requests.
    keys: dict[str, int] = {}
    texts: list[str] = []
    out = np.empty(n, dtype=np.int64)
    i = k = 0

    def new_idea(cluster: int) -> tuple[Idea, Prompt]:
        if u() < cfg.shared_prob:
            if cluster not in shared:
                idea = model.new_idea()
                shared[cluster] = idea, model.prompt(idea)
            idea, canonical = shared[cluster]
            return idea, model.variant(canonical, idea)
        idea = model.new_idea()
        return idea, model.prompt(idea)

    cluster = clusters.tolist()
    for length, back, user in zip(lengths.tolist(), returning.tolist(), users.tolist(), strict=True):
        if back and u() < cfg.resume_prob:
            # Their last prompt (drawn now if that session fell before the trace), edited or again.
            idea, p = last.get(user) or new_idea(cluster[i])
            if u() >= p_repeat:
                p = model.edit(p, idea)
        else:
            idea, p = new_idea(cluster[i])
        prev = None
        for j in range(length):
            if j:
                x = u()
                if u() < cfg.new_idea_prob:
                    idea, p = new_idea(cluster[i])
                elif x >= p_change:
                    p = model.new_subject(p, idea)
                elif x >= p_repeat:
                    p = model.edit(p, idea)
                    if u() < 0.3:
                        p = model.edit(p, idea)
            if p is not prev:  # an exact repeat keeps the same object: no re-rendering
                text = render(p, idea)
                k = keys.get(text)
                if k is None:
                    k = keys[text] = len(texts)
                    texts.append(text)
                prev = p
            out[i] = k
            i += 1
        last[user] = idea, p
    return texts, out
