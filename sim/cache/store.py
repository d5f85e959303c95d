"""Cached latents by (prompt slot, K level), with capacity accounting, eviction and holes.

An entry is one latent: the state of one generation after K denoising steps. Its key is
the int ``slot << shift | K``, where a slot is a prompt (or a (user, prompt) pair under
tenant isolation, see ``sim.systems``) and ``shift`` leaves room for every level up to N
(an image cache stores the final result at level N). For each slot the store keeps a
bitmask of its cached levels (bit K set = level K cached), so "the largest cached level
K' <= K" is one mask and one ``bit_length``.

Capacity is counted in entries (``latents``; ``bytes`` is converted to entries, since all
entries of a store have the same size) or in slots with anything cached (``prompts``).
Space is made before new entries go in, as libCacheSim does, so a generation never
evicts its own new levels. At ``prompt`` granularity evicting one entry drops every level
of its slot.

A slot may also hold a level by *reference* (:meth:`LatentStore.link`): the same bytes as
another slot's latent, at no storage cost. A generation that reused prompt p's latent at
level K followed p's trajectory up to K, so its latents at levels <= K are p's. An entry
is one stored latent: capacity, ``entries`` and the policy count latents, not references;
a hit through a reference is a use of the latent it points to; evicting a latent takes it
from every slot that references it. ``masks`` show every level a slot can serve, its own
and referenced ones alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim.cache.policies.base import Policy


class LatentStore:
    """The cache contents; a :class:`Policy` chooses the victims.

    Args:
        policy: orders the entries.
        shift: bits reserved for the level in a key (levels must be < ``1 << shift``).
        capacity: how many entries (``unit="entries"``) or slots (``unit="prompts"``) fit.
        unit: ``"entries"`` or ``"prompts"``.
        granularity: ``"latent"`` evicts one entry, ``"prompt"`` all entries of the victim's slot.
        batch: entries evicted at once when space runs out (GPTCache evicts a fraction at once).
    """

    __slots__ = (
        "policy",
        "shift",
        "capacity",
        "by_prompts",
        "whole_prompt",
        "batch",
        "masks",
        "entries",
        "insertions",
        "evictions",
        "hits",
        "links",
        "refs",
        "holders",
        "group_sizes",
        "_group_of",
        "_groups",
    )

    def __init__(
        self,
        policy: Policy,
        shift: int,
        capacity: int,
        unit: str = "entries",
        granularity: str = "latent",
        batch: int = 1,
    ) -> None:
        if unit not in ("entries", "prompts"):
            raise ValueError(f"unit must be 'entries' or 'prompts', not {unit!r}")
        if granularity not in ("latent", "prompt"):
            raise ValueError(f"granularity must be 'latent' or 'prompt', not {granularity!r}")
        self.policy = policy
        self.shift = shift
        self.capacity = max(int(capacity), 0)
        self.by_prompts = unit == "prompts"
        self.whole_prompt = granularity == "prompt"
        self.batch = max(int(batch), 1)
        self.masks: dict[int, int] = {}  # slot -> bitmask of cached levels
        self.entries = 0
        self.insertions = 0
        self.evictions = 0
        self.hits = 0
        self.links = 0  # references made (levels shared, not stored)
        self.refs: dict[int, int] = {}  # entry key held by reference -> key of the latent it shares
        # latent key -> slots that reference it (may list stale ones); None: to be derived from refs
        self.holders: dict[int, list[int]] | None = {}
        # The cached slots by group, when indexed (index_groups): sizes per group, and the slots.
        self.group_sizes: np.ndarray | None = None
        self._group_of: np.ndarray | None = None
        self._groups: list[set[int]] = []

    def index_groups(self, group_of: np.ndarray, n_groups: int) -> None:
        """Keep the cached slots by group (``group_of[slot]``, below ``n_groups``), so that a search
        can visit some groups (:meth:`group`, ``group_sizes``) without reading the whole cache."""
        self._group_of = np.asarray(group_of)
        self._groups = [set() for _ in range(n_groups)]
        self.group_sizes = np.zeros(n_groups, np.int64)
        for slot in self.masks:
            self._grouped(slot)

    def group(self, g: int) -> set[int]:
        """The cached slots of group ``g`` (see :meth:`index_groups`); do not modify."""
        return self._groups[g]

    def _grouped(self, slot: int) -> None:
        g = int(self._group_of[slot])
        self._groups[g].add(slot)
        self.group_sizes[g] += 1

    def _ungrouped(self, slot: int) -> None:
        g = int(self._group_of[slot])
        self._groups[g].discard(slot)
        self.group_sizes[g] -= 1

    def __contains__(self, key: int) -> bool:
        m = self.masks.get(key >> self.shift)
        return m is not None and bool(m >> (key & ((1 << self.shift) - 1)) & 1)

    def load_state(
        self,
        masks: dict[int, int],
        counters: tuple[int, int, int, int],
        order: tuple[list[int], list[int], list[int], int],
        refs: dict[int, int],
    ) -> None:
        """Replace the contents by ``masks`` (slot -> levels it can serve) and ``refs`` (entry key
        held by reference -> latent key) with ``counters`` (entries, insertions, evictions, links),
        and the policy's state by ``order`` (keys in eviction order, their priorities and scores,
        the inflation value; see ``Policy.restore``). The compiled replay hands its final state
        back this way, so lookups continue exactly where it stopped."""
        self.masks = masks
        self.entries, self.insertions, self.evictions, self.links = counters
        self.refs = refs
        self.holders = None  # derived when first needed: most replays end here
        self.policy.restore(*order)
        if self.group_sizes is not None:
            self.index_groups(self._group_of, len(self._groups))

    def _holders(self) -> dict[int, list[int]]:
        """Latent key -> slots that reference it, derived from ``refs`` after :meth:`load_state`."""
        if self.holders is None:
            self.holders = {}
            for key, latent in self.refs.items():
                self.holders.setdefault(latent, []).append(key >> self.shift)
        return self.holders

    def latent_of(self, slot: int, level: int) -> int:
        """Key of the stored latent behind (``slot``, ``level``): its own, or the one it references."""
        key = slot << self.shift | level
        return self.refs.get(key, key)

    def prompts(self) -> int:
        """Number of slots with at least one cached level."""
        return len(self.masks)

    def best_level(self, slot: int, k: int) -> int:
        """The largest cached level <= ``k`` of ``slot``, or -1 when there is none."""
        m = self.masks.get(slot, 0) & ((2 << k) - 1)
        return m.bit_length() - 1

    def hit(self, slot: int, level: int, i: int, k: int | None = None) -> None:
        """Request ``i``, which asked for level ``k`` (default ``level``), was served (slot, level)."""
        self.hits += 1
        self.policy.on_hit(self.latent_of(slot, level), i, level if k is None else k)

    def insert(self, slot: int, levels: tuple[int, ...], i: int) -> None:
        """Store the given levels of ``slot`` (levels already cached are left alone)."""
        if not levels or not self.capacity:
            return
        masks = self.masks
        m = masks.get(slot, 0)
        new = [k for k in levels if not m >> k & 1] if m else levels
        n = len(new)
        if not n:
            return
        if self.by_prompts:
            if not m and len(masks) >= self.capacity:
                self._make_room(slot, n, i)
                m = masks.get(slot, 0)
        elif self.entries + n > self.capacity:
            if n > self.capacity:
                new = sorted(new)[-self.capacity :]  # a tiny cache keeps the levels that save most
                n = len(new)
            if self.entries + n > self.capacity:
                self._make_room(slot, n, i)
                m = masks.get(slot, 0)
        for k in new:
            m |= 1 << k
        self.policy.on_insert_levels(slot << self.shift, new, i)
        if self.group_sizes is not None and slot not in masks:
            self._grouped(slot)
        masks[slot] = m
        self.entries += n
        self.insertions += n

    def link(self, slot: int, source: int, max_level: int, i: int) -> None:
        """Let ``slot`` share ``source``'s levels <= ``max_level`` that it lacks, by reference.

        References cost no storage; counted in ``prompts`` a new slot still needs room, which
        is made first (so only what survives is shared).
        """
        if not self.capacity:
            return
        masks = self.masks
        m = masks.get(slot, 0)
        want = masks.get(source, 0) & ((2 << max_level) - 1) & ~m
        if not want:
            return
        if self.by_prompts and not m and len(masks) >= self.capacity:
            self._make_room(slot, 0, i)
            m = masks.get(slot, 0)
            want = masks.get(source, 0) & ((2 << max_level) - 1) & ~m
            if not want:
                return
        refs = self.refs
        holders = self.holders if self.holders is not None else self._holders()
        src, dst = source << self.shift, slot << self.shift
        if self.group_sizes is not None and not m:
            self._grouped(slot)
        masks[slot] = m | want
        n = 0
        while want:
            k = want.bit_length() - 1
            want ^= 1 << k
            latent = refs.get(src | k, src | k)
            refs[dst | k] = latent
            sharing = holders.get(latent)
            if sharing is None:
                holders[latent] = [slot]
            else:
                sharing.append(slot)
            n += 1
        self.links += n

    def _over(self, slot: int, n_new: int) -> bool:
        if self.by_prompts:
            return len(self.masks) + (slot not in self.masks) > self.capacity
        return self.entries + n_new > self.capacity

    def _make_room(self, slot: int, n_new: int, i: int) -> None:
        if not self.by_prompts and not self.whole_prompt:
            # The number of victims is known: take them in one call.
            need = max(self.entries + n_new - self.capacity, self.batch)
            self._drop(self.policy.evict_n(min(need, self.entries), i))
            return
        # One victim at a time: at prompt granularity a victim takes its slot's other levels
        # along. Batch eviction frees `batch` entries first, then continues while needed.
        target = self.entries - min(self.batch, self.entries)
        while self.entries > target or self._over(slot, n_new):
            self._drop(self.policy.evict_n(1, i))

    def _drop(self, keys: list[int]) -> None:
        """Forget evicted latents, in every slot that shares them (and, at prompt granularity,
        their slots' other levels: own latents are evicted, references let go)."""
        masks, shift = self.masks, self.shift
        level_mask = (1 << shift) - 1
        whole_prompt = self.whole_prompt
        holders = self._holders() if self.refs else {}
        removed = 0
        for key in keys:
            slot = key >> shift
            m = masks[slot] & ~(1 << (key & level_mask))
            removed += 1
            if holders and key in holders:
                self._unshare(key)
            if m and whole_prompt:
                base = slot << shift
                on_remove = self.policy.on_remove
                refs = self.refs
                while m:
                    k = m.bit_length() - 1
                    m &= ~(1 << k)
                    own = base | k
                    if refs.pop(own, None) is None:  # its own latent: it leaves the store
                        on_remove(own)
                        removed += 1
                        if own in holders:
                            self._unshare(own)
            self._set_mask(slot, m)
        self.entries -= removed
        self.evictions += removed

    def _unshare(self, key: int) -> None:
        """The latent ``key`` left the store: every slot that referenced it loses that level."""
        shift, refs, masks = self.shift, self.refs, self.masks
        level = key & ((1 << shift) - 1)
        bit = 1 << level
        for slot in self._holders().pop(key):
            held = slot << shift | level
            if refs.get(held) == key:  # not let go or replaced since
                del refs[held]
                self._set_mask(slot, masks[slot] & ~bit)

    def _set_mask(self, slot: int, m: int) -> None:
        """``slot`` now holds the levels of ``m``; with none left it leaves the store."""
        if m:
            self.masks[slot] = m
        else:
            del self.masks[slot]
            if self.group_sizes is not None:
                self._ungrouped(slot)
