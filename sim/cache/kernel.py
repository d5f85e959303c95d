"""The cache-only replay of nirvana, compiled, for policies that evict by (priority, age).

FIFO, LRU, LFU, LCBFU and LCBFU-MoDM all evict the entry of lowest priority, the one that
reached its priority first among equals; they differ only in what a store and a hit do to
the priority (their :class:`~sim.cache.policies.base.PriorityRule`). That shared shape runs
here as one numba loop over flat arrays: the candidate walk, the hole fallback, the hit's
bookkeeping and the insertion with its evictions, with a lazily cleaned binary heap keyed
by (priority, sequence number) in place of the policies' ordered dicts.

The loop gives exactly the decisions, cache contents and counters of
``Nirvana.lookup`` + ``Nirvana.complete`` (tests hold it to that for every supported
policy). It stops at a request whose listed candidates are all gone from a truncated list,
so that Python can search the cached prompts exactly (``NeighbourLists.nearest_among``), and
resumes with the answer. Slots are renumbered densely (``Candidates.dense_of``) so that
per-slot state fits in arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from sim.cache.policies.base import PriorityRule

HIT_RULES = ("keep", "requeue", "add-one", "add-level", "add-asked")
_KEEP, _REQUEUE, _ADD_ONE, _ADD_LEVEL, _ADD_ASKED = range(len(HIT_RULES))

# Slots of the state vector shared by Python and the kernel between calls.
_HEAP, _SEQ, _ENTRIES, _INSERTIONS, _EVICTIONS, _PROMPTS = range(6)

MISS, HIT, HOLE = 0, 1, 2  # outcome codes in the kernel's output (mapped by the caller)


@dataclass
class Candidates:
    """The neighbour lists as the kernel walks them (CSR over requests, best first).

    The walk of request i stops at its first entry with K < 0 (below the selector's floor:
    the rest is lower still) or at the first entry whose dense slot ``dense_of[ids[j]]``
    holds anything; entries whose slot is -1 can never be cached and are skipped. A walk
    that runs off the end of an incomplete row needs the exhaustive search.
    """

    offsets: np.ndarray  # int64 (n + 1)
    ids: np.ndarray  # int32, looked up in dense_of
    ks: np.ndarray  # int16, the selector's K (0: a miss that still decides; < 0: the floor)
    sims: np.ndarray  # float32
    complete: np.ndarray  # bool (n): the row lists every candidate above the floor
    dense_of: np.ndarray  # int32: id -> dense slot, -1 when no request ever stores it


@dataclass
class KernelResult:
    """Record columns plus the final cache state, in dense slots."""

    code: np.ndarray  # int8: MISS / HIT / HOLE
    matched: np.ndarray  # int64 dense slot served from, -1 when none
    similarity: np.ndarray  # float64
    k_planned: np.ndarray  # int64
    k_used: np.ndarray  # int64
    occ_entries: np.ndarray  # int64 per occupancy sample
    occ_prompts: np.ndarray  # int64 per occupancy sample
    masks: np.ndarray  # int64 per dense slot: bit K set = level K cached
    live_keys: np.ndarray  # int64 (dense slot, level index) entries in eviction order ...
    live_prio: np.ndarray  # ... with their priorities
    entries: int
    insertions: int
    evictions: int


def replay(
    n: int,
    stride: int,
    cand: Candidates,
    own: np.ndarray,
    ladder: tuple[int, ...],
    store_on_hit: bool,
    capacity: int,
    rule: PriorityRule,
    more: Callable[[int, np.ndarray], tuple[int, float, int]],
    admit: np.ndarray | None = None,
) -> KernelResult:
    """Replay requests 0..n-1 (see the module docstring).

    ``own``: dense slot of each request's own prompt; ``ladder``: the K levels, ascending;
    ``capacity``: entries (> 0); ``more(i, masks)``: the fallback search of request i given
    the current masks, as (dense slot or -1, similarity, K); ``admit``: bool per request, False
    where the generation stores nothing (``sim.cache.admission``; default: all admitted).
    """
    admit = np.ones(n, np.bool_) if admit is None else np.ascontiguousarray(admit[:n], dtype=np.bool_)
    n_slots = int(own.max()) + 1 if n else 1
    n_levels = len(ladder)
    levels = np.asarray(ladder, dtype=np.int64)
    level_index = np.full(int(levels.max()) + 1, -1, np.int64)
    level_index[levels] = np.arange(n_levels)
    # Every push is a store or a hit; a heap larger than all of them never needs cleaning.
    heap_size = min(2 * capacity, n * (n_levels + 1)) + 64
    hp = np.zeros(heap_size, np.int64)
    hs = np.zeros(heap_size, np.int64)
    he = np.zeros(heap_size, np.int64)
    prio = np.zeros(n_slots * n_levels, np.int64)
    seq = np.full(n_slots * n_levels, -1, np.int64)
    masks = np.zeros(n_slots, np.int64)
    state = np.zeros(6, np.int64)
    n_samples = -(-n // stride)
    out = KernelResult(
        code=np.zeros(n, np.int8),
        matched=np.full(n, -1, np.int64),
        similarity=np.full(n, np.nan),
        k_planned=np.zeros(n, np.int64),
        k_used=np.zeros(n, np.int64),
        occ_entries=np.zeros(n_samples, np.int64),
        occ_prompts=np.zeros(n_samples, np.int64),
        masks=masks,
        live_keys=np.zeros(0, np.int64),
        live_prio=np.zeros(0, np.int64),
        entries=0,
        insertions=0,
        evictions=0,
    )
    args = (
        cand.offsets,
        cand.ids,
        cand.ks,
        cand.sims,
        cand.complete,
        cand.dense_of,
        own,
        admit,
        levels,
        level_index,
        store_on_hit,
        capacity,
        rule.on_insert,
        HIT_RULES.index(rule.on_hit),
        stride,
        masks,
        prio,
        seq,
        hp,
        hs,
        he,
        state,
        out.code,
        out.matched,
        out.similarity,
        out.k_planned,
        out.k_used,
        out.occ_entries,
        out.occ_prompts,
    )
    i, forced = 0, (-2, np.nan, 0)  # slot -2: no fallback answer to resume with
    while i < n:
        i = _run(i, n, forced[0], forced[1], forced[2], *args)
        if i < n:
            forced = more(i, masks)
    live = np.flatnonzero(seq >= 0)
    order = np.lexsort((seq[live], prio[live]))
    out.live_keys, out.live_prio = live[order], prio[live][order]
    out.entries, out.insertions, out.evictions = (int(x) for x in state[_ENTRIES : _EVICTIONS + 1])
    return out


@numba.njit(cache=True, nogil=True)
def _sift_down(hp, hs, he, size, j):  # pragma: no cover - compiled
    """Move the entry at j down to its place (children move up into the hole)."""
    p, s, e = hp[j], hs[j], he[j]
    while True:
        c = 2 * j + 1
        if c >= size:
            break
        if c + 1 < size and (hp[c + 1] < hp[c] or (hp[c + 1] == hp[c] and hs[c + 1] < hs[c])):
            c += 1
        if not (hp[c] < p or (hp[c] == p and hs[c] < s)):
            break
        hp[j], hs[j], he[j] = hp[c], hs[c], he[c]
        j = c
    hp[j], hs[j], he[j] = p, s, e


@numba.njit(cache=True, nogil=True)
def _push(hp, hs, he, seq, state, p, s, e):  # pragma: no cover - compiled
    size = state[_HEAP]
    if size == len(hp):
        # Drop stale entries (superseded by a later push or evicted), then re-heapify.
        w = 0
        for r in range(size):
            if seq[he[r]] == hs[r]:
                hp[w], hs[w], he[w] = hp[r], hs[r], he[r]
                w += 1
        size = w
        for j in range(size // 2 - 1, -1, -1):
            _sift_down(hp, hs, he, size, j)
    j = size
    while j > 0:
        parent = (j - 1) // 2
        if not (p < hp[parent] or (p == hp[parent] and s < hs[parent])):
            break
        hp[j], hs[j], he[j] = hp[parent], hs[parent], he[parent]
        j = parent
    hp[j], hs[j], he[j] = p, s, e
    state[_HEAP] = size + 1


@numba.njit(cache=True, nogil=True)
def _pop_live(hp, hs, he, seq, state):  # pragma: no cover - compiled
    """Remove and return the live entry of lowest (priority, sequence)."""
    while True:
        size = state[_HEAP]
        e, s = he[0], hs[0]
        size -= 1
        hp[0], hs[0], he[0] = hp[size], hs[size], he[size]
        state[_HEAP] = size
        _sift_down(hp, hs, he, size, 0)
        if seq[e] == s:
            return e


@numba.njit(cache=True, nogil=True)
def _run(  # pragma: no cover - compiled
    lo,
    n,
    forced_slot,
    forced_sim,
    forced_k,
    offsets,
    cids,
    cks,
    csims,
    complete,
    dense_of,
    own,
    admit,
    levels,
    level_index,
    store_on_hit,
    capacity,
    insert_prio,
    hit_rule,
    stride,
    masks,
    prio,
    seq,
    hp,
    hs,
    he,
    state,
    code,
    matched,
    similarity,
    k_planned,
    k_used,
    occ_entries,
    occ_prompts,
):
    """Requests lo..n-1; returns the first request that needs the exhaustive search (or n)."""
    n_levels = len(levels)
    new = np.empty(n_levels, np.int64)
    for i in range(lo, n):
        slot = -1
        s = np.nan
        k = 0
        if i == lo and forced_slot != -2:
            # Resuming after a fallback: the exhaustive search answered for this request.
            slot, s, k = forced_slot, forced_sim, forced_k
        else:
            cut = False
            for j in range(offsets[i], offsets[i + 1]):
                if cks[j] < 0:
                    cut = True
                    break
                d = dense_of[cids[j]]
                if d >= 0 and masks[d] != 0:
                    slot, s, k = d, csims[j], cks[j]
                    break
            if slot < 0 and not cut and not complete[i]:
                return i
        first_stored = 0  # store every level (a miss)
        if slot >= 0:
            similarity[i] = s
            if k > 0:
                k_planned[i] = k
                m = masks[slot] & ((2 << k) - 1)
                if m != 0:
                    ku = 63
                    while not (m >> ku) & 1:
                        ku -= 1
                    e = slot * n_levels + level_index[ku]
                    if hit_rule != _KEEP:
                        if hit_rule == _ADD_ONE:
                            prio[e] += 1
                        elif hit_rule == _ADD_LEVEL:
                            prio[e] += ku
                        elif hit_rule == _ADD_ASKED:
                            prio[e] += k
                        seq[e] = state[_SEQ]
                        state[_SEQ] += 1
                        _push(hp, hs, he, seq, state, prio[e], seq[e], e)
                    code[i] = HIT if ku == k else HOLE
                    matched[i] = slot
                    k_used[i] = ku
                    first_stored = level_index[ku] + 1 if store_on_hit else n_levels
        if not admit[i]:
            first_stored = n_levels  # not admitted: the generation stores nothing
        # complete(i): store the levels this generation passed that are not cached yet.
        o = own[i]
        m = masks[o]
        nl = 0
        for x in range(first_stored, n_levels):
            if not (m >> levels[x]) & 1:
                new[nl] = x
                nl += 1
        if nl > 0:
            start = 0
            if state[_ENTRIES] + nl > capacity:
                if nl > capacity:
                    start = nl - capacity  # a tiny cache keeps the levels that save most
                if state[_ENTRIES] + nl - start > capacity:
                    victims = state[_ENTRIES] + nl - start - capacity
                    for _ in range(victims):
                        e = _pop_live(hp, hs, he, seq, state)
                        seq[e] = -1
                        vs = e // n_levels
                        masks[vs] &= ~(np.int64(1) << levels[e % n_levels])
                        if masks[vs] == 0:
                            state[_PROMPTS] -= 1
                    state[_ENTRIES] -= victims
                    state[_EVICTIONS] += victims
                    m = masks[o]
            was_empty = m == 0
            for r in range(start, nl):
                x = new[r]
                m |= np.int64(1) << levels[x]
                e = o * n_levels + x
                prio[e] = insert_prio
                seq[e] = state[_SEQ]
                state[_SEQ] += 1
                _push(hp, hs, he, seq, state, insert_prio, seq[e], e)
            if was_empty:
                state[_PROMPTS] += 1
            masks[o] = m
            state[_ENTRIES] += nl - start
            state[_INSERTIONS] += nl - start
        if (i + 1) % stride == 0 or i == n - 1:
            occ_entries[i // stride] = state[_ENTRIES]
            occ_prompts[i // stride] = state[_PROMPTS]
    return n
