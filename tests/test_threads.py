"""``_kernels.start_threads``: Numba's pool started with OpenMP's threads passive for that moment only; the
environment is left as it was, and a user's own OpenMP wait setting is respected. Run in fresh processes
(the pool starts once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CODE = r"""
import json, os
import numba
from spann_vectorstore import SpannIndex
seen = {}
real = os.environ.__setitem__
os.environ.__class__.__setitem__ = lambda self, k, v: (seen.setdefault(k, v), real(k, v))[1]
SpannIndex(8)  # starts the pool
try:
    layer = numba.threading_layer()
except ValueError:  # not started yet: Numba starts it at the first parallel kernel
    layer = None
print(json.dumps({"layer": layer, "env": os.environ.get("OMP_WAIT_POLICY"), "set": seen.get("OMP_WAIT_POLICY")}))
"""


def _run(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_pool_starts_passive_and_the_environment_is_restored():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    res = _run(env)
    assert res["layer"] in ("omp", "tbb", "workqueue")  # started: threading_layer() raises before
    assert res["set"] == "PASSIVE"  # set while the pool started
    assert res["env"] is None  # and removed afterwards: libraries loaded later see the user's environment


def test_a_users_wait_policy_is_left_alone():
    env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE")
    res = _run(env)
    assert res["env"] == "ACTIVE" and res["set"] is None and res["layer"] is None  # Numba starts it as usual


FORK = r"""
import os, sys
import numpy as np
from spann_vectorstore import SpannIndex
x = np.random.default_rng(0).standard_normal((6000, 16)).astype(np.float32)
idx = SpannIndex(16, n_probe=8, seed=1).build(x)  # parallel kernels: the OpenMP pool runs in this process
want = idx.search(x[:40], 5).ids
want_f = idx.search(x[:40], 5, allowed_ids=np.arange(2000)).ids  # exact, 80k distances: exact_scores_parallel
pid = os.fork()
if pid == 0:  # a batch search, a filtered one and an add (parallel kernels in the parent) in the forked child
    try:
        got = idx.search(x[:40], 5).ids
        got_f = idx.search(x[:40], 5, allowed_ids=np.arange(2000)).ids
        idx.add(x[:3000] + 0.01, np.arange(10**6, 10**6 + 3000))
        ok = np.array_equal(got, want) and np.array_equal(got_f, want_f) and len(idx) == 9000
        os.write(1, b"same" if ok else b"different")
    finally:
        os._exit(0)
_, status = os.waitpid(pid, 0)
print(" status", status)
"""


@pytest.mark.slow  # the child compiles the serial twins (~30 s with an empty Numba cache)
def test_a_forked_child_runs_the_parallel_kernels_serially():
    """GNU OpenMP terminates a forked child at its first parallel region ("fork() called from a process
    already using GNU OpenMP"): the package's parallel kernels run as their serial twins there, with the same
    results (gunicorn --preload workers, multiprocessing with fork)."""
    env = os.environ | {"SPANN_COLD_START": "compile"}
    out = subprocess.run([sys.executable, "-c", FORK], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "same status 0", (out.stdout, out.stderr[-2000:])


def test_exact_scores_split_over_the_cores_equal_the_serial_ones():
    """``exact_scores_parallel`` (a filter answered exactly over thousands of vectors) computes each score by
    the same code as ``exact_scores``: bit for bit the same, whatever the split."""
    import numpy as np

    from spann_vectorstore import SpannIndex
    from spann_vectorstore import _kernels as K

    x = np.random.default_rng(4).standard_normal((9000, 24)).astype(np.float32)
    for metric, alpha in (("ip", 0.0), ("l2", 1.0)):
        idx = SpannIndex(24, metric=metric, n_probe=8).build(x)
        q = np.random.default_rng(5).standard_normal((3, 24)).astype(np.float32)
        pos = np.sort(np.random.default_rng(6).choice(9000, 5000, replace=False))
        a = np.empty((3, 5000), np.float32)
        b = np.empty((3, 5000), np.float32)
        K.exact_scores(q, pos, idx._vectors.view(), alpha, a)
        K.exact_scores_parallel(q, pos, idx._vectors.view(), alpha, b)
        np.testing.assert_array_equal(a, b)
        ref = x[pos] @ q.T - alpha * 0.5 * (x[pos] ** 2).sum(1)[:, None]  # <q, x> - alpha |x|^2 / 2
        np.testing.assert_allclose(a.T, ref, rtol=1e-3, atol=1e-3)
