"""Numba's worker threads, started so that they sleep between parallel regions instead of spinning.

Builds alternate a multithreaded BLAS product with a parallel kernel thousands of times (per head group in
the assignment, per split when adds split postings). Both thread pools spin for a while after their work:
OpenBLAS's threads up to ~2^28 cycles, OpenMP's (Numba's ``omp`` layer) until GOMP's spin count runs out.
On 2 cores each side then waits for the other's spinning threads to be descheduled: a 144 x 90 product
followed by ``push_nearest`` took 8.3 ms, against 0.18 ms with OpenMP's threads sleeping
(``OMP_WAIT_POLICY=PASSIVE``); a 65,536-row block of the 10M build's assignment 7.3 s against 4.5 s, and a
1,000-vector ``add`` into a 500k index ~0.8 s against ~0.1 s (NOTES, session 9).

OpenMP reads its wait policy once, when the runtime loads: :func:`start_threads` starts Numba's pool (what
Numba does anyway at the first parallel kernel) with ``OMP_WAIT_POLICY=PASSIVE`` set only for that moment,
then restores the environment, so libraries loaded later (torch's own OpenMP) are not affected. Nothing is
changed when the user set any OpenMP wait variable, or when the OpenMP runtime was already loaded by another
library (then its policy stays). Only the build's kernels and ``search_batch`` are parallel: single-query
searches run on the calling thread and never wake the pool.
"""

from __future__ import annotations

import os
import threading

_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
_lock = threading.Lock()
_started = False


def start_threads() -> None:
    """Start Numba's thread pool once, its OpenMP threads passive (see the module docstring)."""
    global _started
    if _started:
        return
    with _lock:
        if _started:
            return
        _started = True
        if any(v in os.environ for v in _WAIT_VARS):
            return  # the user's choice
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            from numba.np.ufunc import parallel

            parallel._launch_threads()
        except Exception:  # a Numba without this hook: its threads start on first use, as before
            pass
        finally:
            os.environ.pop("OMP_WAIT_POLICY", None)
