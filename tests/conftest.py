"""Shared fixtures: seeded clustered data (harder than uniform noise) and exact ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def clustered(n: int, d: int, *, n_centers: int = 50, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Gaussian blobs around random centres with uneven sizes, float32 (n, d)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, d)).astype(np.float32)
    weights = rng.dirichlet(np.ones(n_centers))
    which = rng.choice(n_centers, size=n, p=weights)
    return (centers[which] + spread * rng.standard_normal((n, d))).astype(np.float32)


def exact(xb: np.ndarray, xq: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k row indices and scores (similarity for ip/cosine, squared L2 for l2)."""
    if metric == "cosine":
        xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        xq = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    if metric == "l2":
        s = -((xq**2).sum(1)[:, None] - 2 * xq @ xb.T + (xb**2).sum(1)[None, :])
    else:
        s = xq @ xb.T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    sc = np.take_along_axis(s, idx, 1)
    return idx, (-sc if metric == "l2" else sc)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(found[i, :k]) & set(truth[i, :k])) / k for i in range(len(found))]))


@pytest.fixture(scope="session")
def shared_data():
    if not (SHARED / "base.npy").exists():
        pytest.skip("../shared/data is absent")
    xb = np.load(SHARED / "base.npy").astype(np.float32)
    xq = np.load(SHARED / "queries.npy").astype(np.float32)
    gt = np.load(SHARED / "gt.npy")
    return xb, xq, gt
