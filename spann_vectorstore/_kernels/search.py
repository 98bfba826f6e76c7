"""Search kernels: probe (choose postings), scan (RaBitQ estimates with FastScan), exact rerank.

One path serves every search. ``_probe`` chooses the postings of a query (float16 ranking of the candidate
heads, float32 scores of the chosen ones) and ``_search_one`` scans and reranks them; ``search_single``,
``search_batch`` and ``search_preassigned`` only differ in where queries, postings and scratch come from,
so one query gets the same result from each. Index state arrives as the named groups of ``contract``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .codes import _dot_codes, fs_block, fs_lut
from .common import (
    _X86_SIMD,
    _dot,
    _dot4,
    _heap_push_min,
    _heap_sift_down_min,
    _smallest_m,
    _top_push,
    _top_sift_down,
    _worse,
)
from .contract import CodecView, HeadsView, IdsView, PostingsView, SearchParams, VectorsView

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
def _probe(q, hv, n_probe, g_probe, pd, pi, pip):
    """The ``n_probe`` heads nearest to ``q``, ascending: squared distances ``pd``, indices ``pi`` and inner
    products ``pip``; returns their count.

    Without head groups (``g_cent`` empty, or ``g_probe`` covering them all) every head is a candidate.
    With them, only the members of the ``g_probe`` groups whose centroids are nearest: at 1M vectors the
    12.7k heads are 19 MB, read from memory by every query (1.6 ms); 12 of 112 groups find the same 8
    nearest heads for 999 of 1,000 queries and read a tenth of it. Candidates are ranked by float16 scores
    (``_approx_ips``); the chosen heads' distances and inner products are then computed in float32.
    """
    heads, hn2, g_start, g_members = hv.heads, hv.hn2, hv.g_start, hv.g_members
    h = heads.shape[0]
    ng = hv.g_cent.shape[0]
    if ng == 0 or g_probe >= ng:
        cand = np.arange(h)
    else:
        _, gdist = _head_scores(q, hv.g_cent, hv.g_cn2)
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
    _approx_ips(q, heads, hv.heads16, hv.h16_scale, cand, cand_d)
    qn = _dot(q, q)
    for j in range(total):
        cand_d[j] = qn - 2.0 * cand_d[j] + hn2[cand[j]]
    sel = np.empty(min(n_probe, total), np.int64)
    m = _smallest_m(cand_d, min(n_probe, total), pd, sel)
    for t in range(m):
        sel[t] = cand[sel[t]]
    return _rank_heads(q, heads, hn2, sel, m, pd, pi, pip)


@njit(cache=True, fastmath=True, inline="always")
def _rank_heads(q, heads, hn2, chosen, m, pd, pi, pip):
    """Exact float32 scores of the heads ``chosen[:m]`` (they feed the estimator), ascending by distance
    into ``pd`` (squared L2), ``pi`` (head ids) and ``pip`` (<q, head>); returns ``m``."""
    qn = _dot(q, q)
    for t in range(m):
        hh = chosen[t]
        ip = _dot(q, heads[hh])
        d = qn - 2.0 * ip + hn2[hh]
        u = t
        while u > 0 and pd[u - 1] > d:
            pd[u], pi[u], pip[u] = pd[u - 1], pi[u - 1], pip[u - 1]
            u -= 1
        pd[u], pi[u], pip[u] = d, hh, ip
    return m


@njit(cache=True, fastmath=True)
def _rotate_rows(qs, rotation, out):
    """out[b] = rotation @ qs[b] for a block of queries, four rotation rows per pass (each row read once per
    block). Not inlined, and each query's sums use the same code whatever the block holds, so a query's
    rotation (and hence its result) does not depend on which other queries share its block."""
    nq = qs.shape[0]
    d = rotation.shape[0]
    d4 = d - d % 4
    for i in range(0, d4, 4):
        r0 = rotation[i]
        r1 = rotation[i + 1]
        r2 = rotation[i + 2]
        r3 = rotation[i + 3]
        for b in range(nq):
            out[b, i], out[b, i + 1], out[b, i + 2], out[b, i + 3] = _dot4(qs[b], r0, r1, r2, r3)
    for i in range(d4, d):
        for b in range(nq):
            out[b, i] = _dot(qs[b], rotation[i])


@njit(cache=True, fastmath=True)
def _search_one(q, qr, pd, pi, pip, npb, pv, iv, vv, bits, sp, allowed, stamp, stamp_val, lut, stats, out_idx, out_sim):
    """Scan and rerank one query; writes the top-k internal indices and exact similarities, best first, and
    returns their count.

    q: raw query (d,); qr: rotated query (d,); the ``npb`` postings to probe, nearest first: pd their heads'
    squared L2 distances to q, pi their indices, pip <q, head> (see ``_probe``). pv, iv, vv: the postings,
    ids and vectors (``contract``); sp: ``SearchParams``. ``allowed`` is an (n,) u8 mask or an empty array
    meaning every vector is allowed; with a mask, postings are probed in order until ``sp.min_allowed``
    allowed entries were seen. ``stamp`` (n,) i32 with ``stamp_val`` de-duplicates replicas. Ties between
    equal similarities go to the smaller external id. ``stats`` (5,) i64 receives postings scanned, entries
    estimated, stage-1 survivors, candidates kept for rerank, exact distances computed (``contract.STATS``).
    """
    k = sp.k
    eps0 = sp.eps0
    alpha = sp.alpha
    min_allowed = sp.min_allowed
    p_start, p_size, e_vidx, e_codes = pv.start, pv.size, pv.vidx, pv.codes
    e_fac, e_err, e_sign, e_fac1, e_err1 = pv.fac, pv.err, pv.sign, pv.fac1, pv.err1
    vids, deleted = iv.ids, iv.deleted
    xn2 = vv.xn2
    nbytes = e_codes.shape[1]
    # query-aware pruning: skip postings much farther than the nearest head (SPTAG maxDistRatio)
    limit = sp.max_dist_ratio * max(pd[0], 1e-12) if npb > 0 else 0.0
    # at most posting_limit entries per posting (SPTAG's SearchPostingPageLimit): postings are ordered by
    # distance to their head, so a long posting loses its farthest entries
    cap = sp.posting_limit
    total = 0
    used = 0
    for t in range(npb):
        # the nearest few postings are always scanned: a query sitting on a head (distance ~0) would
        # otherwise prune everything else
        if t >= _MIN_PROBE and pd[t] > limit:
            break
        total += min(p_size[pi[t]], cap)
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
    lut8, scale, qneg, qerr = fs_lut(qr, e_sign.shape[1] // 32)
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
    scanned = 0
    entries = 0
    survivors = 0
    for t in range(used):
        p = pi[t]
        base_ip = pip[t]
        s0 = p_start[p]
        s1 = s0 + min(p_size[p], cap)
        if use_mask:
            # filtered: probing stops once min_allowed allowed entries were seen (past _MIN_PROBE postings),
            # wherever the filter puts them (max_dist_ratio is off: allowed neighbours may lie farther out)
            if t >= _MIN_PROBE and seen >= min_allowed:
                break
            for e in range(s0, s1):
                seen += allowed[e_vidx[e]]
        scanned += 1
        entries += s1 - s0
        for blk in range(s0 // 32, (s1 + 31) // 32):
            # stage 1: 1-bit estimates of the block's 32 entries at once, with their error bound (RaBitQ +
            # LUT rounding); lanes outside the posting are computed and ignored
            fs_block(e_sign, blk, lut8, acc16, acc)
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
                survivors += 1
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
    keep, exact, size = _rerank(q, cand_ub, cand_v, nc, thr, k, vv, vids, alpha, out_idx, out_sim)
    stats[0] += scanned
    stats[1] += entries
    stats[2] += survivors
    stats[3] += keep
    stats[4] += exact
    return size


@njit(cache=True, fastmath=True, inline="always")
def _rerank(q, cand_ub, cand_v, nc, thr, k, vv, vids, alpha, out_idx, out_sim):
    """Exact rerank of the ``nc`` candidates (upper bounds ``cand_ub``, internal indices ``cand_v``) that can
    still reach the top k (bound >= ``thr``, the k-th best lower bound), in order of decreasing bound,
    stopping once no bound can beat the k-th exact score. Writes the top k best first (ties by smaller id
    ``vids``); returns (candidates kept, exact distances computed, hits)."""
    vec_base, vec_tail, xn2 = vv.base, vv.tail, vv.xn2
    keep = 0
    for c in range(nc):
        if cand_ub[c] >= thr:
            cand_ub[keep] = cand_ub[c]
            cand_v[keep] = cand_v[c]
            keep += 1
    order = np.argsort(-cand_ub[:keep])
    top_keys = np.empty(k, np.float32)
    top_vals = np.empty(k, np.int64)
    top_ids = np.empty(k, np.int64)
    size = 0
    exact = 0
    for r in range(min(_PREFETCH_AHEAD, keep)):
        _prefetch_row(cand_v[order[r]], vec_base, vec_tail)
    for r in range(keep):
        c = order[r]
        if size == k and cand_ub[c] < top_keys[0]:
            break
        if r + _PREFETCH_AHEAD < keep:
            _prefetch_row(cand_v[order[r + _PREFETCH_AHEAD]], vec_base, vec_tail)
        v = cand_v[c]
        exact += 1
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
    return keep, exact, size


_QBLOCK = 8  # queries per block of the batch search's rotation


@njit(cache=True, fastmath=True, nogil=True)
def search_single(q, ht, pt, it, vt, ct, st, allowed, stamp, stamp_val, lut, out_idx, out_sim, out_stats):
    """One query ``q`` (1, d) with a caller-owned dedup ``stamp`` (n,) and LUT buffer (no per-call
    allocation of n); outputs (1, k) and stats (1, 5). Head distances and the rotated query are computed
    here rather than by BLAS: for one query a BLAS gemv may go multi-threaded (measured 2 ms instead of
    50 us on a busy 2-core machine).

    The state groups arrive as plain tuples in the order of ``contract``'s views (``contract.plain``) and are
    named again here: Numba's dispatcher types exact tuples in C, named tuples in Python (a few us per call).
    """
    hv = HeadsView(*ht)
    pv = PostingsView(*pt)
    iv = IdsView(*it)
    vv = VectorsView(*vt)
    cv = CodecView(*ct)
    sp = SearchParams(*st)
    npb = min(sp.n_probe, hv.heads.shape[0])
    pd = np.empty(npb, np.float32)
    pi = np.empty(npb, np.int64)
    pip = np.empty(npb, np.float32)
    m = _probe(q[0], hv, npb, sp.g_probe, pd, pi, pip)
    qr = np.empty(q.shape, np.float32)
    _rotate_rows(q, cv.rotation, qr)
    return _search_one(
        q[0], qr[0], pd, pi, pip, m, pv, iv, vv, cv.bits, sp, allowed, stamp, stamp_val, lut, out_stats[0],
        out_idx[0], out_sim[0],
    )  # fmt: skip


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def search_batch(q, hv, pv, iv, vv, cv, sp, allowed, n_chunks, out_idx, out_sim, out_cnt, out_stats):
    """Many queries ``q`` (nq, d), parallel over ``n_chunks`` contiguous query ranges (one dedup array
    each); outputs (nq, k), counts (nq,) and stats (nq, 5). Each query is probed, rotated, scanned and
    reranked by the same code as ``search_single`` (rotation in blocks of ``_QBLOCK`` queries, which reads
    the rotation once per block), so both return the same result for it."""
    nq = q.shape[0]
    n = iv.ids.shape[0]
    d = q.shape[1]
    nbytes = pv.codes.shape[1]
    npb = min(sp.n_probe, hv.heads.shape[0])
    for c in prange(n_chunks):
        lo = c * nq // n_chunks
        hi = (c + 1) * nq // n_chunks
        if lo >= hi:
            continue
        stamp = np.zeros(n, np.int32)
        lut = np.empty(nbytes * 8, np.float32)
        pd = np.empty(npb, np.float32)
        pi = np.empty(npb, np.int64)
        pip = np.empty(npb, np.float32)
        qrb = np.empty((_QBLOCK, d), np.float32)
        for i in range(lo, hi):
            r = (i - lo) % _QBLOCK
            if r == 0:
                blk = q[i : min(i + _QBLOCK, hi)]
                _rotate_rows(blk, cv.rotation, qrb)
            m = _probe(q[i], hv, npb, sp.g_probe, pd, pi, pip)
            out_cnt[i] = _search_one(
                q[i], qrb[r], pd, pi, pip, m, pv, iv, vv, cv.bits, sp, allowed, stamp, np.int32(i - lo + 1), lut,
                out_stats[i], out_idx[i], out_sim[i],
            )  # fmt: skip


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def probe_batch(q, hv, n_probe, g_probe, out_i, out_d):
    """The postings ``search_*`` would probe for each query (before ``max_dist_ratio`` pruning): head ids
    ``out_i`` (nq, n_probe), -1 padded, and squared L2 distances ``out_d``, nearest first."""
    nq = q.shape[0]
    npb = min(n_probe, hv.heads.shape[0])
    for i in prange(nq):
        pd = np.empty(npb, np.float32)
        pi = np.empty(npb, np.int64)
        pip = np.empty(npb, np.float32)
        m = _probe(q[i], hv, npb, g_probe, pd, pi, pip)
        for t in range(m):
            out_i[i, t] = pi[t]
            out_d[i, t] = pd[t]


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def search_preassigned(q, heads_of, hv, pv, iv, vv, cv, sp, allowed, n_chunks, out_idx, out_sim, out_cnt, out_stats):
    """``search_batch`` over caller-chosen postings: ``heads_of`` (nq, m) head ids per query (-1 entries
    skipped, at most ``sp.n_probe`` used, in any order: they are scored in float32 and sorted nearest first,
    as ``_probe`` does). With the heads ``probe_batch`` returned this gives ``search_batch``'s result."""
    nq = q.shape[0]
    n = iv.ids.shape[0]
    d = q.shape[1]
    nbytes = pv.codes.shape[1]
    width = heads_of.shape[1]
    for c in prange(n_chunks):
        lo = c * nq // n_chunks
        hi = (c + 1) * nq // n_chunks
        if lo >= hi:
            continue
        stamp = np.zeros(n, np.int32)
        lut = np.empty(nbytes * 8, np.float32)
        chosen = np.empty(width, np.int64)
        pd = np.empty(width, np.float32)
        pi = np.empty(width, np.int64)
        pip = np.empty(width, np.float32)
        qrb = np.empty((_QBLOCK, d), np.float32)
        for i in range(lo, hi):
            r = (i - lo) % _QBLOCK
            if r == 0:
                blk = q[i : min(i + _QBLOCK, hi)]
                _rotate_rows(blk, cv.rotation, qrb)
            m = 0
            for t in range(width):
                if heads_of[i, t] >= 0 and m < sp.n_probe:
                    chosen[m] = heads_of[i, t]
                    m += 1
            _rank_heads(q[i], hv.heads, hv.hn2, chosen, m, pd, pi, pip)
            out_cnt[i] = _search_one(
                q[i], qrb[r], pd, pi, pip, m, pv, iv, vv, cv.bits, sp, allowed, stamp, np.int32(i - lo + 1), lut,
                out_stats[i], out_idx[i], out_sim[i],
            )  # fmt: skip


@njit(cache=True, fastmath=True, nogil=True)
def exact_scores(q, pos, vv, alpha, out):
    """out[i, j] = similarity of query ``q[i]`` and vector ``pos[j]`` (internal index), by the same code for
    every (i, j): a score does not depend on how many queries or vectors share the call (BLAS products do,
    in the last bits), so exact search answers one query alone as in a batch, and equal vectors tie."""
    for i in range(q.shape[0]):
        for j in range(pos.shape[0]):
            out[i, j] = _exact_sim(q[i], pos[j], vv.base, vv.tail, vv.xn2, alpha)


@njit(cache=True, fastmath=True, nogil=True, parallel=True)
def exact_scores_parallel(q, pos, vv, alpha, out):
    """:func:`exact_scores` with the vectors split over the cores, the same score code per (i, j) (a filter
    answered exactly: 10k scattered vectors at 1M x 384, ~4.5 ms on one core). Called through
    ``threads.fork_safe`` (serial in a forked child)."""
    for i in range(q.shape[0]):
        for j in prange(pos.shape[0]):
            out[i, j] = _exact_sim(q[i], pos[j], vv.base, vv.tail, vv.xn2, alpha)
