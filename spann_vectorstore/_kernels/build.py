"""Build-time kernels: balanced k-means assignment, nearest heads, the RNG rule of closure assignment."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .common import _heap_push_max, _heap_sift_down_max, _heap_sort_max, _smallest_m
from .threads import forked, renamed

# ----------------------------------------------------------------------------------------------------------
# Clustering helpers (build time)
# ----------------------------------------------------------------------------------------------------------


def _assign_penalised(dots, xn2, cn2, penalty, out_label, out_dist):
    """Nearest centre per row with SPTAG's balance penalty: argmin_c |x-c|^2 + penalty[c].

    dots: (n, k) f32 = X @ C.T; xn2 (n,), cn2 (k,), penalty (k,). Writes labels and plain |x-c|^2.
    """
    n, k = dots.shape
    for i in prange(n):
        best = np.inf
        bj = 0
        bd = 0.0
        for j in range(k):
            dist = xn2[i] - 2.0 * dots[i, j] + cn2[j]
            cost = dist + penalty[j]
            if cost < best:
                best = cost
                bj = j
                bd = dist
        out_label[i] = bj
        out_dist[i] = bd


# Small clustering problems (most nodes of the hierarchy) run serially: a parallel region costs more than
# the work, and on a busy machine a descheduled worker stalls the whole region.
# nogil: the build's tree splits nodes on several Python threads at once (serial kernels only there: the
# default workqueue threading layer aborts on parallel kernels launched from two threads).
assign_penalised_serial = njit(cache=True, fastmath=True, nogil=True)(renamed(_assign_penalised, "_serial"))
assign_penalised_parallel = njit(cache=True, fastmath=True, parallel=True)(_assign_penalised)


@njit(cache=True, fastmath=True, nogil=True)
def small_dots(x, c):
    """``x @ c.T`` (n, k) for a small product (a posting split's 2-means), in this thread: a BLAS call that
    small wakes its threads for microseconds of work (14 ms per split on a loaded machine; NOTES, session
    10)."""
    n, d = x.shape
    k = c.shape[0]
    out = np.empty((n, k), np.float32)
    for i in range(n):
        for j in range(k):
            s = np.float32(0.0)
            for t in range(d):
                s += x[i, t] * c[j, t]
            out[i, j] = s
    return out


def assign_penalised(dots, xn2, cn2, penalty, out_label, out_dist, parallel=True):
    if not parallel or dots.shape[0] * dots.shape[1] < 4_000_000 or forked():
        assign_penalised_serial(dots, xn2, cn2, penalty, out_label, out_dist)
    else:
        assign_penalised_parallel(dots, xn2, cn2, penalty, out_label, out_dist)


@njit(cache=True, fastmath=True, nogil=True)
def assign_capacity(dots, xn2, cn2, cap, out_label):
    """Nearest centre per row, but no centre takes more than ``cap`` rows.

    Rows are settled in order of their distance to their nearest centre (the clearest members first); a row
    whose nearer centres are full goes to the nearest one with room. This bounds cluster sizes where the
    balance penalty alone cannot: in a near-isotropic blob k-means lets one centroid take almost every row,
    and recursive re-splitting then peels a few rows off per round (seen on synthetic data at 1M).
    """
    n, k = dots.shape
    best = np.empty(n, np.float32)
    best_j = np.empty(n, np.int64)
    for i in range(n):
        b = np.inf
        bj = 0
        for j in range(k):
            d = xn2[i] - 2.0 * dots[i, j] + cn2[j]
            if d < b:
                b = d
                bj = j
        best[i] = b
        best_j[i] = bj
    counts = np.zeros(k, np.int64)
    dist = np.empty(k, np.float32)
    for i in np.argsort(best):
        j = best_j[i]
        if counts[j] < cap:
            counts[j] += 1
            out_label[i] = j
            continue
        for j in range(k):
            dist[j] = xn2[i] - 2.0 * dots[i, j] + cn2[j]
        order = np.argsort(dist)
        for t in range(k):
            j = order[t]
            if counts[j] < cap:
                counts[j] += 1
                out_label[i] = j
                break


@njit(cache=True, fastmath=True, nogil=True)
def centroid_sums(x, labels, k):
    """Per-cluster sums (float64) and counts of rows ``x`` (n, d) with ``labels`` (n,)."""
    n, d = x.shape
    sums = np.zeros((k, d), np.float64)
    counts = np.zeros(k, np.int64)
    for i in range(n):
        lab = labels[i]
        counts[lab] += 1
        for j in range(d):
            sums[lab, j] += x[i, j]
    return sums, counts


@njit(cache=True, parallel=True, fastmath=True)
def nearest_heads(dots, xn2, hn2, m, out_i, out_d):
    """Per row the ``m`` nearest heads by squared L2, ascending. dots: (n, H) = X @ heads.T."""
    n, h = dots.shape
    for i in prange(n):
        dist = np.empty(h, np.float32)
        for j in range(h):
            dist[j] = xn2[i] - 2.0 * dots[i, j] + hn2[j]
        od = np.empty(m, np.float32)
        oi = np.empty(m, np.int64)
        cnt = _smallest_m(dist, m, od, oi)
        for t in range(cnt):
            out_i[i, t] = oi[t]
            out_d[i, t] = max(od[t], 0.0)
        for t in range(cnt, m):
            out_i[i, t] = -1
            out_d[i, t] = np.inf


@njit(cache=True, fastmath=True, inline="always")
def _sqdist(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        t = a[i] - b[i]
        s += t * t
    return s


@njit(cache=True, parallel=True, fastmath=True)
def rng_select(cand_i, cand_d, heads, replica_count, rng_factor, out):
    """SPTAG closure assignment: walk candidates nearest first, accept head c_i unless an accepted
    head c_j has ``rng_factor * |c_i - c_j|^2 < |x - c_i|^2``; stop at ``replica_count``.

    cand_i, cand_d: (n, m) ascending candidates (-1 padded); heads (H, d); out: (n, replica_count) int64,
    -1 padded. Returns nothing; the nearest head is always accepted.
    """
    n, m = cand_i.shape
    for i in prange(n):
        cnt = 0
        for t in range(m):
            c = cand_i[i, t]
            if c < 0:
                break
            ok = True
            for s in range(cnt):
                a = out[i, s]
                if rng_factor * _sqdist(heads[c], heads[a]) < cand_d[i, t]:
                    ok = False
                    break
            if ok:
                out[i, cnt] = c
                cnt += 1
                if cnt == replica_count:
                    break
        for s in range(cnt, replica_count):
            out[i, s] = -1


@njit(cache=True, fastmath=True, nogil=True, inline="always")
def _offer(hd, hi, cnt, d, c):
    """Put ``(d, c)`` into a row's max-heap of its ``m = len(hd)`` smallest distances (the caller checked
    that ``d`` is below the bar); returns the new count and the bar the next one must pass."""
    m = hd.shape[0]
    if cnt < m:
        cnt = _heap_push_max(hd, hi, cnt, d, c)
    else:
        hd[0] = d
        hi[0] = c
        _heap_sift_down_max(hd, hi, cnt, 0)
    return cnt, (hd[0] if cnt == m else np.float32(np.inf))


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def push_nearest(dots, xn2, hn2, cols, rows, heap_d, heap_i, heap_n):
    """Rows ``rows[i]`` of a block meet heads ``cols[j]`` at squared L2 ``xn2[i] - 2 dots[i, j] + hn2[j]``;
    each row keeps its ``m`` nearest in a max-heap: ``heap_d``/``heap_i`` (B, m), ``heap_n`` (B,) counts.

    dots: (r, c) = rows' vectors @ heads[cols].T. ``rows`` are distinct, so rows never share a heap."""
    nr, nc = dots.shape
    m = heap_d.shape[1]
    for i in prange(nr):
        r = rows[i]
        hd = heap_d[r]
        hi = heap_i[r]
        cnt = heap_n[r]
        xi = xn2[i]
        top = hd[0] if cnt == m else np.float32(np.inf)  # a full heap's largest: the bar to pass
        for j in range(nc):
            d = xi - np.float32(2.0) * dots[i, j] + hn2[j]
            if d < top:
                cnt, top = _offer(hd, hi, cnt, d, cols[j])
        heap_n[r] = cnt


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def push_group_members(xb, xn2, top, start, heads, hn2, ids, heap_d, heap_i, heap_n):
    """``push_nearest`` without the products: row ``i`` of ``xb`` meets the members of its groups
    ``top[i, :]`` (rows ``start[g]:start[g + 1]`` of ``heads``, the heads in group order, ``ids`` their head
    ids), dot products computed here. For a few rows (an add), where one small BLAS product per group costs
    more in calls, gathers and thread wake-ups than the arithmetic (NOTES, session 10)."""
    b, d = xb.shape
    t = top.shape[1]
    m = heap_d.shape[1]
    for i in prange(b):
        hd = heap_d[i]
        hi = heap_i[i]
        cnt = heap_n[i]
        xi = xn2[i]
        bar = hd[0] if cnt == m else np.float32(np.inf)
        for q in range(t):
            g = top[i, q]
            for h in range(start[g], start[g + 1]):
                s = np.float32(0.0)
                for j in range(d):
                    s += xb[i, j] * heads[h, j]
                dist = xi - np.float32(2.0) * s + hn2[h]
                if dist < bar:
                    cnt, bar = _offer(hd, hi, cnt, dist, ids[h])
        heap_n[i] = cnt


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def heaps_sorted(heap_d, heap_i, heap_n, out_i, out_d):
    """Each row's heap (``push_nearest``) ascending into ``out_i``/``out_d`` (B, m), -1/inf padded,
    distances clamped at 0 (as ``nearest_heads``)."""
    b, m = heap_d.shape
    for r in prange(b):
        hd = heap_d[r]
        hi = heap_i[r]
        cnt = heap_n[r]
        _heap_sort_max(hd, hi, cnt)
        for t in range(cnt):
            out_i[r, t] = hi[t]
            out_d[r, t] = max(hd[t], 0.0)
        for t in range(cnt, m):
            out_i[r, t] = -1
            out_d[r, t] = np.inf
