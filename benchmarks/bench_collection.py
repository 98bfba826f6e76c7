"""Benchmark ``spann_vectorstore.Collection``: ingest rate, reopen time and (filtered) search QPS.

What the issue asks for: "Ingest rate (vectors/s added to a persistent collection, in batches of 1,000),
search QPS with and without a 1% and a 30% filter, reopen time for 100k documents."

Run from the repository root with the project venv::

    /work/venv/bin/python benchmarks/bench_collection.py            # full: 100k docs, 1,000 queries
    /work/venv/bin/python benchmarks/bench_collection.py --quick    # 20k docs, 200 queries
    /work/venv/bin/python benchmarks/bench_collection.py --n 50000  # fewer base rows

Data: ``../shared/data`` relative to the repository root (base.npy, queries.npy, gt.npy, texts.txt); the
script prints a message and exits 0 when it is absent.

Measurements (wall clock, ``time.perf_counter``). A small in-memory collection is exercised first so that
numba compilation / cache loading is not counted in any timed phase (reported as ``warmup_s``).

1. Ingest: the first ``n`` base vectors with their texts, metadata ``{"bucket": i % 100, "row": i}`` and ids
   ``str(i)``, added in batches of 1,000 to a persistent collection in a fresh temp dir. Reported: overall
   vectors/s; the batches in which the index was built or rebuilt (first at ``index_threshold`` documents,
   then at each ``rebuild_growth`` when the Collection has it); the steady state (median batch time after the
   first build, build and snapshot batches excluded); the batches that wrote an automatic snapshot
   (``snapshot_every``); then the time of ``close()``.
2. Reopen: ``Collection.open(path)`` (snapshot present) and the time to the first search result, in this
   process and in a fresh Python process (import + open + first search; page cache warm), each with numpy's
   OpenBLAS at its default thread count and at 1 thread (the open path does BLAS work; on a busy 2-core box
   multi-threaded OpenBLAS can stall for seconds).
3. Search, for no filter, the 1% filter ``{"bucket": 7}``, the 30% filter ``{"bucket": {"$lt": 30}}`` and an
   extra 5% filter ``{"bucket": {"$lt": 5}}`` (at 100k docs the 1% subset is small enough that the index
   answers it by exact search, so the 5% row shows the filtered-scan path): single-query QPS (one call per
   query, 1 thread, fastest of ``--repeats`` passes, p50/p99 latency) and batch QPS (all queries in one call,
   ``--threads`` threads, best of ``--batch-repeats``), recall@10 against exact ground truth (``gt.npy`` for
   the unfiltered full set, brute-force inner product within the allowed subset otherwise), how many
   queries returned fewer than 10 hits, hits violating the filter, and hits whose text/metadata do not match.
4. The same searches, interleaved query by query with the Collection's (so load changes on a shared machine
   hit all alike), on (a) the Collection's own index searched directly (private attributes, for attribution
   only) and (b) a raw ``SpannIndex(dim, metric="ip", bits=2).build(xb)`` over the same vectors, giving the
   Collection's per-query overhead (filter lookup, document fetch from SQLite, ``Hit`` objects) as a ratio.
5. ``Collection.optimize()`` (full rebuild + snapshot) and the Collection searches again after it.

Threads: single-query loops run with ``numba.set_num_threads(1)`` (and numpy's OpenBLAS at 1 thread);
batch calls, builds and ingest with ``--threads`` (default 2).

Output: a readable table on stdout and ``benchmarks/results/collection-<YYYYmmdd-HHMMSS>.json`` with machine
info and all numbers. The machine may be shared: the JSON records the load average and any other
``bench*.py`` processes seen running at the start and end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("SPANN_COLD_START", "compile")  # steady-state search: no exact answers during compiles

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
K = 10
BATCH = 1000

FILTERS: list[tuple[str, dict[str, Any] | None, Callable[[np.ndarray], np.ndarray] | None]] = [
    ("none", None, None),
    ("1% bucket==7", {"bucket": 7}, lambda b: b == 7),
    ("5% bucket<5 (extra)", {"bucket": {"$lt": 5}}, lambda b: b < 5),
    ("30% bucket<30", {"bucket": {"$lt": 30}}, lambda b: b < 30),
]

Row = dict[str, Any]


# --------------------------------------------------------------------------- utils


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# one implementation of the thread knobs (numba, numpy's OpenBLAS, faiss when present): bench.py's
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import set_threads  # noqa: E402

from spann_vectorstore.evaluation import exact_topk, recall_at_k  # noqa: E402


def other_benchmarks() -> list[str]:
    """Command lines of other running ``bench*.py`` processes (the machine is shared)."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        if d == f"/proc/{os.getpid()}":
            continue
        try:
            with open(f"{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "bench" in cmd and ".py" in cmd and "python" in cmd:
            out.append(f"{d.rsplit('/', 1)[1]}: {cmd[:200]}")
    return sorted(out)


def library_fingerprint() -> str:
    """Hash of the library sources (other engineers edit them concurrently: detect a change mid-run)."""
    h = hashlib.sha256()
    for p in sorted((REPO_ROOT / "spann_vectorstore").glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    """bench.py's machine description plus what this benchmark tracks: uncommitted library files, a source
    fingerprint (compared at the end) and other benchmarks running beside it."""
    info = bench.machine_info(args)
    try:
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "spann_vectorstore"],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    info["versions"]["spann-vectorstore"] = _version("spann-vectorstore")
    info |= {
        "git_head": info.pop("git_rev"),
        "library_dirty_files": dirty.splitlines(),
        "library_fingerprint_start": library_fingerprint(),
        "other_benchmarks_start": other_benchmarks(),
    }
    return info


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


# ---------------------------------------------------------------------- measuring


Method = tuple[
    str,  # name
    Callable[[np.ndarray], Any],  # one query (dim,) -> result
    Callable[[np.ndarray], Any],  # batch (nq, dim) -> result
    Callable[[Any], list[int]],  # single result -> doc ints
    Callable[[Any], list[list[int]]],  # batch result -> doc ints per query
]


def measure_set(methods: list[Method], xq: np.ndarray, args: argparse.Namespace) -> dict[str, tuple[Row, list, Any]]:
    """Time several methods on the same queries, interleaved so that load changes on the shared machine hit
    them alike: single-query calls alternate between methods query by query (1 thread; fastest of
    ``args.repeats`` passes per method), batch calls alternate per repeat (``args.threads``; best of
    ``args.batch_repeats``). Returns per method: timing row (with ids), raw single results, raw batch result."""
    nq, nm = len(xq), len(methods)
    set_threads(1)
    for i in range(min(args.warmup, nq)):
        for m in methods:
            m[1](xq[i])
    best: dict[str, tuple[float, np.ndarray, list[Any]]] = {m[0]: (float("inf"), np.empty(0), []) for m in methods}
    for _ in range(max(1, args.repeats)):
        lat = {m[0]: np.empty(nq) for m in methods}
        res: dict[str, list[Any]] = {m[0]: [] for m in methods}
        for i in range(nq):
            q = xq[i]
            for j in range(nm):
                name, one = methods[(i + j) % nm][:2]  # rotate the order: no method always runs first
                t0 = time.perf_counter()
                r = one(q)
                lat[name][i] = time.perf_counter() - t0
                res[name].append(r)
        for name in lat:
            total = float(lat[name].sum())
            if total < best[name][0]:
                best[name] = (total, lat[name], res[name])
    set_threads(args.threads)
    for m in methods:
        m[2](xq[: min(50, nq)])  # warm-up
    bbest = {m[0]: float("inf") for m in methods}
    bres: dict[str, Any] = {}
    for rep in range(max(1, args.batch_repeats)):
        for j in range(nm):
            name, _, batch = methods[(rep + j) % nm][:3]
            t0 = time.perf_counter()
            r = batch(xq)
            dt_ = time.perf_counter() - t0
            if dt_ < bbest[name]:
                bbest[name] = dt_
            bres[name] = r
    out = {}
    for name, _, _, to_ids, batch_to_ids in methods:
        total, lat_b, single = best[name]
        row: Row = {
            "qps_single": nq / total,
            "p50_ms": pct(lat_b, 50) * 1e3,
            "p99_ms": pct(lat_b, 99) * 1e3,
            "mean_ms": float(lat_b.mean() * 1e3),
            "qps_batch": nq / bbest[name],
            "batch_s": bbest[name],
            "ids_single": [to_ids(r) for r in single],
            "ids_batch": batch_to_ids(bres[name]),
            "loadavg_1m": os.getloadavg()[0],
        }
        out[name] = (row, single, bres[name])
    return out


def finish_row(row: Row, gt: np.ndarray) -> Row:
    ids_s, ids_b = row.pop("ids_single"), row.pop("ids_batch")
    row["recall_at_10_single"] = recall_at_k(ids_s, gt, K)
    row["recall_at_10_batch"] = recall_at_k(ids_b, gt, K)
    row["short_single"] = sum(len(x) < K for x in ids_s)
    row["short_batch"] = sum(len(x) < K for x in ids_b)
    return row


# ------------------------------------------------------------------------- phases


def warm_up(collection_cls: Any, xb: np.ndarray, args: argparse.Namespace) -> float:
    """Exercise every kernel once on a small in-memory collection (build, incremental add, single/batch and
    filtered search), so that numba compilation or cache loading is not counted in the timed phases. On a
    cold numba cache (first run after the kernels changed) this is the JIT compile time."""
    set_threads(args.threads)
    t0 = time.perf_counter()
    m = min(6000, len(xb))
    col = collection_cls(None, metric="ip", bits=2)
    metas = [{"bucket": i % 100} for i in range(m)]
    col.add(xb[: m - 1000], metadatas=metas[: m - 1000])  # >= index_threshold: builds the index
    col.add(xb[m - 1000 : m], metadatas=metas[m - 1000 :])  # incremental add into the built index
    for threads in (1, args.threads):
        set_threads(threads)
        for flt in (None, {"bucket": 7}, {"bucket": {"$lt": 50}}):
            col.search(xb[0], k=K, filter=flt)
            col.search(xb[:8], k=K, filter=flt)
    col.close()
    return time.perf_counter() - t0


def _build_state(col: Any) -> tuple[Any, ...]:
    """What changes when the Collection (re)builds its index: which index object is in use (a rebuild on
    growth swaps in a new one) and whether it is built at all (the first build is in place)."""
    idx = col.index
    return id(idx), bool(idx is not None and idx.n_heads > 0)


def run_ingest(col: Any, path: Path, xb: np.ndarray, texts: list[str], args: argparse.Namespace) -> Row:
    set_threads(args.threads)
    n = len(xb)
    manifest = path / "index" / "MANIFEST.json"

    def stamp() -> int | None:
        return manifest.stat().st_mtime_ns if manifest.exists() else None

    times, snap_batches, build_batches = [], [], []
    t_wall = time.perf_counter()
    for b, s in enumerate(range(0, n, BATCH)):
        e = min(s + BATCH, n)
        metas = [{"bucket": i % 100, "row": i} for i in range(s, e)]
        ids = [str(i) for i in range(s, e)]
        before, state = stamp(), _build_state(col)
        t0 = time.perf_counter()
        col.add(xb[s:e], texts=texts[s:e], metadatas=metas, ids=ids)
        times.append(time.perf_counter() - t0)
        if stamp() != before:
            snap_batches.append(b)
        if _build_state(col) != state:
            build_batches.append(b)
        if (b + 1) % 10 == 0 or e == n:
            log(f"ingest {e:,}/{n:,}  last batch {times[-1] * 1e3:.0f} ms")
    wall = time.perf_counter() - t_wall
    t = np.array(times)
    cum = np.cumsum(np.minimum(BATCH, n - np.arange(len(t)) * BATCH))
    first = build_batches[0] if build_batches else None
    special = set(build_batches) | set(snap_batches)
    after = [i for i in range(len(t)) if first is not None and i > first and i not in special]
    steady = t[after] if after else np.empty(0)
    q = max(1, len(after) // 4)
    slowest = np.argsort(-t)[:6]
    return {
        "n": n,
        "batch_size": BATCH,
        "n_batches": len(t),
        "wall_s": wall,
        "add_s_total": float(t.sum()),
        "vectors_per_s": n / wall,
        "index_threshold": col.index_threshold,
        "rebuild_growth": getattr(col, "rebuild_growth", None),
        "snapshot_every": col.snapshot_every,
        "build_batches": build_batches,
        "build_batch_docs_after": [int(cum[b]) for b in build_batches],
        "build_batch_s": [float(t[b]) for b in build_batches],
        "build_batches_total_s": float(t[build_batches].sum()) if build_batches else 0.0,
        "pre_build_median_batch_s": float(np.median(t[:first])) if first else None,
        "steady_median_batch_s": float(np.median(steady)) if len(steady) else None,
        "steady_p90_batch_s": pct(steady, 90),
        "steady_max_batch_s": float(steady.max()) if len(steady) else None,
        "steady_vectors_per_s": BATCH / float(np.median(steady)) if len(steady) else None,
        "steady_batches_total_s": float(steady.sum()),
        "steady_first_quarter_median_s": float(np.median(t[after[:q]])) if after else None,
        "steady_last_quarter_median_s": float(np.median(t[after[-q:]])) if after else None,
        "snapshot_batches": snap_batches,
        "snapshot_batch_s": [float(t[b]) for b in snap_batches],
        "slowest_batches": [[int(b), float(t[b])] for b in slowest],
        "batch_s": [round(float(x), 5) for x in t],
    }


_REOPEN_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from spann_vectorstore import Collection
t1 = time.perf_counter()
col = Collection.open(sys.argv[1])
t2 = time.perf_counter()
q = np.load(sys.argv[2])[0].astype(np.float32)
t3 = time.perf_counter()
hits = col.search(q, k=10)
t4 = time.perf_counter()
col.search(np.load(sys.argv[2])[1].astype(np.float32), k=10)
t5 = time.perf_counter()
col.close()
t6 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "first_search_s": t4 - t3,
                  "second_search_s": t5 - t4, "close_s": t6 - t5, "n_hits": len(hits)}))
"""


def reopen_subprocess(path: Path, queries: Path, blas_threads: int | None) -> Row:
    env = dict(os.environ)
    if blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _REOPEN_CHILD, str(path), str(queries)],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(REPO_ROOT),
        env=env,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "process_wall_s": wall}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="base rows to ingest (default 100000)")
    ap.add_argument("--nq", type=int, default=None, help="queries (default 1000)")
    ap.add_argument("--quick", action="store_true", help="n=20000, 200 queries")
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--threads", type=int, default=2, help="threads for batch search, build and ingest")
    ap.add_argument("--repeats", type=int, default=2, help="single-query passes (fastest kept)")
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--reopen-repeats", type=int, default=3)
    ap.add_argument("--no-raw", action="store_true", help="skip the raw SpannIndex comparison")
    ap.add_argument("--no-optimize", action="store_true", help="skip Collection.optimize() and the search after it")
    ap.add_argument("--keep", action="store_true", help="keep the collection directory")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    n = args.n if args.n is not None else (20000 if args.quick else 100000)
    nq = args.nq if args.nq is not None else (200 if args.quick else 1000)

    if not (args.data / "base.npy").exists():
        print(f"data folder {args.data} not found (expected base.npy, queries.npy, gt.npy, texts.txt); skipping")
        return 0

    import numba

    from spann_vectorstore import Collection, SpannIndex

    info = machine_info(args)
    log(f"machine: {info['cpu_model']}, nproc {info['nproc']}, load {info['loadavg_start']}")
    for other in info["other_benchmarks_start"]:
        log(f"NOTE: another benchmark is running: {other}")

    base = np.load(args.data / "base.npy", mmap_mode="r")
    n = min(n, base.shape[0])
    xb = np.ascontiguousarray(base[:n], dtype=np.float32)
    xq = np.ascontiguousarray(np.load(args.data / "queries.npy")[:nq], dtype=np.float32)
    nq = len(xq)
    texts: list[str] = []
    with open(args.data / "texts.txt", encoding="utf-8") as f:
        for _ in range(n):
            texts.append(f.readline().rstrip("\n"))
    log(f"data: {n:,} base vectors (dim {xb.shape[1]}), {nq} queries")

    # ground truth (inner product on the float32 base, like gt.npy)
    bucket = np.arange(n) % 100
    masks = {name: (pred(bucket) if pred is not None else None) for name, _, pred in FILTERS}
    t0 = time.perf_counter()
    gts = {name: exact_topk(xb, xq, K, allowed=m)[0] for name, m in masks.items()}
    gt_note = "brute force"
    gt_agree = None
    if n == base.shape[0] and (args.data / "gt.npy").exists():
        gt_file = np.load(args.data / "gt.npy")[:nq, :K].astype(np.int64)
        gt_agree = recall_at_k(gts["none"], gt_file, K)
        gts["none"] = gt_file
        gt_note = "gt.npy for the unfiltered case, brute force within the subset for filters"
    log(f"ground truth in {time.perf_counter() - t0:.1f}s (agreement brute force vs gt.npy: {gt_agree})")

    results: dict[str, Any] = {
        "benchmark": "collection",
        "machine": info,
        "config": {
            "n": n,
            "nq": nq,
            "k": K,
            "metric": "ip",
            "bits": 2,
            "batch_size": BATCH,
            "threads_single": 1,
            "threads_batch": args.threads,
            "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
            "repeats_single": args.repeats,
            "repeats_batch": args.batch_repeats,
            "warmup": args.warmup,
            "ground_truth": gt_note,
            "gt_bruteforce_vs_gt_npy_recall": gt_agree,
        },
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench_collection_", dir="/tmp"))
    path = tmp / "col"
    try:
        results["warmup_s"] = warm_up(Collection, xb, args)
        log(f"kernel warm-up (numba compile or cache load) {results['warmup_s']:.1f} s")

        # ------------------------------------------------------------------ 1. ingest
        col = Collection(path, metric="ip", bits=2)
        ingest = run_ingest(col, path, xb, texts, args)
        st = col.stats()
        ingest["stats_before_close"] = {
            "count": st["count"],
            "bytes_disk": st.get("bytes_disk"),
            "indexed": st.get("indexed"),
            "index": st.get("index"),
        }
        set_threads(args.threads)
        pre = col.search(xq, k=K)  # results of the in-memory (incrementally built) index, to compare after reopen
        pre_ids = [[int(h.id) for h in hs] for hs in pre]
        snap_before = (path / "index" / "MANIFEST.json").stat().st_mtime_ns if (path / "index").exists() else None
        t0 = time.perf_counter()
        col.close()
        ingest["close_s"] = time.perf_counter() - t0
        snap_after = (path / "index" / "MANIFEST.json").stat().st_mtime_ns
        ingest["close_wrote_snapshot"] = snap_after != snap_before
        ingest["bytes_disk_after_close"] = dir_bytes(path)
        ingest["bytes_sqlite"] = sum(p.stat().st_size for p in path.glob("docs.sqlite*"))
        ingest["bytes_index_snapshot"] = dir_bytes(path / "index")
        ingest["recall_at_10_after_ingest_batch"] = recall_at_k(pre_ids, gts["none"], K)
        results["ingest"] = ingest
        log(f"ingest: {ingest['vectors_per_s']:.0f} vec/s, close {ingest['close_s']:.3f}s")

        # ------------------------------------------------------------------ 2. reopen
        reopen: Row = {"subprocess": [], "in_process": []}
        for _ in range(max(1, args.reopen_repeats)):
            for blas in (None, 1):  # default OpenBLAS threads, then OPENBLAS_NUM_THREADS=1
                sp = reopen_subprocess(path, args.data / "queries.npy", blas)
                sp["openblas_threads"] = blas or "default"
                reopen["subprocess"].append(sp)
                log(f"reopen in a fresh process (OpenBLAS {sp['openblas_threads']}): {sp}")
        for r in range(max(1, args.reopen_repeats)):
            for blas in (args.threads, 1):
                set_threads(blas)
                t0 = time.perf_counter()
                col = Collection.open(path)
                t_open = time.perf_counter() - t0
                t0 = time.perf_counter()
                hits = col.search(xq[r % nq], k=K)
                t_first = time.perf_counter() - t0
                rep = {
                    "openblas_threads": blas,
                    "open_s": t_open,
                    "first_search_s": t_first,
                    "open_to_first_result_s": t_open + t_first,
                    "first_search_hits": len(hits),
                }
                t0 = time.perf_counter()
                col.close()
                rep["close_unchanged_s"] = time.perf_counter() - t0
                reopen["in_process"].append(rep)
                log(f"reopen in process (OpenBLAS {blas}): open {t_open:.3f}s, first search {t_first * 1e3:.1f} ms")
        for key, reps in (("in_process", reopen["in_process"]), ("subprocess", reopen["subprocess"])):
            for blas in sorted({str(x["openblas_threads"]) for x in reps}):
                sel = [x for x in reps if str(x["openblas_threads"]) == blas and "open_s" in x]
                if sel:
                    reopen[f"{key}_openblas_{blas}_open_s_median"] = float(np.median([x["open_s"] for x in sel]))
                    reopen[f"{key}_openblas_{blas}_first_search_s_median"] = float(
                        np.median([x["first_search_s"] for x in sel])
                    )
        set_threads(args.threads)
        col = Collection.open(path)
        reopen["count_after_reopen"] = col.count()
        post = col.search(xq, k=K)
        post_ids = [[int(h.id) for h in hs] for hs in post]
        reopen["same_results_before_close_and_after_reopen"] = float(
            np.mean([a == b for a, b in zip(pre_ids, post_ids)])
        )
        results["reopen"] = reopen

        # ------------------------------------------------------------------ 3./4. search
        raw = None
        if not args.no_raw:
            set_threads(args.threads)
            log("raw SpannIndex build")
            t0 = time.perf_counter()
            raw = SpannIndex(xb.shape[1], metric="ip", bits=2, progress=False).build(xb)
            results["raw_build_s"] = time.perf_counter() - t0
            results["raw_index_stats"] = raw.stats()
        # the Collection's own index, searched directly (Collection.index / index_ids: only to split the
        # Collection's time into index search vs document fetch)
        idx = col.index
        rid2doc = {r: int(i) for i, r in col.index_ids().items()}
        results["collection_index_stats"] = col.stats()["index"]

        def hits_ids(hs: Any) -> list[int]:
            return [int(h.id) for h in hs]

        def hits_ids_b(b: Any) -> list[list[int]]:
            return [hits_ids(hs) for hs in b]

        def own_ids_b(res: Any) -> list[list[int]]:
            return [[rid2doc[int(r)] for r in row if r >= 0] for row in res.ids]

        def raw_ids_b(res: Any) -> list[list[int]]:
            return [[int(r) for r in row if r >= 0] for row in res.ids]

        def search_rows(label: str, with_refs: bool) -> list[Row]:
            out_rows = []
            for name, flt, pred in FILTERS:
                n_allowed = int(masks[name].sum()) if masks[name] is not None else n
                log(f"search [{label}] filter {name} ({n_allowed:,} allowed)")
                own_allowed = np.fromiter(col.index_ids(flt).values(), np.int64) if flt else None
                raw_allowed = np.flatnonzero(masks[name]) if masks[name] is not None else None

                def col_one(q: np.ndarray, flt: Any = flt) -> Any:
                    return col.search(q, k=K, filter=flt)

                def own_one(q: np.ndarray, a: Any = own_allowed) -> Any:
                    return idx.search(q, k=K, allowed_ids=a)

                def raw_one(q: np.ndarray, a: Any = raw_allowed) -> Any:
                    return raw.search(q, k=K, allowed_ids=a)

                methods: list[Method] = [(label, col_one, col_one, hits_ids, hits_ids_b)]
                if with_refs:
                    methods.append(
                        ("collection index (direct)", own_one, own_one, lambda r: own_ids_b(r)[0], own_ids_b)
                    )
                    if raw is not None:
                        methods.append(("raw SpannIndex", raw_one, raw_one, lambda r: raw_ids_b(r)[0], raw_ids_b))
                measured = measure_set(methods, xq, args)
                row, single, batch = measured[label]
                viol = bad = 0
                for hs in [*single, *batch]:
                    for h in hs:
                        i = int(h.id)
                        if pred is not None and not pred(np.array(h.metadata["bucket"])):
                            viol += 1
                        if h.text != texts[i] or h.metadata.get("row") != i:
                            bad += 1
                row.update(method=label, filter=name, filter_spec=flt, n_allowed=n_allowed)
                row.update(filter_violations=viol, text_or_metadata_mismatch=bad)
                out_rows.append(finish_row(row, gts[name]))
                for other, (orow, _, _) in measured.items():
                    if other != label:
                        orow.update(method=other, filter=name, filter_spec=flt, n_allowed=n_allowed)
                        out_rows.append(finish_row(orow, gts[name]))
            return out_rows

        rows = search_rows("collection", with_refs=True)

        # overhead ratios
        by = {(r["method"], r["filter"]): r for r in rows}
        overhead = {}
        for name, _, _ in FILTERS:
            c = by[("collection", name)]
            ent: Row = {}
            for ref_name, key in (("vs_own_index", "collection index (direct)"), ("vs_raw_index", "raw SpannIndex")):
                ref = by.get((key, name))
                if ref is None:
                    continue
                ent[ref_name] = {
                    "time_ratio_single": ref["qps_single"] / c["qps_single"],
                    "overhead_ms_single": 1e3 / c["qps_single"] - 1e3 / ref["qps_single"],
                    "time_ratio_batch": ref["qps_batch"] / c["qps_batch"],
                    "overhead_ms_per_query_batch": 1e3 / c["qps_batch"] - 1e3 / ref["qps_batch"],
                }
            overhead[name] = ent
        results["overhead"] = overhead
        raw = None  # free it before the rebuild

        # ------------------------------------------------------------------ 5. optimize() (full rebuild)
        if not args.no_optimize:
            set_threads(args.threads)
            t0 = time.perf_counter()
            col.optimize()
            results["optimize_s"] = time.perf_counter() - t0
            results["collection_index_stats_after_optimize"] = col.stats()["index"]
            log(f"optimize() {results['optimize_s']:.1f} s")
            rows += search_rows("collection after optimize()", with_refs=False)
        results["search"] = rows
        col.close()
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    info["loadavg_end"] = os.getloadavg()
    info["other_benchmarks_end"] = other_benchmarks()
    info["library_fingerprint_end"] = library_fingerprint()
    info["library_changed_during_run"] = info["library_fingerprint_end"] != info["library_fingerprint_start"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"collection-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1, default=_jsonable))
    print_report(results)
    print(f"\nJSON: {out}")
    return 0


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def print_report(r: dict[str, Any]) -> None:
    m, c, ing, ro = r["machine"], r["config"], r["ingest"], r["reopen"]
    print()
    print(f"Collection benchmark: {c['n']:,} docs x {c.get('nq')} queries, dim 384, metric ip, bits 2, k={K}")
    print(f"machine: {m['cpu_model']} | nproc {m['nproc']} | {m['date']} | git {m['git_head']}")
    print(f"load avg start {m['loadavg_start']} end {m.get('loadavg_end')}")
    if m.get("library_changed_during_run"):
        print(
            "  WARNING: spann_vectorstore sources on disk changed during the run (concurrent edits): this process used"
            " the version loaded at start; fresh-process reopen runs may have used a newer one"
        )
    for other in sorted(set(m["other_benchmarks_start"]) | set(m.get("other_benchmarks_end", []))):
        print(f"  NOTE concurrent benchmark: {other}")

    def f(x: Any, fmt: str = ".3f") -> str:
        return "-" if x is None else format(x, fmt)

    print("\n1. Ingest (batches of 1,000, persistent, texts + metadata + ids)")
    print(f"  overall                 {ing['vectors_per_s']:>10,.0f} vectors/s   ({ing['wall_s']:.2f} s wall)")
    print(f"  before index build      {f(ing['pre_build_median_batch_s'])} s median batch")
    builds = ", ".join(
        f"#{b} ({d:,} docs): {x:.3f} s"
        for b, d, x in zip(ing["build_batches"], ing["build_batch_docs_after"], ing["build_batch_s"])
    )
    print(f"  (re)build batches       {builds or 'none'}  [total {ing['build_batches_total_s']:.2f} s]")
    print(
        f"  steady state            {f(ing['steady_median_batch_s'])} s median batch "
        f"(p90 {f(ing['steady_p90_batch_s'])}, max {f(ing['steady_max_batch_s'])}) "
        f"= {f(ing['steady_vectors_per_s'], ',.0f')} vectors/s "
        f"[total {ing['steady_batches_total_s']:.2f} s]"
    )
    print(
        f"  steady trend            first quarter median {f(ing['steady_first_quarter_median_s'])} s, "
        f"last quarter {f(ing['steady_last_quarter_median_s'])} s"
    )
    snaps = ", ".join(f"#{b}: {t:.3f} s" for b, t in zip(ing["snapshot_batches"], ing["snapshot_batch_s"]))
    print(f"  auto-snapshot batches   {snaps or 'none'}")
    print(f"  slowest batches         {', '.join(f'#{b}: {t:.3f} s' for b, t in ing['slowest_batches'])}")
    print(f"  close()                 {ing['close_s']:.3f} s (wrote a snapshot: {ing['close_wrote_snapshot']})")
    mb = 1 / 2**20
    print(
        f"  disk                    {ing['bytes_disk_after_close'] * mb:.1f} MiB total "
        f"(sqlite {ing['bytes_sqlite'] * mb:.1f}, index snapshot {ing['bytes_index_snapshot'] * mb:.1f})"
    )

    print("\n2. Reopen (snapshot present; OpenBLAS threads during open given per line)")
    for rep in ro["in_process"]:
        print(
            f"  in process, BLAS {rep['openblas_threads']!s:<7}  open {rep['open_s']:.3f} s + first search "
            f"{rep['first_search_s'] * 1e3:.1f} ms = {rep['open_to_first_result_s']:.3f} s to first result"
        )
    for sp in ro["subprocess"]:
        if "error" in sp:
            print(f"  fresh process           ERROR {sp['error'][-300:]}")
            continue
        print(
            f"  fresh proc, BLAS {sp['openblas_threads']!s:<7}  import {sp['import_s']:.3f} s, "
            f"open {sp['open_s']:.3f} s, "
            f"first search {sp['first_search_s'] * 1e3:.1f} ms (second {sp['second_search_s'] * 1e3:.1f} ms), "
            f"process wall {sp['process_wall_s']:.2f} s"
        )
    print(f"  same top-10 before close / after reopen: {ro['same_results_before_close_and_after_reopen']:.3f}")

    print(
        f"\n3./4. Search (k={K}; single = 1 query per call, 1 thread; "
        f"batch = all queries in one call, {c['threads_batch']} threads)"
    )
    hdr = (
        f"  {'method':<29}{'filter':<21}{'allowed':>8}{'QPS 1':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'QPS batch':>10}{'R@10 1':>8}{'R@10 b':>8}{'short':>7}{'viol':>6}"
    )
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    for row in r["search"]:
        allowed = row.get("n_allowed")
        print(
            f"  {row['method']:<29}{row['filter']:<21}{'' if allowed is None else f'{allowed:,}':>8}"
            f"{row['qps_single']:>9.0f}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['qps_batch']:>10.0f}"
            f"{row['recall_at_10_single']:>8.3f}{row['recall_at_10_batch']:>8.3f}"
            f"{row['short_single'] + row['short_batch']:>7}{row.get('filter_violations', ''):>6}"
        )
    print("  (short = queries with fewer than 10 hits, single + batch; viol = hits not matching the filter)")
    print("\n  Collection overhead (time per query, Collection / reference index)")
    for name, ent in r["overhead"].items():
        parts = []
        for ref, v in ent.items():
            parts.append(
                f"{ref}: single x{v['time_ratio_single']:.2f} (+{v['overhead_ms_single']:.3f} ms), "
                f"batch x{v['time_ratio_batch']:.2f} (+{v['overhead_ms_per_query_batch']:.3f} ms/q)"
            )
        print(f"  {name:<21}{' | '.join(parts)}")
    for label, key in (
        ("Collection index after ingest", "collection_index_stats"),
        ("raw SpannIndex (one build)", "raw_index_stats"),
        ("Collection index after optimize()", "collection_index_stats_after_optimize"),
    ):
        st = r.get(key)
        if st:
            print(
                f"  {label:<35} heads {st['heads']:>5}, replicas/vector {st['replicas_avg']:.2f}, "
                f"mean posting {st['posting_size_avg']:.0f}, max posting {st['posting_size_max']}"
            )
    if "optimize_s" in r:
        print(f"  Collection.optimize() (rebuild + snapshot): {r['optimize_s']:.1f} s")
    print(f"\n  kernel warm-up before the timed phases (numba JIT or cache load): {r['warmup_s']:.1f} s")
    if "raw_build_s" in r:
        print(f"\n  raw SpannIndex build: {r['raw_build_s']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
