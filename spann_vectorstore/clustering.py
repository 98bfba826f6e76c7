"""Balanced hierarchical k-means heads and SPTAG closure (RNG) assignment.

Distance work is one BLAS matrix product per block (``X @ C.T``); the per-row loops (penalised argmin,
nearest-m selection, RNG rule) are Numba kernels in ``_kernels``.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K

_BLOCK = 16384  # rows per matrix-product block: bounds temporary memory at ~BLOCK * H * 4 bytes


def _sqnorms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x).astype(np.float32)


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    iters: int = 12,
    balance: float = 0.05,
    max_train: int = 256,
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
        K.assign_penalised(x @ c.T, xn2, cn2, penalty, labels, dist)
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
    ``2 * target_size`` (k-means imbalance) are split again. A leaf's head is the mean of its members.
    The tree cuts natural clusters at its upper levels, so ``refine_iters`` global Lloyd iterations over
    all heads (on a sample of max(100k, 16 per head) rows) follow; on ../shared/data two of them raise the
    recall reachable in 16 postings from 0.89 to 0.93 at equal scan cost.
    ``progress`` (a tqdm bar or None) is advanced by the number of rows settled in leaves.
    """
    heads: list[np.ndarray] = []
    max_leaf = max(2, 2 * target_size)
    stack = [np.arange(x.shape[0])]

    def leaf(idx: np.ndarray) -> None:
        heads.append(x[idx].mean(axis=0))
        if progress is not None:
            progress.update(len(idx))

    while stack:
        idx = stack.pop()
        n = len(idx)
        if n <= max_leaf:
            leaf(idx)
            continue
        final = n <= branch * target_size
        k = max(2, round(n / target_size)) if final else branch
        xs = x[idx]
        c = kmeans(xs, k, rng=rng)
        labels = assign_nearest(xs, c)
        if np.bincount(labels, minlength=k).max() == n:
            # degenerate (identical points): split arbitrarily so recursion always shrinks
            labels = np.arange(n) % k
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(k + 1))
        for j in range(k):
            child = idx[order[bounds[j] : bounds[j + 1]]]
            if len(child) == 0:
                continue
            if final and len(child) <= max_leaf:
                leaf(child)
            else:
                stack.append(child)
    h = np.ascontiguousarray(np.vstack(heads), dtype=np.float32)
    n_ref = max(100_000, 16 * len(h))  # bounds refinement cost at 1M+ rows (each pass is n_ref x H x d)
    xs = x if x.shape[0] <= n_ref else x[np.sort(rng.choice(x.shape[0], n_ref, replace=False))]
    for _ in range(refine_iters):
        labels = assign_nearest(xs, h)
        sums, counts = K.centroid_sums(xs, labels, len(h))
        nz = counts > 0
        h[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
    return h


def closure_assign(
    x: np.ndarray,
    heads: np.ndarray,
    *,
    replica_count: int,
    rng_factor: float,
    candidates: int,
) -> np.ndarray:
    """(n, replica_count) int64 head ids per row (-1 padded): RNG rule over the nearest ``candidates``."""
    n = x.shape[0]
    h = heads.shape[0]
    m = max(1, min(candidates, h))
    out = np.empty((n, replica_count), np.int64)
    hn2 = _sqnorms(heads)
    for s in range(0, n, _BLOCK):
        xb = x[s : s + _BLOCK]
        ci = np.empty((len(xb), m), np.int64)
        cd = np.empty((len(xb), m), np.float32)
        K.nearest_heads(xb @ heads.T, _sqnorms(xb), hn2, m, ci, cd)
        K.rng_select(ci, cd, heads, replica_count, rng_factor, out[s : s + _BLOCK])
    return out
