"""LCBFU (least computationally beneficial and frequently used), Nirvana's policy.

Score = K x frequency of use, lowest score evicted first; ties go to the entry that
reached the score first (so entries never reused leave oldest first). K is the entry's
level, the denoising steps it saves; the frequency counts hits (a fresh entry scores 0).
The bookkeeping is LFU's (:class:`~sim.cache.policies.lfu.LFU`) with other increments.

``lcbfu-modm`` is MoDM's variant: each hit adds the K the request asked for. The two
differ on holes: a K' = 10 latent that serves a request wanting K = 20 gains 20 rather
than 10, crediting the fallback with the compute the request hoped to save.
"""

from __future__ import annotations

from sim.cache.policies.base import PolicyContext, PriorityRule
from sim.cache.policies.lfu import LFU


class LCBFU(LFU):
    name = "lcbfu"
    rule = PriorityRule(on_insert=0, on_hit="add-level")

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._mask = ctx.level_mask

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._b.bump(key, key & self._mask)


class LCBFUModm(LFU):
    name = "lcbfu-modm"
    rule = PriorityRule(on_insert=0, on_hit="add-asked")

    def on_hit(self, key: int, i: int, k: int) -> None:
        self._b.bump(key, k)
