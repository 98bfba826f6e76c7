"""Argument checks shared by the index, the Collection, the Ray ``ShardedCollection``, the adapters and the CLI.

One place for each rule, so every entry point words its errors the same way: positive and non-negative
integers (``bool`` is refused: ``True`` is not a count), the metric names, per-vector argument lists, query
texts, and the conversion of user vectors to the float32 matrix the kernels take (:func:`as_matrix`).
Numpy only: importing this module loads neither Numba nor the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Accepted metric names (aliases included) and the canonical name each stands for.
METRICS = {
    "ip": "ip",
    "inner_product": "ip",
    "dot": "ip",
    "cosine": "cosine",
    "cos": "cosine",
    "l2": "l2",
    "euclidean": "l2",
}

#: Largest squared norm accepted (float32 max / 8): squared norms, inner products and the distances built from
#: them (|q|^2 - 2 q.x + |x|^2, residuals to heads) then stay finite in float32. Beyond it a norm overflows to
#: inf and the index silently ranks wrong (exact search does not), so such inputs are rejected instead.
MAX_SQNORM = float(np.finfo(np.float32).max) / 8


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1 (``int`` or numpy integer, not ``bool``), else
    ``ValueError("<name> must be a positive integer, got <value>")``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 0 (not ``bool``), else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_target(value: Any, name: str = "target_recall") -> float:
    """``value`` as a ``float`` if it is a number in (0, 1], else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_metric(metric: Any) -> str:
    """The canonical metric name (``"ip"``, ``"cosine"`` or ``"l2"``) of ``metric`` or one of its aliases
    (case-insensitive), else ``ValueError("unknown metric ...")``."""
    if not isinstance(metric, str) or metric.lower() not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of 'ip', 'cosine', 'l2'")
    return METRICS[metric.lower()]


def per_vector(values: Any, n: int, name: str) -> list[Any]:
    """A per-vector argument (``texts``, ``metadatas``, ``ids``) as a list of ``n`` entries; ``None`` gives
    ``n`` Nones. A string, bytes or dict (one value, not a sequence of them) raises ``TypeError``, a
    length other than ``n`` raises ``ValueError``."""
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes, dict)):
        raise TypeError(f"{name} must be a sequence with one entry per vector, got {type(values).__name__}")
    out = list(values)
    if len(out) != n:
        raise ValueError(f"got {len(out)} {name} for {n} vectors")
    return out


def query_texts(text_or_texts: Any) -> tuple[bool, list[str]]:
    """``(single, texts)`` for one query text or a sequence of them (``TypeError`` for anything else)."""
    if isinstance(text_or_texts, str):
        return True, [text_or_texts]
    if isinstance(text_or_texts, (bytes, dict)) or not isinstance(text_or_texts, Sequence):
        raise TypeError(f"query text must be a string or a sequence of strings, got {type(text_or_texts).__name__}")
    texts = list(text_or_texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"query texts must be strings, got {type(t).__name__}")
    return False, texts


def as_matrix(x: Any, what: str, *, dim: int, metric: str, allow_1d: bool) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(n, dim)`` matrix, checked; unit-normalised rows for ``"cosine"``.

    what: the argument's name in error messages (``"vectors"``, ``"queries"``). allow_1d: a ``(dim,)`` vector
    is taken as one row. metric: a canonical name (:func:`check_metric`). Raises ``TypeError`` for
    non-numeric, complex or ragged input; ``ValueError`` for a wrong shape or dimension, an empty matrix,
    NaN/inf, a squared norm beyond :data:`MAX_SQNORM`, or a zero vector under cosine. A float32 C-contiguous
    array of the right shape, finite and in range, is returned as is (no copy) unless the metric is cosine:
    that check takes a few microseconds, so it suits the per-query path.
    """
    if (
        type(x) is np.ndarray
        and x.dtype == np.float32
        and x.flags.c_contiguous
        and (x.ndim == 2 or (x.ndim == 1 and allow_1d))
        and x.shape[-1] == dim
        and x.size
        and metric != "cosine"
        and (float(x.dot(x)) if x.ndim == 1 else float(np.einsum("ij,ij->i", x, x).max())) <= MAX_SQNORM
        # the last test is False for NaN
    ):
        return x.reshape(1, -1) if x.ndim == 1 else x  # the common case, validated in a few microseconds
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{what} must be a numeric array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{what} must be real-valued, got dtype {arr.dtype}")
    if arr.ndim == 1 and allow_1d:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n, {dim}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    if arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, index dimension is {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{what} contain NaN or inf (first at row {bad})")
    n2 = np.einsum("ij,ij->i", arr, arr, dtype=np.float64)
    if n2.max() > MAX_SQNORM:
        bad = int(np.argmax(n2 > MAX_SQNORM))
        msg = (
            f"{what} have a squared norm of {n2[bad]:.3g} (row {bad}), beyond {MAX_SQNORM:.2g}: its distances "
            "overflow float32; scale the vectors down"
        )
        raise ValueError(msg)
    if metric == "cosine":
        norms = np.linalg.norm(arr, axis=1)
        if (norms == 0).any():
            raise ValueError(f"{what} contain a zero vector, which has no cosine similarity")
        arr = np.ascontiguousarray(arr / norms[:, None], dtype=np.float32)
    return arr


__all__ = [
    "MAX_SQNORM",
    "METRICS",
    "as_matrix",
    "check_metric",
    "nonnegative_int",
    "per_vector",
    "positive_int",
    "query_texts",
]
