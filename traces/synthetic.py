"""Synthetic DiffusionDB-style traces of any size, seeded and deterministic.

The model, in the order it is drawn (everything random comes from one numpy Generator):

1. **Sessions.** Session lengths are heavy-tailed (1 + floor of a log-normal, mean
   ``session_mean``). Session starts follow the configured arrival process at the request rate
   divided by the mean session length (so diurnal load and bursts apply); requests inside a
   session are spaced by log-normal think times (median 110 s, as between a user's consecutive
   requests in the real sample), capped below the 30-minute session gap. Sessions start three
   hours before the trace and the first ``n`` requests from its start are kept, so the trace
   opens mid-stream like a window cut from real traffic, at the steady-state rate.
2. **Users.** Each session belongs to a user drawn with Zipf-like activity weights (a few heavy
   users, a long tail). The default population grows with the trace: ~330 for 1k requests (a 1k
   window then shows ~160 users, most in one session, as the real sample's 173) and ~10k for 2M,
   as in DiffusionDB 2M.
3. **Topics.** A topic fixes a subject template, pools of nouns and made-up names, and a style
   suffix (modifiers and artists). Half of the sessions pick a popular topic by Zipf(``zipf_s``)
   popularity (each day a fraction ``drift_per_day`` of the ranks is reshuffled); the other half
   pursue an idea of their own (a new topic), the long tail of the real data.
4. **Prompts.** A session's first prompt is a fresh subject of its topic (or, rarely, a copy of
   the topic's first prompt: a cross-user exact repeat). Each later prompt repeats the previous
   one exactly, is a small edit of it (``edit_prob``: add/remove/replace a modifier, change an
   adjective, noun or setting, add or drop an artist), or keeps the style suffix with a new
   subject. The within-session repeat probability is set so that the overall share of exact
   repeats is ``repeat_prob``.

Prompts are small tuples of vocabulary ids, rendered to text only when they change; random numbers
are drawn in bulk. 2M requests take ~40 s of CPU and ~2.2 GB at peak (most of it the text itself,
held once as Python strings and once in arrow).
"""

from __future__ import annotations

import itertools
import math
import string
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sim.base.errors import ConfigError
from traces import vocab
from traces.arrivals import arrival_times, check_span, mean_rate
from traces.prompts import EPOCH
from traces.schema import Trace, normalise

if TYPE_CHECKING:
    from collections.abc import Callable

    from sim.base.config import ArrivalConfig, SyntheticConfig

DAY_S = 86400.0
SESSION_SIGMA = 1.6  # log-normal shape of session lengths (real sample: 43% single, median 2, p90 10)
GAP_MEDIAN_S, GAP_SIGMA, GAP_MAX_S = 110.0, 1.0, 1500.0
WARMUP_S = 3 * 3600.0  # sessions already under way when the trace opens
USER_SKEW = 0.5  # Zipf exponent of user activity (sessions per user)
OWN_TOPIC_SHARE = 0.5  # sessions on an idea of their own rather than a popular topic (the long tail)
STYLE_KEEP = 0.5  # share of a topic's modifiers a session keeps (the rest are the user's own)
CROSS_USER_SHARE = 0.03  # share of exact repeats that copy another user's prompt
PLAIN_TOPIC_SHARE = 0.3  # topics without a style suffix (short prompts such as "a cat in a hat")
MOD_RANK_OFFSET = 15.0  # modifier weights 1 / (rank + offset): a heavy head, as in the real prompts
MODS_MEAN, MODS_SHAPE = 12.0, 1.2  # negative-binomial number of style modifiers of a topic
_FRAGMENTS = vocab.MODIFIERS + vocab.DETAILS
# Steps and image sizes as in the real sample (per session: users keep their settings).
STEPS = ((50, 0.67), (150, 0.26), (100, 0.05), (75, 0.02))
SIZES = (((512, 512), 0.7), ((512, 768), 0.08), ((768, 512), 0.08), ((512, 640), 0.07), ((704, 512), 0.07))


def default_users(n: int) -> int:
    """Size of the user population: ~10k for 2M requests as in DiffusionDB 2M, ~330 for 1k requests
    (so that a 1k trace shows ~170 distinct users, most of them in one session, as the real sample)."""
    return max(1, round(330 * (n / 1000) ** 0.449))


def default_topics(n: int) -> int:
    """Topics grow with the square root of the trace length (60 for 1k requests, ~2.7k for 2M)."""
    return max(8, round(1.9 * math.sqrt(n)))


def generate(n: int, cfg: SyntheticConfig, arrival: ArrivalConfig, seed: int) -> Trace:
    """A synthetic trace of ``n`` requests (see the module docstring for the model)."""
    if n <= 0:
        raise ConfigError("trace.requests", n, "must be > 0")
    _check(cfg)
    rng = np.random.default_rng([seed, 0x5E7])
    lengths, starts, t = _request_times(n, cfg, arrival, rng)
    check_span(t, arrival)
    n_sessions = len(lengths)
    session_of = np.repeat(np.arange(n_sessions), lengths)

    users = cfg.users or default_users(n)
    activity = 1.0 / np.arange(1, users + 1) ** USER_SKEW
    session_user = rng.permutation(users)[rng.choice(users, n_sessions, p=activity / activity.sum())]

    topics = cfg.topics or default_topics(n)
    session_topic = _session_topics(starts, topics, cfg.zipf_s, cfg.drift_per_day, rng)
    repeats_within = cfg.repeat_prob * (1 - CROSS_USER_SHARE) * n / max(1, n - n_sessions)
    copy_prob = cfg.repeat_prob * CROSS_USER_SHARE * n / n_sessions
    texts, key_of = _PromptMaker(topics, rng).run(
        lengths, session_topic, min(repeats_within, 1.0), min(copy_prob, 1.0), cfg.edit_prob, rng
    )

    steps = _pick(STEPS, n_sessions, rng)[session_of]
    size_idx = _pick(tuple((i, w) for i, (_, w) in enumerate(SIZES)), n_sessions, rng)[session_of]
    sizes = np.array([s for s, _ in SIZES])[size_idx]
    seeds = rng.integers(0, 2**32, n)
    # Build the table in time order so that validation finds nothing to sort (no 2M-row copy).
    order = np.argsort(t, kind="stable")
    user_names = np.char.add("user", np.arange(users).astype(str)).astype(object)
    df = pd.DataFrame(
        {
            "timestamp": EPOCH + pd.to_timedelta(np.round(t[order] * 1e6).astype(np.int64), unit="us"),
            "prompt": pd.array(np.asarray(texts, dtype=object)[key_of[order]], dtype="str"),
            "user": pd.array(user_names[session_user[session_of[order]]], dtype="str"),
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


def _check(cfg: SyntheticConfig) -> None:
    """Ranges the generator needs (the config's types cannot say them)."""
    p = "trace.synthetic."
    for name in ("edit_prob", "repeat_prob", "drift_per_day"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(p + name, getattr(cfg, name), "must be in [0, 1]")
    if cfg.session_mean < 1:
        raise ConfigError(p + "session_mean", cfg.session_mean, "must be >= 1 (prompts per session)")
    for name in ("users", "topics", "days", "zipf_s"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(p + name, value, "must be > 0")


def _pick(table: tuple[tuple[int, float], ...], size: int, rng: np.random.Generator) -> np.ndarray:
    values = np.array([v for v, _ in table])
    weights = np.array([w for _, w in table])
    return values[rng.choice(len(values), size, p=weights / weights.sum())]


def _session_lengths(m: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """``m`` heavy-tailed session lengths (1 + floor of a log-normal) with mean ``mean``."""
    mu = math.log(max(mean - 0.5, 0.51)) - SESSION_SIGMA**2 / 2
    return 1 + np.floor(rng.lognormal(mu, SESSION_SIGMA, m)).astype(np.int64)


def _request_times(
    n: int, cfg: SyntheticConfig, arrival: ArrivalConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions and request times of the first ``n`` requests after a warm-up.

    Sessions start ``WARMUP_S`` before the trace, so it opens mid-stream like a window cut from
    real traffic, and its request rate is the steady-state rate from the first minute on.
    Returns (requests per kept session, kept session starts, request times in session order).
    """
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
    kept_sessions = np.flatnonzero(counts)
    return counts[kept_sessions], starts[kept_sessions], t[keep]


def _session_topics(
    starts: np.ndarray, topics: int, zipf_s: float, drift: float, rng: np.random.Generator
) -> np.ndarray:
    """Zipf topic popularity whose ranks drift: each day a share ``drift`` of ranks is reshuffled."""
    weights = 1.0 / np.arange(1, topics + 1) ** zipf_s
    day = (np.maximum(starts, 0.0) // DAY_S).astype(np.int64)  # warm-up sessions count as day 0
    rank = rng.permutation(topics)  # rank[t] = popularity rank of topic t
    out = np.empty(len(starts), dtype=np.int64)
    for d in range(int(day.max()) + 1 if len(day) else 0):
        if d:
            moved = rng.choice(topics, int(round(drift * topics)), replace=False)
            rank[moved] = rank[rng.permutation(moved)]
        idx = np.flatnonzero(day == d)
        if len(idx):
            p = weights[rank]
            out[idx] = rng.choice(topics, len(idx), p=p / p.sum())
    return out


class _Draws:
    """Bulk-drawn random numbers handed out one at a time through C-level iterators
    (per-call numpy overhead would dominate the generator otherwise)."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        mod_w = 1.0 / (np.arange(len(vocab.MODIFIERS)) + MOD_RANK_OFFSET)
        mod_p = mod_w / mod_w.sum()
        self.u: Callable[[], float] = itertools.chain.from_iterable(
            rng.random(size).tolist() for _ in itertools.count()
        ).__next__
        """A uniform number in [0, 1)."""
        self.modifier: Callable[[], int] = itertools.chain.from_iterable(
            rng.choice(len(vocab.MODIFIERS), size, p=mod_p).tolist() for _ in itertools.count()
        ).__next__
        """A modifier id, frequent ones (head of vocab.MODIFIERS) more often."""
        self.mods_count: Callable[[], int] = itertools.chain.from_iterable(
            (
                1
                + np.minimum(
                    rng.negative_binomial(MODS_SHAPE, MODS_SHAPE / (MODS_SHAPE + MODS_MEAN), size), 40
                )
            ).tolist()
            for _ in itertools.count()
        ).__next__
        """Number of style modifiers of a new topic."""

    def below(self, k: int) -> int:
        """A uniform integer in [0, k)."""
        return int(self.u() * k)


# A prompt state: (template, 8 subject slots, modifier ids, artist ids). Slots a template does not
# use stay 0, so equal states are exactly equal texts.
_State = tuple[int, int, int, int, int, int, int, int, int, tuple[int, ...], tuple[int, ...]]
_SLOT_NAMES = ("a", "n", "n2", "s", "p", "m", "w", "x")
_N_NAMES = len(vocab.SYLLABLES) ** 3
_SLOT_SIZES = tuple(
    len(v)
    for v in (
        vocab.ADJECTIVES,
        vocab.NOUNS,
        vocab.NOUNS,
        vocab.SETTINGS,
        vocab.PEOPLE,
        vocab.MATERIALS,
        vocab.WEARABLES,
    )
) + (_N_NAMES * _N_NAMES,)
_SLOTS = tuple(
    tuple(i for i, name in enumerate(_SLOT_NAMES) if "{" + name + "}" in t) for t in vocab.TEMPLATES
)
_NOUN, _NAME = 1, 7  # slots drawn from a topic's own pool half of the time
_MODS, _ARTISTS = 1 + len(_SLOT_NAMES), 2 + len(_SLOT_NAMES)  # positions in a state


def _pseudo_name(x: int) -> str:
    """Two made-up words (an open vocabulary: real prompts name people, places and things no
    list holds, which keeps unrelated prompts dissimilar)."""
    words = []
    for v in divmod(x, _N_NAMES):
        k = len(vocab.SYLLABLES)
        words.append(vocab.SYLLABLES[v % k] + vocab.SYLLABLES[v // k % k] + vocab.SYLLABLES[v // k // k])
    return " ".join(words)


def _compile(template: str) -> tuple[str, tuple[tuple[int, Callable[[int], str]], ...]]:
    """A positional format string and, per placeholder in order, (state index, id -> words)."""
    words: dict[str, Callable[[int], str]] = {
        "a": vocab.ADJECTIVES.__getitem__,
        "n": vocab.NOUNS.__getitem__,
        "n2": vocab.NOUNS.__getitem__,
        "s": vocab.SETTINGS.__getitem__,
        "p": vocab.PEOPLE.__getitem__,
        "m": vocab.MATERIALS.__getitem__,
        "w": vocab.WEARABLES.__getitem__,
        "x": _pseudo_name,
    }
    names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    fmt = template
    for name in names:
        fmt = fmt.replace("{" + name + "}", "{}", 1)
    return fmt, tuple((1 + _SLOT_NAMES.index(name), words[name]) for name in names)


_FORMATS = tuple(_compile(t) for t in vocab.TEMPLATES)


class _PromptMaker:
    """Topics, prompt states, edits and rendering."""

    def __init__(self, topics: int, rng: np.random.Generator) -> None:
        self.d = _Draws(rng, 1 << 16)
        self.topics = [self._new_topic() for _ in range(topics)]
        self.canonical: dict[int, _State] = {}

    def _new_topic(self) -> tuple[int, tuple[tuple[int, ...], ...], tuple[int, ...], tuple[int, ...]]:
        d = self.d
        pools = tuple(tuple(d.below(_SLOT_SIZES[slot]) for _ in range(4)) for slot in (_NOUN, _NAME))
        if d.u() < PLAIN_TOPIC_SHARE:
            return d.below(vocab.SHORT_TEMPLATES), pools, (), ()
        template = d.below(len(vocab.TEMPLATES))
        mods = tuple(dict.fromkeys(d.modifier() for _ in range(d.mods_count())))
        # Descriptive fragments get ids after the modifiers (rendered from vocab.DETAILS).
        n_details = (0, 0, 0, 1, 1, 2)[d.below(6)]
        mods = tuple(len(vocab.MODIFIERS) + d.below(len(vocab.DETAILS)) for _ in range(n_details)) + mods
        n_art = (0, 0, 1, 1, 2, 3)[d.below(6)]
        artists = tuple(d.below(len(vocab.ARTISTS)) for _ in range(n_art))
        return template, pools, mods, artists

    def _slot_value(self, slot: int, pools: tuple[tuple[int, ...], ...]) -> int:
        d = self.d
        if slot in (_NOUN, _NAME) and d.u() < 0.5:
            return pools[slot == _NAME][d.below(4)]
        return d.below(_SLOT_SIZES[slot])

    def _fresh(self, topic: int) -> _State:
        template, pools, mods, artists = self.topics[topic]
        slots = [0] * len(_SLOT_NAMES)
        for slot in _SLOTS[template]:
            slots[slot] = self._slot_value(slot, pools)
        return (template, *slots, mods, artists)

    def _personal(self, s: _State) -> _State:
        """A user's take on a topic's style: keep part of its modifiers and artists, add own ones."""
        d = self.d
        mods = [m for m in s[_MODS] if d.u() < STYLE_KEEP]
        for _ in range(int(len(s[_MODS]) * (1 - STYLE_KEEP) + d.u())):
            mods.insert(d.below(len(mods) + 1), d.modifier())
        artists = [a for a in s[_ARTISTS] if d.u() < STYLE_KEEP]
        if s[_ARTISTS] and d.u() < 1 - STYLE_KEEP:
            artists.append(d.below(len(vocab.ARTISTS)))
        return (*s[:_MODS], tuple(dict.fromkeys(mods)), tuple(dict.fromkeys(artists)))

    def _new_subject(self, s: _State, topic: int) -> _State:
        return (*self._fresh(topic)[:_MODS], s[_MODS], s[_ARTISTS])

    def _edit(self, s: _State) -> _State:
        """A small edit that changes the prompt (a few tries; an edit may hit a no-op)."""
        for _ in range(4):
            e = self._edit_once(s)
            if e != s:
                return e
        return e

    def _edit_once(self, s: _State) -> _State:
        d = self.d
        mods, artists = list(s[_MODS]), list(s[_ARTISTS])
        op = d.below(8)
        if op <= 1 or (op <= 3 and not mods):  # add a modifier (users mostly append)
            m = d.modifier()
            if m not in mods:
                mods.insert(len(mods) if op == 0 else d.below(len(mods) + 1), m)
        elif op == 2:
            mods.pop(d.below(len(mods)))
        elif op == 3:
            mods[d.below(len(mods))] = d.modifier()
            mods = list(dict.fromkeys(mods))
        elif op <= 6:  # change one word of the subject (adjective, noun, setting, person, ...)
            used = _SLOTS[s[0]]
            if used:
                slot = used[d.below(len(used))]
                new = list(s)
                new[1 + slot] = d.below(_SLOT_SIZES[slot])
                return tuple(new)  # type: ignore[return-value]
        elif artists and d.u() < 0.5:
            artists.pop(d.below(len(artists)))
        else:
            artists.append(d.below(len(vocab.ARTISTS)))
        return (*s[:_MODS], tuple(mods), tuple(artists))

    def run(
        self,
        lengths: np.ndarray,
        session_topic: np.ndarray,
        p_repeat: float,
        p_copy: float,
        p_edit: float,
        rng: np.random.Generator,
    ) -> tuple[list[str], np.ndarray]:
        """Prompts of every request in session order: (unique texts, index into them per request)."""
        # Keyed by text, not state: 1.7M state tuples would cost ~0.7 GB more at 2M requests.
        keys: dict[str, int] = {}
        texts: list[str] = []
        out = np.empty(int(lengths.sum()), dtype=np.int64)
        d, i, k = self.d, 0, 0
        prev: _State | None = None
        p_edit_total = p_repeat + (1 - p_repeat) * p_edit
        for length, popular in zip(lengths.tolist(), session_topic.tolist(), strict=True):
            topic = popular
            if d.u() < OWN_TOPIC_SHARE:
                topic = len(self.topics)
                self.topics.append(self._new_topic())
            if topic in self.canonical and d.u() < p_copy:
                s = self.canonical[topic]
            else:
                s = self._personal(self._fresh(topic))
                self.canonical.setdefault(topic, s)
            for j in range(length):
                if j:
                    u = d.u()
                    if u >= p_edit_total:
                        s = self._new_subject(s, topic)
                    elif u >= p_repeat:
                        s = self._edit(s)
                        if d.u() < 0.3:
                            s = self._edit(s)
                if s is not prev:  # an exact repeat keeps the same state object: no re-rendering
                    text = self._render(s)
                    k = keys.get(text)
                    if k is None:
                        k = keys[text] = len(texts)
                        texts.append(text)
                    prev = s
                out[i] = k
                i += 1
        return texts, out

    def _render(self, s: _State) -> str:
        template, mods, artists = s[0], s[_MODS], s[_ARTISTS]
        fmt, getters = _FORMATS[template]
        text = fmt.format(*[get(s[i]) for i, get in getters])
        parts = [text, *map(_FRAGMENTS.__getitem__, mods)]
        if artists:
            names = list(map(vocab.ARTISTS.__getitem__, artists))
            # Artists are written "by A and B", "art by A and B" or as a plain list, fixed per template.
            style = template % 3
            parts.append(
                ("by " if style == 0 else "art by ") + " and ".join(names) if style < 2 else ", ".join(names)
            )
        # DiffusionDB prompts end with a space (its export re-joined tokens); keep that shape.
        return ", ".join(parts) + " "
