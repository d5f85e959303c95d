"""The text side of the synthetic generator: ideas, prompts, edits and rendering.

An **idea** is what a user is after: a *theme* (a few adjectives, nouns, a setting, a person, a
material, a wearable and one made-up name) and a *style* (one or two style families of
:data:`traces.vocab.STYLE_FAMILIES`, some artists). A **prompt** is an idea written out: a subject
phrase (a template of :data:`traces.vocab.TEMPLATES`), detail phrases (:data:`traces.vocab.PHRASES`),
style modifiers and artists. A placeholder takes a word of the idea's theme with probability
:data:`THEME_P`, otherwise any word of the vocabulary, so an idea's prompts share their words the
way a real user's do, and the prompts of unrelated ideas share few (under MiniLM, random pairs of
synthetic prompts are then about as dissimilar as random pairs of real ones: see
``acsim trace compare``).

Prompts are small tuples of vocabulary ids, rendered to text only when they change. Every random
number comes from bulk-drawn arrays (:class:`Draws`), since per-call numpy overhead would
dominate otherwise.
"""

from __future__ import annotations

import itertools
import string
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from traces import vocab

if TYPE_CHECKING:
    from collections.abc import Callable

THEME_P = 0.9  # a placeholder takes a word of the idea's theme (else any word of the vocabulary)
PLAIN_SHARE = 0.3  # ideas written without a style: a subject, maybe a detail or one modifier
MODS_MEAN, MODS_SHAPE = 8.0, 2.5  # negative-binomial number of fragments after a styled idea's subject
FIXED_DETAIL_P = 0.1  # a detail phrase is one of the fixed vocab.DETAILS (generic, shared by many prompts)
HEAD_P = 0.05  # a modifier drawn from the global frequency order (else from the idea's families)
MOD_RANK_OFFSET = 15.0  # modifier weights 1 / (rank + offset): a heavy head, as in the real prompts
TWO_FAMILIES_P = 0.4  # a styled idea mixes two style families (else one)
DETAIL_SHARE = (
    0.6  # share of a styled prompt's fragments that are detail phrases (real: ~55% not style words)
)
ARTISTS_PER_IDEA = (0, 0, 1, 1, 2, 3)
MADE_UP_ARTIST_P = 0.5  # an artist is a made-up name (real prompts name many artists no list holds)
STYLE_KEEP = 0.9  # share of a shared cluster's modifiers, details and artists a user's variant keeps

# Placeholder kinds; "a2" and "n2" draw from the same theme pools as "a" and "n".
_KINDS = ("a", "n", "s", "p", "m", "w", "x")
_POOL = {"a": 0, "a2": 0, "n": 1, "n2": 1, "s": 2, "p": 3, "m": 4, "w": 5, "x": 6}
_THEME_SIZES = (3, 3, 1, 1, 1, 1, 1)  # words per kind in a theme
_SYL = len(vocab.SYLLABLES)
_N_NAMES = _SYL**6  # a made-up name: two words of three syllables
_VOCAB_SIZES = (
    len(vocab.ADJECTIVES),
    len(vocab.NOUNS),
    len(vocab.SETTINGS),
    len(vocab.PEOPLE),
    len(vocab.MATERIALS),
    len(vocab.WEARABLES),
    _N_NAMES,
)
# One draw per theme word, pool by pool, and where each pool's words sit in that list.
_THEME_DRAWS = tuple(size for size, k in zip(_VOCAB_SIZES, _THEME_SIZES, strict=True) for _ in range(k))
_THEME_SLICES = tuple((sum(_THEME_SIZES[:i]), sum(_THEME_SIZES[: i + 1])) for i in range(len(_THEME_SIZES)))
_N_MODS = len(vocab.MODIFIERS)
_N_ARTISTS = len(vocab.ARTISTS)
_FAMILY_IDS = tuple(tuple(vocab.MODIFIERS.index(m) for m in fam) for fam in vocab.STYLE_FAMILIES)


def pseudo_name(x: int) -> str:
    """Two made-up words (an open vocabulary: real prompts name people, places and things no
    list holds, which keeps unrelated prompts dissimilar)."""
    words = []
    for v in divmod(x, _SYL**3):
        words.append(
            vocab.SYLLABLES[v % _SYL] + vocab.SYLLABLES[v // _SYL % _SYL] + vocab.SYLLABLES[v // _SYL**2]
        )
    return " ".join(words)


_WORDS: tuple[Callable[[int], str], ...] = (
    vocab.ADJECTIVES.__getitem__,
    vocab.NOUNS.__getitem__,
    vocab.SETTINGS.__getitem__,
    vocab.PEOPLE.__getitem__,
    vocab.MATERIALS.__getitem__,
    vocab.WEARABLES.__getitem__,
    pseudo_name,
)


def _compile(template: str) -> tuple[str, tuple[int, ...]]:
    """A positional format string and the theme pool of each placeholder in order."""
    names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    fmt = template
    for name in names:
        fmt = fmt.replace("{" + name + "}", "{}", 1)
    return fmt, tuple(_POOL[name] for name in names)


# Subject templates first, then detail phrases, then the fixed detail fragments (no placeholder).
_FORMATS = tuple(_compile(t) for t in (*vocab.TEMPLATES, *vocab.PHRASES, *vocab.DETAILS))
_N_SUBJECTS = len(vocab.TEMPLATES)
_N_PHRASES = len(vocab.PHRASES)

# A phrase: (format id, word id per placeholder). A prompt: (subject phrase, detail phrases,
# modifier ids, artist ids); artist ids >= len(ARTISTS) are made-up names.
Phrase = tuple[int, ...]
Prompt = tuple[Phrase, tuple[Phrase, ...], tuple[int, ...], tuple[int, ...]]
# An idea: (theme: word ids per kind, style families, plain?, artist style 0..2).
Theme = tuple[tuple[int, ...], ...]
Idea = tuple[Theme, tuple[int, ...], bool, int]


@lru_cache(maxsize=1 << 16)
def _render_phrase(phrase: Phrase) -> str:
    fmt, pools = _FORMATS[phrase[0]]
    return fmt.format(*[_WORDS[k](v) for k, v in zip(pools, phrase[1:], strict=True)])


def _artist(a: int) -> str:
    return vocab.ARTISTS[a] if a < _N_ARTISTS else pseudo_name(a - _N_ARTISTS)


def render(p: Prompt, idea: Idea) -> str:
    """The prompt's text, in DiffusionDB's shape (comma-separated, a trailing space)."""
    subject, details, mods, artists = p
    parts = [_render_phrase(subject), *map(_render_phrase, details), *map(vocab.MODIFIERS.__getitem__, mods)]
    if artists:
        names = list(map(_artist, artists))
        style = idea[3]  # "by A and B", "art by A and B" or a plain list, fixed per idea
        parts.append(
            ("by " if style == 0 else "art by ") + " and ".join(names) if style < 2 else ", ".join(names)
        )
    return ", ".join(parts) + " "


class Draws:
    """Bulk-drawn random numbers handed out one at a time through C-level iterators."""

    def __init__(self, rng: np.random.Generator, size: int = 1 << 16) -> None:
        mod_w = 1.0 / (np.arange(_N_MODS) + MOD_RANK_OFFSET)
        mod_p = mod_w / mod_w.sum()
        self.u: Callable[[], float] = itertools.chain.from_iterable(
            rng.random(size).tolist() for _ in itertools.count()
        ).__next__
        """A uniform number in [0, 1)."""
        self.modifier: Callable[[], int] = itertools.chain.from_iterable(
            rng.choice(_N_MODS, size, p=mod_p).tolist() for _ in itertools.count()
        ).__next__
        """A modifier id from the global frequency order (head of vocab.MODIFIERS more often)."""
        self.mods_count: Callable[[], int] = itertools.chain.from_iterable(
            (
                1
                + np.minimum(
                    rng.negative_binomial(MODS_SHAPE, MODS_SHAPE / (MODS_SHAPE + MODS_MEAN), size), 40
                )
            ).tolist()
            for _ in itertools.count()
        ).__next__
        """Number of style modifiers of a new styled idea."""

    def below(self, k: int) -> int:
        """A uniform integer in [0, k)."""
        return int(self.u() * k)


class PromptModel:
    """Draws ideas and prompts, and edits prompts, from one stream of random numbers."""

    def __init__(self, draws: Draws) -> None:
        self.d = draws

    # -- ideas ---------------------------------------------------------------------------------

    def new_idea(self) -> Idea:
        """A fresh idea: a theme and a style (plain ideas have no style)."""
        d = self.d
        u = d.u
        words = [int(u() * size) for size in _THEME_DRAWS]
        theme = tuple(tuple(words[a:b]) for a, b in _THEME_SLICES)
        if d.u() < PLAIN_SHARE:
            return theme, (), True, 0
        families = (d.below(len(_FAMILY_IDS)),)
        if d.u() < TWO_FAMILIES_P:
            families += (d.below(len(_FAMILY_IDS)),)
        return theme, families, False, d.below(3)

    def _word(self, pool: int, theme: Theme) -> int:
        u = self.d.u
        if u() < THEME_P:
            words = theme[pool]
            return words[int(u() * len(words))]
        return int(u() * _VOCAB_SIZES[pool])

    def _phrase(self, fmt: int, theme: Theme) -> Phrase:
        return (fmt, *[self._word(pool, theme) for pool in _FORMATS[fmt][1]])

    def _subject(self, idea: Idea) -> Phrase:
        d = self.d
        n = vocab.SHORT_TEMPLATES if idea[2] and d.u() < 0.5 else _N_SUBJECTS
        return self._phrase(d.below(n), idea[0])

    def _detail(self, idea: Idea) -> Phrase:
        d = self.d
        if d.u() < FIXED_DETAIL_P:
            return (_N_SUBJECTS + _N_PHRASES + d.below(len(vocab.DETAILS)),)
        return self._phrase(_N_SUBJECTS + d.below(_N_PHRASES), idea[0])

    def _modifier(self, idea: Idea) -> int:
        d = self.d
        if not idea[1] or d.u() < HEAD_P:
            return d.modifier()
        fam = _FAMILY_IDS[idea[1][d.below(len(idea[1]))]]
        # Heavy head inside a family too: its list is in rough frequency order.
        return fam[min(int(d.u() * d.u() * len(fam)), len(fam) - 1)]

    def _new_artist(self) -> int:
        d = self.d
        if d.u() < MADE_UP_ARTIST_P:
            return _N_ARTISTS + d.below(_N_NAMES)
        return min(int(d.u() * d.u() * _N_ARTISTS), _N_ARTISTS - 1)

    def prompt(self, idea: Idea) -> Prompt:
        """A first prompt for ``idea``."""
        d = self.d
        if idea[2]:
            details = (self._detail(idea),) if d.u() < 0.4 else ()
            mods = (d.modifier(),) if d.u() < 0.3 else ()
            return self._subject(idea), details, mods, ()
        n_details, n_mods = 0, 0
        for _ in range(d.mods_count()):
            if d.u() < DETAIL_SHARE:
                n_details += 1
            else:
                n_mods += 1
        details = tuple(self._detail(idea) for _ in range(n_details))
        mods = tuple(dict.fromkeys(self._modifier(idea) for _ in range(n_mods)))
        artists = tuple(dict.fromkeys(self._new_artist() for _ in range(ARTISTS_PER_IDEA[d.below(6)])))
        return self._subject(idea), details, mods, artists

    def variant(self, p: Prompt, idea: Idea) -> Prompt:
        """Another user's take on a shared prompt: a word or two of the subject changed, part of
        the details, modifiers and artists kept, own modifiers of the same style added."""
        d = self.d
        subject = list(p[0])
        for _ in range(1 + (d.u() < 0.3)):
            if len(subject) > 1:
                i = 1 + d.below(len(subject) - 1)
                subject[i] = self._word(_FORMATS[subject[0]][1][i - 1], idea[0])
        details = tuple(x for x in p[1] if d.u() < STYLE_KEEP)
        mods = [m for m in p[2] if d.u() < STYLE_KEEP]
        for _ in range(round((len(p[2]) - len(mods)) * d.u() * 2)):
            mods.insert(d.below(len(mods) + 1), self._modifier(idea))
        artists = tuple(a for a in p[3] if d.u() < STYLE_KEEP)
        return tuple(subject), details, tuple(dict.fromkeys(mods)), artists

    def new_subject(self, p: Prompt, idea: Idea) -> Prompt:
        """The same idea and style with a new subject phrase."""
        return self._subject(idea), p[1], p[2], p[3]

    def edit(self, p: Prompt, idea: Idea) -> Prompt:
        """A small edit that changes the prompt (a few tries: an edit may be a no-op)."""
        e = p
        for _ in range(4):
            e = self._edit_once(p, idea)
            if e != p:
                return e
        return e

    def _edit_once(self, p: Prompt, idea: Idea) -> Prompt:
        d = self.d
        subject, details, mods, artists = p
        op = d.below(10)
        if op <= 1 or (op <= 3 and not mods):  # add a modifier (users mostly append)
            m = self._modifier(idea)
            if m in mods:
                return p
            at = len(mods) if op == 0 else d.below(len(mods) + 1)
            return subject, details, (*mods[:at], m, *mods[at:]), artists
        if op == 2:
            i = d.below(len(mods))
            return subject, details, mods[:i] + mods[i + 1 :], artists
        if op == 3:
            i = d.below(len(mods))
            new = (*mods[:i], self._modifier(idea), *mods[i + 1 :])
            return subject, details, tuple(dict.fromkeys(new)), artists
        if op <= 6:  # change one word of the subject (adjective, noun, setting, person, ...)
            if len(subject) == 1:
                return self._subject(idea), details, mods, artists
            i = 1 + d.below(len(subject) - 1)
            s = list(subject)
            s[i] = self._word(_FORMATS[subject[0]][1][i - 1], idea[0])
            return tuple(s), details, mods, artists
        if op == 7:  # add or drop a detail phrase
            if details and d.u() < 0.5:
                i = d.below(len(details))
                return subject, details[:i] + details[i + 1 :], mods, artists
            return subject, (*details, self._detail(idea)), mods, artists
        if artists and d.u() < 0.5:
            i = d.below(len(artists))
            return subject, details, mods, artists[:i] + artists[i + 1 :]
        return subject, details, mods, tuple(dict.fromkeys((*artists, self._new_artist())))
