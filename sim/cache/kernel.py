"""The cache-only replay of nirvana, compiled, for policies that evict by (priority, age).

FIFO, LRU, the LFU and LCBFU families all evict the entry of lowest priority, the one that
reached its priority first among equals; they differ only in what a store and a hit do to
an entry's score and whether priorities age (their
:class:`~sim.cache.policies.base.PriorityRule`). That shared shape runs here as one numba
loop over flat arrays grouped in a few records (:class:`Walk`, :class:`Rule`,
:class:`Entries`, :class:`Shares`, :class:`Cached`, :class:`Search`, :class:`Columns`); each
request passes through four small compiled steps: :func:`_choose` (the candidate walk),
:func:`_record` (the hit's bookkeeping and the columns), :func:`_to_store` + :func:`_insert`
(the levels stored, with their evictions) and :func:`_link` (the trajectory a hit shares). A
binary heap keyed by (priority, sequence number) stands in for the policies' ordered dicts. A hit only raises an entry's key in the
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
from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from sim.neighbours.ivf import probe
from sim.neighbours.similarity import similarities_to
from sim.reuse.selector import k_of

if TYPE_CHECKING:
    from sim.cache.policies.base import PriorityRule
    from sim.neighbours.ivf import Cells

HIT_RULES = ("keep", "requeue", "add-one", "add-level", "add-asked")
_KEEP, _REQUEUE, _ADD_ONE, _ADD_LEVEL, _ADD_ASKED = range(len(HIT_RULES))
TRAJECTORIES = ("computed", "reference", "copy")  # cache.trajectory, in kernel codes
_COMPUTED, _REFERENCE, _COPY = range(len(TRAJECTORIES))

# Slots of the state vector shared by Python and the kernel between calls.
_HEAP, _SEQ, _ENTRIES, _INSERTIONS, _EVICTIONS, _PROMPTS, _INFLATION, _LINKS, _FALLBACKS = range(9)

# Helpers that only read and write arrays their caller owns compile without the runtime's
# reference counts: a call would otherwise take an atomic incref and decref for every array in
# the records it is passed, which cost the replay a fifth of its speed (measured with `acsim bench`).
_LEAF = {"cache": True, "nogil": True, "_nrt": False}

MISS, HIT, HOLE = 0, 1, 2  # outcome codes in the kernel's output (mapped by the caller)

# An exhaustive decision: (position served from or -1, its similarity, level used, K planned,
# similarity of the nearest cached candidate, K asked of the served candidate).
Fallback = tuple[int, float, int, int, float, int]


# The replay's state and inputs, grouped as the loop uses them (numba passes them as tuples).
class Walk(NamedTuple):
    """The neighbour lists (:class:`Candidates`' arrays)."""

    offsets: np.ndarray
    ids: np.ndarray
    ks: np.ndarray
    sims: np.ndarray
    complete: np.ndarray
    dense_of: np.ndarray


class Rule(NamedTuple):
    """What a generation stores and what the policy does on a store and a hit."""

    levels: np.ndarray  # int64, ascending
    level_index: np.ndarray  # int64: level -> its index, -1 when not a level
    store_on_hit: bool
    trajectory: int  # a TRAJECTORIES index
    capacity: int  # entries
    insert_score: int
    insert_level: bool
    hit_rule: int  # a HIT_RULES index
    aging: bool


class Entries(NamedTuple):
    """The stored latents: per slot its level mask, per entry its keys, the heap and the counters."""

    masks: np.ndarray  # int64 per dense slot
    prio: np.ndarray  # int64 per entry
    score: np.ndarray  # int64 per entry (aging policies; else one unused cell)
    seq: np.ndarray  # int64 per entry, -1 when not stored
    hp: np.ndarray  # the heap's priorities ...
    hs: np.ndarray  # ... sequence numbers ...
    he: np.ndarray  # ... and entries
    state: np.ndarray  # int64 counters, indexed by _HEAP ... _FALLBACKS


class Shares(NamedTuple):
    """Trajectories held by reference: the latent behind each entry, and who references it."""

    ref: np.ndarray
    head: np.ndarray
    node_slot: np.ndarray
    node_next: np.ndarray


class Cached(NamedTuple):
    """The cached slots by cell: cell c's are ``live[cell_start[c] : cell_start[c] + fill[c]]``."""

    live: np.ndarray
    pos: np.ndarray
    fill: np.ndarray
    cell_start: np.ndarray
    slot_cell: np.ndarray


class Search(NamedTuple):
    """What deciding over the cached prompts needs (:class:`Exhaustive`, flattened)."""

    emb: np.ndarray
    slot_prompt: np.ndarray
    slot_part: np.ndarray
    req_prompt: np.ndarray
    req_part: np.ndarray
    thresholds: np.ndarray
    kvals: np.ndarray
    min_similarity: float
    probing: bool
    proj: np.ndarray
    centroids: np.ndarray
    budget: int
    min_probes: int
    max_probes: int


class Columns(NamedTuple):
    """The per-request output columns and the occupancy samples (:class:`KernelResult`'s)."""

    code: np.ndarray
    matched: np.ndarray
    similarity: np.ndarray
    k_planned: np.ndarray
    k_used: np.ndarray
    occ_entries: np.ndarray
    occ_prompts: np.ndarray


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
    from the selector's ``rule`` (:func:`sim.reuse.selector.k_of`). ``cells`` (shared slots and ``ivf``
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
    levels = np.asarray(ladder, dtype=np.int64)
    level_index = np.full(int(levels.max()) + 1, -1, np.int64)
    level_index[levels] = np.arange(len(levels))
    code = TRAJECTORIES.index(trajectory)
    flags = (rule.on_insert, rule.insert_level, HIT_RULES.index(rule.on_hit), rule.aging)
    policy = Rule(levels, level_index, store_on_hit, code, capacity, *flags)
    ent = _empty_entries(n, n_slots, policy)
    shares = _empty_shares(n, n_slots, policy)
    cached, search = _cached_slots(n_slots, exhaustive)
    n_samples = -(-n // stride)
    cols = Columns(
        np.zeros(n, np.int8),
        np.full(n, -1, np.int64),
        np.full(n, np.nan),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n_samples, np.int64),
        np.zeros(n_samples, np.int64),
    )
    walk = Walk(cand.offsets, cand.ids, cand.ks, cand.sims, cand.complete, cand.dense_of)
    _run(n, stride, own, admit, walk, policy, ent, shares, cached, search, cols)
    return _result(cols, ent, shares, policy)


def _empty_entries(n: int, n_slots: int, rule: Rule) -> Entries:
    """No latent stored; a heap item per stored latent: at most the capacity, or all the trace can store."""
    n_entries = n_slots * len(rule.levels)
    heap_size = min(rule.capacity, n * len(rule.levels)) + 1
    return Entries(
        masks=np.zeros(n_slots, np.int64),
        prio=np.zeros(n_entries, np.int64),
        score=np.zeros(n_entries if rule.aging else 1, np.int64),
        seq=np.full(n_entries, -1, np.int64),
        hp=np.zeros(heap_size, np.int64),
        hs=np.zeros(heap_size, np.int64),
        he=np.zeros(heap_size, np.int64),
        state=np.zeros(9, np.int64),
    )


def _sharing(rule: Rule) -> bool:
    return rule.store_on_hit and rule.trajectory == TRAJECTORIES.index("reference")


def _empty_shares(n: int, n_slots: int, rule: Rule) -> Shares:
    """The latent behind each (slot, level), and who references each latent (a list through
    node_next); a hit shares at most one latent per level, so n * levels nodes suffice."""
    n_levels = len(rule.levels)
    size, nodes = (n_slots * n_levels, n * n_levels) if _sharing(rule) else (1, 1)
    return Shares(
        ref=np.full(size, -1, np.int32),
        head=np.full(size, -1, np.int32),
        node_slot=np.zeros(nodes, np.int32),
        node_next=np.zeros(nodes, np.int32),
    )


def _cached_slots(n_slots: int, exhaustive: Exhaustive) -> tuple[Cached, Search]:
    """No slot cached yet, kept by cell (one cell when there are none to probe), and the search."""
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
    cached = Cached(np.zeros(n_slots, np.int64), np.zeros(n_slots, np.int64), np.zeros(n_cells, np.int64), cell_start, slot_cell)
    ex = exhaustive
    search = Search(
        ex.embeddings, ex.slot_prompt, ex.slot_part, ex.req_prompt, ex.req_part, *ex.rule, cells is not None, proj,
        centroids, *limits,
    )
    return cached, search


def _result(cols: Columns, ent: Entries, shares: Shares, rule: Rule) -> KernelResult:
    """The columns, and the final state with the live entries in eviction order."""
    seq, prio, state = ent.seq, ent.prio, ent.state
    live = np.flatnonzero(seq >= 0)
    order = np.lexsort((seq[live], prio[live]))
    keys, live_prio = live[order], prio[live][order]
    shared = shared_latent = np.zeros(0, np.int64)
    if _sharing(rule):
        ref = shares.ref
        held = np.flatnonzero(ref >= 0)
        shared = held[ref[held] != held]
        shared_latent = ref[shared].astype(np.int64)
    return KernelResult(
        code=cols.code,
        matched=cols.matched,
        similarity=cols.similarity,
        k_planned=cols.k_planned,
        k_used=cols.k_used,
        occ_entries=cols.occ_entries,
        occ_prompts=cols.occ_prompts,
        masks=ent.masks,
        live_keys=keys,
        live_prio=live_prio,
        live_score=ent.score[live][order] if rule.aging else live_prio,
        inflation=int(state[_INFLATION]),
        shared=shared,
        shared_latent=shared_latent,
        entries=int(state[_ENTRIES]),
        insertions=int(state[_INSERTIONS]),
        evictions=int(state[_EVICTIONS]),
        links=int(state[_LINKS]),
        fallbacks=int(state[_FALLBACKS]),
    )


@numba.njit(**_LEAF)
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


@numba.njit(**_LEAF, inline="always")
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


@numba.njit(**_LEAF)
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


@numba.njit(**_LEAF, inline="always")
def _live_add(cached, state, g):  # pragma: no cover - compiled
    """Slot g now holds something: add it to its cell's cached slots."""
    live, pos, fill, cell_start, slot_cell = cached
    c = slot_cell[g]
    live[cell_start[c] + fill[c]] = g
    pos[g] = fill[c]
    fill[c] += 1
    state[_PROMPTS] += 1


@numba.njit(**_LEAF, inline="always")
def _live_remove(cached, state, g):  # pragma: no cover - compiled
    """Slot g holds nothing any more: its cell's last cached slot takes its place."""
    live, pos, fill, cell_start, slot_cell = cached
    c = slot_cell[g]
    fill[c] -= 1
    last = live[cell_start[c] + fill[c]]
    live[cell_start[c] + pos[g]] = last
    pos[last] = pos[g]
    state[_PROMPTS] -= 1


@numba.njit(**_LEAF, inline="always")
def _evict(ent, shares, cached, levels, sharing, aging):  # pragma: no cover - compiled
    """Evict the live entry of lowest (priority, sequence), from its slot and every slot sharing it."""
    masks, prio, seq, state = ent.masks, ent.prio, ent.seq, ent.state
    n_levels = len(levels)
    e = _pop_live(ent.hp, ent.hs, ent.he, prio, seq, state)
    seq[e] = -1
    if aging and prio[e] > state[_INFLATION]:
        state[_INFLATION] = prio[e]
    x = e % n_levels
    bit = np.int64(1) << levels[x]
    g = e // n_levels
    masks[g] &= ~bit
    if masks[g] == 0:
        _live_remove(cached, state, g)
    if sharing:
        ref, head = shares.ref, shares.head
        ref[e] = -1
        nd = head[e]
        while nd >= 0:
            s = shares.node_slot[nd]
            p = s * n_levels + x
            if ref[p] == e:
                ref[p] = -1
                masks[s] &= ~bit
                if masks[s] == 0:
                    _live_remove(cached, state, s)
            nd = shares.node_next[nd]
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
def _exhaustive(i, search, cached, masks, levels):  # pragma: no cover - compiled
    """:func:`decide` for request i over the cached slots of its partition (of the probed cells
    when the search probes); the position it returns is a dense slot."""
    emb, slot_prompt, slot_part = search.emb, search.slot_prompt, search.slot_part
    q, part = search.req_prompt[i], search.req_part[i]
    live, fill, cell_start = cached.live, cached.fill, cached.cell_start
    if search.probing:
        take = probe(emb[q], search.proj, search.centroids, fill, search.budget, search.min_probes, search.max_probes)
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
    ks = k_of(sims, search.thresholds, search.kvals, search.min_similarity)
    at, s, u, planned, near_s, asked = decide(prompts[:m], held[:m], sims, ks, levels)
    return (dense[at] if at >= 0 else -1), s, u, planned, near_s, asked


@numba.njit(**_LEAF)
def _choose(i, walk, masks):  # pragma: no cover - compiled
    """The walk of request i: (slot served from or -1, its level, similarity and K, K and
    similarity of the nearest cached candidate (0: none), whether the walk settled)."""
    best_d, best_u, best_s, best_k = -1, 0, np.nan, 0
    near_k, near_s = 0, np.nan
    cks, csims, cids, dense_of = walk.ks, walk.sims, walk.ids, walk.dense_of
    for j in range(walk.offsets[i], walk.offsets[i + 1]):
        k = cks[j]
        if k <= best_u:  # below the floor, or no later candidate can beat the best
            return best_d, best_u, best_s, best_k, near_k, near_s, True
        d = dense_of[cids[j]]
        if d < 0 or masks[d] == 0:
            continue
        if near_k == 0:
            near_k, near_s = k, csims[j]
        m = masks[d] & ((np.int64(2) << k) - 1)
        if m != 0:
            u = k
            while not (m >> u) & 1:
                u -= 1
            if u > best_u:
                best_d, best_u, best_s, best_k = d, u, csims[j], k
    return best_d, best_u, best_s, best_k, near_k, near_s, False


@numba.njit(**_LEAF)
def _record(i, d, u, s, k, near_k, near_s, admitted, ent, rule, shares, cols):  # pragma: no cover - compiled
    """Request i's columns, and the hit's bookkeeping when it is served level u of slot d (K k);
    returns the level index from which the generation stores its own levels."""
    n_levels = len(rule.levels)
    if near_k > 0:
        cols.k_planned[i], cols.similarity[i] = near_k, near_s
    if d < 0:
        return 0 if admitted else n_levels
    cols.similarity[i] = s
    xu = rule.level_index[u]
    e = d * n_levels + xu
    hit_rule = rule.hit_rule
    if hit_rule != _KEEP:
        if rule.store_on_hit and rule.trajectory == _REFERENCE:
            e = shares.ref[e]
        delta = 1 if hit_rule == _ADD_ONE else u if hit_rule == _ADD_LEVEL else k if hit_rule == _ADD_ASKED else 0
        prio, state = ent.prio, ent.state
        if rule.aging:
            ent.score[e] += delta
            prio[e] = state[_INFLATION] + ent.score[e]
        else:
            prio[e] += delta
        ent.seq[e] = state[_SEQ]  # a new key: its heap item moves when it reaches the top
        state[_SEQ] += 1
    cols.code[i], cols.matched[i], cols.k_used[i] = HIT if u == near_k else HOLE, d, u
    if not admitted:
        return n_levels  # not admitted (sim.cache.admission): the generation stores nothing
    return xu + 1 if rule.store_on_hit else n_levels


@numba.njit(**_LEAF)
def _to_store(o, d, first_new, admitted, masks, rule, new):  # pragma: no cover - compiled
    """The levels (indices, into ``new``) the generation passed that slot o lacks; their count.
    With copied trajectories those <= K are the matched slot d's that d holds."""
    levels, m, nl = rule.levels, masks[o], 0
    if admitted and d >= 0 and rule.store_on_hit and rule.trajectory == _COPY:
        for x in range(first_new):
            b = np.int64(1) << levels[x]
            if masks[d] & b and not m & b:
                new[nl], nl = x, nl + 1
    for x in range(first_new, len(levels)):
        if not (m >> levels[x]) & 1:
            new[nl], nl = x, nl + 1
    return nl


@numba.njit(**_LEAF)
def _insert(o, new, nl, ent, rule, shares, cached):  # pragma: no cover - compiled
    """Store levels ``new[:nl]`` (level indices) of slot o, evicting what the capacity needs."""
    levels, capacity, aging = rule.levels, rule.capacity, rule.aging
    sharing = rule.store_on_hit and rule.trajectory == _REFERENCE
    masks, prio, seq, state = ent.masks, ent.prio, ent.seq, ent.state
    n_levels = len(levels)
    start = 0
    if state[_ENTRIES] + nl > capacity:
        if nl > capacity:
            start = nl - capacity  # a tiny cache keeps the levels that save most
        victims = state[_ENTRIES] + nl - start - capacity
        if victims > 0:
            for _ in range(victims):
                _evict(ent, shares, cached, levels, sharing, aging)
            state[_ENTRIES] -= victims
            state[_EVICTIONS] += victims
    m = masks[o]
    was_empty = m == 0
    for r in range(start, nl):
        x = new[r]
        m |= np.int64(1) << levels[x]
        e = o * n_levels + x
        sc = rule.insert_score + (levels[x] if rule.insert_level else 0)
        if aging:
            ent.score[e] = sc
            sc += state[_INFLATION]
        prio[e] = sc
        seq[e] = state[_SEQ]
        state[_SEQ] += 1
        if sharing:
            shares.ref[e] = e
        _push(ent.hp, ent.hs, ent.he, state, sc, seq[e], e)
    if was_empty:
        _live_add(cached, state, o)
    masks[o] = m
    state[_ENTRIES] += nl - start
    state[_INSERTIONS] += nl - start


@numba.njit(**_LEAF)
def _link(o, d, u, first_new, ent, shares, cached, levels):  # pragma: no cover - compiled
    """After a hit at level u from slot d: slot o references the latents <= u that d still holds."""
    masks, state = ent.masks, ent.state
    n_levels = len(levels)
    m = masks[o]
    want = masks[d] & ((np.int64(2) << u) - 1) & ~m
    if want == 0:
        return
    if m == 0:
        _live_add(cached, state, o)
    masks[o] = m | want
    for x in range(first_new):
        if (want >> levels[x]) & 1:
            latent = shares.ref[d * n_levels + x]
            shares.ref[o * n_levels + x] = latent
            nd = state[_LINKS]
            shares.node_slot[nd] = o
            shares.node_next[nd] = shares.head[latent]
            shares.head[latent] = nd
            state[_LINKS] += 1


@numba.njit(cache=True, nogil=True)
def _run(n, stride, own, admit, walk, rule, ent, shares, cached, search, cols):  # pragma: no cover - compiled
    """Requests 0..n-1 (see :func:`replay`): choose, record, store, share."""
    levels, masks, state = rule.levels, ent.masks, ent.state
    sharing = rule.store_on_hit and rule.trajectory == _REFERENCE
    new = np.empty(len(levels), np.int64)
    for i in range(n):
        d, u, s, k, near_k, near_s, settled = _choose(i, walk, masks)
        if not settled and not walk.complete[i]:  # the truncated list ran out: decide over the cached prompts
            state[_FALLBACKS] += 1
            d, s, u, near_k, near_s, k = _exhaustive(i, search, cached, masks, levels)
        admitted = admit[i]
        first_new = _record(i, d, u, s, k, near_k, near_s, admitted, ent, rule, shares, cols)
        nl = _to_store(own[i], d, first_new, admitted, masks, rule, new)
        if nl > 0:
            _insert(own[i], new, nl, ent, rule, shares, cached)
        if sharing and d >= 0 and admitted:
            _link(own[i], d, u, first_new, ent, shares, cached, levels)
        if (i + 1) % stride == 0 or i == n - 1:
            cols.occ_entries[i // stride] = state[_ENTRIES]
            cols.occ_prompts[i // stride] = state[_PROMPTS]
