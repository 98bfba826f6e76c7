"""Benchmark ``spann_vectorstore.SpannIndex`` against peer ANN indexes in one run.

Every method is built and measured in the same process on the same machine, so the
numbers are comparable with each other (absolute numbers depend on the machine).

Run from the repository root with the project venv::

    # full run on the real dataset (../shared/data relative to the repo root)
    /work/venv/bin/python benchmarks/bench.py

    # fast smoke run: fewer sweep points, 200 single queries
    /work/venv/bin/python benchmarks/bench.py --quick

    # only some methods (names: spann, faiss_ivf, faiss_ivf_rabitq, faiss_hnsw,
    # hnswlib, rabitqlib, exact)
    /work/venv/bin/python benchmarks/bench.py --only spann,hnswlib

    # our index with other bit widths / n_probe values / constructor options
    /work/venv/bin/python benchmarks/bench.py --only spann --bits 1,2,4 \
        --nprobe 8,16,32,64 --spann-opts '{"some_option": 3}'

    # override a peer sweep
    /work/venv/bin/python benchmarks/bench.py --only rabitqlib \
        --sweep rabitqlib=64,128,256 --rabitq-nbits 5,8 --rabitq-nlist 1264,4096

    # synthetic clustered data with N vectors (ours only; add hnswlib with --peers)
    /work/venv/bin/python benchmarks/bench.py --synthetic 1000000 --quick

Measurements per configuration (row):

* ``recall_at_10``: |top-10 ∩ gt[:, :10]| / 10 averaged over all queries, from the
  batch call (``recall_at_10_single`` is the same over the single-query subset).
* ``qps_single``, ``p50_ms``, ``p99_ms``: one query per call, one thread (faiss OMP,
  numba, OpenBLAS and the per-call thread knobs of hnswlib/rabitqlib set to 1),
  after a warm-up of ``--warmup`` queries; fastest of ``--single-repeats`` passes.
* ``qps_batch``: all queries in one call using ``--threads`` threads (default: all
  cores available to the process); best of ``--batch-repeats`` calls after a warm-up.
* ``build_s``: wall-clock build time (training included), ``--threads`` threads.
* ``bytes``: memory of the index; ``bytes_kind`` says what it is: ``stats_bytes_ram``
  (ours: ``stats()["bytes_ram"]`` after save + ``load(mmap=True)``, i.e. resident
  bytes excluding the memory-mapped full vectors), ``serialized`` (peers: size of the
  serialized index, which for these in-memory indexes is about their resident size)
  or ``raw_vectors`` (exact search). ``rss_delta_bytes`` is the process RSS growth
  during the build (informative only; allocator noise).

Output: ``benchmarks/results/bench-<dataset>-<date>.json`` (machine info, all rows and
a summary of ratios at recall@10 >= ``--target-recall``) plus a PNG plot of recall@10
vs single-query QPS next to it, and a readable table on stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import glob
import importlib.metadata
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from spann_vectorstore.evaluation import recall_at_k, synthetic_dataset  # noqa: E402

K = 10
ALL_METHODS = (
    "spann",
    "faiss_ivf",
    "faiss_ivf_rabitq",
    "faiss_hnsw",
    "hnswlib",
    "rabitqlib",
    "exact",
)

# Sweep values per method: (full, quick).
DEFAULT_SWEEPS: dict[str, tuple[list[int], list[int]]] = {
    # dense around each method's recall@10 = 0.95 point, so no peer is judged at a needlessly slow setting
    "spann": ([8, 16, 24, 28, 30, 32, 36, 40, 48, 64], [16, 32, 64]),
    "faiss_ivf": ([32, 64, 96, 128, 192, 256], [32, 128]),
    "faiss_ivf_rabitq": ([32, 64, 96, 128, 192, 256], [64, 256]),
    "faiss_hnsw": ([16, 24, 32, 48, 64, 128], [32, 128]),
    "hnswlib": ([32, 40, 44, 48, 52, 56, 64, 128, 200], [48, 64, 200]),
    "rabitqlib": ([32, 64, 96, 128, 192, 256, 512], [64, 256]),
}

Row = dict[str, Any]
SearchFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Contender:
    """A measured configuration kept alive for the head-to-head phase (see :func:`head_to_head`)."""

    method: str
    params: dict[str, Any]
    recall: float
    one: SearchFn
    batch: SearchFn | None
    prepare: Callable[[], None] | None = None


# every configuration each runner measured, with its search functions (the indexes stay alive)
CONTENDERS: list[Contender] = []


def offer(row: Row, one: SearchFn, batch: SearchFn | None, prepare: Callable[[], None] | None = None) -> Row:
    """Record a measured row's search functions for the head-to-head phase; returns the row."""
    CONTENDERS.append(Contender(row["method"], row["params"], row["recall_at_10"], one, batch, prepare))
    return row


def contender_row(
    method: str,
    params: dict[str, Any],
    sweep_key: str,
    index_info: tuple[float, int, str],
    one: SearchFn,
    batch: SearchFn | None,
    data: tuple[np.ndarray, np.ndarray, argparse.Namespace],
    prepare: Callable[[], None] | None = None,
    **extra: Any,
) -> Row:
    """Measure one configuration (``index_info`` = build seconds, bytes, bytes kind; ``data`` = queries,
    ground truth, args), make its row and offer it to the head-to-head phase."""
    xq, gt, args = data
    row = make_row(method, params, sweep_key, *index_info, measure(one, batch, xq, gt, args), **extra)
    return offer(row, one, batch, prepare)


# --------------------------------------------------------------------------- utils


def log(msg: str) -> None:
    """Print a timestamped progress line to stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def int_list(text: str) -> list[int]:
    """Parse ``"1,2,4"`` into ``[1, 2, 4]``."""
    return [int(t) for t in text.split(",") if t.strip()]


def float_list(text: str) -> list[float]:
    """Parse ``"1.5,2"`` into ``[1.5, 2.0]``."""
    return [float(t) for t in text.split(",") if t.strip()]


def rss_bytes() -> int:
    """Current resident set size of this process in bytes (Linux)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def path_size(path: Path) -> int:
    """Total size in bytes of a file or of all files under a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def available_cores() -> int:
    """Number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------ thread control

_OPENBLAS_SETTERS: list[Callable[[int], None]] | None = None


def _openblas_setters() -> list[Callable[[int], None]]:
    """Find ``*_set_num_threads`` of the OpenBLAS bundled with numpy (no threadpoolctl)."""
    global _OPENBLAS_SETTERS
    if _OPENBLAS_SETTERS is not None:
        return _OPENBLAS_SETTERS
    setters: list[Callable[[int], None]] = []
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in glob.glob(str(libdir / "*openblas*")):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            fn = getattr(handle, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                setters.append(fn)
                break
    _OPENBLAS_SETTERS = setters
    return setters


def set_threads(n: int) -> None:
    """Set the global thread knobs: faiss OpenMP, numba, and numpy's OpenBLAS."""
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    for setter in _openblas_setters():
        setter(n)


# --------------------------------------------------------------------- measurement


def measure(
    search_one: SearchFn,
    search_batch: SearchFn | None,
    xq: np.ndarray,
    gt: np.ndarray,
    args: argparse.Namespace,
) -> Row:
    """Time single-query calls (1 thread) and one batch call (``args.threads``).

    ``search_one`` receives a (1, d) array and returns (1, k) ids; ``search_batch``
    receives (nq, d) and returns (nq, k) ids. Returns the measurement fields of a row.
    """
    n_single = min(args.n_single, len(xq))
    set_threads(1)
    for i in range(args.warmup):
        search_one(xq[i % len(xq) : i % len(xq) + 1])
    best_total = float("inf")
    lat = np.empty(0)
    single = np.empty((0, K), dtype=np.int64)
    for _ in range(max(1, args.single_repeats)):  # keep the fastest pass (noisy box)
        lat_pass = np.empty(n_single, dtype=np.float64)
        ids_pass = []
        t_start = time.perf_counter()
        for i in range(n_single):
            q = xq[i : i + 1]
            t0 = time.perf_counter()
            ids = search_one(q)
            lat_pass[i] = time.perf_counter() - t0
            ids_pass.append(np.asarray(ids).reshape(1, -1)[:, :K])
        total = time.perf_counter() - t_start
        if total < best_total:
            best_total, lat = total, lat_pass
            single = np.concatenate(ids_pass, axis=0)
    out: Row = {
        "qps_single": n_single / best_total,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "mean_ms": float(lat.mean() * 1e3),
        "n_single": n_single,
        "recall_at_10_single": recall_at_k(single, gt[: len(single)], K),
        "loadavg_1m": os.getloadavg()[0],
    }
    if search_batch is not None:
        set_threads(args.threads)
        search_batch(xq[: min(len(xq), 50)])  # warm-up (JIT, caches, thread pools)
        best = float("inf")
        batch = None
        for _ in range(max(1, args.batch_repeats)):
            t0 = time.perf_counter()
            batch = search_batch(xq)
            best = min(best, time.perf_counter() - t0)
        assert batch is not None
        out["qps_batch"] = len(xq) / best
        out["recall_at_10"] = recall_at_k(np.asarray(batch), gt[: len(xq)], K)
    else:
        out["qps_batch"] = None
        out["recall_at_10"] = out["recall_at_10_single"]
    set_threads(args.threads)
    return out


def make_row(
    method: str,
    params: dict[str, Any],
    sweep_key: str,
    build_s: float,
    nbytes: int,
    bytes_kind: str,
    meas: Row,
    **extra: Any,
) -> Row:
    """Assemble a uniform result row."""
    row: Row = {
        "method": method,
        "params": params,
        "sweep_key": sweep_key,
        "recall_at_10": meas["recall_at_10"],
        "qps_single": meas["qps_single"],
        "qps_batch": meas["qps_batch"],
        "p50_ms": meas["p50_ms"],
        "p99_ms": meas["p99_ms"],
        "build_s": build_s,
        "bytes": int(nbytes),
        "bytes_kind": bytes_kind,
    }
    row.update({k: v for k, v in meas.items() if k not in row})
    row.update(extra)
    log(
        f"  {method} {params}: recall@10={row['recall_at_10']:.4f} "
        f"qps1={row['qps_single']:.0f} qpsB={row['qps_batch'] or 0:.0f} "
        f"p50={row['p50_ms']:.3f}ms"
    )
    return row


def sweep_values(method: str, args: argparse.Namespace) -> list[int]:
    """Sweep values for a method: ``--sweep`` override, else full/quick defaults."""
    if method in args.sweep_overrides:
        return args.sweep_overrides[method]
    full, quick = DEFAULT_SWEEPS[method]
    return quick if args.quick else full


# ---------------------------------------------------------------------------- ours


def import_spann() -> Any | None:
    """Import ``SpannIndex`` or return None with a warning."""
    try:
        from spann_vectorstore import SpannIndex
    except Exception as exc:  # any import failure means "skip ours"
        warnings.warn(
            f"spann_vectorstore not importable ({exc!r}); running peers only",
            stacklevel=2,
        )
        return None
    return SpannIndex


def _init_params(cls: Any) -> set[str]:
    """Names of the keyword parameters accepted by ``cls.__init__``."""
    try:
        return set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return set()


def run_spann(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """Our index: build per bit width, save + load(mmap=True), sweep n_probe."""
    SpannIndex = import_spann()
    if SpannIndex is None:
        return []
    rows: list[Row] = []
    d = xb.shape[1]
    nprobes = args.nprobe or sweep_values("spann", args)
    ratios: list[float | None] = args.max_dist_ratio or [None]
    for bits in args.bits:
        opts: dict[str, Any] = {"dim": d, "metric": "ip", "bits": bits}
        if "progress" in _init_params(SpannIndex) and not args.spann_progress:
            opts["progress"] = False  # keep tqdm bars out of benchmark logs
        opts.update(args.spann_opts)
        log(f"spann: build bits={bits} opts={args.spann_opts}")
        set_threads(args.threads)
        gc.collect()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        built = SpannIndex(**opts)
        built.build(xb)
        build_s = time.perf_counter() - t0
        rss_delta = rss_bytes() - rss0
        log(f"spann: built in {build_s:.1f}s")
        with tempfile.TemporaryDirectory(prefix="bench-spann-") as tmp:
            path = Path(tmp) / "index"
            t0 = time.perf_counter()
            built.save(str(path))
            save_s = time.perf_counter() - t0
            del built
            gc.collect()
            t0 = time.perf_counter()
            index = SpannIndex.load(str(path), mmap=True)
            load_s = time.perf_counter() - t0
            stats = dict(index.stats())
            bytes_ram = int(stats.get("bytes_ram", 0))
            bytes_disk = int(stats.get("bytes_disk", path_size(path)))
            for ratio in ratios:
                for npb in nprobes:
                    kw: dict[str, Any] = {"n_probe": npb}
                    if ratio is not None:
                        kw["max_dist_ratio"] = ratio

                    def one(q: np.ndarray, kw: dict[str, Any] = kw, idx: Any = index) -> np.ndarray:
                        ids, _ = idx.search(q[0], k=K, **kw)  # 1-D query path
                        return np.asarray(ids)

                    def batch(q: np.ndarray, kw: dict[str, Any] = kw, idx: Any = index) -> np.ndarray:
                        ids, _ = idx.search(q, k=K, **kw)
                        return np.asarray(ids)

                    params: dict[str, Any] = {"bits": bits, "n_probe": npb}
                    if ratio is not None:
                        params["max_dist_ratio"] = ratio
                    if args.spann_opts:
                        params["opts"] = args.spann_opts
                    row = contender_row(
                        "spann",
                        params,
                        "n_probe",
                        (build_s, bytes_ram, "stats_bytes_ram"),
                        one,
                        batch,
                        (xq, gt, args),
                        bytes_disk=bytes_disk,
                        rss_delta_bytes=rss_delta,
                        save_s=save_s,
                        load_s=load_s,
                        stats=_jsonable(stats),
                    )
                    rows.append(row)
            del index
            gc.collect()
    return rows


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays (e.g. in stats()) to JSON-friendly values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"ndarray{obj.shape}"
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


# --------------------------------------------------------------------------- peers


def _faiss_rows(
    method: str,
    index: Any,
    set_param: Callable[[int], None],
    key: str,
    base_params: dict[str, Any],
    build_s: float,
    rss_delta: int,
    xq: np.ndarray,
    gt: np.ndarray,
    args: argparse.Namespace,
    **extra: Any,
) -> list[Row]:
    """Sweep one search parameter of a built faiss index."""
    import faiss

    nbytes = int(faiss.serialize_index(index).nbytes)
    rows = []
    for value in sweep_values(method, args):
        set_param(value)

        def search(q: np.ndarray) -> np.ndarray:
            return index.search(q, K)[1]

        row = contender_row(
            method,
            {**base_params, key: value},
            key,
            (build_s, nbytes, "serialized"),
            search,
            search,
            (xq, gt, args),
            lambda value=value: set_param(value),
            rss_delta_bytes=rss_delta,
            **extra,
        )
        rows.append(row)
    return rows


def run_faiss_ivf(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """faiss IndexIVFFlat, inner product, nlist ``--ivf-nlist``; sweep nprobe."""
    import faiss

    d = xb.shape[1]
    set_threads(args.threads)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, args.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = args.seed
    index.train(xb)
    train_s = time.perf_counter() - t0
    index.add(xb)
    build_s = time.perf_counter() - t0
    rss_delta = rss_bytes() - rss0
    log(f"faiss_ivf: built in {build_s:.1f}s")

    def set_nprobe(v: int) -> None:
        index.nprobe = v

    return _faiss_rows(
        "faiss_ivf",
        index,
        set_nprobe,
        "nprobe",
        {"nlist": args.ivf_nlist},
        build_s,
        rss_delta,
        xq,
        gt,
        args,
        train_s=train_s,
    )


def run_faiss_ivf_rabitq(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """faiss IndexIVFRaBitQ (1 bit) wrapped in IndexRefineFlat (k_factor 10); sweep nprobe.

    Query quantization bits ``qb`` are set through ``IVFRaBitQSearchParameters``
    (faiss default is 4; we use ``--faiss-rabitq-qb``, default 8).
    """
    import faiss

    d = xb.shape[1]
    set_threads(args.threads)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFRaBitQ(quantizer, d, args.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = args.seed
    index = faiss.IndexRefineFlat(ivf)
    index.k_factor = args.k_factor
    index.train(xb)
    train_s = time.perf_counter() - t0
    index.add(xb)
    build_s = time.perf_counter() - t0
    rss_delta = rss_bytes() - rss0
    log(f"faiss_ivf_rabitq: built in {build_s:.1f}s")
    nbytes = int(faiss.serialize_index(index).nbytes)
    rows = []
    for npb in sweep_values("faiss_ivf_rabitq", args):
        params = faiss.IndexRefineSearchParameters(
            k_factor=args.k_factor,
            base_index_params=faiss.IVFRaBitQSearchParameters(nprobe=npb, qb=args.faiss_rabitq_qb),
        )

        def search(q: np.ndarray, params: Any = params) -> np.ndarray:
            return index.search(q, K, params=params)[1]

        params_row = {
            "nlist": args.ivf_nlist,
            "bits": 1,
            "qb": args.faiss_rabitq_qb,
            "k_factor": args.k_factor,
            "nprobe": npb,
        }
        rows.append(
            contender_row(
                "faiss_ivf_rabitq",
                params_row,
                "nprobe",
                (build_s, nbytes, "serialized"),
                search,
                search,
                (xq, gt, args),
                rss_delta_bytes=rss_delta,
                train_s=train_s,
            )
        )
    return rows


def run_faiss_hnsw(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """faiss IndexHNSWFlat M=32 efConstruction=200, inner product; sweep efSearch."""
    import faiss

    d = xb.shape[1]
    set_threads(args.threads)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.add(xb)
    build_s = time.perf_counter() - t0
    rss_delta = rss_bytes() - rss0
    log(f"faiss_hnsw: built in {build_s:.1f}s")

    def set_ef(v: int) -> None:
        index.hnsw.efSearch = v

    return _faiss_rows(
        "faiss_hnsw",
        index,
        set_ef,
        "efSearch",
        {"M": 32, "efConstruction": 200},
        build_s,
        rss_delta,
        xq,
        gt,
        args,
    )


def run_hnswlib(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """hnswlib M=16 ef_construction=200, space "ip"; sweep ef."""
    import hnswlib

    n, d = xb.shape
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, ef_construction=200, M=16, random_seed=args.seed)
    index.add_items(xb, np.arange(n), num_threads=args.threads)
    build_s = time.perf_counter() - t0
    rss_delta = rss_bytes() - rss0
    log(f"hnswlib: built in {build_s:.1f}s")
    with tempfile.TemporaryDirectory(prefix="bench-hnswlib-") as tmp:
        path = Path(tmp) / "index.bin"
        index.save_index(str(path))
        nbytes = path.stat().st_size
    rows = []
    for ef in sweep_values("hnswlib", args):
        index.set_ef(ef)

        def one(q: np.ndarray) -> np.ndarray:
            return index.knn_query(q, k=K, num_threads=1)[0]

        def batch(q: np.ndarray) -> np.ndarray:
            return index.knn_query(q, k=K, num_threads=args.threads)[0]

        index.set_num_threads(1)
        row = contender_row(
            "hnswlib",
            {"M": 16, "ef_construction": 200, "ef": ef},
            "ef",
            (build_s, nbytes, "serialized"),
            one,
            batch,
            (xq, gt, args),
            lambda ef=ef: index.set_ef(ef),
            rss_delta_bytes=rss_delta,
        )
        rows.append(row)
    return rows


def _faiss_spherical_kmeans(xb: np.ndarray, nlist: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means with faiss; returns (centroids float32, assignments uint32)."""
    import faiss

    km = faiss.Kmeans(
        xb.shape[1],
        nlist,
        niter=args.kmeans_iters,
        seed=args.seed,
        spherical=True,
        verbose=False,
    )
    km.train(xb)
    _, assign = km.index.search(xb, 1)
    return np.ascontiguousarray(km.centroids, dtype=np.float32), assign[:, 0].astype(np.uint32)


def run_rabitqlib(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """rabitqlib ``IvfIndex`` (RaBitQ authors' C++), metric "ip"; sweep nprobe.

    API used: ``IvfIndex(dim, max_elements, num_clusters, nbits, metric="ip")``,
    ``build(data, centroids, cluster_ids, num_threads)`` with centroids from faiss
    spherical k-means (or rabitqlib's ``RaBitQKMeans`` with ``--rabitq-kmeans native``),
    ``search(queries_2d, k, nprobe, num_threads=...)`` -> (ids uint32, dists).
    ``nbits`` is total bits per dimension: 1 sign bit + (nbits - 1) ex-bits; the
    default 8 is the "7 ex-bits" configuration. HACC FastScan is auto-selected for 4-9.
    """
    import rabitqlib

    n, d = xb.shape
    rows = []
    for nlist in args.rabitq_nlist:
        set_threads(args.threads)
        gc.collect()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        if args.rabitq_kmeans == "native":
            km = rabitqlib.RaBitQKMeans(
                d,
                nlist,
                niter=args.kmeans_iters,
                num_threads=args.threads,
                spherical=True,
                seed=args.seed,
                final_assignment=rabitqlib.FinalAssignmentMode.Exact,
            )
            km.train(xb)
            centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
            assign = np.ascontiguousarray(km.assignments, dtype=np.uint32)
        else:
            centroids, assign = _faiss_spherical_kmeans(xb, nlist, args)
        kmeans_s = time.perf_counter() - t0
        for nbits in args.rabitq_nbits:
            t1 = time.perf_counter()
            index = rabitqlib.IvfIndex(d, n, nlist, nbits, metric="ip")
            index.build(xb, centroids, assign, num_threads=args.threads)
            build_s = kmeans_s + time.perf_counter() - t1
            rss_delta = rss_bytes() - rss0
            log(f"rabitqlib: nlist={nlist} nbits={nbits} built in {build_s:.1f}s (kmeans {kmeans_s:.1f}s)")
            with tempfile.TemporaryDirectory(prefix="bench-rabitqlib-") as tmp:
                path = Path(tmp) / "ivf.index"
                index.save(str(path))
                nbytes = path.stat().st_size
            for npb in sweep_values("rabitqlib", args):

                def one(q: np.ndarray, npb: int = npb, idx: Any = index) -> np.ndarray:
                    return idx.search(q, K, npb, num_threads=1)[0]

                def batch(q: np.ndarray, npb: int = npb, idx: Any = index) -> np.ndarray:
                    return idx.search(q, K, npb, num_threads=args.threads)[0]

                params_row = {"nlist": nlist, "nbits": nbits, "kmeans": args.rabitq_kmeans, "nprobe": npb}
                rows.append(
                    contender_row(
                        "rabitqlib",
                        params_row,
                        "nprobe",
                        (build_s, nbytes, "serialized"),
                        one,
                        batch,
                        (xq, gt, args),
                        rss_delta_bytes=rss_delta,
                        kmeans_s=kmeans_s,
                    )
                )
            del index
            gc.collect()
    return rows


def run_exact(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, args: argparse.Namespace) -> list[Row]:
    """Exact inner-product search with numpy matmul (reference row)."""

    def topk(scores: np.ndarray) -> np.ndarray:
        part = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        return np.take_along_axis(part, order, axis=1)

    def one(q: np.ndarray) -> np.ndarray:
        return topk((xb @ q[0])[None, :])

    def batch(q: np.ndarray) -> np.ndarray:
        return np.concatenate([topk(q[i : i + 256] @ xb.T) for i in range(0, len(q), 256)])

    meas = measure(one, batch, xq, gt, args)
    blas = "set" if _openblas_setters() else "default"
    return [make_row("exact", {"blas_threads": blas}, "", 0.0, xb.nbytes, "raw_vectors", meas)]


PEERS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, argparse.Namespace], list[Row]]] = {
    "spann": run_spann,
    "faiss_ivf": run_faiss_ivf,
    "faiss_ivf_rabitq": run_faiss_ivf_rabitq,
    "faiss_hnsw": run_faiss_hnsw,
    "hnswlib": run_hnswlib,
    "rabitqlib": run_rabitqlib,
    "exact": run_exact,
}


# ------------------------------------------------------------------------- datasets


def load_real(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load base (float16 -> float32), queries and ground truth from ``data_dir``."""
    xb = np.ascontiguousarray(np.load(data_dir / "base.npy").astype(np.float32))
    xq = np.ascontiguousarray(np.load(data_dir / "queries.npy").astype(np.float32))
    gt = np.load(data_dir / "gt.npy").astype(np.int64)
    metric_file = data_dir / "metric.txt"
    if metric_file.exists() and metric_file.read_text().strip() != "ip":
        raise SystemExit(f"expected metric ip, got {metric_file.read_text().strip()!r}")
    return xb, xq, gt


# ------------------------------------------------------------------ report/summary


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    """CPU model, cores, library versions, date, load average, git revision."""
    cpu = "unknown"
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("numpy", "numba", "faiss-cpu", "hnswlib", "rabitqlib", "matplotlib"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        git = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            check=False,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            mem_total = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu_model": cpu,
        "simd": [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vpopcntdq")],
        "nproc": os.cpu_count(),
        "cores_available": available_cores(),
        "threads_batch": args.threads,
        "mem_total_bytes": mem_total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
        "git_rev": git or None,
        "argv": sys.argv,
    }


def best_row(rows: list[Row], method: str, target: float, key: str = "qps_single") -> Row | None:
    """Row of ``method`` with recall >= target and the highest ``key``."""
    cands = [r for r in rows if r["method"] == method and r["recall_at_10"] >= target and r.get(key)]
    return max(cands, key=lambda r: r[key]) if cands else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def summarize(rows: list[Row], n: int, d: int, target: float) -> dict[str, Any]:
    """Ratios of our best configuration (recall >= target, max single QPS) vs peers."""
    methods = sorted({r["method"] for r in rows}, key=lambda m: ALL_METHODS.index(m))

    def brief(r: Row | None) -> dict[str, Any] | None:
        if r is None:
            return None
        keys = ("params", "recall_at_10", "qps_single", "qps_batch", "p50_ms", "p99_ms", "build_s", "bytes")
        return {k: r[k] for k in keys} | {"bytes_kind": r["bytes_kind"]}

    best = {m: best_row(rows, m, target) for m in methods}
    out: dict[str, Any] = {
        "target_recall_at_10": target,
        "selection": "per method: config with recall@10 >= target and highest qps_single",
        "best_per_method": {m: brief(r) for m, r in best.items()},
        "float32_vectors_bytes": n * d * 4,
    }
    ours = best.get("spann")
    ratios: dict[str, Any] = {}
    if ours is None:
        out["note"] = "no spann configuration reached the target recall (or spann not run)"
    else:
        for peer in ("faiss_ivf", "hnswlib", "rabitqlib"):
            p = best.get(peer)
            ratios[f"qps_single_vs_{peer}"] = _ratio(ours["qps_single"], p["qps_single"] if p else None)
        hb = best_row(rows, "hnswlib", target, key="qps_batch")
        ratios["qps_batch_vs_hnswlib"] = _ratio(ours["qps_batch"], hb["qps_batch"] if hb else None)
        ratios["qps_batch_vs_hnswlib_note"] = (
            "ours: best-single-QPS config; hnswlib: config with recall >= target and highest batch QPS"
        )
        ratios["resident_bytes_over_float32_vectors"] = ours["bytes"] / (n * d * 4)
        hn = next((r for r in rows if r["method"] == "hnswlib"), None)
        ratios["build_s_vs_hnswlib"] = _ratio(ours["build_s"], hn["build_s"] if hn else None)
    out["ours_vs_peers"] = ratios
    return out


def head_to_head(xq: np.ndarray, args: argparse.Namespace) -> dict[str, Any] | None:
    """Re-measure each method's cheapest configuration with recall@10 >= target in alternating rounds.

    The sweep measures one method after another, minutes apart, and this machine's speed drifts by 20-40%
    over minutes (other tenants), which can decide a comparison by itself. Here every round measures every
    method back to back (the order rotating), so all of them meet the same conditions; ratios are the
    medians over rounds of the per-round ratios (ours / peer).
    """
    rounds = args.duel
    chosen: dict[str, Contender] = {}
    for c in CONTENDERS:  # in sweep order: the first to reach the target is the cheapest one that does
        if c.recall >= args.target_recall and c.method not in chosen:
            chosen[c.method] = c
    if rounds <= 0 or "spann" not in chosen or len(chosen) < 2:
        return None
    methods = list(chosen)
    n_single = min(args.n_single, len(xq))
    single: dict[str, list[float]] = {m: [] for m in methods}
    batch: dict[str, list[float]] = {m: [] for m in methods}
    log(f"head-to-head: {rounds} rounds of {', '.join(f'{m} {chosen[m].params}' for m in methods)}")
    for r in range(rounds):
        for m in methods[r % len(methods) :] + methods[: r % len(methods)]:
            c = chosen[m]
            if c.prepare is not None:
                c.prepare()
            set_threads(1)
            for i in range(args.warmup):
                c.one(xq[i : i + 1])
            t0 = time.perf_counter()
            for i in range(n_single):
                c.one(xq[i : i + 1])
            single[m].append(n_single / (time.perf_counter() - t0))
            if c.batch is not None:
                set_threads(args.threads)
                c.batch(xq[:50])
                t0 = time.perf_counter()
                c.batch(xq)
                batch[m].append(len(xq) / (time.perf_counter() - t0))
        log(
            f"  round {r + 1}: "
            + ", ".join(f"{m} {single[m][-1]:.0f}/{batch[m][-1] if batch[m] else 0:.0f}" for m in methods)
        )
    set_threads(args.threads)

    def med_ratio(a: list[float], b: list[float]) -> float | None:
        return float(np.median(np.array(a) / np.array(b))) if a and b and len(a) == len(b) else None

    return {
        "rounds": rounds,
        "how": "each round: every method's single-query pass (1 thread) then one batch call, order rotating",
        "configs": {m: {"params": chosen[m].params, "recall_at_10": chosen[m].recall} for m in methods},
        "qps_single_median": {m: float(np.median(single[m])) for m in methods},
        "qps_batch_median": {m: float(np.median(batch[m])) if batch[m] else None for m in methods},
        "qps_single": single,
        "qps_batch": batch,
        "ours_vs_peers": {
            f"{kind}_vs_{m}": med_ratio(res["spann"], res[m])
            for m in methods
            if m != "spann"
            for kind, res in (("qps_single", single), ("qps_batch", batch))
        },
    }


def fmt_params(params: dict[str, Any]) -> str:
    """Compact ``k=v`` string of row parameters."""
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "opts")


def print_table(rows: list[Row], summary: dict[str, Any]) -> None:
    """Readable result table and summary on stdout."""
    hdr = (
        f"{'method':<17} {'params':<52} {'R@10':>6} {'QPS1':>8} {'QPSb':>8} "
        f"{'p50ms':>7} {'p99ms':>7} {'build_s':>8} {'MB':>8} kind"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        qb = f"{r['qps_batch']:8.0f}" if r["qps_batch"] else f"{'-':>8}"
        print(
            f"{r['method']:<17} {fmt_params(r['params'])[:52]:<52} {r['recall_at_10']:6.4f} "
            f"{r['qps_single']:8.0f} {qb} {r['p50_ms']:7.3f} {r['p99_ms']:7.3f} "
            f"{r['build_s']:8.1f} {r['bytes'] / 1e6:8.1f} {r['bytes_kind']}"
        )
    print()
    print(f"Best per method at recall@10 >= {summary['target_recall_at_10']} (max single-query QPS):")
    for m, b in summary["best_per_method"].items():
        if b is None:
            print(f"  {m:<17} (none reached target)")
        else:
            print(
                f"  {m:<17} {fmt_params(b['params']):<52} R@10={b['recall_at_10']:.4f} "
                f"QPS1={b['qps_single']:.0f} QPSb={b['qps_batch'] or 0:.0f}"
            )
    if summary.get("ours_vs_peers"):
        print("Ours vs peers:")
        for k, v in summary["ours_vs_peers"].items():
            print(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")
    elif summary.get("note"):
        print(summary["note"])


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Recall@10 (x) vs single-query QPS (y, log), one line per method/config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Row]] = {}
    for r in rows:
        fixed = {k: v for k, v in r["params"].items() if k not in (r["sweep_key"], "opts")}
        label = r["method"] + (" " + fmt_params(fixed) if fixed else "")
        groups.setdefault(label, []).append(r)
    fig, ax = plt.subplots(figsize=(9, 6))
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["recall_at_10"])
        style = "-o" if rs[0]["method"] == "spann" else "--s"
        ax.plot([r["recall_at_10"] for r in rs], [r["qps_single"] for r in rs], style, label=label, ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("single-query QPS (1 thread, log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    p.add_argument("--quick", action="store_true", help="fewer sweep points, 200 single queries")
    p.add_argument("--only", type=str, default="", help=f"comma list of methods: {','.join(ALL_METHODS)}")
    p.add_argument("--bits", type=int_list, default=[2, 4], help="our bit widths (default 2,4)")
    p.add_argument("--nprobe", type=int_list, default=None, help="our n_probe sweep")
    p.add_argument("--max-dist-ratio", type=float_list, default=None, help="our max_dist_ratio sweep (optional)")
    p.add_argument("--spann-opts", type=json.loads, default={}, help="JSON dict of extra SpannIndex kwargs")
    p.add_argument("--spann-progress", action="store_true", help="show our build progress bars")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="METHOD=V1,V2",
        help="override a peer sweep (nprobe / efSearch / ef), repeatable",
    )
    p.add_argument("--ivf-nlist", type=int, default=1264, help="nlist of faiss IVF indexes")
    p.add_argument("--k-factor", type=int, default=10, help="IndexRefineFlat k_factor")
    p.add_argument("--faiss-rabitq-qb", type=int, default=8, help="faiss RaBitQ query bits")
    p.add_argument("--rabitq-nlist", type=int_list, default=[1264], help="rabitqlib clusters")
    p.add_argument("--rabitq-nbits", type=int_list, default=[8], help="rabitqlib total bits (1 + ex-bits)")
    p.add_argument("--rabitq-kmeans", choices=("faiss", "native"), default="faiss")
    p.add_argument("--kmeans-iters", type=int, default=10, help="rabitqlib k-means iterations")
    p.add_argument("--threads", type=int, default=available_cores(), help="threads for builds and batch")
    p.add_argument("--n-single", type=int, default=None, help="single queries timed (1000; quick 200)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument(
        "--single-repeats",
        type=int,
        default=None,
        help="passes of the single-query loop, fastest kept (2; quick 1)",
    )
    p.add_argument("--batch-repeats", type=int, default=None, help="batch calls, best kept (3; quick 1)")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument(
        "--duel",
        type=int,
        default=5,
        metavar="ROUNDS",
        help="head-to-head rounds over each method's cheapest config at the target recall (0: off)",
    )
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="synthetic dataset of N vectors")
    p.add_argument("--dim", type=int, default=384, help="synthetic dimension")
    p.add_argument("--noise", type=float, default=0.7, help="synthetic noise relative to center norm")
    p.add_argument("--peers", action="store_true", help="synthetic mode: also run hnswlib")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)

    args.sweep_overrides = {}
    for item in args.sweep:
        name, _, vals = item.partition("=")
        if name not in DEFAULT_SWEEPS:
            p.error(f"--sweep: unknown method {name!r}")
        args.sweep_overrides[name] = int_list(vals)
    if args.n_single is None:
        args.n_single = 200 if args.quick else 1000
    if args.single_repeats is None:
        args.single_repeats = 1 if args.quick else 2
    if args.batch_repeats is None:
        args.batch_repeats = 1 if args.quick else 3
    if args.only:
        args.methods = [m.strip() for m in args.only.split(",") if m.strip()]
        bad = [m for m in args.methods if m not in ALL_METHODS]
        if bad:
            p.error(f"--only: unknown methods {bad}; choose from {ALL_METHODS}")
    elif args.synthetic:
        args.methods = ["spann", "hnswlib"] if args.peers else ["spann"]
    else:
        args.methods = list(ALL_METHODS)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write JSON + PNG results."""
    args = parse_args(argv)
    info = machine_info(args)
    if args.synthetic:
        dataset = f"synthetic{args.synthetic}"
        log(f"generating synthetic data n={args.synthetic} d={args.dim} seed={args.seed}")
        t0 = time.perf_counter()
        set_threads(args.threads)
        xb, xq, gt = synthetic_dataset(args.synthetic, args.dim, 1000, seed=args.seed, noise=args.noise)
        log(f"synthetic data + ground truth in {time.perf_counter() - t0:.1f}s")
        data_desc: dict[str, Any] = {
            "kind": "synthetic",
            "n": args.synthetic,
            "n_centers": max(1, args.synthetic // 1000),
            "noise": args.noise,
            "seed": args.seed,
        }
    else:
        dataset = f"{args.data.parent.name}-{args.data.name}" if args.data.name == "data" else args.data.name
        log(f"loading {args.data}")
        xb, xq, gt = load_real(args.data)
        data_desc = {"kind": "real", "path": str(args.data)}
    n, d = xb.shape
    data_desc |= {"n": n, "d": d, "nq": len(xq), "metric": "ip", "base_dtype_used": "float32"}
    log(f"data: base {xb.shape}, queries {xq.shape}, gt {gt.shape}; methods {args.methods}")

    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    for method in args.methods:
        log(f"=== {method}")
        t0 = time.perf_counter()
        try:
            rows.extend(PEERS[method](xb, xq, gt, args))
        except Exception as exc:  # keep benchmarking the other methods
            traceback.print_exc()
            errors.append({"method": method, "error": repr(exc)})
        gc.collect()
        log(f"=== {method} done in {time.perf_counter() - t0:.0f}s, load {os.getloadavg()}")

    duel = head_to_head(xq, args)
    info["loadavg_end"] = os.getloadavg()
    summary = summarize(rows, n, d, args.target_recall)
    if duel is not None:
        summary["head_to_head"] = duel
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.out_dir / f"bench-{dataset}-{stamp}.json"
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("sweep",)}
    result = {
        "machine": info,
        "dataset": data_desc,
        "config": config,
        "measurement": {
            "recall_at_10": "from the batch call over all queries",
            "qps_single": (
                "n_single / wall time of a loop of one-query calls, 1 thread, "
                "after warm-up; fastest of single_repeats passes (p50/p99 from it)"
            ),
            "qps_batch": "nq / best wall time of one call with all queries, threads_batch threads",
            "bytes_kind": {
                "stats_bytes_ram": "ours: stats()['bytes_ram'] after save + load(mmap=True)",
                "serialized": "peers: serialized index size (~resident size for in-memory indexes)",
                "raw_vectors": "exact: float32 base matrix",
            },
        },
        "rows": _jsonable(rows),
        "errors": errors,
        "summary": _jsonable(summary),
    }
    json_path.write_text(json.dumps(result, indent=2))
    print_table(rows, summary)
    if duel is not None:
        print(f"Head-to-head ({duel['rounds']} alternating rounds, medians):")
        for m, cfg in duel["configs"].items():
            print(
                f"  {m:16s} {fmt_params(cfg['params']):52s} R@10={cfg['recall_at_10']:.4f} "
                f"QPS1={duel['qps_single_median'][m]:.0f} QPSb={duel['qps_batch_median'][m] or 0:.0f}"
            )
        for key, val in duel["ours_vs_peers"].items():
            print(f"  {key}: {val if val is None else round(val, 3)}")
    if errors:
        print(f"errors: {errors}")
    if rows:
        try:
            import matplotlib  # noqa: F401  (the `bench` extra)
        except ImportError:
            print("plot: skipped (matplotlib is not installed: pip install -e '.[bench]')")
        else:
            png_path = json_path.with_suffix(".png")
            plot(rows, png_path, f"{dataset} (n={n}, d={d}), {info['cpu_model']}, {args.threads} cores")
            print(f"plot: {png_path}")
    print(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
