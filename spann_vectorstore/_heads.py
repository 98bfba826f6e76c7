"""The head table: posting centroids, their float16 copy, and the coarse head groups.

A search scores candidate heads to choose the postings to scan. Below ``GROUP_MIN_HEADS`` heads every head
is a candidate; from there on the heads are grouped into ~sqrt(H) balanced groups and a query's
candidates are the members of its ``group_probe(n_probe)`` nearest groups. Candidates are ranked by their
float16 copy (scaled so its largest entry is 1024, padded to whole 8-float chunks: half the bytes to read),
and the chosen heads scored again in float32 (``_kernels.search._probe``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels as K
from .clustering import HeadGroups, _sqnorms, group_heads

# heads are scored through a coarse level of ~sqrt(H) head groups from this many heads on (~82k vectors
# at the default head_ratio); below it scoring every head is cheap and exact
GROUP_MIN_HEADS = 2048


class HeadTable:
    """Heads (H, dim) float32 with their norms, float16 copy and groups; ``seed`` seeds the grouping."""

    def __init__(self, dim: int, seed: int) -> None:
        self.dim = int(dim)
        self.seed = int(seed)
        self._view: K.HeadsView | None = None
        self._hg: HeadGroups | None = None
        self._set(np.zeros((0, self.dim), np.float32))
        self._set_groups(np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.heads.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.g_cent.shape[0])

    @property
    def groups(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(centroids, group label per head), or None while the heads are not grouped."""
        return (self.g_cent, self.g_label) if self.n_groups else None

    @property
    def nbytes(self) -> int:
        arrays = (  # the buffers behind heads, hn2 and heads16 (with their spare room for splits)
            self._heads_buf,
            self._hn2_buf,
            self._h16_buf,
            self.g_cent,
            self.g_cn2,
            self.g_label,
            self.g_start,
            self.g_members,
        )
        return int(sum(a.nbytes for a in arrays))

    def view(self) -> K.HeadsView:
        """The kernels' view of the heads (cached until this table changes)."""
        if self._view is None:
            self._view = K.check_view(
                K.HeadsView(
                    self.heads,
                    self.hn2,
                    self.heads16,
                    self.h16_scale,
                    self.g_cent,
                    self.g_cn2,
                    self.g_start,
                    self.g_members,
                )
            )
        return self._view

    def head_groups(self) -> HeadGroups | None:
        """The heads in group order for the build's and the adds' candidate search
        (:func:`clustering.nearest_candidates`), cached until this table changes (building it gathers every
        head: ~11 ms at 12.5k heads, once per add before); None while the heads are not grouped."""
        if self.n_groups < 2:
            return None
        if self._hg is None:
            m = self.g_members
            hg = self.heads[m]
            self._hg = HeadGroups(hg, self.hn2[m], self.g_start, m, self.g_cent, self.g_cn2)
        return self._hg

    def group_probe(self, n_probe: int) -> int:
        """Head groups whose members are scored for ``n_probe`` postings. Measured at 1M synthetic vectors
        (12.7k heads, 112 groups): 12 groups find the exact 8 nearest heads for every query, 24 groups
        99.6% of the 32 nearest; probing more of them for larger n_probe keeps that margin."""
        return min(self.n_groups, 8 + n_probe // 2)

    def probe(self, queries: np.ndarray, n_probe: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n_probe`` postings a search would scan for each of ``queries`` (nq, dim) float32 (before
        distance pruning): head ids (nq, n_probe) int64, -1 padded, and squared L2 distances, nearest first."""
        nq = queries.shape[0]
        out_i = np.full((nq, n_probe), -1, np.int64)
        out_d = np.full((nq, n_probe), np.inf, np.float32)
        if len(self):
            K.probe_batch(queries, self.view(), n_probe, self.group_probe(n_probe), out_i, out_d)
        return out_i, out_d

    # ------------------------------------------------------------------------------------------------------
    # mutations (each drops the cached view)
    # ------------------------------------------------------------------------------------------------------
    def _set(self, heads: np.ndarray) -> None:
        """Every head anew: norms and float16 copy, in buffers with room to grow (see :meth:`split`)."""
        self._view = self._hg = None
        h = heads.shape[0]
        cap = max(16, h + h // 8)
        self._heads_buf = np.zeros((cap, self.dim), np.float32)
        self._heads_buf[:h] = heads
        self._hn2_buf = np.zeros(cap, np.float32)
        self._h16_buf = np.zeros((cap, 8 * ((self.dim + 7) // 8)), np.uint16)
        big = float(np.abs(self._heads_buf[:h]).max()) if h else 0.0
        # a power of two: float16 of heads / scale rounds the same under any such scale (it only moves the
        # exponent), so heads written by split() under an older scale equal a fresh _set's bit for bit
        self.h16_scale = 2.0 ** math.ceil(math.log2(big / 1024.0)) if big > 0 else 1.0
        self._write_rows(0, h)
        self._expose(h)

    def _write_rows(self, lo: int, hi: int) -> None:
        rows = self._heads_buf[lo:hi]
        self._hn2_buf[lo:hi] = _sqnorms(rows)
        self._h16_buf[lo:hi, : self.dim] = (rows / self.h16_scale).astype(np.float16).view(np.uint16)

    def _expose(self, h: int) -> None:
        """The first ``h`` rows of the buffers as the table's arrays (C-contiguous views)."""
        self._view = self._hg = None
        self.heads = self._heads_buf[:h]
        self.hn2 = self._hn2_buf[:h]
        self.heads16 = self._h16_buf[:h]

    def _set_groups(self, g_cent: np.ndarray, g_label: np.ndarray) -> None:
        """Groups from centroids and a label per head: member lists (CSR, ascending head id) and norms."""
        self._view = self._hg = None
        self.g_cent = np.ascontiguousarray(g_cent, dtype=np.float32)
        self.g_label = np.asarray(g_label, dtype=np.int64)
        g = self.g_cent.shape[0]
        self.g_cn2 = _sqnorms(self.g_cent)
        self.g_members = np.argsort(self.g_label, kind="stable").astype(np.int64)
        self.g_start = np.zeros(g + 1, np.int64)
        np.cumsum(np.bincount(self.g_label, minlength=g), out=self.g_start[1:])

    def reset(self, heads: np.ndarray, groups: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Replace every head; group them anew, or use stored ``groups`` (centroids, label per head)."""
        self._set(heads)
        if groups is None:
            self.regroup()
        else:
            self._set_groups(*groups)

    def regroup(self) -> None:
        """Group the heads (from ``GROUP_MIN_HEADS`` heads on; none below)."""
        if len(self) < GROUP_MIN_HEADS:
            self._set_groups(np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64))
        else:
            self._set_groups(*group_heads(self.heads, rng=np.random.default_rng(self.seed + 1)))

    def split(self, h: int, first: np.ndarray, second: np.ndarray) -> int:
        """Head ``h`` becomes ``first`` and a new head ``second`` is appended (a posting split); the new head
        joins the group with the nearest centroid (or the heads are grouped once there are enough of them).
        Returns the new head's id.

        O(d) for the heads (rows written in place in buffers with spare room; the float16 copy is
        recomputed for all only when a new head exceeds its scale's range) and O(H) integer moves for the
        groups: a split at 125k heads used to copy and convert every head (~0.2 s)."""
        n = len(self)
        if n + 1 > self._heads_buf.shape[0]:
            self._set(np.vstack([self.heads, second.reshape(1, -1)]))
        else:
            self._heads_buf[n] = second
        self._heads_buf[h] = first
        big = max(float(np.abs(first).max()), float(np.abs(second).max()))
        if big / self.h16_scale > 1024.0:
            self._set(self._heads_buf[: n + 1].copy())
        else:
            self._write_rows(h, h + 1)
            self._write_rows(n, n + 1)
            self._expose(n + 1)
        if self.n_groups == 0:
            if len(self) >= GROUP_MIN_HEADS:
                self.regroup()
        else:
            new = self.heads[n]
            g = int(np.argmin(self.g_cn2 - 2.0 * (self.g_cent @ new)))
            self._view = self._hg = None
            self.g_label = np.append(self.g_label, np.int64(g))
            at = int(self.g_start[g + 1])  # after the group's members: ids stay ascending within it
            self.g_members = np.insert(self.g_members, at, np.int64(n))
            self.g_start[g + 1 :] += 1
        return n
