"""S3-FIFO (Yang et al., SOSP 2023): a small probation FIFO, a main FIFO and a ghost list.

With the paper's parameters, as libCacheSim's ``S3FIFO`` sets them (``small_size_ratio`` 0.1,
``ghost_size_ratio`` 0.9, ``move_to_main_threshold`` 2), so that exact-match hit ratios equal
libCacheSim's (tests/test_libcachesim_agreement.py). Sizes are shares of the entries resident
when space is made, which is the capacity in entries for a full cache, whatever unit the store
counts its capacity in:

* new entries enter the small queue, or the main queue when the ghost list remembers their key;
* a hit raises a counter (kept at most 3: only "at least 2" and "min(count, 3) - 1" are read);
* space is made from the main queue while the small one holds fewer than 10% of the resident
  entries (or is empty), else from the small queue: its oldest entry moves to main when hit at
  least twice (and the next oldest is tried), or leaves and is remembered by the ghost list;
* the main queue's oldest entry is reinserted with its counter less one while the counter is
  positive, else it leaves;
* the ghost list is a FIFO of 90% of the resident entries' keys. A key it remembers is looked up
  before the space for its entry is made (as libCacheSim's lookup removes it from the ghost list
  first), so the list is trimmed to its size when the next entry goes in, after that look-up.
"""

from __future__ import annotations

from collections import OrderedDict

from sim.cache.policies.base import Policy, PolicyContext

SMALL_FRACTION = 0.1
GHOST_FRACTION = 0.9
MAX_FREQ = 3
PROMOTE_FREQ = 2


class S3FIFO(Policy):
    name = "s3fifo"

    def __init__(self, ctx: PolicyContext) -> None:
        super().__init__(ctx)
        self._small: OrderedDict[int, None] = OrderedDict()  # oldest first
        self._main: OrderedDict[int, None] = OrderedDict()
        self._ghost: OrderedDict[int, None] = OrderedDict()
        self._ghost_size = 0
        self._freq: dict[int, int] = {}

    def on_insert(self, key: int, i: int) -> None:
        self._freq[key] = 0
        ghost = self._ghost
        if key in ghost:
            del ghost[key]
            self._main[key] = None
        else:
            self._small[key] = None
        while len(ghost) > self._ghost_size:
            ghost.popitem(last=False)

    def on_hit(self, key: int, i: int, k: int) -> None:
        f = self._freq[key]
        if f < MAX_FREQ:
            self._freq[key] = f + 1

    def evict(self, i: int) -> int:
        resident = len(self._freq)
        self._ghost_size = int(GHOST_FRACTION * resident)
        if len(self._small) >= max(int(SMALL_FRACTION * resident), 1):
            key = self._evict_small()
            if key is not None:
                return key
        return self._evict_main()

    def _evict_small(self) -> int | None:
        """The small queue's victim, promoting to main the entries hit at least twice on the way;
        None when every entry in it was promoted."""
        small, freq = self._small, self._freq
        while small:
            key = small.popitem(last=False)[0]
            if freq[key] >= PROMOTE_FREQ:
                freq[key] = 0
                self._main[key] = None
                continue
            del freq[key]
            if self._ghost_size:
                self._ghost[key] = None
            return key
        return None

    def _evict_main(self) -> int:
        main, freq = self._main, self._freq
        while True:
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
