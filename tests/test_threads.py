"""``_kernels.start_threads``: Numba's pool started with OpenMP's threads passive for that moment only; the
environment is left as it was, and a user's own OpenMP wait setting is respected. Run in fresh processes
(the pool starts once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
