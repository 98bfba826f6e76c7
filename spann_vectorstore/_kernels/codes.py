"""RaBitQ code kernels: encoding residuals (extended RaBitQ), the FastScan layout of 1-bit codes and its
32-lane lookups, and the multi-bit code dot product. See the package docstring for the code layout."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .common import _X86_SIMD
from .threads import forked, renamed

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


encode_residuals_serial = njit(cache=True, fastmath=True)(renamed(_encode_residuals, "_serial"))
encode_residuals_parallel = njit(cache=True, fastmath=True, parallel=True)(_encode_residuals)


def encode_residuals(xr, hr, vidx, hidx, bits, codes, fac, errfac):
    """Parallel for large batches; serial for the few hundred entries of an add or a split."""
    fn = encode_residuals_parallel if vidx.shape[0] >= 4096 and not forked() else encode_residuals_serial
    fn(xr, hr, vidx, hidx, bits, codes, fac, errfac)


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
def fs_block_scalar(row, lut8, acc):
    """Portable ``fs_block`` (no AVX2): the same lookups one lane at a time."""
    for j in range(row.shape[0] // 32):
        o = 32 * j
        for i in range(16):
            b0 = row[o + i]
            b1 = row[o + 16 + i]
            acc[i] += np.int32(lut8[o + (b0 & 15)]) + np.int32(lut8[o + 16 + (b1 & 15)])
            acc[i + 16] += np.int32(lut8[o + (b0 >> 4)]) + np.int32(lut8[o + 16 + (b1 >> 4)])


@njit(cache=True, inline="always")
def fs_block(blocked, blk, lut8, acc16, acc):
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
        fs_block_scalar(blocked[blk], lut8, acc)


@njit(cache=True, fastmath=True, inline="always")
def fs_lut(qr, nb1):
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
