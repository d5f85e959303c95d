"""S3-FIFO (Yang et al., SOSP 2023): a small probation FIFO, a main FIFO and a ghost list.

New entries enter the small queue (10% of the resident entries), or the main queue when
their key is remembered by the ghost list. Hits raise a 2-bit counter (max 3). Evicting
from the small queue promotes entries hit at least twice to main and remembers the rest
in the ghost list; evicting from main reinserts entries with a non-zero counter
(decremented), as in the paper's Algorithm 1.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import Policy, PolicyContext

SMALL_FRACTION = 0.1
MAX_FREQ = 3
PROMOTE_FREQ = 2


class S3FIFO(Policy):
    name = "s3fifo"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._small: OrderedDict[int, None] = OrderedDict()  # oldest first
        self._main: OrderedDict[int, None] = OrderedDict()
        self._ghost: OrderedDict[int, None] = OrderedDict()
        self._freq: dict[int, int] = {}

    def on_insert(self, key: int, i: int) -> None:
        self._freq[key] = 0
        if key in self._ghost:
            del self._ghost[key]
            self._main[key] = None
        else:
            self._small[key] = None

    def on_hit(self, key: int, i: int, k: int) -> None:
        f = self._freq[key]
        if f < MAX_FREQ:
            self._freq[key] = f + 1

    def evict(self, i: int) -> int:
        small, main, ghost, freq = self._small, self._main, self._ghost, self._freq
        while True:
            if small and (len(small) >= SMALL_FRACTION * (len(small) + len(main)) or not main):
                key = small.popitem(last=False)[0]
                if freq[key] >= PROMOTE_FREQ:
                    freq[key] = 0
                    main[key] = None
                    continue
                del freq[key]
                ghost[key] = None
                # The ghost list remembers about as many keys as the main queue holds.
                while len(ghost) > max(len(main), 1):
                    ghost.popitem(last=False)
                return key
            key = main.popitem(last=False)[0]
            f = freq[key]
            if f > 0:
                freq[key] = f - 1
                main[key] = None
                continue
            del freq[key]
            return key

    def on_remove(self, key: int) -> None:
        del self._freq[key]
        if key in self._small:
            del self._small[key]
        else:
            del self._main[key]

    def __len__(self) -> int:
        return len(self._freq)
