"""Numba kernels: the only place with per-vector loops.

Every function here is a module-level ``@njit`` over plain contiguous arrays (no classes, no closures), so
each compiles once per signature and is cached on disk (``cache=True``); no kernel is compiled per index.
Callers (``quantization``, ``clustering``, ``index``) validate and convert inputs; kernels trust them.

Conventions
-----------
* ``d``: dimension, ``nb``: bytes per code (``d * bits / 8``), ``H``: number of heads (posting lists).
* Internal similarity ``sim = <q, x> - alpha * |x|^2 / 2``: ``alpha = 0`` for inner product and cosine,
  ``alpha = 1`` for L2 (maximising it minimises ``|q - x|^2``). The index converts back to distances.
* Codes are RaBitQ codes of the rotated, normalised residual ``o = R (x - c) / |x - c|``: ``bits`` bits per
  dimension; level ``v`` stands for ``v - (2^bits - 1) / 2``. Packing is strided: with ``per = 8 // bits``
  levels per byte, dimension ``i`` sits in byte ``i % nb`` at slot ``i // nb``, so the scan reads each slot
  as a contiguous run of bytes against a contiguous slice of the query and LLVM vectorises it (a byte LUT
  cannot vectorise: its gathers were 20-60% slower here).
  ``<x, q> ~= <c, q> + fac * <u(code), R q>`` with ``fac = |x - c| / <u, o>``, and the RaBitQ error bound
  ``|err| <= errfac * |q| * eps0`` with ``errfac = |x - c| * tan(angle(u, o)) / sqrt(d - 1)``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# ----------------------------------------------------------------------------------------------------------
# Quantisation (build / add time)
# ----------------------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=True, inline="always")
def _quantize_one(o, bits, n_grid, lv, best_lv):
    """Extended-RaBitQ code search for one unit vector ``o``: returns cos(u, o) of the best levels.

    Tries scales ``t`` on a grid (then a finer grid around the best) for ``v = clip(round(o * t + cb))``
    and keeps the levels ``u = v - cb`` whose direction is closest to ``o``. Writes levels to ``best_lv``.
    """
    d = o.shape[0]
    vmax = (1 << bits) - 1
    cb = vmax / 2.0
    if bits == 1:
        s = 0.0
        for i in range(d):
            best_lv[i] = 1 if o[i] > 0 else 0
            s += abs(o[i])
        return 0.5 * s / (0.5 * np.sqrt(d))
    amax = 1e-12
    for i in range(d):
        a = abs(o[i])
        if a > amax:
            amax = a
    # the largest useful scale puts the largest coordinate at the top level; smaller scales clip nothing
    t_hi = (cb + 0.5) / amax
    t_lo = 0.2 * t_hi
    best_cos = -2.0
    best_t = t_hi
    for _rnd in range(2):
        step = (t_hi - t_lo) / (n_grid - 1)
        for g in range(n_grid):
            t = t_lo + g * step
            dot = 0.0
            nrm = 0.0
            for i in range(d):
                v = np.floor(o[i] * t + cb + 0.5)
                if v < 0.0:
                    v = 0.0
                elif v > vmax:
                    v = vmax
                u = v - cb
                dot += u * o[i]
                nrm += u * u
            c = dot / np.sqrt(nrm) if nrm > 0 else -1.0
            if c > best_cos:
                best_cos = c
                best_t = t
        t_lo = max(best_t - step, 1e-6)
        t_hi = best_t + step
    for i in range(d):
        v = np.floor(o[i] * best_t + cb + 0.5)
        if v < 0.0:
            v = 0.0
        elif v > vmax:
            v = vmax
        best_lv[i] = np.int64(v)
    return best_cos


def _encode_residuals(xr, hr, vidx, hidx, bits, codes, fac, errfac):
    """Encode entries ``e``: residual of rotated vector ``xr[vidx[e]]`` to rotated head ``hr[hidx[e]]``.

    xr: (n, d) f32 rotated vectors; hr: (H, d) f32 rotated heads; vidx, hidx: (m,) int.
    Outputs: codes (m, nb) u8, fac (m,) f32, errfac (m,) f32 (see module docstring).
    """
    m = vidx.shape[0]
    d = xr.shape[1]
    per = 8 // bits
    vmax = (1 << bits) - 1
    cb = vmax / 2.0
    sq = np.sqrt(max(d - 1, 1))
    # chunks, so the scratch vectors are allocated once per chunk rather than once per entry
    n_chunks = (m + 255) // 256
    for ch in prange(n_chunks):
        o = np.empty(d, np.float32)
        lv = np.empty(d, np.int64)
        best = np.empty(d, np.int64)
        for e in range(ch * 256, min(m, ch * 256 + 256)):
            _encode_one(xr[vidx[e]], hr[hidx[e]], bits, per, vmax, cb, sq, o, lv, best, codes[e], fac, errfac, e)


@njit(cache=True, fastmath=True, inline="always")
def _encode_one(x, c, bits, per, vmax, cb, sq, o, lv, best, code, fac, errfac, e):
    """Encode one residual ``x - c`` (both rotated) into ``code`` and ``fac[e]``, ``errfac[e]``."""
    d = x.shape[0]
    nrm = 0.0
    for i in range(d):
        r = x[i] - c[i]
        o[i] = r
        nrm += r * r
    nrm = np.sqrt(nrm)
    if nrm < 1e-20:
        code[:] = 0
        fac[e] = 0.0
        errfac[e] = 0.0
        return
    for i in range(d):
        o[i] /= nrm
    cosv = _quantize_one(o, bits, 16, lv, best)
    # <u, o> with u unnormalised = cos * |u|
    unrm = 0.0
    for i in range(d):
        u = best[i] - cb
        unrm += u * u
    unrm = np.sqrt(unrm)
    uo = cosv * unrm
    fac[e] = nrm / uo if uo > 1e-20 else 0.0
    cosv = min(max(cosv, 1e-6), 1.0)
    errfac[e] = nrm * np.sqrt(max(1.0 - cosv * cosv, 0.0)) / cosv / sq
    nb = code.shape[0]
    for j in range(nb):
        b = 0
        for t in range(per):
            i = t * nb + j
            if i < d:
                b |= (best[i] & vmax) << (t * bits)
        code[j] = b


encode_residuals_serial = njit(cache=True, fastmath=True)(_encode_residuals)
encode_residuals_parallel = njit(cache=True, fastmath=True, parallel=True)(_encode_residuals)


def encode_residuals(xr, hr, vidx, hidx, bits, codes, fac, errfac):
    """Parallel for large batches; serial for the few hundred entries of an add or a split."""
    fn = encode_residuals_parallel if vidx.shape[0] >= 4096 else encode_residuals_serial
    fn(xr, hr, vidx, hidx, bits, codes, fac, errfac)


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
assign_penalised_serial = njit(cache=True, fastmath=True, nogil=True)(_assign_penalised)
assign_penalised_parallel = njit(cache=True, fastmath=True, parallel=True)(_assign_penalised)


def assign_penalised(dots, xn2, cn2, penalty, out_label, out_dist, parallel=True):
    if not parallel or dots.shape[0] * dots.shape[1] < 4_000_000:
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
def _smallest_m(dist, m, out_d, out_i):
    """The ``m`` smallest entries of ``dist`` sorted ascending into out_d/out_i; returns the count."""
    k = dist.shape[0]
    size = 0
    for j in range(k):
        dj = dist[j]
        if size < m:
            # push into max-heap
            pos = size
            out_d[pos] = dj
            out_i[pos] = j
            size += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if out_d[parent] < out_d[pos]:
                    out_d[parent], out_d[pos] = out_d[pos], out_d[parent]
                    out_i[parent], out_i[pos] = out_i[pos], out_i[parent]
                    pos = parent
                else:
                    break
        elif dj < out_d[0]:
            out_d[0] = dj
            out_i[0] = j
            _heap_sift_down_max(out_d, out_i, size, 0)
    # heap sort ascending
    end = size
    while end > 1:
        end -= 1
        out_d[0], out_d[end] = out_d[end], out_d[0]
        out_i[0], out_i[end] = out_i[end], out_i[0]
        _heap_sift_down_max(out_d, out_i, end, 0)
    return size


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


# ----------------------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------------------


_MIN_PROBE = 8  # postings scanned regardless of max_dist_ratio


# the intrinsic's name carries its pointer type: typed pointers up to LLVM 14 (llvmlite < 0.44), opaque after
_PREFETCH_NAME = "llvm.prefetch.p0" if llvm_version_info >= (15,) else "llvm.prefetch.p0i8"


@intrinsic
def _prefetch(typingctx, addr):
    """llvm.prefetch (read, high locality) of the cache line at integer address ``addr``."""
    sig = types.void(types.uintp)

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), _PREFETCH_NAME
        )
        ptr = builder.inttoptr(args[0], i8p)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


_PREFETCH_AHEAD = 4  # rerank candidates whose vectors are requested ahead of use


@njit(cache=True, inline="always")
def _prefetch_row(vidx, vec_base, vec_tail):
    """Request every cache line of vector ``vidx``: the rerank's reads are random rows of a (memory-mapped)
    matrix, each a cache and TLB miss; prefetching a few candidates ahead halved their cost (measured:
    75 exact distances 32-43 us -> 22 us on ../shared/data)."""
    nb = vec_base.shape[0]
    if vidx < nb:
        addr = vec_base.ctypes.data + vidx * vec_base.strides[0]
    else:
        addr = vec_tail.ctypes.data + (vidx - nb) * vec_tail.strides[0]
    for off in range(0, vec_base.shape[1] * 4, 64):
        _prefetch(addr + off)


# ----------------------------------------------------------------------------------------------------------
# FastScan: stage 1 of the scan over 32 entries at a time
# ----------------------------------------------------------------------------------------------------------
# The 1-bit sign codes live in blocks of 32 consecutive arena entries (``blocked[e // 32]``, lane
# ``e % 32``). Code byte ``j`` of an entry holds dimensions ``t * nb1 + j`` in bit ``t`` (the strided packing
# above, ``nb1`` bytes per code); its low nibble (bits 0-3) and high nibble (bits 4-7) are looked up in two
# 16-entry tables of partial sums of the rotated query. Block row bytes ``32 j + i`` (i < 16) hold the low
# nibbles of lanes i (bits 0-3) and i + 16 (bits 4-7), bytes ``32 j + 16 + i`` the high nibbles. One
# byte-shuffle (AVX2 ``vpshufb``) then looks up 32 nibbles at once (the layout of faiss's and rabitqlib's
# FastScan): ~3x less work per code than the popcounts of bit-planes it replaced.


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
_FS_CHUNK = 128  # code bytes per u16 accumulation (2 lookups of <= 255 per byte: 128 * 510 < 65536)


@intrinsic
def _fs_accum_avx2(typingctx, codes_addr, lut_addr, nbytes, out_addr):
    """out[0:32] (u16) = per-lane sums of the byte LUT lookups of ``nbytes`` code bytes of one block.

    codes_addr: ``32 * nbytes`` block bytes; lut_addr: ``32 * nbytes`` table bytes (per code byte, the low
    nibble's 16 entries then the high nibble's); out_addr: 32 uint16.
    """
    sig = types.void(types.uintp, types.uintp, types.intp, types.uintp)

    def codegen(context, builder, signature, args):
        i8, i16, i32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
        v32i8, v32i16, v16i16 = ir.VectorType(i8, 32), ir.VectorType(i16, 32), ir.VectorType(i16, 16)
        shuf = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v32i8, [v32i8, v32i8]), "llvm.x86.avx2.pshuf.b"
        )
        cbase, lbase, n, obase = args
        acc_lo = cgutils.alloca_once_value(builder, ir.Constant(v32i16, None))
        acc_hi = cgutils.alloca_once_value(builder, ir.Constant(v32i16, None))
        mask = ir.Constant(v32i8, [0x0F] * 32)
        four = ir.Constant(v32i8, [4] * 32)
        with cgutils.for_range(builder, n) as loop:
            off = builder.mul(loop.index, ir.Constant(loop.index.type, 32))
            v = builder.load(builder.inttoptr(builder.add(cbase, off), v32i8.as_pointer()), align=1)
            table = builder.load(builder.inttoptr(builder.add(lbase, off), v32i8.as_pointer()), align=1)
            r_lo = builder.call(shuf, [table, builder.and_(v, mask)])
            r_hi = builder.call(shuf, [table, builder.and_(builder.lshr(v, four), mask)])
            builder.store(builder.add(builder.load(acc_lo), builder.zext(r_lo, v32i16)), acc_lo)
            builder.store(builder.add(builder.load(acc_hi), builder.zext(r_hi, v32i16)), acc_hi)
        first = ir.Constant(ir.VectorType(i32, 16), list(range(16)))
        second = ir.Constant(ir.VectorType(i32, 16), list(range(16, 32)))
        for half, acc in enumerate((acc_lo, acc_hi)):
            a = builder.load(acc)
            lanes = builder.add(builder.shuffle_vector(a, a, first), builder.shuffle_vector(a, a, second))
            dst = builder.add(obase, ir.Constant(obase.type, 32 * half))
            builder.store(lanes, builder.inttoptr(dst, v16i16.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _fs_block_scalar(row, lut8, acc):
    """Portable ``_fs_block`` (no AVX2): the same lookups one lane at a time."""
    for j in range(row.shape[0] // 32):
        o = 32 * j
        for i in range(16):
            b0 = row[o + i]
            b1 = row[o + 16 + i]
            acc[i] += np.int32(lut8[o + (b0 & 15)]) + np.int32(lut8[o + 16 + (b1 & 15)])
            acc[i + 16] += np.int32(lut8[o + (b0 >> 4)]) + np.int32(lut8[o + 16 + (b1 >> 4)])


@njit(cache=True, inline="always")
def _fs_block(blocked, blk, lut8, acc16, acc):
    """acc[0:32] = LUT sums of the 32 lanes of block ``blk`` (see above)."""
    for i in range(32):
        acc[i] = 0
    if _X86_SIMD:
        nb1 = blocked.shape[1] // 32
        base = blocked.ctypes.data + blk * blocked.strides[0]
        for c0 in range(0, nb1, _FS_CHUNK):
            c1 = min(nb1, c0 + _FS_CHUNK)
            _fs_accum_avx2(base + 32 * c0, lut8.ctypes.data + 32 * c0, c1 - c0, acc16.ctypes.data)
            for i in range(32):
                acc[i] += np.int32(acc16[i])
    else:
        _fs_block_scalar(blocked[blk], lut8, acc)


@njit(cache=True, fastmath=True, inline="always")
def _fs_lut(qr, nb1):
    """The byte LUTs of rotated query ``qr`` for ``nb1``-byte sign codes.

    Returns ``(lut8, scale, qneg, qerr)``: the sum of ``qr`` over a code's set bits is
    ``scale * sum(lookups) + qneg`` within ``qerr`` (3 sigma of the rounding of 2 * nb1 lookups, each uniform
    in +-scale/2). Each table is shifted by its minimum (the sum of its negative entries, summed into
    ``qneg``) so entries are 0..255 on one common scale.
    """
    d = qr.shape[0]
    lut8 = np.empty(32 * nb1, np.uint8)
    qneg = 0.0
    span = 0.0
    for j in range(nb1):
        for half in range(2):
            s = 0.0
            for t in range(4):
                dim = (4 * half + t) * nb1 + j
                if dim < d:
                    s += abs(qr[dim])
                    qneg += min(qr[dim], 0.0)
            span = max(span, s)
    scale = span / 255.0 if span > 0 else 1.0
    inv = 1.0 / scale
    f = np.empty(16, np.float32)
    for j in range(nb1):
        for half in range(2):
            f[0] = 0.0
            low = 0.0
            for t in range(4):
                dim = (4 * half + t) * nb1 + j
                w = qr[dim] if dim < d else 0.0
                low += min(w, 0.0)
                for v in range(1 << t):
                    f[(1 << t) + v] = f[v] + w
            o = 32 * j + 16 * half
            for v in range(16):
                lut8[o + v] = np.uint8(min(255.0, (f[v] - low) * inv + 0.5))
    qerr = 3.0 * scale * np.sqrt(2 * nb1 / 12.0)
    return lut8, scale, qneg, qerr


@njit(cache=True)
def fs_scatter(rows, dst, blocked):
    """Write code rows ``rows[r]`` (nb1 bytes each) to arena entries ``dst[r]`` of the blocked layout."""
    nb1 = rows.shape[1]
    for r in range(rows.shape[0]):
        e = dst[r]
        row = blocked[e // 32]
        lane = e % 32
        i = lane % 16
        for j in range(nb1):
            c = rows[r, j]
            o = 32 * j + i
            if lane < 16:
                row[o] = (row[o] & 0xF0) | (c & 0x0F)
                row[o + 16] = (row[o + 16] & 0xF0) | (c >> 4)
            else:
                row[o] = (row[o] & 0x0F) | ((c & 0x0F) << 4)
                row[o + 16] = (row[o + 16] & 0x0F) | (c & 0xF0)


@njit(cache=True)
def fs_gather(blocked, src, out):
    """Read the code rows of arena entries ``src`` from the blocked layout into ``out`` (len(src), nb1)."""
    nb1 = out.shape[1]
    for r in range(src.shape[0]):
        e = src[r]
        row = blocked[e // 32]
        lane = e % 32
        i = lane % 16
        for j in range(nb1):
            o = 32 * j + i
            if lane < 16:
                out[r, j] = (row[o] & 0x0F) | ((row[o + 16] & 0x0F) << 4)
            else:
                out[r, j] = (row[o] >> 4) | (row[o + 16] & 0xF0)


@njit(cache=True, fastmath=True, inline="always")
def _dot_codes(code, qs, nb, bits):
    """sum_i qs[i] * level_i over one strided code (levels unshifted; the caller subtracts cb * sum(q))."""
    acc = np.float32(0.0)
    if bits == 2:
        for j in range(nb):
            b = np.uint8(code[j])
            acc += (
                qs[j] * np.float32(b & np.uint8(3))
                + qs[nb + j] * np.float32((b >> np.uint8(2)) & np.uint8(3))
                + qs[2 * nb + j] * np.float32((b >> np.uint8(4)) & np.uint8(3))
                + qs[3 * nb + j] * np.float32(b >> np.uint8(6))
            )
    elif bits == 4:
        for j in range(nb):
            b = np.uint8(code[j])
            acc += qs[j] * np.float32(b & np.uint8(15)) + qs[nb + j] * np.float32(b >> np.uint8(4))
    elif bits == 8:
        for j in range(nb):
            acc += qs[j] * np.float32(code[j])
    else:
        for j in range(nb):
            b = np.uint8(code[j])
            acc += (
                qs[j] * np.float32(b & np.uint8(1))
                + qs[nb + j] * np.float32((b >> np.uint8(1)) & np.uint8(1))
                + qs[2 * nb + j] * np.float32((b >> np.uint8(2)) & np.uint8(1))
                + qs[3 * nb + j] * np.float32((b >> np.uint8(3)) & np.uint8(1))
                + qs[4 * nb + j] * np.float32((b >> np.uint8(4)) & np.uint8(1))
                + qs[5 * nb + j] * np.float32((b >> np.uint8(5)) & np.uint8(1))
                + qs[6 * nb + j] * np.float32((b >> np.uint8(6)) & np.uint8(1))
                + qs[7 * nb + j] * np.float32(b >> np.uint8(7))
            )
    return acc


@njit(cache=True, fastmath=True, inline="always")
def _exact_sim(q, vidx, vec_base, vec_tail, xn2, alpha):
    nb = vec_base.shape[0]
    s = 0.0
    if vidx < nb:
        v = vec_base[vidx]
        for i in range(q.shape[0]):
            s += q[i] * v[i]
    else:
        v = vec_tail[vidx - nb]
        for i in range(q.shape[0]):
            s += q[i] * v[i]
    return s - alpha * 0.5 * xn2[vidx]


@njit(cache=True, fastmath=True)
def _search_one(
    q,
    qr,
    pd,
    pi,
    pip,
    npb,
    max_dist_ratio,
    min_allowed,
    k,
    eps0,
    alpha,
    bits,
    p_start,
    p_size,
    e_vidx,
    e_codes,
    e_fac,
    e_err,
    e_sign,
    e_fac1,
    e_err1,
    xn2,
    deleted,
    allowed,
    vec_base,
    vec_tail,
    vids,
    stamp,
    stamp_val,
    lut,
    counters,
    out_idx,
    out_sim,
):
    """Search one query; writes the top-k internal indices and exact similarities, best first.

    q: raw query (d,); qr: rotated query (d,); the ``npb`` postings to probe, nearest first: pd their heads'
    squared L2 distances to q, pi their indices, pip <q, head> (see ``_probe_list``). ``allowed`` is
    an (n,) u8 mask or an empty array meaning every vector is allowed; with a mask, postings are probed in
    order until ``min_allowed`` allowed entries were seen. ``stamp`` (n,) i32 with ``stamp_val``
    de-duplicates replicas. ``vids`` (n,) i64: the ids, which break ties between equal similarities
    (smaller id first). ``e_sign``: the 1-bit sign codes in FastScan blocks (see ``_fs_block``); for
    bits 1 ``e_codes`` is unused (may be empty). ``counters`` (4,) i64 accumulates entries estimated,
    stage-1 survivors, candidates kept for rerank, exact distances computed. Returns the number of results.
    """
    nbytes = e_codes.shape[1]
    # query-aware pruning: skip postings much farther than the nearest head (SPTAG maxDistRatio)
    limit = max_dist_ratio * max(pd[0], 1e-12) if npb > 0 else 0.0
    total = 0
    used = 0
    for t in range(npb):
        # the nearest few postings are always scanned: a query sitting on a head (distance ~0) would
        # otherwise prune everything else
        if t >= _MIN_PROBE and pd[t] > limit:
            break
        total += p_size[pi[t]]
        used += 1
    qn = 0.0
    for i in range(qr.shape[0]):
        qn += qr[i] * qr[i]
    qn = np.sqrt(qn)
    bound_scale = qn * eps0
    # the query laid out like the codes (zero-padded to nbytes * per), and the level offset term
    shift = 0.0
    if bits > 1:
        per = 8 // bits
        for i in range(nbytes * per):
            lut[i] = qr[i] if i < qr.shape[0] else 0.0
            shift += lut[i]
        shift *= ((1 << bits) - 1) / 2.0
    # stage-1 LUTs (FastScan): one 16-entry table per nibble of the sign codes, quantised to bytes
    lut8, scale, qneg, qerr = _fs_lut(qr, e_sign.shape[1] // 32)
    qsum = 0.0
    for i in range(qr.shape[0]):
        qsum += qr[i]
    c0 = qneg - 0.5 * qsum
    acc16 = np.empty(32, np.uint16)
    acc = np.empty(32, np.int32)
    ub1 = np.empty(32, np.float32)
    use_mask = allowed.shape[0] > 0
    # running k best lower bounds (min-heap) -> threshold for candidates
    lb_keys = np.empty(k, np.float32)
    lb_vals = np.empty(k, np.int64)
    lb_size = 0
    thr = -np.inf
    cand_ub = np.empty(total, np.float32)
    cand_v = np.empty(total, np.int64)
    nc = 0
    seen = 0
    for t in range(used):
        p = pi[t]
        base_ip = pip[t]
        s0 = p_start[p]
        s1 = s0 + p_size[p]
        counters[0] += p_size[p]
        if use_mask:
            # filtered: probing stops once min_allowed allowed entries were seen (past _MIN_PROBE postings),
            # wherever the filter puts them (max_dist_ratio is off: allowed neighbours may lie farther out)
            if t >= _MIN_PROBE and seen >= min_allowed:
                break
            for e in range(s0, s1):
                seen += allowed[e_vidx[e]]
        for blk in range(s0 // 32, (s1 + 31) // 32):
            # stage 1: 1-bit estimates of the block's 32 entries at once, with their error bound (RaBitQ +
            # LUT rounding); lanes outside the posting are computed and ignored
            _fs_block(e_sign, blk, lut8, acc16, acc)
            b0 = blk * 32
            lo = max(s0, b0)
            hi = min(s1, b0 + 32)
            # upper bounds of the block's lanes in one vectorised pass (sum of q' over the set sign bits
            # ~ scale * acc + qneg); for l2 the norm term only lowers them, so it is applied to survivors
            for e in range(lo, hi):
                f = e_fac1[e]
                ub1[e - b0] = base_ip + f * (scale * acc[e - b0] + c0 + qerr) + e_err1[e] * bound_scale
            for e in range(lo, hi):
                if ub1[e - b0] < thr:
                    continue
                # per-vector arrays (mask, stamps, tombstones, norms) are random accesses: touched only
                # by the few entries that survive the bound
                v = e_vidx[e]
                if use_mask and allowed[v] == 0:
                    continue
                err = e_err1[e] * bound_scale + e_fac1[e] * qerr
                est = ub1[e - b0] - err
                if alpha != 0.0:
                    est -= alpha * 0.5 * xn2[v]
                ub = est + err
                if ub < thr:
                    continue
                # replicas: a vector enters the candidates once (from the nearest posting that admits it)
                if stamp[v] == stamp_val or deleted[v] != 0:
                    continue
                counters[1] += 1
                if bits > 1:
                    # stage 2 (extended RaBitQ): the full multi-bit code tightens the estimate
                    est = base_ip + e_fac[e] * (_dot_codes(e_codes[e], lut, nbytes, bits) - shift)
                    if alpha != 0.0:
                        est -= alpha * 0.5 * xn2[v]
                    err = e_err[e] * bound_scale
                    ub = est + err
                    if ub < thr:
                        continue
                stamp[v] = stamp_val
                lb = est - err
                if lb_size < k:
                    lb_size = _heap_push_min(lb_keys, lb_vals, lb_size, lb, v)
                    if lb_size == k:
                        thr = lb_keys[0]
                elif lb > lb_keys[0]:
                    lb_keys[0] = lb
                    lb_vals[0] = v
                    _heap_sift_down_min(lb_keys, lb_vals, lb_size, 0)
                    thr = lb_keys[0]
                cand_ub[nc] = ub
                cand_v[nc] = v
                nc += 1
    # exact rerank in order of decreasing upper bound; stop once no upper bound can beat the k-th
    keep = 0
    for c in range(nc):
        if cand_ub[c] >= thr:
            cand_ub[keep] = cand_ub[c]
            cand_v[keep] = cand_v[c]
            keep += 1
    counters[2] += keep
    order = np.argsort(-cand_ub[:keep])
    top_keys = np.empty(k, np.float32)
    top_vals = np.empty(k, np.int64)
    top_ids = np.empty(k, np.int64)
    size = 0
    for r in range(min(_PREFETCH_AHEAD, keep)):
        _prefetch_row(cand_v[order[r]], vec_base, vec_tail)
    for r in range(keep):
        c = order[r]
        if size == k and cand_ub[c] < top_keys[0]:
            break
        if r + _PREFETCH_AHEAD < keep:
            _prefetch_row(cand_v[order[r + _PREFETCH_AHEAD]], vec_base, vec_tail)
        v = cand_v[c]
        counters[3] += 1
        s = _exact_sim(q, v, vec_base, vec_tail, xn2, alpha)
        if size < k:
            size = _top_push(top_keys, top_vals, top_ids, size, s, v, vids[v])
        elif _worse(top_keys[0], top_ids[0], s, vids[v]):
            top_keys[0] = s
            top_vals[0] = v
            top_ids[0] = vids[v]
            _top_sift_down(top_keys, top_vals, top_ids, size, 0)
    # heap -> best first (ties by increasing id)
    end = size
    while end > 1:
        end -= 1
        top_keys[0], top_keys[end] = top_keys[end], top_keys[0]
        top_vals[0], top_vals[end] = top_vals[end], top_vals[0]
        top_ids[0], top_ids[end] = top_ids[end], top_ids[0]
        _top_sift_down(top_keys, top_vals, top_ids, end, 0)
    for r in range(size):
        out_sim[r] = top_keys[r]
        out_idx[r] = top_vals[r]
    return size


@njit(cache=True, fastmath=True, inline="always")
def _rotate(rotation, q, out):
    """out = rotation @ q."""
    d = q.shape[0]
    for i in range(d):
        s = np.float32(0.0)
        for j in range(d):
            s += rotation[i, j] * q[j]
        out[i] = s


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


_QBLOCK = 8  # queries per block of the batch search's head scoring and rotation


@njit(cache=True, fastmath=True, inline="always")
def _gemm_nt(qs, m, out):
    """out[b, i] = <qs[b], m[i]> for a small block of queries (B, d) against m (R, d).

    Tiles of 2 queries x 4 rows: each row is read once per query pair and each load feeds two FMAs, where
    one query at a time reads all of ``m`` per query (measured on 1,250 heads x 384: 37 -> 16 us per query;
    the heads are 1.9 MB, beyond L2, so a per-query scan streams them from L3 every time).
    """
    nb = qs.shape[0]
    r = m.shape[0]
    d = qs.shape[1]
    r4 = r - r % 4
    nb2 = nb - nb % 2
    for i in range(0, r4, 4):
        m0 = m[i]
        m1 = m[i + 1]
        m2 = m[i + 2]
        m3 = m[i + 3]
        for b in range(0, nb2, 2):
            q0 = qs[b]
            q1 = qs[b + 1]
            s00 = np.float32(0.0)
            s01 = np.float32(0.0)
            s02 = np.float32(0.0)
            s03 = np.float32(0.0)
            s10 = np.float32(0.0)
            s11 = np.float32(0.0)
            s12 = np.float32(0.0)
            s13 = np.float32(0.0)
            for j in range(d):
                a = q0[j]
                c = q1[j]
                x0 = m0[j]
                x1 = m1[j]
                x2 = m2[j]
                x3 = m3[j]
                s00 += a * x0
                s01 += a * x1
                s02 += a * x2
                s03 += a * x3
                s10 += c * x0
                s11 += c * x1
                s12 += c * x2
                s13 += c * x3
            out[b, i] = s00
            out[b, i + 1] = s01
            out[b, i + 2] = s02
            out[b, i + 3] = s03
            out[b + 1, i] = s10
            out[b + 1, i + 1] = s11
            out[b + 1, i + 2] = s12
            out[b + 1, i + 3] = s13
        for b in range(nb2, nb):
            out[b, i], out[b, i + 1], out[b, i + 2], out[b, i + 3] = _dot4(qs[b], m0, m1, m2, m3)
    for i in range(r4, r):
        for b in range(nb):
            out[b, i] = _dot(qs[b], m[i])


@intrinsic
def _dot4_f16(typingctx, q_addr, r0, r1, r2, r3, n8):
    """<q, row> for four float16 rows (F16C ``vcvtph2ps``): q float32; q and rows hold ``n8`` chunks of 8."""
    sig = types.UniTuple(types.float32, 4)(types.uintp, types.uintp, types.uintp, types.uintp, types.uintp, types.intp)

    def codegen(context, builder, signature, args):
        v8f, v8h = ir.VectorType(ir.FloatType(), 8), ir.VectorType(ir.HalfType(), 8)
        i32 = ir.IntType(32)
        qb, rows, n = args[0], args[1:5], args[5]
        accs = [cgutils.alloca_once_value(builder, ir.Constant(v8f, None)) for _ in rows]
        with cgutils.for_range(builder, n) as loop:
            i = loop.index
            qp = builder.inttoptr(builder.add(qb, builder.mul(i, ir.Constant(i.type, 32))), v8f.as_pointer())
            qv = builder.load(qp, align=4)
            off = builder.mul(i, ir.Constant(i.type, 16))
            for acc, r in zip(accs, rows):
                hv = builder.load(builder.inttoptr(builder.add(r, off), v8h.as_pointer()), align=2)
                prod = builder.fmul(qv, builder.fpext(hv, v8f), flags=("fast",))
                builder.store(builder.fadd(builder.load(acc), prod, flags=("fast",)), acc)
        out = []
        for acc in accs:
            v = builder.load(acc)
            total = builder.extract_element(v, ir.Constant(i32, 0))
            for j in range(1, 8):
                total = builder.fadd(total, builder.extract_element(v, ir.Constant(i32, j)), flags=("fast",))
            out.append(total)
        return context.make_tuple(builder, signature.return_type, out)

    return sig, codegen


@njit(cache=True, fastmath=True, inline="always")
def _approx_ips(q, heads, heads16, h16_scale, cand, out):
    """out[j] ~ <q, heads[cand[j]]>: from the float16 copy with AVX2/F16C (half the bytes of float32:
    head scoring reads 1-20 MB per query and is memory-bound from ~10k heads), else the float32 heads."""
    n = cand.shape[0]
    n4 = n - n % 4
    if _X86_SIMD:
        d8 = heads16.shape[1]
        qpad = np.zeros(d8, np.float32)
        qpad[: q.shape[0]] = q
        qa = qpad.ctypes.data
        base = heads16.ctypes.data
        st = heads16.strides[0]
        for j in range(0, n4, 4):
            a, b, c, e = _dot4_f16(
                qa,
                base + cand[j] * st,
                base + cand[j + 1] * st,
                base + cand[j + 2] * st,
                base + cand[j + 3] * st,
                d8 // 8,
            )
            out[j], out[j + 1], out[j + 2], out[j + 3] = a * h16_scale, b * h16_scale, c * h16_scale, e * h16_scale
        for j in range(n4, n):
            r = base + cand[j] * st
            a, _, _, _ = _dot4_f16(qa, r, r, r, r, d8 // 8)
            out[j] = a * h16_scale
    else:
        for j in range(0, n4, 4):
            a, b, c, e = cand[j], cand[j + 1], cand[j + 2], cand[j + 3]
            out[j], out[j + 1], out[j + 2], out[j + 3] = _dot4(q, heads[a], heads[b], heads[c], heads[e])
        for j in range(n4, n):
            out[j] = _dot(q, heads[cand[j]])


@njit(cache=True, fastmath=True, inline="always")
def _probe_from_ip(q, ip, hn2, n_probe, dist, pd, pi, pip):
    """``_probe_list`` over every head, from precomputed inner products ``ip`` (H,); ``dist`` is scratch."""
    h = ip.shape[0]
    qn = _dot(q, q)
    for i in range(h):
        dist[i] = qn - 2.0 * ip[i] + hn2[i]
    m = _smallest_m(dist, min(n_probe, h), pd, pi)
    for t in range(m):
        pip[t] = ip[pi[t]]
    return m


@njit(cache=True, fastmath=True, inline="always")
def _probe_list(q, heads, hn2, heads16, h16_scale, g_cent, g_cn2, g_start, g_members, n_probe, g_probe, pd, pi, pip):
    """The ``n_probe`` heads nearest to ``q``, ascending: squared distances ``pd``, indices ``pi`` and inner
    products ``pip``; returns their count.

    Without head groups (``g_cent`` empty, or ``g_probe`` covering them all) every head is a candidate.
    With them, only the members of the ``g_probe`` groups whose centroids are nearest: at 1M vectors the
    12.7k heads are 19 MB, read from memory by every query (1.6 ms); 12 of 112 groups find the same 8
    nearest heads for 999 of 1,000 queries and read a tenth of it. Candidates are ranked by float16 scores
    (``_approx_ips``); the chosen heads' distances and inner products are then computed in float32.
    """
    h = heads.shape[0]
    ng = g_cent.shape[0]
    if ng == 0 or g_probe >= ng:
        cand = np.arange(h)
    else:
        _, gdist = _head_scores(q, g_cent, g_cn2)
        gd = np.empty(g_probe, np.float32)
        gi = np.empty(g_probe, np.int64)
        gsel = _smallest_m(gdist, g_probe, gd, gi)
        total = 0
        for t in range(gsel):
            total += g_start[gi[t] + 1] - g_start[gi[t]]
        cand = np.empty(total, np.int64)
        c = 0
        for t in range(gsel):
            for j in range(g_start[gi[t]], g_start[gi[t] + 1]):
                cand[c] = g_members[j]
                c += 1
    total = cand.shape[0]
    cand_d = np.empty(total, np.float32)
    _approx_ips(q, heads, heads16, h16_scale, cand, cand_d)
    qn = _dot(q, q)
    for j in range(total):
        cand_d[j] = qn - 2.0 * cand_d[j] + hn2[cand[j]]
    sel = np.empty(min(n_probe, total), np.int64)
    m = _smallest_m(cand_d, min(n_probe, total), pd, sel)
    # exact float32 scores of the chosen heads (they feed the estimator), kept in ascending order
    for t in range(m):
        hh = cand[sel[t]]
        ip = _dot(q, heads[hh])
        d = qn - 2.0 * ip + hn2[hh]
        u = t
        while u > 0 and pd[u - 1] > d:
            pd[u], pi[u], pip[u] = pd[u - 1], pi[u - 1], pip[u - 1]
            u -= 1
        pd[u], pi[u], pip[u] = d, hh, ip
    return m


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def search_batch(
    q,
    heads,
    hn2,
    heads16,
    h16_scale,
    g_cent,
    g_cn2,
    g_start,
    g_members,
    g_probe,
    rotation,
    n_probe,
    max_dist_ratio,
    min_allowed,
    k,
    eps0,
    alpha,
    bits,
    p_start,
    p_size,
    e_vidx,
    e_codes,
    e_fac,
    e_err,
    e_sign,
    e_fac1,
    e_err1,
    xn2,
    deleted,
    allowed,
    vec_base,
    vec_tail,
    vids,
    n_chunks,
    out_idx,
    out_sim,
    out_cnt,
):
    """Search many queries, parallel over ``n_chunks`` contiguous query ranges (one dedup array each).

    q: (nq, d); outputs (nq, k) and (nq,) result counts. Head scores and rotated queries are computed inside
    the parallel loop, for blocks of ``_QBLOCK`` queries at a time (``_gemm_nt``): BLAS matrix products
    before the loop left OpenBLAS threads spinning against the Numba workers on 2 cores (batch QPS below
    single-query QPS). With head groups each query scores its own groups' members instead.
    """
    nq = q.shape[0]
    n = xn2.shape[0]
    d = q.shape[1]
    h = heads.shape[0]
    nbytes = e_codes.shape[1]
    npb = min(n_probe, h)
    every_head = g_cent.shape[0] == 0 or g_probe >= g_cent.shape[0]
    for c in prange(n_chunks):
        lo = c * nq // n_chunks
        hi = (c + 1) * nq // n_chunks
        if lo >= hi:
            continue
        stamp = np.zeros(n, np.int32)
        lut = np.empty(nbytes * 8, np.float32)
        counters = np.zeros(4, np.int64)
        pd = np.empty(npb, np.float32)
        pi = np.empty(npb, np.int64)
        pip = np.empty(npb, np.float32)
        qrb = np.empty((_QBLOCK, d), np.float32)
        ipb = np.empty((_QBLOCK if every_head else 0, h), np.float32)
        dist = np.empty(h if every_head else 0, np.float32)
        for i in range(lo, hi):
            r = (i - lo) % _QBLOCK
            if r == 0:
                blk = q[i : min(i + _QBLOCK, hi)]
                _gemm_nt(blk, rotation, qrb)
                if every_head:
                    _gemm_nt(blk, heads, ipb)
            if every_head:
                m = _probe_from_ip(q[i], ipb[r], hn2, npb, dist, pd, pi, pip)
            else:
                m = _probe_list(
                    q[i], heads, hn2, heads16, h16_scale, g_cent, g_cn2, g_start, g_members, npb, g_probe, pd, pi, pip
                )
            out_cnt[i] = _search_one(
                q[i],
                qrb[r],
                pd,
                pi,
                pip,
                m,
                max_dist_ratio,
                min_allowed,
                k,
                eps0,
                alpha,
                bits,
                p_start,
                p_size,
                e_vidx,
                e_codes,
                e_fac,
                e_err,
                e_sign,
                e_fac1,
                e_err1,
                xn2,
                deleted,
                allowed,
                vec_base,
                vec_tail,
                vids,
                stamp,
                np.int32(i - lo + 1),
                lut,
                counters,
                out_idx[i],
                out_sim[i],
            )


@njit(cache=True, fastmath=True, nogil=True)
def search_single(
    q,
    heads,
    hn2,
    heads16,
    h16_scale,
    g_cent,
    g_cn2,
    g_start,
    g_members,
    g_probe,
    rotation,
    n_probe,
    max_dist_ratio,
    min_allowed,
    k,
    eps0,
    alpha,
    bits,
    p_start,
    p_size,
    e_vidx,
    e_codes,
    e_fac,
    e_err,
    e_sign,
    e_fac1,
    e_err1,
    xn2,
    deleted,
    allowed,
    vec_base,
    vec_tail,
    vids,
    stamp,
    stamp_val,
    lut,
    counters,
    out_idx,
    out_sim,
):
    """One query with a caller-owned dedup ``stamp`` array and LUT buffer (no per-call allocation of n).

    Head distances and the rotated query are computed here rather than by BLAS: for one query a BLAS
    gemv may go multi-threaded (measured 2 ms instead of 50 us on a busy 2-core machine).
    """
    npb = min(n_probe, heads.shape[0])
    pd = np.empty(npb, np.float32)
    pi = np.empty(npb, np.int64)
    pip = np.empty(npb, np.float32)
    m = _probe_list(q, heads, hn2, heads16, h16_scale, g_cent, g_cn2, g_start, g_members, npb, g_probe, pd, pi, pip)
    qr = np.empty(q.shape[0], np.float32)
    _rotate(rotation, q, qr)
    return _search_one(
        q,
        qr,
        pd,
        pi,
        pip,
        m,
        max_dist_ratio,
        min_allowed,
        k,
        eps0,
        alpha,
        bits,
        p_start,
        p_size,
        e_vidx,
        e_codes,
        e_fac,
        e_err,
        e_sign,
        e_fac1,
        e_err1,
        xn2,
        deleted,
        allowed,
        vec_base,
        vec_tail,
        vids,
        stamp,
        stamp_val,
        lut,
        counters,
        out_idx,
        out_sim,
    )
