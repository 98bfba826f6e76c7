"""Recall you ask for: which search setting reaches a recall target, measured on sample queries.

A :class:`Calibration` is a small table measured when the index is built (and again when it has grown or
been rebuilt): for sample queries with exact neighbours it holds the mean recall@k of every probe depth of a
geometric grid, for a few ``k``, with the default distance pruning and without it, and for random filters of
a few selectivities. :meth:`Calibration.setting` turns a target into the cheapest setting that reached it
(``n_probe`` interpolated between grid points, cost = entries scanned). The sample queries are either
vectors of the index itself (their own id left out of both the exact and the searched neighbours) or
queries a user supplies (``SpannIndex.calibrate(queries)``). The table is stored with the snapshot as JSON.

The same machinery answers :func:`estimate_recall`: the recall of a setting on a fresh sample, with a
confidence interval.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# recall@k is calibrated for these k; another k uses the next larger one (recall@k falls with k at a depth)
K_GRID = (1, 10, 100)
# random filters of these selectivities (fraction of live vectors allowed), recall@10; the depth for a filter
# between two of them (or between the loosest and no filter) is interpolated in log selectivity
SEL_GRID = (0.1, 0.01)
# filters allowing at most this many vectors are answered exactly by the index (see SpannIndex.search)
EXACT_FILTER = 2048
DEFAULT_SAMPLE = 300
MIN_DEPTH = 8  # postings a target never goes below
# a grid row stops once it reaches RECALL_CAP, or gains less than PLATEAU over two steps
RECALL_CAP = 0.995
PLATEAU = 0.002
# recalibrate when the live count changed by this factor since calibration, or the heads by HEADS_GROWTH
COUNT_GROWTH = 1.3
HEADS_GROWTH = 1.15


def probe_grid(n_heads: int) -> np.ndarray:
    """Probe depths measured: 1, 2, 3, 4, 6, 8, 11, 16, ... (x sqrt 2), ending with ``n_heads``."""
    out, v = [], 1.0
    while round(v) < n_heads:
        if not out or round(v) > out[-1]:
            out.append(round(v))
        v *= math.sqrt(2)
    out.append(n_heads)
    return np.array(out, np.int64)


@dataclass
class Calibration:
    """Measured recall per search setting (see the module docstring).

    ``recall`` and ``cost`` are (len(ks), len(mdr), len(n_probe)); ``filtered`` is (len(sel), len(n_probe))
    (recall@10 under random filters; NaN rows: not measured, the index answers such filters exactly).
    Entries past the point where a row reached :data:`RECALL_CAP` repeat the last measured value.
    """

    n_probe: np.ndarray
    mdr: np.ndarray
    ks: np.ndarray
    recall: np.ndarray
    cost: np.ndarray
    sel: np.ndarray
    filtered: np.ndarray
    count: int
    heads: int
    sample: int
    source: str

    def __post_init__(self) -> None:
        self._memo: dict[tuple, tuple[int, float]] = {}

    # -- choosing a setting ----------------------------------------------------------------------------
    def _k_row(self, k: int) -> int:
        i = int(np.searchsorted(self.ks, k))
        return min(i, len(self.ks) - 1)

    def _depth(self, row: np.ndarray, target: float) -> tuple[float, float] | None:
        """(n_probe, fraction along the grid) where ``row`` first reaches ``target``, interpolated; None if
        it never does."""
        hit = np.flatnonzero(row >= target)
        if len(hit) == 0:
            return None
        g = int(hit[0])
        if g == 0:
            return float(self.n_probe[0]), 0.0
        r0, r1 = row[g - 1], row[g]
        f = (target - r0) / (r1 - r0) if r1 > r0 else 1.0
        return float(self.n_probe[g - 1] + f * (self.n_probe[g] - self.n_probe[g - 1])), g - 1 + f

    def setting(self, target: float, k: int, selectivity: float = 1.0) -> tuple[int, float]:
        """``(n_probe, max_dist_ratio)``: the cheapest measured setting whose recall@k reached ``target``
        (the deepest one when none did). With a filter (``selectivity`` < 1) the index's filtered search
        disables distance pruning and scales the depth itself; the depth returned is its base ``n_probe``."""
        key = (target, k, round(selectivity, 3) if selectivity < 1 else 1.0)
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._setting(*key)
        return got

    def _setting(self, target: float, k: int, selectivity: float) -> tuple[int, float]:
        kr = self._k_row(k)
        best: tuple[float, int, float] | None = None  # (cost, n_probe, mdr)
        for m in range(len(self.mdr)):
            d = self._depth(self.recall[kr, m], target)
            if d is None:
                continue
            npr, pos = d
            lo = math.floor(pos)
            hi = min(lo + 1, self.cost.shape[2] - 1)
            c = self.cost[kr, m, lo] + (pos - lo) * (self.cost[kr, m, hi] - self.cost[kr, m, lo])
            if best is None or c < best[0]:
                best = (c, math.ceil(npr - 1e-9), float(self.mdr[m]))
        if best is None:  # unreachable: the setting with the highest recall, cheapest among equals
            flat = [
                (-self.recall[kr, m, g], self.cost[kr, m, g], m, g)
                for m in range(len(self.mdr))
                for g in range(len(self.n_probe))
            ]
            _, _, m, g = min(flat)
            best = (0.0, int(self.n_probe[g]), float(self.mdr[m]))
        npr, mdr = best[1], best[2]
        if selectivity < 1:
            npr = self._filtered_depth(target, k, selectivity, npr)
            mdr = math.inf
        # never fewer than the MIN_DEPTH nearest postings (the pruning keeps those anyway): on a small index,
        # or with queries unlike the index's vectors, a shallower setting saves little and risks much
        return max(min(MIN_DEPTH, int(self.n_probe[-1])), min(int(npr), int(self.n_probe[-1]))), mdr

    def _filtered_depth(self, target: float, k: int, selectivity: float, unfiltered: int) -> int:
        """Base depth for a filter: interpolated in log selectivity between the depths measured at the
        calibrated selectivities around it (the unfiltered search without pruning counting as selectivity
        1; below the most selective one, that one's), scaled by k as the unfiltered rows scale."""
        measured = [i for i in range(len(self.sel)) if not np.isnan(self.filtered[i]).all()]
        if not measured:  # every calibrated filter was small enough for exact search
            return unfiltered
        inf_row = int(np.flatnonzero(np.isinf(self.mdr))[0]) if np.isinf(self.mdr).any() else len(self.mdr) - 1
        ten = self._k_row(10)

        def depth_of(row: np.ndarray) -> float:
            d = self._depth(row, target)
            return float(self.n_probe[-1]) if d is None else d[0]

        # (selectivity, depth) points, loosest first
        points = [(1.0, depth_of(self.recall[ten, inf_row]))]
        points += sorted(((float(self.sel[i]), depth_of(self.filtered[i])) for i in measured), reverse=True)
        depth = points[-1][1]
        for (s_hi, d_hi), (s_lo, d_lo) in itertools.pairwise(points):
            if s_lo <= selectivity <= s_hi:
                f = math.log(s_hi / selectivity) / math.log(s_hi / s_lo) if s_hi > s_lo else 0.0
                depth = d_hi + f * (d_lo - d_hi)
                break
        if k != 10:  # k scales the filtered depth as it scales the unfiltered one
            base10 = self._depth(self.recall[ten, inf_row], target)
            basek = self._depth(self.recall[self._k_row(k), inf_row], target)
            if base10 is not None and basek is not None and base10[0] > 0:
                depth *= basek[0] / base10[0]
        return math.ceil(depth - 1e-9)

    def stale(self, count: int, heads: int) -> bool:
        """Whether the index changed enough since calibration to measure again."""
        grown = max(count, 1) / max(self.count, 1)
        return (
            not (1 / COUNT_GROWTH <= grown <= COUNT_GROWTH)
            or heads > HEADS_GROWTH * self.heads
            or heads < self.heads / HEADS_GROWTH
        )

    # -- persistence (plain JSON: nothing loaded executes code) ----------------------------------------
    def to_json(self) -> dict[str, Any]:
        def arr(a: np.ndarray) -> list:
            return [None if isinstance(v, float) and not math.isfinite(v) else v for v in a.ravel().tolist()]

        return {
            "n_probe": self.n_probe.tolist(),
            "mdr": [None if math.isinf(v) else v for v in self.mdr.tolist()],
            "ks": self.ks.tolist(),
            "recall": arr(self.recall),
            "cost": arr(self.cost),
            "sel": self.sel.tolist(),
            "filtered": arr(self.filtered),
            "count": self.count,
            "heads": self.heads,
            "sample": self.sample,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, d: Any) -> Calibration:
        """Inverse of :meth:`to_json`; ``ValueError`` naming the problem for anything malformed."""
        if not isinstance(d, dict):
            raise ValueError("calibration must be an object")
        try:
            npr = np.array(d["n_probe"], np.int64)
            mdr = np.array([math.inf if v is None else float(v) for v in d["mdr"]], np.float64)
            ks = np.array(d["ks"], np.int64)
            sel = np.array(d["sel"], np.float64)
            shape = (len(ks), len(mdr), len(npr))

            def grid(key: str, shp: tuple[int, ...]) -> np.ndarray:
                vals = np.array([math.nan if v is None else float(v) for v in d[key]], np.float64)
                if vals.size != int(np.prod(shp)):
                    raise ValueError(f"calibration {key!r} has {vals.size} values, expected {shp}")
                return vals.reshape(shp)

            out = cls(
                npr,
                mdr,
                ks,
                grid("recall", shape),
                grid("cost", shape),
                sel,
                grid("filtered", (len(sel), len(npr))),
                int(d["count"]),
                int(d["heads"]),
                int(d["sample"]),
                str(d["source"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"calibration is malformed: {type(exc).__name__}: {exc}") from None
        if npr.ndim != 1 or len(npr) == 0 or (np.diff(npr) <= 0).any() or npr[0] < 1:
            raise ValueError("calibration n_probe grid must be increasing positive integers")
        if np.isnan(out.recall).any() or ((out.recall < 0) | (out.recall > 1)).any():
            raise ValueError("calibration recall values must lie in [0, 1]")
        return out


# ----------------------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------------------
def drop_own(found: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """``found`` (nq, m) ids best first without each row's ``exclude`` id (a query's own, for vectors of the
    index used as queries): dropped where present, else the row's last column is; (nq, m - 1)."""
    keep = found != exclude[:, None]
    keep[keep.all(axis=1), -1] = False
    return found[keep].reshape(len(found), found.shape[1] - 1)


def per_query_recall(found: np.ndarray, truth: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Recall@k per query, k = ``truth.shape[1]``: ``truth`` (nq, k) exact external ids (-1 padded, left out
    of the count) without any excluded id; ``found`` (nq, k) ids best first, or (nq, k + 1) when ``exclude``
    (nq,) names an id per query to leave out (the query's own, for vectors of the index used as queries):
    it is dropped where found, else the last column is."""
    if exclude is not None:
        found = drop_own(found, exclude)
    hits = ((found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)).any(axis=2).sum(axis=1)
    n_true = (truth >= 0).sum(axis=1)
    return np.where(n_true > 0, hits / np.maximum(n_true, 1), 1.0)


def interval(values: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Mean and a normal-approximation confidence interval (95% by default), clipped to [0, 1]."""
    m = float(values.mean()) if len(values) else math.nan
    half = z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return m, max(0.0, m - half), min(1.0, m + half)
