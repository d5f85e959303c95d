"""LCBFU (least computationally beneficial and frequently used), Nirvana's policy.

Score = K x frequency of use, lowest score evicted first; ties go to the entry that
reached the score first (so entries never reused leave oldest first). K is the entry's
level, the denoising steps it saves; the frequency counts hits (a fresh entry scores 0).

``lcbfu-modm`` is MoDM's variant: each hit adds the K the request asked for. The two
differ on holes: a K' = 10 latent that serves a request wanting K = 20 gains 20 rather
than 10, crediting the fallback with the compute the request hoped to save.
"""

from __future__ import annotations

from sim.cache.policies.base import Policy, PolicyContext, PriorityRule
from sim.cache.policies.buckets import PriorityBuckets


class LCBFU(Policy):
    name = "lcbfu"
    rule = PriorityRule(on_insert=0, on_hit="add-level")

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._b = PriorityBuckets()
        self._mask = ctx.level_mask

    def on_insert(self, key: int, i: int) -> None:
        self._b.add(key, 0)

    def on_insert_levels(self, base: int, levels: list[int] | tuple[int, ...], i: int) -> None:
        self._b.add_levels(base, levels, 0)

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._b.bump(key, key & self._mask)

    def evict(self, i: int) -> int:
        return self._b.pop_min()

    def evict_n(self, n: int, i: int) -> list[int]:
        return self._b.pop_min_n(n)

    def on_remove(self, key: int) -> None:
        self._b.discard(key)

    def restore(self, keys: list[int], priorities: list[int]) -> None:
        self._b = PriorityBuckets.of(keys, priorities)

    def __len__(self) -> int:
        return len(self._b)


class LCBFUModm(LCBFU):
    name = "lcbfu-modm"
    rule = PriorityRule(on_insert=0, on_hit="add-asked")

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._b.bump(key, k)
