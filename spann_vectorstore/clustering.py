"""Balanced hierarchical k-means heads and SPTAG closure (RNG) assignment.

Distance work is one BLAS matrix product per block (``X @ C.T``); the per-row loops (penalised argmin,
nearest-m selection, RNG rule) are Numba kernels in ``_kernels``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import NamedTuple

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from . import _kernels as K
from ._storage import MappedPages, take_rows

_BLOCK = 16384  # rows per matrix-product block: bounds temporary memory at ~BLOCK * H * 4 bytes
_REFINE_BYTES = 1 << 30  # the head refinement's sample of rows, at most (float32)
_NODE_BLOCK = 1 << 18  # tree nodes with more rows are split blockwise (no copy of the node's rows)


def _sqnorms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x).astype(np.float32)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


_SMALL_PRODUCT = 1 << 22  # multiply-adds below which kmeans computes its products in one thread


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    iters: int = 12,
    balance: float = 0.05,
    max_train: int = 256,
    parallel: bool = True,
) -> np.ndarray:
    """Balanced k-means centroids (k, d) of ``x`` (n, d) float32.

    Lloyd iterations on at most ``max_train * k`` sampled rows. Balance follows SPTAG's BKT: the assignment
    cost is ``|x - c|^2 + lambda * |C|`` with lambda re-tuned each iteration to ``balance`` (default
    0.05: larger values oscillate) times the mean
    distance over the mean cluster size, which pulls clusters towards equal sizes. Empty clusters are
    re-seeded from the members of the largest one.
    """
    n = x.shape[0]
    k = max(1, min(k, n))
    if n > max_train * k:
        x = x[np.sort(rng.choice(n, max_train * k, replace=False))]
        n = x.shape[0]
    c = x[rng.choice(n, k, replace=False)].astype(np.float32, copy=True)
    if k == 1:
        return x.mean(axis=0, keepdims=True).astype(np.float32)
    xn2 = _sqnorms(x)
    labels = np.empty(n, np.int64)
    dist = np.empty(n, np.float32)
    counts = np.zeros(k, np.int64)
    for it in range(iters):
        cn2 = _sqnorms(c)
        if it == 0 or balance <= 0:
            penalty = np.zeros(k, np.float32)
        else:
            lam = balance * float(dist.mean()) / max(n / k, 1.0)
            penalty = (lam * counts).astype(np.float32)
        small = n * k * x.shape[1] < _SMALL_PRODUCT and x.dtype == np.float32
        dots = K.small_dots(x, c) if small else x @ c.T
        K.assign_penalised(dots, xn2, cn2, penalty, labels, dist, parallel)
        sums, counts = K.centroid_sums(x, labels, k)
        nz = counts > 0
        c[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        for j in np.flatnonzero(~nz):
            big = int(np.argmax(counts))
            members = np.flatnonzero(labels == big)
            pick = members[rng.integers(len(members))]
            c[j] = x[pick] + 1e-4 * rng.standard_normal(x.shape[1]).astype(np.float32)
            counts[big] -= 1
    return c


def assign_nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Nearest centroid index per row (no penalty), blocked."""
    n = x.shape[0]
    labels = np.empty(n, np.int64)
    dist = np.empty(n, np.float32)
    cn2 = _sqnorms(c)
    zero = np.zeros(c.shape[0], np.float32)
    for s in range(0, n, _BLOCK):
        xb = x[s : s + _BLOCK]
        K.assign_penalised(xb @ c.T, _sqnorms(xb), cn2, zero, labels[s : s + _BLOCK], dist[s : s + _BLOCK])
    return labels


def assign_balanced(x: np.ndarray, c: np.ndarray, cap: int) -> np.ndarray:
    """Nearest centroid per row with at most ``cap`` rows per centroid (one block: x is a tree node)."""
    labels = np.empty(x.shape[0], np.int64)
    K.assign_capacity(x @ c.T, _sqnorms(x), _sqnorms(c), int(cap), labels)
    return labels


def hierarchical_heads(
    x: np.ndarray,
    *,
    target_size: int,
    branch: int = 32,
    rng: np.random.Generator,
    refine_iters: int = 3,
    progress=None,
) -> np.ndarray:
    """Heads (H, d), about ``n / target_size`` of them, by recursive balanced k-means (SPTAG's BKT idea).

    A node with more than ``branch * target_size`` rows splits into ``branch`` children that are split
    further; a smaller node splits straight into ``round(n / target_size)`` leaves. Leaves larger than
    ``2 * target_size`` are split again; node members are assigned under a capacity (1.5x the mean child
    size for leaves, 3x above), so a k-means that collapses onto one centroid cannot make the recursion peel
    off a few rows at a time. A leaf's head is the mean of its members.
    The tree cuts natural clusters at its upper levels, so ``refine_iters`` global Lloyd iterations over
    all heads follow, on a sample of max(100k, 8 per head) rows (from ``GROUPED_MIN_HEADS`` heads on, a
    row's nearest head is sought among the members of its ``REFINE_GROUPS`` nearest head groups); on
    ../shared/data two of them raise the recall reachable in 16 postings from 0.89 to 0.93 at equal scan
    cost.
    ``progress`` (a tqdm bar or None) is advanced by the number of rows settled in leaves.
    """
    K.start_threads()
    with threadpool_limits(limits=1, user_api="blas"):
        # thousands of small products (a node's rows x its children): a multithreaded BLAS spends more on
        # waking and joining its threads than on the work, pathologically so on a loaded machine (measured:
        # minutes at 1M rows). One thread here; the large refinement products below use all of them.
        h = _tree_heads(x, target_size=target_size, branch=branch, rng=rng, progress=progress)
    # the refinement sample: 8 rows per head, at least 100k, at most ~1 GB of float32 (a bounded working
    # set when x is a memory map of millions of rows)
    n_ref = max(100_000, min(8 * len(h), _REFINE_BYTES // (4 * x.shape[1])))
    xs = x if x.shape[0] <= n_ref else _as_f32(take_rows(x, np.sort(rng.choice(x.shape[0], n_ref, replace=False))))
    MappedPages.of(x).release()  # the tree and the sample read all of a memory map: its pages go
    groups = None
    if len(h) >= GROUPED_MIN_HEADS and refine_iters:
        # each row's nearest head through head groups (nearest_candidates); the groups keep their members
        # while the heads move a little, their centroids follow
        groups = group_heads(h, rng=np.random.default_rng(int(rng.integers(2**62))))
    for _ in range(refine_iters):
        labels = np.concatenate(
            [ci[:, 0] for _, _, ci, _ in nearest_candidates(xs, h, 1, groups=groups, n_groups=REFINE_GROUPS)]
        )
        sums, counts = K.centroid_sums(xs, labels, len(h))
        nz = counts > 0
        h[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        if groups is not None:
            gs, gc = K.centroid_sums(h, groups[1], groups[0].shape[0])
            groups = ((gs / np.maximum(gc, 1)[:, None]).astype(np.float32), groups[1])
    return h


def _tree_heads(x: np.ndarray, *, target_size: int, branch: int, rng: np.random.Generator, progress) -> np.ndarray:
    """Leaf means of the balanced k-means tree (see :func:`hierarchical_heads`).

    Nodes are split concurrently on one thread per core (the kernels release the GIL). Each node draws its
    children's seeds from its own generator and leaves are ordered by their path in the tree, so the result
    does not depend on thread scheduling.
    """
    max_leaf = max(2, 2 * target_size)
    leaves: dict[tuple[int, ...], np.ndarray] = {}
    pages = MappedPages.of(x)  # each level of the tree reads every row once: keep ~1 GB of a map resident

    def split(path: tuple[int, ...], idx: np.ndarray, seed: int) -> list[tuple[tuple[int, ...], np.ndarray, int]]:
        n = len(idx)
        r = np.random.default_rng(seed)
        final = n <= branch * target_size
        k = max(2, round(n / target_size)) if final else branch
        cap = math.ceil((1.5 if final else 3.0) * n / k)
        if final:
            cap = min(cap, max_leaf)  # capacity * k >= n still holds: k = round(n / target) >= n / (2 target)
        if n <= _NODE_BLOCK:
            xs = _as_f32(take_rows(x, idx, pages))
            c = kmeans(xs, k, rng=r, iters=8, parallel=False)
            labels = assign_balanced(xs, c, cap)
        else:
            # a big node (the top levels over millions of rows, maybe a memory map): k-means on a sample, the
            # rows' products with the centroids blockwise; never a copy of all the node's rows
            c = kmeans(
                _as_f32(take_rows(x, np.sort(r.choice(idx, min(n, 256 * k), replace=False)), pages)),
                k,
                rng=r,
                iters=8,
                parallel=False,
            )
            dots = np.empty((n, k), np.float32)
            xn2 = np.empty(n, np.float32)
            for s in range(0, n, _NODE_BLOCK):
                xb = _as_f32(take_rows(x, idx[s : s + _NODE_BLOCK], pages))
                dots[s : s + len(xb)] = xb @ c.T
                xn2[s : s + len(xb)] = _sqnorms(xb)
            labels = np.empty(n, np.int64)
            K.assign_capacity(dots, xn2, _sqnorms(c), int(cap), labels)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(k + 1))
        seeds = r.integers(2**62, size=k)
        return [
            ((*path, j), idx[order[bounds[j] : bounds[j + 1]]], int(seeds[j]))
            for j in range(k)
            if bounds[j + 1] > bounds[j]
        ]

    def settle(items, pool, pending) -> None:
        for path, idx, seed in items:
            if len(idx) <= max_leaf:
                leaves[path] = _as_f32(take_rows(x, idx, pages)).mean(axis=0)
                if progress is not None:
                    progress.update(len(idx))
            else:
                pending.add(pool.submit(split, path, idx, seed))

    workers = max(1, min(os.cpu_count() or 1, numba.get_num_threads()))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set = set()
        settle([((), np.arange(x.shape[0]), int(rng.integers(2**62)))], pool, pending)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                settle(fut.result(), pool, pending)
    return np.ascontiguousarray(np.vstack([leaves[p] for p in sorted(leaves)]), dtype=np.float32)


# From this many heads on, a build finds each row's nearest heads through the head groups (``HeadTable``'s
# ~sqrt(H) groups); below, one brute-force product per block is cheaper.
GROUPED_MIN_HEADS = 8192
# a row's candidates are the members of its ASSIGN_GROUPS nearest groups (by centroid), as a search probes
# the members of its nearest groups; measured in NOTES ("Session 8: build at scale")
ASSIGN_GROUPS = 16
REFINE_GROUPS = 4  # the refinement needs each sampled row's nearest head only
_GROUP_BLOCK = 65536  # rows per grouped block (their heaps: 65536 x m x 12 bytes)
_ROW_BYTES = 1 << 29  # rows read from the input at a time: ~512 MB of float32 (bounds the working set)


class HeadGroups(NamedTuple):
    """Heads (H, d) in group order with their norms, ``start`` (G + 1) offsets, ``ids`` the head id of each
    row of ``heads``, and the group centroids (G, d) with their norms."""

    heads: np.ndarray
    hn2: np.ndarray
    start: np.ndarray
    ids: np.ndarray
    cent: np.ndarray
    cn2: np.ndarray

    @classmethod
    def of(cls, heads: np.ndarray, cent: np.ndarray, label: np.ndarray) -> HeadGroups:
        ids = np.argsort(label, kind="stable").astype(np.int64)
        start = np.zeros(cent.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(label, minlength=cent.shape[0]), out=start[1:])
        hg = _as_f32(heads[ids])
        return cls(hg, _sqnorms(hg), start, ids, _as_f32(cent), _sqnorms(_as_f32(cent)))


# below this many rows a block's candidates are scored by one kernel (``push_group_members``), not one BLAS
# product per group: an add of 100 vectors at 520k (12.5k heads, 112 groups) took 38-61 ms through ~112 small
# products on a loaded machine, 12 ms with single-threaded BLAS (NOTES, session 10)
_DIRECT_ROWS = 2048


def _grouped_nearest(xb: np.ndarray, groups: HeadGroups, m: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` nearest heads among the members of each row's ``t`` nearest groups: one BLAS product per
    group (its rows x its members) into per-row heaps (``push_nearest``); for a few rows, one kernel
    computing the products itself (``push_group_members``)."""
    b = xb.shape[0]
    g = groups.cent.shape[0]
    t = min(t, g)
    xn2 = _sqnorms(xb)
    score = groups.cn2[None, :] - 2.0 * (xb @ groups.cent.T)  # + |x|^2: the same order per row
    top = np.argpartition(score, t - 1, axis=1)[:, :t] if t < g else np.broadcast_to(np.arange(g), (b, g))
    heap_d = np.empty((b, m), np.float32)
    heap_i = np.empty((b, m), np.int64)
    heap_n = np.zeros(b, np.int64)
    if b < _DIRECT_ROWS:
        top = np.ascontiguousarray(top, dtype=np.int64)
        K.push_group_members(xb, xn2, top, groups.start, groups.heads, groups.hn2, groups.ids, heap_d, heap_i, heap_n)
        ci = np.empty((b, m), np.int64)
        cd = np.empty((b, m), np.float32)
        K.heaps_sorted(heap_d, heap_i, heap_n, ci, cd)
        return ci, cd
    flat = top.ravel()
    order = np.argsort(flat, kind="stable")
    rows_of = (order // t).astype(np.int64)
    bounds = np.searchsorted(flat[order], np.arange(g + 1))
    for j in np.flatnonzero(np.diff(bounds)):
        rows = rows_of[bounds[j] : bounds[j + 1]]
        lo, hi = groups.start[j], groups.start[j + 1]
        if hi > lo:
            dots = xb[rows] @ groups.heads[lo:hi].T
            K.push_nearest(dots, xn2[rows], groups.hn2[lo:hi], groups.ids[lo:hi], rows, heap_d, heap_i, heap_n)
    ci = np.empty((b, m), np.int64)
    cd = np.empty((b, m), np.float32)
    K.heaps_sorted(heap_d, heap_i, heap_n, ci, cd)
    return ci, cd


def nearest_candidates(
    x: np.ndarray,
    heads: np.ndarray,
    m: int,
    *,
    groups: tuple[np.ndarray, np.ndarray] | HeadGroups | None = None,
    n_groups: int = ASSIGN_GROUPS,
    progress=None,
):
    """Blocks ``(start, stop, ci, cd)``: the ``m`` nearest heads (ids, squared L2 ascending, -1/inf padded)
    of rows ``x[start:stop]``.

    ``x`` may be a memory map: it is read ~512 MB at a time. Without ``groups`` (or below
    ``GROUPED_MIN_HEADS`` heads) every head is scored, one BLAS product per 16k rows: n x H x d. With
    ``groups`` (centroids (G, d), a group label per head: ``HeadTable``'s ~sqrt(H) groups; or those heads
    already in group order, ``HeadTable.head_groups()``) a row's candidates are the members of its
    ``n_groups`` nearest groups: n x (n_groups H / G) x d.
    """
    K.start_threads()
    n = x.shape[0]
    m = max(1, min(m, heads.shape[0]))
    hg = None
    if groups is not None and heads.shape[0] >= GROUPED_MIN_HEADS:
        hg = groups if isinstance(groups, HeadGroups) else HeadGroups.of(heads, *groups)
        hg = hg if hg.cent.shape[0] > 1 else None
    grouped = hg is not None
    hn2 = _sqnorms(heads)
    pages = MappedPages.of(x)
    read = max(_BLOCK, _ROW_BYTES // (4 * max(1, x.shape[1])))
    step = _GROUP_BLOCK if grouped else _BLOCK
    for r0 in range(0, n, read):
        xr = _as_f32(x[r0 : r0 + read])
        for s in range(0, xr.shape[0], step):
            xb = xr[s : s + step]
            if grouped:
                ci, cd = _grouped_nearest(xb, hg, m, n_groups)
            else:
                ci = np.empty((xb.shape[0], m), np.int64)
                cd = np.empty((xb.shape[0], m), np.float32)
                K.nearest_heads(xb @ heads.T, _sqnorms(xb), hn2, m, ci, cd)
            yield r0 + s, r0 + s + xb.shape[0], ci, cd
            if progress is not None:
                progress.update(xb.shape[0])
        pages.read(xr.nbytes)


def closure_assign(
    x: np.ndarray,
    heads: np.ndarray,
    *,
    replica_count: int,
    rng_factor: float,
    candidates: int,
    groups: tuple[np.ndarray, np.ndarray] | HeadGroups | None = None,
    progress=None,
) -> np.ndarray:
    """(n, replica_count) int64 head ids per row (-1 padded): RNG rule over the nearest ``candidates``
    heads (found through the head ``groups`` when given: see :func:`nearest_candidates`).
    ``progress`` (a tqdm bar or None) is advanced by the rows assigned."""
    out = np.empty((x.shape[0], replica_count), np.int64)
    for s, e, ci, cd in nearest_candidates(x, heads, candidates, groups=groups, progress=progress):
        K.rng_select(ci, cd, heads, replica_count, rng_factor, out[s:e])
    return out


def cap_postings(x: np.ndarray, heads: np.ndarray, assign: np.ndarray, factor: float) -> np.ndarray:
    """Drop the farthest *replica* entries of postings longer than ``factor`` x the mean posting length
    (SPTAG's posting size limit); a vector's nearest posting (column 0) is always kept. Returns ``assign``
    with dropped entries set to -1.

    On near-isotropic clusters a few heads sit among the nearest of very many vectors and the RNG rule keeps
    them (synthetic 1M: postings of 18.5k entries against a mean of 204), so a query probing one scans
    ~100x the usual work; real embeddings (../shared/data: max 3.5x the mean) are untouched at factor 4.
    """
    rows, cols = np.nonzero(assign >= 0)
    hid = assign[rows, cols]
    h = heads.shape[0]
    sizes = np.bincount(hid, minlength=h)
    limit = max(8, int(factor * len(hid) / max(h, 1)))
    over = sizes > limit
    if not over.any():
        return assign
    primary = np.bincount(assign[:, 0][assign[:, 0] >= 0], minlength=h)
    sel = (cols > 0) & over[hid]
    r, c, hh = rows[sel], cols[sel], hid[sel]
    d = np.empty(len(r), np.float32)
    pages = MappedPages.of(x)
    for s in range(0, len(r), _BLOCK):
        xb, hb = take_rows(x, r[s : s + _BLOCK], pages), heads[hh[s : s + _BLOCK]]
        d[s : s + _BLOCK] = np.einsum("ij,ij->i", xb - hb, xb - hb)
    order = np.lexsort((d, hh))
    hh_sorted = hh[order]
    first = np.searchsorted(hh_sorted, hh_sorted, side="left")
    rank = np.arange(len(order)) - first
    keep_n = np.maximum(limit - primary, 0)
    drop = order[rank >= keep_n[hh_sorted]]
    out = assign.copy()
    out[r[drop], c[drop]] = -1
    return out


def group_heads(heads: np.ndarray, *, rng: np.random.Generator, iters: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Balanced groups of heads for the search's coarse level: (centroids (G, d), group label per head).

    About sqrt(H) groups of sqrt(H) heads. Plain k-means on heads is far from balanced (at 12.7k synthetic
    heads one group took 8.7k of them, so probing it scored nearly every head); members are assigned under a
    capacity of twice the mean group size, then centroids re-estimated ``iters`` times. Each centroid is
    the mean of its members, so a group's centroid distance stands for its members' distances.
    """
    h = heads.shape[0]
    g = max(2, round(math.sqrt(h)))
    cent = kmeans(heads, g, rng=rng, iters=10)
    cap = 2 * math.ceil(h / g)
    labels = assign_balanced(heads, cent, cap)
    for _ in range(iters):
        sums, counts = K.centroid_sums(heads, labels, g)
        nz = counts > 0
        cent[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        labels = assign_balanced(heads, cent, cap)
    sums, counts = K.centroid_sums(heads, labels, g)
    keep = counts > 0
    remap = np.cumsum(keep) - 1
    cent = (sums[keep] / counts[keep, None]).astype(np.float32)
    return np.ascontiguousarray(cent), remap[labels].astype(np.int64)
