"""Filters and the Collection at scale (issue 20): filtered search at 1M documents with and without field
indexes and with and without a concurrent writer, add throughput as the collection grows, disk bytes per
document, reopen time.

Run from the repository root with the project venv::

    python benchmarks/bench_filters_scale.py                     # 1M documents, 384-d (~40 min on 2 cores)
    python benchmarks/bench_filters_scale.py --n 100000 --nq 50  # a quick pass

Data: ``evaluation.synthetic_dataset(n, d, nq)`` (unit vectors around n/1000 centres, inner product), texts
``"document <i>"``, metadata drawn independently of the vectors (seeded)::

    {"tenant": "t<0..99>", "tier": <0..9>, "score": uniform [0, 1)}

Filters (each query draws its own operand, so no query reuses another's cached allowed ids: every search
evaluates its filter, the cold path):

* ``tenant_1pct``: ``{"tenant": "t<j>"}`` (keyword equality, 1%)
* ``score_1pct``: ``{"score": {"$gte": a, "$lt": a + 0.01}}`` (numeric range, 1%)
* ``tier_30pct``: ``{"tier": {"$in": [three distinct tiers]}}`` (30%)

Phases: (1) ingest in batches of 1,000 (vectors/s per 100k window, index builds and background rebuilds
included; the final wait for a running rebuild is counted); (2) ``optimize()``, disk bytes per document; (3)
filtered search without field indexes (``--nq-scan`` queries: each is a full scan of the JSON metadata); (4)
``create_index`` of the three fields (time each); (5) filtered search with the indexes; (6) the same while a
writer thread adds batches of ``--writer-batch`` documents (metadata outside every filter, so the exact answers
stay those of phase 5) as fast as it can; (7) ``close()`` and reopen time (open, then first filtered search).

Recall@10 against ``evaluation.exact_topk(allowed=...)`` over the base vectors. Latency: one query per call,
``time.perf_counter`` around ``Collection.search``; p50/p99 over the queries. The JSON goes to
``benchmarks/results/filters-scale-<YYYYmmdd-HHMMSS>.json`` (written after every phase).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("SPANN_COLD_START", "compile")  # steady-state search: no exact answers during compiles
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spann_vectorstore import Collection
from spann_vectorstore.evaluation import exact_topk, recall_at_k, synthetic_dataset

RESULTS = Path(__file__).resolve().parent / "results"


def metadata(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"tenant": rng.integers(0, 100, n), "tier": rng.integers(0, 10, n), "score": rng.random(n)}


def filters(nq: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, Any]]] = {"tenant_1pct": [], "score_1pct": [], "tier_30pct": []}
    for _ in range(nq):
        out["tenant_1pct"].append({"tenant": f"t{int(rng.integers(0, 100))}"})
        a = round(float(rng.random()) * 0.99, 6)
        out["score_1pct"].append({"score": {"$gte": a, "$lt": a + 0.01}})
        out["tier_30pct"].append({"tier": {"$in": [int(t) for t in rng.choice(10, 3, replace=False)]}})
    return out


def allowed_mask(meta: dict[str, np.ndarray], flt: dict[str, Any]) -> np.ndarray:
    """The documents (rows of the base) a benchmark filter selects, computed with numpy."""
    ((field, cond),) = flt.items()
    col = meta[field]
    if field == "tenant":
        return col == int(cond[1:])
    if field == "score":
        return (col >= cond["$gte"]) & (col < cond["$lt"])
    return np.isin(col, cond["$in"])


def truth(xb: np.ndarray, xq: np.ndarray, meta: dict[str, np.ndarray], flts: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for q, flt in zip(xq, flts):
        ids, _ = exact_topk(xb, q[None], 10, "ip", allowed=allowed_mask(meta, flt))
        out.append([str(i) for i in ids[0] if i >= 0])
    return out


def search_phase(
    col: Collection, xq: np.ndarray, flts: list[dict[str, Any]], gt: list[list[str]] | None, seconds: float = 1e9
) -> dict:
    """Filtered searches, one query per call, for at most ``seconds`` (then fewer queries)."""
    times, found = [], []
    start = time.perf_counter()
    for q, flt in zip(xq, flts):
        if time.perf_counter() - start > seconds:
            break
        t = time.perf_counter()
        hits = col.search(q, k=10, filter=flt)
        times.append(time.perf_counter() - t)
        found.append([h.id for h in hits])
    ms = np.array(times) * 1e3
    row = {"queries": len(times), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
    row["mean_ms"] = float(ms.mean())
    if gt is not None:
        row["recall_at_10"] = recall_at_k(found, gt[: len(found)], 10)
    return row


class Writer(threading.Thread):
    """Adds batches of documents whose metadata no benchmark filter selects, until stopped: as fast as it can
    (``rate`` None) or paced to ``rate`` documents per second (a steady ingest beside the searches)."""

    def __init__(self, col: Collection, dim: int, batch: int, rate: float | None = None) -> None:
        super().__init__(daemon=True)
        self.col, self.dim, self.batch, self.rate = col, dim, batch, rate
        self.stop = threading.Event()
        self.added, self.batches, self.seconds = 0, 0, 0.0
        self.rng = np.random.default_rng(99)

    def run(self) -> None:
        meta = [{"tenant": "writer", "tier": 99, "score": 2.0}] * self.batch
        t0 = time.perf_counter()
        while not self.stop.is_set():
            x = self.rng.standard_normal((self.batch, self.dim)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            ids = [f"w{self.added + i}" for i in range(self.batch)]
            self.col.add(x, [f"writer {i}" for i in ids], meta, ids)
            self.added += self.batch
            self.batches += 1
            if self.rate:
                self.stop.wait(max(0.0, t0 + self.added / self.rate - time.perf_counter()))
        self.seconds = time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--nq", type=int, default=200, help="queries per filter with indexes")
    ap.add_argument("--nq-scan", type=int, default=20, help="queries per filter without indexes (full scans)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--writer-batch", type=int, default=100)
    ap.add_argument("--writer-seconds", type=float, default=120, help="at most this long per filter with the writer")
    ap.add_argument(
        "--writer-rates",
        default="max,1000",
        help="writer phases: 'max' (as fast as it can) and/or documents per second (a paced, steady ingest)",
    )
    ap.add_argument("--dir", default=None, help="where to put the collection (default: a temp dir, removed)")
    ap.add_argument("--skip-optimize", action="store_true")
    ap.add_argument(
        "--fast-ingest",
        action="store_true",
        help="phase (1) without the index (index_threshold above n, no automatic snapshots): documents only, "
        "then optimize() builds the index once over all of them (timed as the build)",
    )
    ap.add_argument("--marginal-batches", type=int, default=10, help="batches of --batch added after the build")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="open the collection a run with the same --dir, --n, --dim left (its field indexes dropped) and "
        "run the search phases (3)-(7) only",
    )
    args = ap.parse_args()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_file = RESULTS / f"filters-scale-{stamp}.json"
    res: dict[str, Any] = {"args": vars(args), "started": stamp, "loadavg_start": os.getloadavg()}

    def save() -> None:
        RESULTS.mkdir(exist_ok=True)
        out_file.write_text(json.dumps(res, indent=1))

    n, d = args.n, args.dim
    t = time.perf_counter()
    xb, xq, _ = synthetic_dataset(n, d, args.nq, k_truth=1)
    meta = metadata(n, 1)
    flts = filters(args.nq, 2)
    res["data_s"] = time.perf_counter() - t
    gts = {name: truth(xb, xq, meta, fl) for name, fl in flts.items()}
    res["selectivity"] = {name: float(np.mean([allowed_mask(meta, f).mean() for f in fl])) for name, fl in flts.items()}
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-filters-"))
    path = base / "col"
    if not args.reuse:
        shutil.rmtree(path, ignore_errors=True)
    try:
        if args.reuse:
            t = time.perf_counter()
            col = Collection.open(path, progress=False)
            res["reused_open_s"] = time.perf_counter() - t
            for field in col.list_indexes():
                col.drop_index(field)
            col.delete(filter={"tenant": "writer"})  # a previous run's writer documents
            assert col.count() == n, f"the collection at {str(path)!r} holds {col.count()} documents, not {n}"
        else:
            col = ingest_and_optimize(path, xb, meta, args, res, save)
        search_phases(col, path, xq, flts, gts, args, res, save)
    finally:
        res["loadavg_end"] = os.getloadavg()
        save()
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(res, indent=1))


def ingest_and_optimize(
    path: Path, xb: np.ndarray, meta: dict, args: argparse.Namespace, res: dict, save
) -> Collection:
    """Phases (1) and (2)."""
    n, d = xb.shape
    # (1) ingest
    fast = {"index_threshold": n + 1, "snapshot_every": 10**12} if args.fast_ingest else {}
    col = Collection(path, dim=d, metric="ip", progress=False, **fast)
    snaps: list[tuple[int, float]] = []  # (documents, seconds) of each index snapshot, for attribution
    snapshot = col._snapshot

    def timed_snapshot() -> None:
        t = time.perf_counter()
        snapshot()
        snaps.append((len(col._index), time.perf_counter() - t))

    col._snapshot = timed_snapshot
    windows, t_win, t0 = [], time.perf_counter(), time.perf_counter()
    for s in range(0, n, args.batch):
        e = min(n, s + args.batch)
        metas = [
            {"tenant": f"t{meta['tenant'][i]}", "tier": int(meta["tier"][i]), "score": float(meta["score"][i])}
            for i in range(s, e)
        ]
        col.add(xb[s:e], [f"document {i}" for i in range(s, e)], metas, [str(i) for i in range(s, e)])
        if e % 100_000 == 0 or e == n:
            now = time.perf_counter()
            windows.append({"docs": e, "vectors_per_s": (e - (windows[-1]["docs"] if windows else 0)) / (now - t_win)})
            t_win = now
            print(f"ingest {e}: {windows[-1]['vectors_per_s']:.0f}/s", flush=True)
    col.wait_for_index()
    res["ingest"] = {"seconds": time.perf_counter() - t0, "windows": windows, "snapshots": snaps}
    res["ingest"]["vectors_per_s"] = n / res["ingest"]["seconds"]
    res["disk_bytes_per_doc_after_ingest"] = col.stats()["bytes_disk"] / n
    save()
    # (2) optimize, disk
    if not args.skip_optimize or args.fast_ingest:
        t = time.perf_counter()
        col.optimize()
        res["optimize_s"] = time.perf_counter() - t
    if args.fast_ingest:  # reopen with the default settings
        col.close()
        col = Collection.open(path, progress=False)
    st = col.stats()
    raw = d * 4 + np.mean([len(f"document {i}") for i in range(1000)]) + 60  # vector + text + ~metadata JSON
    res["disk"] = {"bytes_per_doc": st["bytes_disk"] / n, "raw_bytes_per_doc": raw, "ratio": st["bytes_disk"] / n / raw}
    res["disk"]["files"] = {
        str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file() and p.stat().st_size > 1e6
    }
    print("disk", res["disk"], flush=True)
    save()
    return col


def search_phases(
    col: Collection, path: Path, xq, flts: dict, gts: dict, args: argparse.Namespace, res: dict, save
) -> None:
    """Phases (3)-(7)."""
    d = xq.shape[1]
    col.search(xq[0], k=10)  # warm
    # add throughput into the built collection (index updates, no rebuild: the next is at twice the build)
    rng = np.random.default_rng(7)
    times = []
    for b in range(args.marginal_batches):
        x = rng.standard_normal((args.batch, d)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = [f"m{b}-{i}" for i in range(args.batch)]
        t = time.perf_counter()
        col.add(x, [f"marginal {i}" for i in ids], [{"tenant": "writer", "tier": 99, "score": 2.0}] * args.batch, ids)
        times.append(time.perf_counter() - t)
    if times:
        res["marginal_adds"] = {
            "documents_before": col.count() - args.batch * len(times),
            "batch": args.batch,
            "vectors_per_s": args.batch * len(times) / sum(times),
            "batch_s_median": float(np.median(times)),
            "batch_s": times,
        }
        print("marginal adds", res["marginal_adds"]["vectors_per_s"], flush=True)
        col.delete(filter={"tenant": "writer"})
    save()
    # (3) without indexes
    res["search_no_index"] = {
        name: search_phase(col, xq[: args.nq_scan], fl[: args.nq_scan], gts[name]) for name, fl in flts.items()
    }
    print("no index", res["search_no_index"], flush=True)
    save()
    # (4) indexes
    res["create_index_s"] = {}
    for field, typ in (("tenant", "keyword"), ("score", "float"), ("tier", "integer")):
        t = time.perf_counter()
        col.create_index(field, typ)
        res["create_index_s"][field] = time.perf_counter() - t
    save()
    # (5) with indexes
    res["search_indexed"] = {name: search_phase(col, xq, fl, gts[name]) for name, fl in flts.items()}
    print("indexed", res["search_indexed"], flush=True)
    save()
    # (6) with a concurrent writer: as fast as it can ("search_indexed_writer"), then paced
    for rate in args.writer_rates.split(","):
        key = "search_indexed_writer" if rate == "max" else f"search_indexed_writer_{rate}_per_s"
        res[key] = {}
        for name, fl in flts.items():
            w = Writer(col, d, args.writer_batch, None if rate == "max" else float(rate))
            w.start()
            time.sleep(0.5)
            row = search_phase(col, xq, fl, gts[name], args.writer_seconds)
            w.stop.set()
            w.join()
            row["writer_docs_per_s"] = w.added / w.seconds
            row["writer_batches"] = w.batches
            res[key][name] = row
            print(key, name, row, flush=True)
            save()
    # (7) reopen
    col.close()
    t = time.perf_counter()
    col = Collection.open(path)
    t_open = time.perf_counter() - t
    col.search(xq[0], k=10, filter=flts["tenant_1pct"][0])
    res["reopen"] = {"open_s": t_open, "first_filtered_search_s": time.perf_counter() - t - t_open}
    res["indexes_after_reopen"] = col.list_indexes()
    col.close()


if __name__ == "__main__":
    main()
