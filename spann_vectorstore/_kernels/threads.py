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
library (then its policy stays). Only the build's kernels, the batch searches and an exact search over
thousands of allowed vectors are parallel: other single-query searches run on the calling thread and never
wake the pool.

GNU OpenMP is not fork-safe: a process forked after the pool started (gunicorn --preload workers,
multiprocessing with fork) is terminated by Numba at its first parallel region ("fork() called from a
process already using GNU OpenMP"). :func:`fork_safe` wraps each parallel kernel the package calls so that a
forked child runs its serial twin instead (session 10: a batch search in such a child killed it).
"""

from __future__ import annotations

import os
import threading
import types
from typing import Any

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


_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked() -> bool:
    """True in a process forked from one that imported this package (its parallel kernels must not run)."""
    return _forked


def renamed(f: Any, suffix: str) -> Any:
    """A copy of the Python function ``f`` named ``f.__name__ + suffix``: two Numba dispatchers compiled from
    one function with ``cache=True`` share its cache entries (keyed by its qualified name and signature,
    not by ``parallel``), so a serial twin built from the same function loaded the parallel code (found in
    session 10: ``encode_residuals_serial`` ran a parallel region in a forked child)."""
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    return g


def fork_safe(kernel: Any) -> Any:
    """``kernel`` (a parallel Numba kernel) as the package calls it from Python: the kernel itself, or in a
    forked child (:func:`forked`) its serial twin: the same code compiled without ``parallel`` (``prange``
    runs as ``range``), cached under its own name, compiled on first use there."""
    twin: list = []

    def call(*args: Any) -> Any:
        if not _forked:
            return kernel(*args)
        if not twin:
            import numba

            opts = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
            twin.append(numba.njit(cache=True, **opts)(renamed(kernel.py_func, "_serial")))
        return twin[0](*args)

    call.__name__ = call.__qualname__ = kernel.__name__
    call.__doc__ = kernel.__doc__
    call.kernel = kernel  # the parallel dispatcher (warm-up, tests)
    return call
