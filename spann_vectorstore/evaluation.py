"""Measuring search quality: exact top-k, recall@k and seeded synthetic data.

Used by the tests, the benchmarks (``benchmarks/*.py``) and ``spann-vectorstore bench``, so that every
number of recall in this repository is computed the same way:

- :func:`exact_topk`: brute-force top-k (inner product, cosine or L2), blocked so that a million vectors
  fit in memory; equal scores are ordered by row index (smallest first), as the index orders ties by id.
- :func:`recall_at_k`: the mean fraction of the true top-k found.
- :func:`clustered`: uneven Gaussian blobs (small test data, harder than uniform noise).
- :func:`synthetic_dataset`: unit-norm clustered base and queries with exact ground truth (benchmarks).

Numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .validation import check_metric

_BLOCK_BASE = 100_000  # base rows per block: bounds the score matrix at _BLOCK_CELLS float32
_BLOCK_CELLS = 1 << 25  # 128 MB of float32 scores per (queries x base) block


def exact_topk(
    xb: np.ndarray,
    xq: np.ndarray,
    k: int,
    metric: str = "ip",
    *,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``xb`` (n, d) for each query of ``xq`` (nq, d or d,), best first.

    Returns ``(ids, scores)``, both (nq, k): row indices into ``xb`` (int64) and their scores, the similarity
    for ``"ip"``/``"cosine"`` (higher is better) and the squared distance for ``"l2"`` (lower is better).
    Equal scores are ordered by row index. ``allowed``: a boolean mask over the rows of ``xb`` or an array of
    row indices; only those rows are ranked. Fewer than ``k`` candidates: the rest is ``-1`` (score NaN).
    Scores are float32 (``xq @ xb.T``), as a float32 index computes them.
    """
    metric = check_metric(metric)
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    if xq.ndim == 1:
        xq = xq[None, :]
    if xb.ndim != 2 or xq.ndim != 2 or xb.shape[1] != xq.shape[1]:
        raise ValueError(f"need base (n, d) and queries (nq, d), got {xb.shape} and {xq.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    rows = np.arange(len(xb), dtype=np.int64)
    if allowed is not None:
        allowed = np.asarray(allowed)
        rows = np.flatnonzero(allowed) if allowed.dtype == bool else np.unique(allowed.astype(np.int64))
        xb = xb[rows]
    if metric == "cosine":
        xb = _unit(xb)
        xq = _unit(xq)
    nq, n = len(xq), len(xb)
    ids = np.full((nq, k), -1, np.int64)
    scores = np.full((nq, k), np.nan, np.float32)
    if n == 0 or nq == 0:
        return ids, scores
    xb_n2 = np.einsum("ij,ij->i", xb, xb) if metric == "l2" else None
    q_block = max(1, _BLOCK_CELLS // min(n, _BLOCK_BASE))
    for qs in range(0, nq, q_block):
        q = xq[qs : qs + q_block]
        q_n2 = np.einsum("ij,ij->i", q, q)[:, None] if metric == "l2" else None
        best_s = np.empty((len(q), 0), np.float32)  # ranking keys: higher is better
        best_i = np.empty((len(q), 0), np.int64)
        for bs in range(0, n, _BLOCK_BASE):
            s = q @ xb[bs : bs + _BLOCK_BASE].T
            if metric == "l2":
                s = -(q_n2 - 2 * s + xb_n2[None, bs : bs + _BLOCK_BASE])
            top = _top_by_index(s, k)
            cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
            cand_i = np.concatenate([best_i, top + bs], axis=1)
            order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]  # by score, then by row
            best_s = np.take_along_axis(cand_s, order, 1)
            best_i = np.take_along_axis(cand_i, order, 1)
        kk = best_i.shape[1]
        ids[qs : qs + len(q), :kk] = rows[best_i]
        scores[qs : qs + len(q), :kk] = -best_s if metric == "l2" else best_s
    return ids, scores


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1, norms)).astype(np.float32)


def _top_by_index(s: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest values of each row of ``s`` (all columns if fewer), equal values
    taken by smallest column first (``argpartition`` alone may take any of the values tied at the k-th)."""
    n = s.shape[1]
    if k >= n:
        return np.broadcast_to(np.arange(n), s.shape).copy()
    part = np.argpartition(s, n - k, axis=1)[:, n - k :]  # the k largest (no negated copy of s)
    kth = np.take_along_axis(s, part, 1).min(axis=1)
    # rows where the k-th value is tied with a value left out: choose those again by (value, column)
    ties = (s == kth[:, None]).sum(axis=1) > (np.take_along_axis(s, part, 1) == kth[:, None]).sum(axis=1)
    for r in np.flatnonzero(ties):
        part[r] = np.lexsort((np.arange(n), -s[r]))[:k]
    return part


def recall_at_k(found: Any, truth: Any, k: int) -> float:
    """Mean over queries of ``|found[i][:k] ∩ truth[i][:k]| / |truth[i][:k]|``.

    ``found``: per query the ids returned, best first (an (nq, >=k) array or a list of lists of any length);
    ``truth``: the exact ids, as from :func:`exact_topk` (rows must match ``found``'s). ``-1`` entries are
    padding and ignored on both sides; a query whose truth is all padding (nothing to find) is left out of
    the mean. Ids may be ints or strings; duplicates in ``found`` count once.
    """
    if len(found) != len(truth):
        raise ValueError(f"found has {len(found)} queries, truth {len(truth)}")
    total, counted = 0.0, 0
    for f, t in zip(found, truth):
        want = {_id(x) for x in list(t)[:k]} - {-1}
        if not want:
            continue
        got = {_id(x) for x in list(f)[:k]}
        total += len(want & got) / len(want)
        counted += 1
    return total / counted if counted else float("nan")


def _id(x: Any) -> Any:
    return int(x) if isinstance(x, (int, np.integer)) else x


def clustered(n: int, d: int, *, n_centers: int = 50, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Gaussian blobs around ``n_centers`` random centres with uneven sizes (Dirichlet weights), float32
    (n, d), not normalised. Seeded: the same arguments give the same array."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, d)).astype(np.float32)
    weights = rng.dirichlet(np.ones(n_centers))
    which = rng.choice(n_centers, size=n, p=weights)
    return (centers[which] + spread * rng.standard_normal((n, d))).astype(np.float32)


def synthetic_source(n: int, d: int, *, seed: int = 0, noise: float = 0.7):
    """The generator behind :func:`synthetic_dataset`: ``draw(m)`` returns the next ``m`` rows (float32,
    unit norm) around ``max(1, n // 1000)`` random unit centres, each ``centre + noise / sqrt(d) * N(0, I)``
    normalised. Successive draws continue one random stream, so drawing the base in blocks and then the
    queries gives the same rows as :func:`synthetic_dataset` (which lets a benchmark write millions of rows
    to a file block by block)."""
    rng = np.random.default_rng(seed)
    n_centers = max(1, n // 1000)
    centers = rng.standard_normal((n_centers, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    scale = np.float32(noise / np.sqrt(d))

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, d), dtype=np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            lab = rng.integers(0, n_centers, e - s)
            block = centers[lab] + scale * rng.standard_normal((e - s, d), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[s:e] = block
        return out

    return draw


def synthetic_dataset(
    n: int, d: int, n_queries: int, *, seed: int = 0, noise: float = 0.7, k_truth: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embedding-like benchmark data: ``(base, queries, truth)`` (the model of :func:`synthetic_source`).

    ``truth``: the exact top ``min(k_truth, n)`` base rows by inner product per query (:func:`exact_topk`).
    Drawn in blocks of 100k rows (float32), so a million vectors take ~1.5 GB at d=384 at most.
    """
    draw = synthetic_source(n, d, seed=seed, noise=noise)
    xb = draw(n)
    xq = draw(n_queries)
    truth, _ = exact_topk(xb, xq, min(k_truth, n), "ip")
    return xb, xq, truth


__all__ = ["clustered", "exact_topk", "recall_at_k", "synthetic_dataset", "synthetic_source"]
