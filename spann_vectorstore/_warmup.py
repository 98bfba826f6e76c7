"""First use on a fresh install: exact answers while the search kernels compile in the background.

Numba compiles a kernel on its first call and caches the machine code on disk (``cache=True``, in the package's
``__pycache__`` or ``NUMBA_CACHE_DIR``). With an empty cache (a fresh install, a new container, a CI job) the
first search of a 100k collection took 26-33 s on 2 cores, nearly all of it compiling ``search_single``
(measured in NOTES.md, "Session 7"); later processes load the cache in about a second.

So a :class:`~spann_vectorstore.Collection` does not wait: its first search starts one background thread per
process (and per kind of index, see :func:`ready`) that compiles the kernels by searching a private *twin*
index whose arrays have the same types as the real one (the collection's own snapshot loaded again, or a
tiny index built from random vectors), and until that thread is done every search is answered by
:func:`exact_topk`, BLAS over the stored vectors: the exact top k (recall 1) with the filter applied, in tens
of milliseconds at 100k. The twin is never shared and no lock of the collection is held while compiling, so
writes, ``close()`` and other searches go on.

A process that exits while the warm-up runs waits for the step in progress (up to ~30 s while a kernel
compiles on a fresh install, well under a second with a warm cache): LLVM aborts the process
("terminate called without an active exception") when the interpreter exits under a thread that is compiling
or loading a kernel. A forked child drops an unfinished warm-up (its thread did not survive the fork) and
starts its own on its first search.

``SPANN_COLD_START=compile`` (environment, read at import, or :data:`MODE`) restores the old behaviour: the
first search compiles in the foreground (the test suite uses it so that results do not depend on timing).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._storage import MappedPages, take_rows

if TYPE_CHECKING:
    from .index import SpannIndex

#: "exact" (default): answer exactly while the kernels compile in the background; "compile": compile in the
#: foreground on first use.
MODE = os.environ.get("SPANN_COLD_START", "exact").strip().lower() or "exact"
if MODE not in ("exact", "compile"):
    raise ValueError(f"SPANN_COLD_START must be 'exact' or 'compile', got {MODE!r}")

_BLOCK_CELLS = 1 << 23  # scores per BLAS block (32 MB of float32)
_TWIN_ROWS = 300


class _Warm:
    """The warm-up of one kind of index: single-query kernels ready, batch kernels ready, the thread."""

    def __init__(self) -> None:
        self.single = threading.Event()
        self.batch = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None


_LOCK = threading.Lock()
_STATE: dict[tuple[bool, bool], _Warm] = {}
_KIND: weakref.WeakKeyDictionary[Any, tuple[bool, bool]] = weakref.WeakKeyDictionary()
_STOP = threading.Event()  # set at interpreter exit: the warm-up ends after its current step


class _Stopped(Exception):
    pass


def _at_exit() -> None:
    _STOP.set()
    wait()


def _after_fork() -> None:
    """In a forked child: the kernels a finished warm-up compiled are in its memory; an unfinished one's
    thread is gone, so its state is dropped (the child's next search starts a new one)."""
    global _LOCK
    _LOCK = threading.Lock()
    for kind in [kind for kind, st in _STATE.items() if not st.batch.is_set()]:
        del _STATE[kind]


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)


def _kind(index: SpannIndex) -> tuple[bool, bool]:
    """(built, vectors memory-mapped): what decides the kernels' argument types (a mapped vector file is a
    read-only array, a different Numba type). Cached per index; a build in place changes it."""
    kind = _KIND.get(index)
    if kind is None or kind[0] != (index.n_heads > 0):
        kind = (index.n_heads > 0, index.vectors_mmapped)
        _KIND[index] = kind
    return kind


def ready(index: SpannIndex, nq: int) -> bool:
    """Whether ``index`` can search ``nq`` queries with compiled kernels; if not, starts (once per process and
    kind of index) the background compilation and returns False: the caller answers with
    ``index.search_exact`` meanwhile. Always True in ``"compile"`` mode."""
    if MODE == "compile":
        return True
    kind = _kind(index)
    st = _STATE.get(kind)
    if st is None:
        with _LOCK:
            st = _STATE.get(kind)
            if st is None:
                st = _STATE[kind] = _Warm()
                snap = index.snapshot_dir if kind[1] else None
                spec = (index.dim, index.metric, index.bits, kind, snap)
                st.thread = threading.Thread(target=_run, args=(st, spec), name="spann-warmup", daemon=True)
                st.thread.start()
    return (st.single if nq == 1 else st.batch).is_set()


def wait(timeout: float | None = None) -> bool:
    """Wait for every warm-up started so far (True when all finished within ``timeout`` seconds)."""
    with _LOCK:
        threads = [st.thread for st in _STATE.values() if st.thread is not None]
    for th in threads:
        th.join(timeout)
    return not any(th.is_alive() for th in threads)


def _twin(spec: tuple) -> tuple[SpannIndex, Path | None]:
    """A private index whose kernel arguments have the types of the real one: its snapshot loaded again when
    the real vectors are memory-mapped (cheap: no build kernels needed), else a tiny index of random vectors
    (built, and saved and loaded with a map, as the real one is). Returns it and a directory to remove."""
    from .index import SpannIndex

    dim, metric, bits, (built, mapped), snap = spec
    if mapped and snap is not None and built:
        try:
            return SpannIndex.load(Path(snap).parent, mmap=True, progress=False), None
        except (OSError, ValueError):  # replaced by a newer snapshot and removed meanwhile: build a tiny one
            pass
    x = np.random.default_rng(0).standard_normal((_TWIN_ROWS, dim)).astype(np.float32)
    twin = SpannIndex(dim, metric=metric, bits=bits, progress=False)
    if built:
        twin.build(x)
    else:
        twin.add(x)
    if not mapped:
        return twin, None
    tmp = Path(tempfile.mkdtemp(prefix="spann-warmup-"))
    twin.save(tmp)
    return SpannIndex.load(tmp, mmap=True, progress=False), tmp


def _step(fn: Any, *args: Any, **kwargs: Any) -> Any:
    if _STOP.is_set():
        raise _Stopped
    return fn(*args, **kwargs)


def _run(st: _Warm, spec: tuple) -> None:
    tmp = None
    try:
        twin, tmp = _step(_twin, spec)
        q = np.random.default_rng(1).standard_normal((2, twin.dim)).astype(np.float32)
        few = twin.ids[:5]
        _step(twin.search, q[0], k=10)  # probe + scan (search_single)
        _step(twin.search, q[0], k=10, allowed_ids=few)  # a small filter: exact over the allowed vectors
        st.single.set()
        _step(twin.search, q, k=10)  # search_batch
        _step(twin.search, q, k=10, allowed_ids=few)
    except _Stopped:
        pass
    except BaseException as exc:  # searches then compile in the foreground, as without a warm-up
        st.error = exc
    finally:
        st.single.set()
        st.batch.set()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def exact_topk(
    q: np.ndarray,
    k: int,
    parts: list[np.ndarray],
    xn2: np.ndarray,
    ids: np.ndarray,
    deleted: np.ndarray,
    allowed: np.ndarray | None,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-``k`` by BLAS, no Numba: the kernels' similarity ``<q, x> - alpha * |x|^2 / 2`` of queries
    ``q`` (nq, d) against the vectors stored in ``parts`` (row blocks in internal order: the mapped base,
    then the tail), skipping ``deleted`` ones and, when given, keeping only internal indices ``allowed``.
    Best first, equal similarities by ascending external id (``ids``), as the kernels order them.

    Returns internal indices (nq, k) padded with -1, similarities (nq, k) padded with NaN, and the kernels'
    per-query stats (vectors compared as candidates and exact distances)."""
    nq = q.shape[0]
    out_idx = np.full((nq, k), -1, np.int64)
    out_sim = np.full((nq, k), np.nan, np.float32)
    stats = np.zeros((nq, 5), np.int64)
    live = deleted == 0
    if allowed is not None:
        keep = np.zeros(len(ids), bool)
        keep[allowed] = True
        live &= keep
    n_live = int(np.count_nonzero(live))
    stats[:, 3:] = n_live
    if n_live == 0:
        return out_idx, out_sim, stats
    cand_i: list[np.ndarray] = []
    cand_s: list[np.ndarray] = []
    if n_live * 4 < len(ids):  # few vectors: gather them
        pos = np.flatnonzero(live)
        chunks = [(pos, _rows(parts, pos))]
    else:  # most of them: score every row, block by block, and drop the others
        chunks = _blocks(parts, max(4096, _BLOCK_CELLS // nq))
    pages = MappedPages.of(parts[0])  # a pass over a mapped base of millions keeps ~1 GB of it resident
    for pos, x in chunks:
        pages.read(x.nbytes)
        s = q @ x.T
        if alpha:
            s -= np.float32(alpha / 2) * xn2[pos][None, :]
        if x.shape[0] != len(pos) or not live[pos].all():
            s[:, ~live[pos]] = -np.inf
        top = _top(s, k, ids[pos][None, :])
        cand_i.append(pos[top])
        cand_s.append(np.take_along_axis(s, top, 1))
    ci, cs = np.concatenate(cand_i, 1), np.concatenate(cand_s, 1)
    order = _top(cs, k, ids[ci])
    ci, cs = np.take_along_axis(ci, order, 1), np.take_along_axis(cs, order, 1)
    valid = np.isfinite(cs)
    kk = ci.shape[1]
    out_idx[:, :kk] = np.where(valid, ci, -1)
    out_sim[:, :kk] = np.where(valid, cs, np.nan)
    return out_idx, out_sim, stats


# gathers of this many rows of a mapped base read them with pread (a calibration's filtered truths at 10M); a
# search's smaller gathers go through the map (no reader to compile on a process's first query)
_PREAD_ROWS = 65536


def _rows(parts: list[np.ndarray], pos: np.ndarray) -> np.ndarray:
    out = np.empty((len(pos), parts[0].shape[1]), np.float32)
    start = 0
    for part in parts:
        sel = (pos >= start) & (pos < start + len(part))
        out[sel] = take_rows(part, pos[sel] - start, min_rows=_PREAD_ROWS)
        start += len(part)
    return out


def _blocks(parts: list[np.ndarray], rows: int):
    start = 0
    for part in parts:
        for s in range(0, len(part), rows):
            x = part[s : s + rows]
            yield np.arange(start + s, start + s + len(x)), x
        start += len(part)


def _top(s: np.ndarray, k: int, tie: np.ndarray) -> np.ndarray:
    """Column indices of the best ``min(k, n)`` scores per row of ``s`` (nq, n), best first, equal scores by
    ascending ``tie`` (external ids, broadcastable to ``s``)."""
    n = s.shape[1]
    kk = min(k, n)
    tie = np.broadcast_to(tie, s.shape)
    if kk < n:
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        kth = np.take_along_axis(s, part, 1).min(axis=1)
        crowded = np.isfinite(kth) & ((s >= kth[:, None]).sum(axis=1) > kk)
        for r in np.flatnonzero(crowded):  # ties at the k-th score: the smallest ids take the last places
            tied = np.flatnonzero(s[r] >= kth[r])
            part[r] = tied[np.lexsort((tie[r, tied], -s[r, tied]))[:kk]]
    else:
        part = np.broadcast_to(np.arange(n), s.shape)
    keys = np.take_along_axis(s, part, 1)
    return np.take_along_axis(part, np.lexsort((np.take_along_axis(tie, part, 1), -keys), axis=1), 1)
