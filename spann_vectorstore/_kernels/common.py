"""Helpers shared by the kernels: small dot products, bounded heaps, the host's SIMD support."""

from __future__ import annotations

import numpy as np
from numba import njit


def _host_simd() -> bool:
    """Whether kernels may use AVX2 and F16C: the host has them and Numba compiles for the host CPU."""
    from llvmlite import binding
    from numba.core import config

    if config.CPU_NAME not in (None, "host") or "avx2" in str(config.CPU_FEATURES or "").replace("+avx2", ""):
        return False
    try:
        features = binding.get_host_cpu_features()
        return bool(features.get("avx2", False) and features.get("f16c", False))
    except Exception:  # pragma: no cover - non-x86 hosts may not report features
        return False


_X86_SIMD = _host_simd()


@njit(cache=True, fastmath=True, inline="always")
def _dot4(q, a, b, c, e):
    """<q, a>, <q, b>, <q, c>, <q, e>: four rows per pass share each load of q."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for j in range(q.shape[0]):
        qj = q[j]
        s0 += a[j] * qj
        s1 += b[j] * qj
        s2 += c[j] * qj
        s3 += e[j] * qj
    return s0, s1, s2, s3


@njit(cache=True, fastmath=True, inline="always")
def _dot(q, a):
    s = np.float32(0.0)
    for j in range(q.shape[0]):
        s += a[j] * q[j]
    return s


@njit(cache=True, fastmath=True, inline="always")
def _head_scores(q, heads, hn2):
    """<q, head> and squared L2 distance to every head (H,)."""
    h = heads.shape[0]
    ip = np.empty(h, np.float32)
    dist = np.empty(h, np.float32)
    qn = _dot(q, q)
    h4 = h - h % 4
    for i in range(0, h4, 4):
        ip[i], ip[i + 1], ip[i + 2], ip[i + 3] = _dot4(q, heads[i], heads[i + 1], heads[i + 2], heads[i + 3])
    for i in range(h4, h):
        ip[i] = _dot(q, heads[i])
    for i in range(h):
        dist[i] = qn - 2.0 * ip[i] + hn2[i]
    return ip, dist


@njit(cache=True, inline="always")
def _heap_sift_down_max(keys, vals, size, pos):
    # max-heap on keys (largest at root)
    while True:
        left = 2 * pos + 1
        if left >= size:
            break
        big = left
        if left + 1 < size and keys[left + 1] > keys[left]:
            big = left + 1
        if keys[big] > keys[pos]:
            keys[big], keys[pos] = keys[pos], keys[big]
            vals[big], vals[pos] = vals[pos], vals[big]
            pos = big
        else:
            break


@njit(cache=True, inline="always")
def _heap_sift_down_min(keys, vals, size, pos):
    # min-heap on keys (smallest at root)
    while True:
        left = 2 * pos + 1
        if left >= size:
            break
        sm = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            sm = left + 1
        if keys[sm] < keys[pos]:
            keys[sm], keys[pos] = keys[pos], keys[sm]
            vals[sm], vals[pos] = vals[pos], vals[sm]
            pos = sm
        else:
            break


@njit(cache=True, inline="always")
def _heap_push_min(keys, vals, size, key, val):
    """Push into a min-heap of current ``size``; returns the new size."""
    pos = size
    keys[pos] = key
    vals[pos] = val
    while pos > 0:
        parent = (pos - 1) // 2
        if keys[parent] > keys[pos]:
            keys[parent], keys[pos] = keys[pos], keys[parent]
            vals[parent], vals[pos] = vals[pos], vals[parent]
            pos = parent
        else:
            break
    return size + 1


@njit(cache=True, inline="always")
def _worse(ka, ia, kb, ib):
    """Result (ka, ia) ranks below (kb, ib): a lower similarity, or an equal one and a larger id (ties are
    broken by id, so the order does not depend on insertion order or on a reopen)."""
    return ka < kb or (ka == kb and ia > ib)


@njit(cache=True, inline="always")
def _top_sift_down(keys, vals, tids, size, pos):
    # heap of results with the worst (see ``_worse``) at the root
    while True:
        left = 2 * pos + 1
        if left >= size:
            break
        w = left
        if left + 1 < size and _worse(keys[left + 1], tids[left + 1], keys[left], tids[left]):
            w = left + 1
        if _worse(keys[w], tids[w], keys[pos], tids[pos]):
            keys[w], keys[pos] = keys[pos], keys[w]
            vals[w], vals[pos] = vals[pos], vals[w]
            tids[w], tids[pos] = tids[pos], tids[w]
            pos = w
        else:
            break


@njit(cache=True, inline="always")
def _top_push(keys, vals, tids, size, key, val, tid):
    """Push a result into the heap of ``_top_sift_down``; returns the new size."""
    pos = size
    keys[pos] = key
    vals[pos] = val
    tids[pos] = tid
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(keys[pos], tids[pos], keys[parent], tids[parent]):
            keys[parent], keys[pos] = keys[pos], keys[parent]
            vals[parent], vals[pos] = vals[pos], vals[parent]
            tids[parent], tids[pos] = tids[pos], tids[parent]
            pos = parent
        else:
            break
    return size + 1


@njit(cache=True, inline="always")
def _heap_push_max(keys, vals, size, key, val):
    """Push ``(key, val)`` onto the max-heap ``keys``/``vals`` of ``size`` entries (room for one more);
    returns the new size."""
    pos = size
    keys[pos] = key
    vals[pos] = val
    while pos > 0:
        parent = (pos - 1) // 2
        if keys[parent] < keys[pos]:
            keys[parent], keys[pos] = keys[pos], keys[parent]
            vals[parent], vals[pos] = vals[pos], vals[parent]
            pos = parent
        else:
            break
    return size + 1


@njit(cache=True, inline="always")
def _heap_sort_max(keys, vals, size):
    """Sort the max-heap ``keys``/``vals`` of ``size`` entries ascending, in place."""
    end = size
    while end > 1:
        end -= 1
        keys[0], keys[end] = keys[end], keys[0]
        vals[0], vals[end] = vals[end], vals[0]
        _heap_sift_down_max(keys, vals, end, 0)


@njit(cache=True, inline="always")
def _smallest_m(dist, m, out_d, out_i):
    """The ``m`` smallest entries of ``dist`` sorted ascending into out_d/out_i; returns the count."""
    k = dist.shape[0]
    size = 0
    for j in range(k):
        dj = dist[j]
        if size < m:
            size = _heap_push_max(out_d, out_i, size, dj, j)
        elif dj < out_d[0]:
            out_d[0] = dj
            out_i[0] = j
            _heap_sift_down_max(out_d, out_i, size, 0)
    _heap_sort_max(out_d, out_i, size)
    return size
