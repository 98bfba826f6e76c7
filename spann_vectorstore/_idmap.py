"""Per-vector state: the id map (external ids, tombstones, lookup) and the full-precision vector table.

Vectors get internal indices ``0..n-1`` in insertion order; postings refer to them. :class:`IdMap` maps
external int64 ids to internal indices and marks deleted ones (tombstones: skipped by the scan at once,
dropped from postings by compaction and snapshots). :class:`VectorTable` holds the vectors for the exact
rerank in two segments: ``base`` (memory-mapped after a load) and ``tail`` (rows added since).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _kernels as K
from . import _storage
from ._arena import grow
from ._storage import CorruptStoreError, array_crc
from .clustering import _sqnorms

MAX_VECTORS = 2**31 - 1  # internal indices are int32 in the postings
_ID_TABLE_MIN = 4096  # ids per lookup from which the dense id table is used (see lookup)


class IdMap:
    """External ids of internal vectors, tombstones, and the id -> internal index lookup."""

    def __init__(self) -> None:
        self.n = 0  # internal vectors (live + tombstoned)
        self.n_live = 0
        self._ids = np.zeros(0, np.int64)
        self._deleted = np.zeros(0, np.uint8)
        self._sorted_ids = np.zeros(0, np.int64)  # live external ids, sorted
        self._sorted_pos = np.zeros(0, np.int64)  # internal index of each sorted id
        # spare capacity behind the two sorted arrays while they are prefixes of these (see _append_sorted)
        self._cap: tuple[np.ndarray, np.ndarray] | None = None
        self._table: tuple[np.ndarray, np.ndarray | None] | None = None
        self._view: K.IdsView | None = None

    @classmethod
    def of_ids(cls, ids: np.ndarray) -> IdMap:
        """A map of live vectors with unique ``ids`` (internal indices in their order)."""
        out = cls()
        out.append(np.asarray(ids, dtype=np.int64))
        return out

    @property
    def ids(self) -> np.ndarray:
        """External id per internal index (n,), tombstoned ones included (a view)."""
        return self._ids[: self.n]

    @property
    def deleted(self) -> np.ndarray:
        """Tombstone flag per internal index (n,) u8 (a view)."""
        return self._deleted[: self.n]

    @property
    def sorted_ids(self) -> np.ndarray:
        """Live external ids, sorted (a view)."""
        return self._sorted_ids

    @property
    def nbytes(self) -> int:
        return int(self._ids.nbytes + self._deleted.nbytes + self._sorted_ids.nbytes + self._sorted_pos.nbytes)

    def live(self) -> np.ndarray:
        """Internal indices of the live vectors, ascending."""
        return np.flatnonzero(self.deleted == 0)

    def view(self) -> K.IdsView:
        if self._view is None:
            self._view = K.check_view(K.IdsView(self.ids, self.deleted))
        return self._view

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Internal index of each external id (int64 array), -1 when absent (or deleted)."""
        if self._sorted_ids.shape[0] == 0:
            return np.full(ids.shape[0], -1, np.int64)
        # dense ids (a Collection's row ids) and many of them (a filter's allowed ids): one gather instead of
        # a binary search per id (a 30k-id filter: 1 ms -> ~0.1 ms per query). Few ids (an add's duplicate
        # check, a delete) search, so that a write does not rebuild the table.
        table = self._id_table() if ids.shape[0] >= _ID_TABLE_MIN else None
        if table is not None:
            inside = (ids >= 0) & (ids < table.shape[0])
            return np.where(inside, table[np.where(inside, ids, 0)], -1).astype(np.int64)
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.minimum(pos, self._sorted_ids.shape[0] - 1)
        hit = self._sorted_ids[pos] == ids
        return np.where(hit, self._sorted_pos[pos], -1)

    def _id_table(self) -> np.ndarray | None:
        """id -> internal index (int32, -1 absent) when the live ids are non-negative and dense enough
        (largest <= 4x the count + 4096); rebuilt when the ids change (``_sorted_ids`` is replaced)."""
        if self._table is not None and self._table[0] is self._sorted_ids:
            return self._table[1]
        ids = self._sorted_ids
        table = None
        if ids[0] >= 0 and ids[-1] <= 4 * len(ids) + 4096:
            size = int(ids[-1]) + 1
            table = np.full(size + size // 4 + 4096, -1, np.int32)  # room for the ids of the next appends
            table[ids] = self._sorted_pos
        self._table = (ids, table)
        return table

    def _valid_table(self) -> np.ndarray | None:
        """The dense id table if it was built for the current sorted ids (else None: built on demand)."""
        if self._table is not None and self._table[0] is self._sorted_ids:
            return self._table[1]
        return None

    def _append_sorted(self, ids: np.ndarray, pos: np.ndarray) -> None:
        """Sorted ``ids`` (internal indices ``pos``) above every live id, as a Collection's rowids always are:
        written into the spare capacity behind the sorted arrays and into the id table in place, so an add
        costs its own rows instead of a copy of every id (at 1M ids: 23 ms per add, and as much again for
        the next lookup, which rebuilt the table)."""
        m0, m = self._sorted_ids.shape[0], ids.shape[0]
        table = self._valid_table()
        cap = self._cap
        if cap is None or cap[0].shape[0] < m0 + m or self._sorted_ids.base is not cap[0]:
            size = max(2 * (m0 + m), 16)
            cap = (np.zeros(size, np.int64), np.zeros(size, np.int64))
            cap[0][:m0], cap[1][:m0] = self._sorted_ids, self._sorted_pos
            self._cap = cap
        cap[0][m0 : m0 + m], cap[1][m0 : m0 + m] = ids, pos
        self._sorted_ids, self._sorted_pos = cap[0][: m0 + m], cap[1][: m0 + m]
        if table is not None and ids[-1] < table.shape[0] and ids[-1] <= 4 * (m0 + m) + 4096:
            table[ids] = pos
            self._table = (self._sorted_ids, table)

    def next_ids(self, m: int) -> np.ndarray:
        """``m`` fresh ids after the largest ever used."""
        start = int(self.ids.max()) + 1 if self.n else 0
        return np.arange(start, start + m, dtype=np.int64)

    def append(self, ids: np.ndarray) -> np.ndarray:
        """New live vectors with (unique, absent) ``ids``; returns their internal indices."""
        self._view = None
        m = ids.shape[0]
        start = self.n
        if start + m > MAX_VECTORS:
            raise ValueError(f"at most {MAX_VECTORS} vectors per index")
        self._ids = grow(self._ids, start + m)
        self._ids[start : start + m] = ids
        self._deleted = grow(self._deleted, start + m)
        self._deleted[start : start + m] = 0
        self.n = start + m
        new = np.arange(start, start + m, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if m and (self._sorted_ids.shape[0] == 0 or ids[order[0]] > self._sorted_ids[-1]):
            self._append_sorted(ids[order], new[order])
        else:
            at = np.searchsorted(self._sorted_ids, ids[order])
            self._sorted_ids = np.insert(self._sorted_ids, at, ids[order])
            self._sorted_pos = np.insert(self._sorted_pos, at, new[order])
        self.n_live += m
        return new

    def delete(self, ids: np.ndarray) -> int:
        """Tombstone the live ones of (unique) ``ids``; returns how many."""
        pos = self.lookup(ids)
        hit = pos >= 0
        if not hit.any():
            return 0
        self._deleted[pos[hit]] = 1  # in place: the view stays valid
        table = self._valid_table()
        keep = ~np.isin(self._sorted_ids, ids[hit])
        self._sorted_ids = self._sorted_ids[keep]
        self._sorted_pos = self._sorted_pos[keep]
        if table is not None and self._sorted_ids.shape[0]:  # kept in step in place (rebuilt on demand otherwise)
            table[ids[hit]] = -1
            self._table = (self._sorted_ids, table)
        self.n_live -= int(hit.sum())
        return int(hit.sum())


def _gather(base: np.ndarray, tail: np.ndarray, vidx: np.ndarray) -> np.ndarray:
    """Rows ``vidx`` of the table whose first rows are ``base`` and the rest ``tail`` (a copy)."""
    nb = base.shape[0]
    out = np.empty((len(vidx), base.shape[1]), np.float32)
    lo = vidx < nb
    out[lo] = base[vidx[lo]]
    out[~lo] = tail[vidx[~lo] - nb]
    return out


class VectorTable:
    """Full-precision vectors by internal index, with their squared norms."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.n = 0
        self.base = np.zeros((0, self.dim), np.float32)
        self._tail = np.zeros((0, self.dim), np.float32)
        self._xn2 = np.zeros(0, np.float32)
        self.mmapped = False
        self._crc: tuple[Path, int] | None = None  # the mapped file and its CRC32 (see check_mapped)
        self._view: K.VectorsView | None = None

    @classmethod
    def of_arrays(cls, vectors: np.ndarray, xn2: np.ndarray, *, mapped: tuple[Path, int] | None = None) -> VectorTable:
        """Stored vectors (n, dim) and their norms; ``mapped`` = (file, crc32) when ``vectors`` is a
        memory map of that file (kept on disk, checked by :meth:`check_mapped`)."""
        out = cls(vectors.shape[1])
        # a plain ndarray view of a map: numba dispatches ndarray subclasses (np.memmap) slowly
        out.base = np.asarray(vectors) if mapped else np.ascontiguousarray(vectors, dtype=np.float32)
        out.mmapped = mapped is not None
        out._crc = mapped
        out._xn2 = np.ascontiguousarray(xn2, dtype=np.float32)
        out.n = vectors.shape[0]
        return out

    @property
    def tail(self) -> np.ndarray:
        return self._tail[: self.n - self.base.shape[0]]

    @property
    def xn2(self) -> np.ndarray:
        return self._xn2[: self.n]

    @property
    def nbytes_resident(self) -> int:
        """Bytes held in RAM (the mapped base segment is not)."""
        return int(self._tail.nbytes + self._xn2.nbytes + (0 if self.mmapped else self.base.nbytes))

    def view(self) -> K.VectorsView:
        if self._view is None:
            self._view = K.check_view(K.VectorsView(self.base, self.tail, self.xn2))
        return self._view

    def append(self, x: np.ndarray) -> None:
        """Rows ``x`` (m, dim) float32 take the next internal indices."""
        self._view = None
        m = x.shape[0]
        nt = self.n - self.base.shape[0]
        self._tail = grow(self._tail, nt + m)
        self._tail[nt : nt + m] = x
        self._xn2 = grow(self._xn2, self.n + m)
        self._xn2[self.n : self.n + m] = _sqnorms(x)
        self.n += m

    def rows(self, vidx: np.ndarray) -> np.ndarray:
        """Vectors of internal indices ``vidx`` (a copy)."""
        return _gather(self.base, self._tail, vidx)

    def rows_chunked(self, vidx: np.ndarray) -> _storage.Chunked:
        """Vectors of internal indices ``vidx`` (ascending) for a snapshot, ~64 MB at a time when written: a
        save of a memory-mapped table copies it block by block (its pages released as it goes), never whole.
        The arrays are taken now: later appends (into spare room or a new tail) leave these rows as they
        are, so the blocks are the rows of this moment even while the table grows."""
        step = max(1, (1 << 26) // (4 * max(1, self.dim)))
        base, tail = self.base, self._tail

        def blocks():
            pages = _storage.MappedPages.of(base)
            for s in range(0, len(vidx), step):
                out = _gather(base, tail, vidx[s : s + step])
                pages.read(out.nbytes)
                yield out

        return _storage.Chunked((len(vidx), self.dim), np.dtype(np.float32), blocks)

    def check_mapped(self) -> None:
        """Raise ``CorruptStoreError`` when the memory-mapped file no longer has the CRC32 it was loaded
        with (one pass over the file: before a save copies it into a new snapshot under a fresh checksum)."""
        if self._crc is not None and array_crc(self.base) != self._crc[1]:
            msg = f"corrupt index: checksum mismatch in {str(self._crc[0])!r} (memory-mapped); no snapshot written"
            raise CorruptStoreError(msg)
