"""Shared fixtures. Data and ground truth come from :mod:`spann_vectorstore.evaluation` (re-exported here under
the names test_index.py imports: ``clustered``, ``exact``, ``recall``)."""

from __future__ import annotations

import os
from pathlib import Path

# Results must not depend on how long Numba takes to compile: the first searches of a process are answered
# exactly while the kernels compile in the background (spann_vectorstore._warmup) unless this says otherwise.
# test_warmup.py tests that mode itself. Set before the package is imported (it reads it once).
os.environ.setdefault("SPANN_COLD_START", "compile")

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
