"""The RaBitQ codec: the random rotation, residual encoding, and the FastScan layout of 1-bit codes.

An entry of a posting is a vector's residual to the posting's head, rotated and quantised: ``bits`` bits
per dimension (extended RaBitQ for bits > 1) with an estimator scale and an error-bound factor per entry
(the math is in ``_kernels``). For bits > 1 each entry also carries a 1-bit "sign" code (with its own
factors) that stage 1 of the scan estimates with FastScan; for bits 1 the code is that sign plane. 1-bit
planes are held in FastScan blocks of 32 entries (:class:`BlockedCodes`); snapshots store plain rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels as K
from ._storage import take_rows


class BlockedCodes:
    """1-bit codes in FastScan blocks of 32 entries (``_kernels.codes.fs_block``), with the row-array
    operations the posting arena uses: ``shape`` (entries, bytes per code), ``a[idx]`` gathers code rows and
    ``a[idx] = rows`` scatters them (idx: a slice or integer array)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, n: int, nb: int):
        self.blocked = np.zeros(((n + 31) // 32, 32 * nb), np.uint8)
        self.shape = (32 * self.blocked.shape[0], nb)

    @classmethod
    def of_rows(cls, rows: np.ndarray) -> BlockedCodes:
        out = cls(rows.shape[0], rows.shape[1])
        out[: rows.shape[0]] = rows
        return out

    @property
    def nbytes(self) -> int:
        return int(self.blocked.nbytes)

    def _index(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(*key.indices(self.shape[0]), dtype=np.int64)
        return np.asarray(key, dtype=np.int64).reshape(-1)

    def __getitem__(self, key: Any) -> np.ndarray:
        src = self._index(key)
        out = np.empty((len(src), self.shape[1]), np.uint8)
        K.fs_gather(self.blocked, src, out)
        return out

    def __setitem__(self, key: Any, rows: np.ndarray) -> None:
        dst = self._index(key)
        K.fs_scatter(np.ascontiguousarray(rows, dtype=np.uint8).reshape(len(dst), self.shape[1]), dst, self.blocked)

    def grown(self, cap: int) -> BlockedCodes:
        """A copy with room for ``cap`` entries (content kept)."""
        out = BlockedCodes(cap, self.shape[1])
        out.blocked[: self.blocked.shape[0]] = self.blocked
        return out

    def empty_like(self, n: int) -> BlockedCodes:
        return BlockedCodes(n, self.shape[1])


def random_rotation(d: int, seed: int) -> np.ndarray:
    """A random orthogonal (d, d) matrix (QR of a Gaussian, sign-fixed), float32."""
    g = np.random.default_rng(seed + 7919).standard_normal((d, d))
    qm, r = np.linalg.qr(g)
    qm *= np.sign(np.diag(r))[None, :]
    return np.ascontiguousarray(qm, dtype=np.float32)


_NO_CODES = np.zeros((0, 8), np.uint8)  # the kernels' multi-bit codes for bits 1 (the sign plane is the code)


class RaBitQCodec:
    """Rotation and encoding for ``dim``-dimensional vectors at ``bits`` bits per dimension.

    ``planes`` names the per-entry arrays the codec produces (the posting arena stores them): ``codes``,
    ``fac``, ``err``, and for bits > 1 also ``sign``, ``fac1``, ``err1``. The rotation is drawn from
    ``seed`` on first use (a QR of a (d, d) Gaussian costs 20 ms, or seconds when BLAS threads contend, and
    an index that is loaded or only validates input never needs a fresh one) or set by :meth:`set_rotation`.
    """

    def __init__(self, dim: int, bits: int, seed: int) -> None:
        self.dim = int(dim)
        self.bits = int(bits)
        self.seed = int(seed)
        # 1-bit codes double as the stage-1 sign plane (whole 64-bit words: the snapshot format's width)
        self.nsign = 8 * ((self.dim + 63) // 64)
        self.nbytes = self.nsign if self.bits == 1 else (self.dim * self.bits + 7) // 8
        self._rot: np.ndarray | None = None
        self._view: K.CodecView | None = None

    @property
    def rotation(self) -> np.ndarray:
        if self._rot is None:
            self._rot = random_rotation(self.dim, self.seed)
        return self._rot

    def set_rotation(self, rotation: np.ndarray) -> None:
        """Use a stored rotation (a loaded snapshot's); (dim, dim) float32."""
        if rotation.shape != (self.dim, self.dim):
            raise ValueError(f"rotation has shape {rotation.shape}, expected {(self.dim, self.dim)}")
        self._rot = np.ascontiguousarray(rotation, dtype=np.float32)
        self._view = None

    def view(self) -> K.CodecView:
        if self._view is None:
            self._view = K.check_view(K.CodecView(self.rotation, self.bits))
        return self._view

    # ------------------------------------------------------------------------------------------------------
    # entry planes
    # ------------------------------------------------------------------------------------------------------
    def _layout(self) -> list[tuple[str, str, str, int, int]]:
        """(codes, fac, err) plane names with their bits and bytes per code: the main plane, then for
        bits > 1 the 1-bit sign plane of stage 1."""
        planes = [("codes", "fac", "err", self.bits, self.nbytes)]
        if self.bits > 1:
            planes.append(("sign", "fac1", "err1", 1, self.nsign))
        return planes

    @property
    def planes(self) -> tuple[str, ...]:
        return tuple(name for plane in self._layout() for name in plane[:3])

    def empty_planes(self, n: int = 0) -> dict[str, Any]:
        """Zeroed per-entry arrays for ``n`` entries; 1-bit code planes in FastScan blocks."""
        out: dict[str, Any] = {}
        for ck, fk, ek, bits, nb in self._layout():
            out[ck] = BlockedCodes(n, nb) if bits == 1 else np.zeros((n, nb), np.uint8)
            out[fk] = np.zeros(n, np.float32)
            out[ek] = np.zeros(n, np.float32)
        return out

    def of_rows(self, name: str, rows: np.ndarray) -> Any:
        """A plane from stored rows (a snapshot's), in its in-memory layout."""
        width = {ck: (bits, nb) for ck, _, _, bits, nb in self._layout()}
        if name in width:
            bits, nb = width[name]
            if rows.ndim != 2 or rows.shape[1] != nb:
                raise ValueError(f"{name}: code width {rows.shape[1:]} does not match dim and bits ({nb} bytes)")
            rows = np.ascontiguousarray(rows, dtype=np.uint8)
            return BlockedCodes.of_rows(rows) if bits == 1 else rows
        return np.ascontiguousarray(rows, dtype=np.float32)

    def kernel_planes(self, planes: dict[str, Any]) -> tuple[np.ndarray, ...]:
        """(codes, fac, err, sign, fac1, err1) as ``PostingsView`` wants them (the sign plane as its blocks;
        for bits 1 the codes are the sign plane and the multi-bit codes are empty)."""
        if self.bits > 1:
            return planes["codes"], planes["fac"], planes["err"], planes["sign"].blocked, planes["fac1"], planes["err1"]
        return _NO_CODES, planes["fac"], planes["err"], planes["codes"].blocked, planes["fac"], planes["err"]

    def residual_sq(self, planes: dict[str, Any], pos: np.ndarray) -> np.ndarray:
        """Squared distance of entries ``pos`` to their heads (float64), recovered from the 1-bit plane's
        factors: with ``c`` the code's cosine to the residual, ``fac = |r| / (c |u|)`` and
        ``err = |r| sqrt(1 - c^2) / (c sqrt(d - 1))`` (``_kernels.codes._encode_one``; ``|u| = sqrt(d) / 2`` for
        1-bit codes), so ``|r|^2 = |u|^2 fac^2 - (d - 1) err^2``. The posting arena orders postings by it,
        without storing a distance per entry."""
        fk, ek = ("fac", "err") if self.bits == 1 else ("fac1", "err1")
        fac = planes[fk][pos].astype(np.float64)
        err = planes[ek][pos].astype(np.float64)
        return np.maximum(0.25 * self.dim * fac * fac - max(self.dim - 1, 1) * err * err, 0.0)

    # ------------------------------------------------------------------------------------------------------
    # encoding
    # ------------------------------------------------------------------------------------------------------
    def encode(
        self, x: np.ndarray, heads: np.ndarray, rows: np.ndarray, head_of: np.ndarray, store: Any, dest: np.ndarray,
        progress: Any = None,
    ) -> None:  # fmt: skip
        """Encode the residuals ``x[rows[e]] - heads[head_of[e]]`` into entry slots ``dest[e]`` of the
        planes ``store`` (a mapping name -> plane, e.g. ``PostingArena.planes``); in blocks, for memory.
        ``heads`` is every head (only the referenced ones are rotated: a split touches two of thousands);
        ``progress``: an optional tqdm bar updated per block. The rows of a block are scattered over ``x``
        (entries go posting by posting): a mapped file's are read with ``pread`` (:func:`take_rows`), which
        maps none of its pages into the process (NOTES, session 10)."""
        rot_t = self.rotation.T
        used, head_of = np.unique(head_of, return_inverse=True)
        hr = np.ascontiguousarray(heads[used] @ rot_t)
        block = 65536
        for s in range(0, len(dest), block):
            # rotate each distinct row once (a row has ~3 replicas among the entries)
            uniq, sel = np.unique(rows[s : s + block], return_inverse=True)
            xr = np.ascontiguousarray(take_rows(x, uniq) @ rot_t)
            dst = dest[s : s + block]
            m = len(dst)
            for ck, fk, ek, bits, nb in self._layout():
                codes = np.empty((m, nb), np.uint8)
                fac = np.empty(m, np.float32)
                err = np.empty(m, np.float32)
                K.encode_residuals(xr, hr, sel, head_of[s : s + block], bits, codes, fac, err)
                store[ck][dst] = codes
                store[fk][dst] = fac
                store[ek][dst] = err
            if progress is not None:
                progress.update(m)
