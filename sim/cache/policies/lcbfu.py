"""LCBFU (least computationally beneficial and frequently used), Nirvana's policy, and its variants.

Score = K x frequency of use, lowest evicted first; ties go to the entry that reached its
priority first. K is the entry's level, the denoising steps it saves. The bookkeeping is
LFU's (:class:`~sim.cache.policies.lfu.LFU`) with other amounts.

``lcbfu`` is the published score with the store counted as a use (a new entry scores K,
each hit adds K) and dynamic aging (priority L + score, L rising to each victim's priority;
see :class:`~sim.cache.policies.base.PriorityRule`). With one size for every entry this
is GDSF with cost = K (:mod:`sim.cache.policies.gdsf`, an independent implementation that
decides identically; tests hold them to it).

``lcbfu-noaging`` is the rule as the authors' artifact codes it: the frequency counts hits
only (a fresh entry scores 0) and scores never age. Anything hit once then outranks every
newcomer for good, fresh entries all tie at 0 and leave oldest first, and on a long trace
the cache freezes on what the first hours made popular (experiments/README.md shows it).

``lcbfu-modm`` / ``lcbfu-modm-noaging`` are MoDM's variant: each hit adds the K the request
asked of the candidate it was served from. The two differ on holes: a K' = 10 latent that
serves a request wanting K = 20 gains 20 rather than 10, crediting the fallback with the
compute the request hoped to save.
"""

from __future__ import annotations

from sim.cache.policies.base import PriorityRule
from sim.cache.policies.lfu import LFU


class LCBFU(LFU):
    """Nirvana's score as published: a store counts as a use, priorities age."""

    name = "lcbfu"
    rule = PriorityRule(on_insert=0, on_hit="add-level", insert_level=True, aging=True)


class LCBFUNoAging(LFU):
    """The artifact's code: hits only, no aging."""

    name = "lcbfu-noaging"
    rule = PriorityRule(on_insert=0, on_hit="add-level")


class LCBFUModm(LFU):
    """MoDM's credit: each hit adds the K the request asked of its candidate (a hole gains more
    than the level that served it); stores count and priorities age as in ``lcbfu``."""

    name = "lcbfu-modm"
    rule = PriorityRule(on_insert=0, on_hit="add-asked", insert_level=True, aging=True)


class LCBFUModmNoAging(LFU):
    """MoDM's credit on the artifact's terms: hits only, no aging."""

    name = "lcbfu-modm-noaging"
    rule = PriorityRule(on_insert=0, on_hit="add-asked")
