"""Eviction policies: one small class per policy, registered by name.

Every policy subclasses :class:`~sim.cache.policies.base.Policy` and is driven by
:class:`~sim.cache.store.LatentStore` through ``on_insert`` / ``on_hit`` / ``evict`` /
``on_remove`` hooks keyed by int entry ids.
"""

from sim.cache.policies.base import FutureUses, Policy, PolicyContext, PriorityRule
from sim.cache.policies.belady import Belady
from sim.cache.policies.fifo import FIFO
from sim.cache.policies.gdsf import GDSF
from sim.cache.policies.lcbfu import LCBFU, LCBFUModm, LCBFUModmNoAging, LCBFUNoAging
from sim.cache.policies.lfu import LFU, LFUNoAging
from sim.cache.policies.lru import LRU
from sim.cache.policies.s3fifo import S3FIFO
from sim.cache.policies.sieve import Sieve

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        FIFO,
        LRU,
        LFU,
        LFUNoAging,
        LCBFU,
        LCBFUNoAging,
        LCBFUModm,
        LCBFUModmNoAging,
        S3FIFO,
        Sieve,
        GDSF,
        Belady,
    )
}

__all__ = ["POLICIES", "FutureUses", "Policy", "PolicyContext", "PriorityRule"]
