"""Shared fixtures. Data and ground truth come from :mod:`spann_vectorstore.evaluation` (re-exported here under
the names test_index.py imports: ``clustered``, ``exact``, ``recall``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore.evaluation import clustered  # noqa: F401  (re-exported)
from spann_vectorstore.evaluation import exact_topk as exact  # noqa: F401
from spann_vectorstore.evaluation import recall_at_k as recall  # noqa: F401

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    if not (SHARED / "base.npy").exists():
        pytest.skip("../shared/data is absent")
    xb = np.load(SHARED / "base.npy").astype(np.float32)
    xq = np.load(SHARED / "queries.npy").astype(np.float32)
    gt = np.load(SHARED / "gt.npy")
    return xb, xq, gt
