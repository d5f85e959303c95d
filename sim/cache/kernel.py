"""The cache-only replay of nirvana, compiled, for policies that evict by (priority, age).

FIFO, LRU, the LFU and LCBFU families all evict the entry of lowest priority, the one that
reached its priority first among equals; they differ only in what a store and a hit do to
an entry's score and whether priorities age (their
:class:`~sim.cache.policies.base.PriorityRule`). That shared shape runs here as one numba
loop over flat arrays: the candidate walk, the hit's bookkeeping, the insertion with its
evictions and the trajectory a hit shares, with a binary heap keyed by (priority, sequence
number) in place of the policies' ordered dicts. A hit only raises an entry's key in the
arrays (keys never fall: scores grow, L never falls, sequence numbers grow); the heap item keeps
the old key until it reaches the top, and is then put back with the current one. Victims come
out in the same order as with a heap updated on every hit, at a push per eviction instead of
one per hit.

The walk is ``Nirvana.lookup``'s: candidates most similar first; each offers the largest
level it holds at or below the K its similarity allows; the request takes the one that
skips most steps (ties: the more similar), and the walk stops as soon as a candidate's K
cannot beat that (the ladder only falls with similarity). The loop gives exactly the
decisions, cache contents and counters of ``Nirvana.lookup`` + ``Nirvana.complete`` (tests
hold it to that for every supported policy and trajectory option). A request whose truncated
list ran out before settling is decided here too, over every cached prompt of its partition
with exact similarities (:class:`Exhaustive`, :func:`decide`: the request loop's fallback
calls the same functions, so both round and decide alike). With ``ivf`` lists and more cached
prompts than the partition's budget, the search probes the cells nearest the request
(:func:`sim.neighbours.ivf.probe`) instead of every cached prompt; the cached slots are kept per cell so
that a fallback costs the probed cells, not the whole cache. Slots are renumbered densely
(``Candidates.dense_of``) so that per-slot state fits in arrays; an entry is a (dense slot,
level index) pair ``slot * n_levels + index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from sim.neighbours.ivf import probe
from sim.neighbours.similarity import similarities_to
from sim.selector import k_of

if TYPE_CHECKING:
    from sim.cache.policies.base import PriorityRule
    from sim.neighbours.ivf import Cells

HIT_RULES = ("keep", "requeue", "add-one", "add-level", "add-asked")
_KEEP, _REQUEUE, _ADD_ONE, _ADD_LEVEL, _ADD_ASKED = range(len(HIT_RULES))
TRAJECTORIES = ("computed", "reference", "copy")  # cache.trajectory, in kernel codes
_COMPUTED, _REFERENCE, _COPY = range(len(TRAJECTORIES))

# Slots of the state vector shared by Python and the kernel between calls.
_HEAP, _SEQ, _ENTRIES, _INSERTIONS, _EVICTIONS, _PROMPTS, _INFLATION, _LINKS, _FALLBACKS = range(9)

MISS, HIT, HOLE = 0, 1, 2  # outcome codes in the kernel's output (mapped by the caller)

# An exhaustive decision: (position served from or -1, its similarity, level used, K planned,
# similarity of the nearest cached candidate, K asked of the served candidate).
Fallback = tuple[int, float, int, int, float, int]


@dataclass
class Candidates:
    """The neighbour lists as the kernel walks them (CSR over requests, best first).

    The walk of request i stops at its first entry whose K cannot beat the best level found
    so far (K < 0 marks the selector's floor) and skips entries whose dense slot
    ``dense_of[ids[j]]`` is -1 (never cached) or holds nothing. A walk that runs off the end
    of an incomplete row without settling needs the exhaustive search.
    """

    offsets: np.ndarray  # int64 (n + 1)
    ids: np.ndarray  # int32, looked up in dense_of
    ks: np.ndarray  # int8 or int16, the selector's K (0: no reuse; < 0: below the floor)
    sims: np.ndarray  # float32
    complete: np.ndarray  # bool (n): the row lists every candidate above the floor
    dense_of: np.ndarray  # int32: id -> dense slot, -1 when no request ever stores it


@dataclass
class Exhaustive:
    """What the loop needs to decide a request over every cached prompt of its partition.

    A dense slot ``g`` holds prompt ``slot_prompt[g]`` of partition ``slot_part[g]`` (a user
    under per-user isolation, else 0); request i asks for prompt ``req_prompt[i]`` in partition
    ``req_part[i]``. Similarities are rows of ``embeddings`` (:mod:`sim.neighbours.similarity`), K comes
    from the selector's ``rule`` (:func:`sim.selector.k_of`). ``cells`` (shared slots and ``ivf``
    lists only; else None): the partition a search probes once the cache holds more prompts than
    its budget.
    """

    embeddings: np.ndarray  # float32 (n_prompts, d), unit rows
    slot_prompt: np.ndarray  # int64 per dense slot
    slot_part: np.ndarray  # int64 per dense slot
    req_prompt: np.ndarray  # int64 per request
    req_part: np.ndarray  # int64 per request
    rule: tuple[np.ndarray, np.ndarray, float]  # Selector.rule: thresholds, K, min_similarity
    cells: Cells | None = None


@dataclass
class KernelResult:
    """Record columns plus the final cache state, in dense slots."""

    code: np.ndarray  # int8: MISS / HIT / HOLE
    matched: np.ndarray  # int64 dense slot served from, -1 when none
    similarity: np.ndarray  # float64: of the candidate served from (of the nearest cached on a miss)
    k_planned: np.ndarray  # int64
    k_used: np.ndarray  # int64
    occ_entries: np.ndarray  # int64 per occupancy sample
    occ_prompts: np.ndarray  # int64 per occupancy sample
    masks: np.ndarray  # int64 per dense slot: bit K set = level K can be served
    live_keys: np.ndarray  # int64 entries (stored latents) in eviction order ...
    live_prio: np.ndarray  # ... with their priorities ...
    live_score: np.ndarray  # ... and scores
    inflation: int  # the aging policies' L
    shared: np.ndarray  # int64 entries held by reference ...
    shared_latent: np.ndarray  # ... and the entry of the latent each shares
    entries: int
    insertions: int
    evictions: int
    links: int
    fallbacks: int  # requests decided over the cached prompts (a truncated list ran out)


def replay(
    n: int,
    stride: int,
    cand: Candidates,
    own: np.ndarray,
    ladder: tuple[int, ...],
    store_on_hit: bool,
    trajectory: str,
    capacity: int,
    rule: PriorityRule,
    exhaustive: Exhaustive,
    admit: np.ndarray | None = None,
) -> KernelResult:
    """Replay requests 0..n-1 (see the module docstring).

    ``own``: dense slot of each request's own prompt; ``ladder``: the K levels, ascending;
    ``trajectory``: one of :data:`TRAJECTORIES` (what a hit stores at levels <= its K);
    ``capacity``: entries (> 0); ``exhaustive``: what deciding over every cached prompt needs;
    ``admit``: bool per request, False where the generation stores nothing
    (``sim.cache.admission``; default: all admitted).
    """
    admit = np.ones(n, np.bool_) if admit is None else np.ascontiguousarray(admit[:n], dtype=np.bool_)
    n_slots = int(own.max()) + 1 if n else 1
    n_levels = len(ladder)
    levels = np.asarray(ladder, dtype=np.int64)
    level_index = np.full(int(levels.max()) + 1, -1, np.int64)
    level_index[levels] = np.arange(n_levels)
    n_entries = n_slots * n_levels
    sharing = store_on_hit and trajectory == "reference"
    # One heap item per stored latent: at most the capacity, or everything the trace can store.
    heap_size = min(capacity, n * n_levels) + 1
    hp = np.zeros(heap_size, np.int64)
    hs = np.zeros(heap_size, np.int64)
    he = np.zeros(heap_size, np.int64)
    prio = np.zeros(n_entries, np.int64)
    score = np.zeros(n_entries if rule.aging else 1, np.int64)
    seq = np.full(n_entries, -1, np.int64)
    masks = np.zeros(n_slots, np.int64)
    # Sharing: the latent behind each (slot, level), and who references each latent (a list
    # through node_next); a hit shares at most n_levels latents, so n * n_levels nodes suffice.
    ref = np.full(n_entries if sharing else 1, -1, np.int32)
    head = np.full(n_entries if sharing else 1, -1, np.int32)
    node_slot = np.zeros(n * n_levels if sharing else 1, np.int32)
    node_next = np.zeros(n * n_levels if sharing else 1, np.int32)
    state = np.zeros(9, np.int64)
    # The cached slots, for the exhaustive search, by cell (one cell when there are none to probe):
    # cell c's are live[cell_start[c] : cell_start[c] + fill[c]], and slot g is at live[cell_start[c] + pos[g]].
    cells = exhaustive.cells
    if cells is None:
        slot_cell = np.zeros(n_slots, np.int64)
        n_cells, proj, centroids, limits = 1, np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), (0, 0, 0)
    else:
        slot_cell = cells.of_prompt[exhaustive.slot_prompt].astype(np.int64)
        n_cells, proj, centroids = len(cells.centroids), cells.proj, cells.centroids
        limits = (cells.budget, cells.min_probes, cells.max_probes)
    cell_start = np.zeros(n_cells + 1, np.int64)
    np.cumsum(np.bincount(slot_cell, minlength=n_cells), out=cell_start[1:])
    fill = np.zeros(n_cells, np.int64)
    live = np.zeros(n_slots, np.int64)
    pos = np.zeros(n_slots, np.int64)
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
        live_score=np.zeros(0, np.int64),
        inflation=0,
        shared=np.zeros(0, np.int64),
        shared_latent=np.zeros(0, np.int64),
        entries=0,
        insertions=0,
        evictions=0,
        links=0,
        fallbacks=0,
    )
    thresholds, ks, min_similarity = exhaustive.rule
    _run(
        n,
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
        TRAJECTORIES.index(trajectory),
        capacity,
        rule.on_insert,
        rule.insert_level,
        HIT_RULES.index(rule.on_hit),
        rule.aging,
        stride,
        masks,
        prio,
        score,
        seq,
        ref,
        head,
        node_slot,
        node_next,
        hp,
        hs,
        he,
        state,
        live,
        pos,
        fill,
        cell_start,
        slot_cell,
        out.code,
        out.matched,
        out.similarity,
        out.k_planned,
        out.k_used,
        out.occ_entries,
        out.occ_prompts,
        exhaustive.embeddings,
        exhaustive.slot_prompt,
        exhaustive.slot_part,
        exhaustive.req_prompt,
        exhaustive.req_part,
        thresholds,
        ks,
        min_similarity,
        cells is not None,
        proj,
        centroids,
        *limits,
    )
    live = np.flatnonzero(seq >= 0)
    order = np.lexsort((seq[live], prio[live]))
    out.live_keys, out.live_prio = live[order], prio[live][order]
    out.live_score = score[live][order] if rule.aging else out.live_prio
    out.inflation = int(state[_INFLATION])
    if sharing:
        held = np.flatnonzero(ref >= 0)
        by_ref = held[ref[held] != held]
        out.shared, out.shared_latent = by_ref, ref[by_ref].astype(np.int64)
    out.entries, out.insertions, out.evictions = (int(x) for x in state[_ENTRIES : _EVICTIONS + 1])
    out.links = int(state[_LINKS])
    out.fallbacks = int(state[_FALLBACKS])
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


@numba.njit(cache=True, nogil=True, inline="always")
def _push(hp, hs, he, state, p, s, e):  # pragma: no cover - compiled
    j = state[_HEAP]
    while j > 0:
        parent = (j - 1) // 2
        if not (p < hp[parent] or (p == hp[parent] and s < hs[parent])):
            break
        hp[j], hs[j], he[j] = hp[parent], hs[parent], he[parent]
        j = parent
    hp[j], hs[j], he[j] = p, s, e
    state[_HEAP] += 1


@numba.njit(cache=True, nogil=True)
def _pop_live(hp, hs, he, prio, seq, state):  # pragma: no cover - compiled
    """Remove and return the entry of lowest (priority, sequence), putting back at their current
    keys the items whose entry was hit since they were pushed."""
    while True:
        size = state[_HEAP] - 1
        e, s = he[0], hs[0]
        hp[0], hs[0], he[0] = hp[size], hs[size], he[size]
        state[_HEAP] = size
        _sift_down(hp, hs, he, size, 0)
        if seq[e] == s:
            return e
        _push(hp, hs, he, state, prio[e], seq[e], e)


@numba.njit(cache=True, nogil=True, inline="always")
def _live_add(live, pos, fill, cell_start, slot_cell, state, g):  # pragma: no cover - compiled
    """Slot g now holds something: add it to its cell's cached slots."""
    c = slot_cell[g]
    live[cell_start[c] + fill[c]] = g
    pos[g] = fill[c]
    fill[c] += 1
    state[_PROMPTS] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _live_remove(live, pos, fill, cell_start, slot_cell, state, g):  # pragma: no cover - compiled
    """Slot g holds nothing any more: its cell's last cached slot takes its place."""
    c = slot_cell[g]
    fill[c] -= 1
    last = live[cell_start[c] + fill[c]]
    live[cell_start[c] + pos[g]] = last
    pos[last] = pos[g]
    state[_PROMPTS] -= 1


@numba.njit(cache=True, nogil=True, inline="always")
def _evict(
    hp, hs, he, seq, prio, masks, ref, head, node_slot, node_next, levels, sharing, aging, state, live, pos, fill, cell_start,
    slot_cell,
):  # pragma: no cover - compiled
    """Evict the live entry of lowest (priority, sequence), from its slot and every slot sharing it."""
    n_levels = len(levels)
    e = _pop_live(hp, hs, he, prio, seq, state)
    seq[e] = -1
    if aging and prio[e] > state[_INFLATION]:
        state[_INFLATION] = prio[e]
    x = e % n_levels
    bit = np.int64(1) << levels[x]
    g = e // n_levels
    masks[g] &= ~bit
    if masks[g] == 0:
        _live_remove(live, pos, fill, cell_start, slot_cell, state, g)
    if sharing:
        ref[e] = -1
        nd = head[e]
        while nd >= 0:
            s = node_slot[nd]
            p = s * n_levels + x
            if ref[p] == e:
                ref[p] = -1
                masks[s] &= ~bit
                if masks[s] == 0:
                    _live_remove(live, pos, fill, cell_start, slot_cell, state, s)
            nd = node_next[nd]
        head[e] = -1


@numba.njit(cache=True, nogil=True)
def decide(prompts, held, sims, ks, levels):  # pragma: no cover - compiled
    """The lookup rule over cached prompts with exact similarities (a :data:`Fallback`).

    ``prompts``: their ids (any order), ``held``: their level masks, ``sims``: their
    similarities, ``ks``: the K each similarity allows (<= 0: not reusable); ``levels``: the
    cached levels, ascending. The nearest reusable prompt plans K; the request is served the
    largest level any of them holds at or below its own K, ties to the more similar prompt,
    then to the lower id. K planned 0: none is similar enough.
    """
    near = -1
    best = -1
    best_u = 0
    for j in range(len(prompts)):
        k = ks[j]
        if k <= 0:
            continue
        s, p = sims[j], prompts[j]
        if near < 0 or s > sims[near] or (s == sims[near] and p < prompts[near]):
            near = j
        u = 0
        for x in range(len(levels)):
            if levels[x] <= k and (held[j] >> levels[x]) & 1:
                u = levels[x]
        if u > 0 and (
            u > best_u or (u == best_u and (s > sims[best] or (s == sims[best] and p < prompts[best])))
        ):
            best, best_u = j, u
    if near < 0:
        return -1, np.nan, 0, 0, np.nan, 0
    if best < 0:
        return -1, np.nan, 0, ks[near], np.float64(sims[near]), 0
    return best, np.float64(sims[best]), best_u, ks[near], np.float64(sims[near]), ks[best]


@numba.njit(cache=True, nogil=True)
def _exhaustive(
    q, part, live, fill, cell_start, masks, slot_prompt, slot_part, emb, levels, thresholds, kvals, min_similarity,
    probing, proj, centroids, budget, min_probes, max_probes,
):  # pragma: no cover - compiled
    """:func:`decide` over the cached slots of partition ``part`` for prompt ``q`` (of the probed
    cells when ``probing``); the position it returns is a dense slot."""
    if probing:
        take = probe(emb[q], proj, centroids, fill, budget, min_probes, max_probes)
    else:
        take = np.ones(len(fill), np.bool_)
    size = fill[take].sum()
    dense = np.empty(size, np.int64)
    prompts = np.empty(size, np.int64)
    held = np.empty(size, np.int64)
    m = 0
    for c in range(len(fill)):
        if not take[c]:
            continue
        for r in range(cell_start[c], cell_start[c] + fill[c]):
            g = live[r]
            if slot_part[g] == part:
                dense[m], prompts[m], held[m] = g, slot_prompt[g], masks[g]
                m += 1
    sims = similarities_to(emb, prompts[:m], q)
    at, s, u, planned, near_s, asked = decide(
        prompts[:m], held[:m], sims, k_of(sims, thresholds, kvals, min_similarity), levels
    )
    return (dense[at] if at >= 0 else -1), s, u, planned, near_s, asked


@numba.njit(cache=True, nogil=True)
def _run(  # pragma: no cover - compiled
    n,
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
    trajectory,
    capacity,
    insert_score,
    insert_level,
    hit_rule,
    aging,
    stride,
    masks,
    prio,
    score,
    seq,
    ref,
    head,
    node_slot,
    node_next,
    hp,
    hs,
    he,
    state,
    live,
    pos,
    fill,
    cell_start,
    slot_cell,
    code,
    matched,
    similarity,
    k_planned,
    k_used,
    occ_entries,
    occ_prompts,
    emb,
    slot_prompt,
    slot_part,
    req_prompt,
    req_part,
    thresholds,
    kvals,
    min_similarity,
    probing,
    proj,
    centroids,
    budget,
    min_probes,
    max_probes,
):
    """Requests 0..n-1 (see :func:`replay`)."""
    n_levels = len(levels)
    sharing = store_on_hit and trajectory == _REFERENCE
    new = np.empty(n_levels, np.int64)
    for i in range(n):
        best_d = -1  # dense slot served from
        best_u = 0  # level it offers
        best_s = np.nan
        best_k = 0  # K its similarity allows
        near_k = 0  # K of the nearest cached candidate (0: none)
        near_s = np.nan
        settled = False
        for j in range(offsets[i], offsets[i + 1]):
            k = cks[j]
            if k <= best_u:  # below the floor, or no later candidate can beat the best
                settled = True
                break
            d = dense_of[cids[j]]
            if d < 0:
                continue
            m = masks[d]
            if m == 0:
                continue
            if near_k == 0:
                near_k, near_s = k, csims[j]
            m &= (np.int64(2) << k) - 1
            if m != 0:
                u = k
                while not (m >> u) & 1:
                    u -= 1
                if u > best_u:
                    best_d, best_u, best_s, best_k = d, u, csims[j], k
        if not settled and not complete[i]:
            # The truncated list ran out: decide over the cached prompts.
            state[_FALLBACKS] += 1
            best_d, best_s, best_u, near_k, near_s, best_k = _exhaustive(
                req_prompt[i], req_part[i], live, fill, cell_start, masks, slot_prompt, slot_part, emb,
                levels, thresholds, kvals, min_similarity, probing, proj, centroids, budget, min_probes, max_probes,
            )
        first_new = 0  # level index from which the generation's own levels are stored
        if near_k > 0:
            k_planned[i] = near_k
            similarity[i] = near_s
        if best_d >= 0:
            similarity[i] = best_s
            xu = level_index[best_u]
            e = best_d * n_levels + xu
            if sharing:
                e = ref[e]
            if hit_rule != _KEEP:
                if hit_rule == _ADD_ONE:
                    delta = 1
                elif hit_rule == _ADD_LEVEL:
                    delta = best_u
                elif hit_rule == _ADD_ASKED:
                    delta = best_k
                else:
                    delta = 0
                if aging:
                    score[e] += delta
                    prio[e] = state[_INFLATION] + score[e]
                else:
                    prio[e] += delta
                seq[e] = state[_SEQ]  # a new key: its heap item moves when it reaches the top
                state[_SEQ] += 1
            code[i] = HIT if best_u == near_k else HOLE
            matched[i] = best_d
            k_used[i] = best_u
            first_new = xu + 1 if store_on_hit else n_levels
        admitted = admit[i]
        if not admitted:
            first_new = n_levels  # not admitted (sim.cache.admission): the generation stores nothing
        # complete(i): store the levels this generation passed that its slot lacks.
        o = own[i]
        m = masks[o]
        nl = 0
        if admitted and best_d >= 0 and store_on_hit and trajectory == _COPY:
            # Levels <= K are the matched prompt's: copies of those it holds.
            held = masks[best_d]
            for x in range(first_new):
                b = np.int64(1) << levels[x]
                if held & b and not m & b:
                    new[nl] = x
                    nl += 1
        for x in range(first_new, n_levels):
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
                        _evict(
                            hp, hs, he, seq, prio, masks, ref, head, node_slot, node_next, levels, sharing, aging, state,
                            live, pos, fill, cell_start, slot_cell,
                        )
                    state[_ENTRIES] -= victims
                    state[_EVICTIONS] += victims
                    m = masks[o]
            was_empty = m == 0
            for r in range(start, nl):
                x = new[r]
                m |= np.int64(1) << levels[x]
                e = o * n_levels + x
                sc = insert_score + (levels[x] if insert_level else 0)
                if aging:
                    score[e] = sc
                    sc += state[_INFLATION]
                prio[e] = sc
                seq[e] = state[_SEQ]
                state[_SEQ] += 1
                if sharing:
                    ref[e] = e
                _push(hp, hs, he, state, sc, seq[e], e)
            if was_empty:
                _live_add(live, pos, fill, cell_start, slot_cell, state, o)
            masks[o] = m
            state[_ENTRIES] += nl - start
            state[_INSERTIONS] += nl - start
        if admitted and sharing and best_d >= 0:
            # Levels <= K are the matched prompt's: share those it still holds.
            want = masks[best_d] & ((np.int64(2) << best_u) - 1) & ~m
            if want != 0:
                if m == 0:
                    _live_add(live, pos, fill, cell_start, slot_cell, state, o)
                masks[o] = m | want
                for x in range(first_new):
                    if (want >> levels[x]) & 1:
                        latent = ref[best_d * n_levels + x]
                        ref[o * n_levels + x] = latent
                        nd = state[_LINKS]
                        node_slot[nd] = o
                        node_next[nd] = head[latent]
                        head[latent] = nd
                        state[_LINKS] += 1
        if (i + 1) % stride == 0 or i == n - 1:
            occ_entries[i // stride] = state[_ENTRIES]
            occ_prompts[i // stride] = state[_PROMPTS]
