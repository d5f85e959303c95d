"""LFU: evict the least used entry; ties go to the entry that reached its priority first.

``lfu`` is LFU with dynamic aging (LFU-DA, Arlitt et al., "Evaluating content management
techniques for Web proxy caches", 2000): an entry's score is its use count (the store counts
as one use), its priority is L + score, set when it is stored or hit, and the inflation
value L rises to the priority of every victim. Without aging, anything hit a few times
outranks every newcomer for good: on a long trace the cache fills with entries popular in
its first hours and stops admitting anything new for long enough to be reused.

``lfu-noaging`` is the literal rule without aging, libCacheSim's LFU: a count that starts
at 1 when stored, gains 1 per hit and is forgotten when the entry leaves, so hit ratios
agree exactly with it (tests/test_libcachesim_agreement.py). It is kept to show that
collapse.

The bookkeeping (integer priorities, FIFO among equals, the rule's score and aging) is
shared by the LCBFU policies, which score other amounts.
"""

from __future__ import annotations

from sim.cache.policies.base import Policy, PolicyContext, PriorityRule
from sim.cache.policies.buckets import PriorityBuckets


class LFU(Policy):
    """Entries in priority buckets, scored and aged as :attr:`rule` says (see PriorityRule)."""

    name = "lfu"
    rule = PriorityRule(on_insert=1, on_hit="add-one", aging=True)

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._b = PriorityBuckets()
        self._mask = ctx.level_mask
        rule = self.rule
        self._aging = rule.aging
        self._score: dict[int, int] = {}  # aging only: without it the priority is the score
        self._inflation = 0
        self._add_level = rule.on_hit == "add-level"
        self._add_asked = rule.on_hit == "add-asked"

    def _initial(self, key: int) -> int:
        rule = self.rule
        return rule.on_insert + (key & self._mask if rule.insert_level else 0)

    def on_insert(self, key: int, i: int) -> None:
        score = self._initial(key)
        if self._aging:
            self._score[key] = score
            self._b.add(key, self._inflation + score)
        else:
            self._b.add(key, score)

    def on_insert_levels(self, base: int, levels: list[int] | tuple[int, ...], i: int) -> None:
        rule = self.rule
        if not (self._aging or rule.insert_level):
            self._b.add_levels(base, levels, rule.on_insert)
            return
        add, score = self._b.add, self._score
        per_level = 1 if rule.insert_level else 0
        for k in levels:
            s = rule.on_insert + per_level * k
            if self._aging:
                score[base | k] = s
                s += self._inflation
            add(base | k, s)

    def on_hit(self, key: int, i: int, k: int) -> None:
        delta = (key & self._mask) if self._add_level else k if self._add_asked else 1
        if self._aging:
            score = self._score[key] + delta
            self._score[key] = score
            self._b.bump(key, self._inflation + score - self._b.priority(key))
        else:
            self._b.bump(key, delta)

    def _forget(self, keys: list[int]) -> list[int]:
        if self._aging and keys:
            self._inflation = max(self._inflation, self._b.last)
            score = self._score
            for key in keys:
                del score[key]
        return keys

    def evict(self, i: int) -> int:
        return self._forget([self._b.pop_min()])[0]

    def evict_n(self, n: int, i: int) -> list[int]:
        return self._forget(self._b.pop_min_n(n))

    def on_remove(self, key: int) -> None:
        self._b.discard(key)
        self._score.pop(key, None)

    def restore(self, keys: list[int], priorities: list[int], scores: list[int], inflation: int) -> None:
        self._b = PriorityBuckets.of(keys, priorities)
        self._score = dict(zip(keys, scores, strict=True)) if self._aging else {}
        self._inflation = inflation

    def __len__(self) -> int:
        return len(self._b)


class LFUNoAging(LFU):
    """LFU without aging: libCacheSim's LFU (a count from 1, +1 per hit, no inflation)."""

    name = "lfu-noaging"
    rule = PriorityRule(on_insert=1, on_hit="add-one")
