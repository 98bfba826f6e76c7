"""Benchmark ``spann_vectorstore.distributed.ShardedCollection``: 1 vs 2 vs 4 shards, and the fan-out overhead.

Run from the repository root with the project venv::

    /work/venv/bin/python benchmarks/bench_distributed.py                 # 100k of ../shared/data, 1/2/4 shards
    /work/venv/bin/python benchmarks/bench_distributed.py --quick         # 20k vectors, 300 queries
    /work/venv/bin/python benchmarks/bench_distributed.py --shards 1,2,4,8 --n 50000
    /work/venv/bin/python benchmarks/bench_distributed.py --synthetic 200000   # clustered synthetic data
    # a real cluster (start it with `ray start --head` / `ray start --address=...` on the nodes first):
    /work/venv/bin/python benchmarks/bench_distributed.py --address auto --path /mnt/shared/bench-shards

Data: ``../shared/data`` (base.npy, queries.npy, gt.npy; inner product) when present, else (or with
``--synthetic N``) seeded clustered vectors from ``spann_vectorstore.evaluation.synthetic_dataset``.
Ground truth: ``gt.npy`` for the full base, brute force for a prefix.

Per shard count S (each in a fresh directory, default Collection settings: bits=1, default n_probe):

1. Ingest: ``add`` in batches of ``--add-batch`` from the driver (ids ``str(i)``); every shard builds its own
   index as it grows (first at ``index_threshold``, then at each doubling). Then ``close()`` and
   ``ShardedCollection.open`` (new actors loading the snapshots): every configuration is measured from the
   state a restart gives.
2. ``fanout_noop_ms``: a no-op call to every shard and back (``ray.get`` of S ``ping`` calls): Ray's floor.
3. Single-query latency: one ``search(q, 10)`` per call from the driver, ``--single`` queries after
   ``--warmup``; p50/p99/mean and QPS (1 / mean).
4. Batch throughput: all queries in one ``search(xq, 10)`` call (each shard gets the whole batch once), best of
   ``--batch-repeats``.
5. Concurrent throughput: ``--clients`` driver threads issuing single queries at once.
6. recall@10 of the merged results.

Fan-out overhead per query: for S=1 the shard directory is copied (after the close, so the copy holds the same
snapshot) and opened as a plain ``Collection`` in the driver; single queries alternate between the sharded
collection and the direct one (so load changes on a shared machine hit both alike). Overhead = p50 (and mean)
of sharded-with-1-shard minus direct.

Threads: the direct Collection runs with ``--threads`` numba/OpenBLAS threads (``bench.set_threads``); shard
actors keep their process defaults (numba: all cores of the node; Ray sets OMP/OpenBLAS to 1 thread). On one
machine all shards share its cores: more shards cannot add CPU, they show the fan-out cost and the parallelism
of smaller per-shard searches. On a cluster each node's cores serve its own shards.

Output: ``benchmarks/results/distributed-<YYYYmmdd-HHMMSS>.json`` (machine info, config, one row per S, the
direct baseline) and a table on stdout.
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

os.environ.setdefault("SPANN_COLD_START", "compile")  # steady-state search: no exact answers during compiles

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
K = 10

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import log, set_threads  # noqa: E402

from spann_vectorstore.evaluation import exact_topk, recall_at_k, synthetic_dataset  # noqa: E402


def timed(fns: list, xq: np.ndarray, warmup: int) -> tuple[list[np.ndarray], list[list[list[str]]]]:
    """Seconds per single-query call and the ids returned, for each of ``fns``; with several, they alternate
    query by query (in alternating order), so load changes on a shared machine hit all alike."""
    for i in range(warmup):
        for fn in fns:
            fn(xq[i % len(xq)])
    lat = [np.empty(len(xq)) for _ in fns]
    ids: list[list[list[str]]] = [[] for _ in fns]
    for i, q in enumerate(xq):
        for j in range(len(fns)) if i % 2 == 0 else reversed(range(len(fns))):
            t0 = time.perf_counter()
            hits = fns[j](q)
            lat[j][i] = time.perf_counter() - t0
            ids[j].append([h.id for h in hits])
    return lat, ids


def batch_qps(search_batch, xq: np.ndarray, repeats: int) -> tuple[float, list[list[str]]]:
    search_batch(xq[: min(len(xq), 50)])  # warm-up
    best = float("inf")
    res: list = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        res = search_batch(xq)
        best = min(best, time.perf_counter() - t0)
    return len(xq) / best, [[h.id for h in hits] for hits in res]


def concurrent_qps(search_one, xq: np.ndarray, clients: int) -> float:
    """Queries per second with ``clients`` threads each issuing single queries (its share of ``xq``)."""
    parts = np.array_split(np.arange(len(xq)), clients)
    barrier = threading.Barrier(clients + 1)

    def run(rows: np.ndarray) -> None:
        barrier.wait()
        for r in rows:
            search_one(xq[r])

    threads = [threading.Thread(target=run, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return len(xq) / (time.perf_counter() - t0)


def summary(lat: np.ndarray) -> dict[str, float]:
    ms = lat * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "qps_single": float(1e3 / ms.mean()),
    }


def as_rows(ids: list[list[str]]) -> np.ndarray:
    out = np.full((len(ids), K), -1, np.int64)
    for i, row in enumerate(ids):
        out[i, : len(row)] = [int(x) for x in row[:K]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", default="1,2,4", help="shard counts to compare (default 1,2,4)")
    ap.add_argument("--n", type=int, default=None, help="base vectors (default 100000; --quick 20000)")
    ap.add_argument("--nq", type=int, default=None, help="queries (default 1000; --quick 300)")
    ap.add_argument("--single", type=int, default=None, help="single queries timed (default: all nq)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--synthetic", type=int, default=None, help="use N synthetic clustered vectors (dim 384)")
    ap.add_argument("--add-batch", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4, help="driver threads for the concurrent-query row")
    ap.add_argument("--threads", type=int, default=bench.available_cores(), help="threads of the direct baseline")
    ap.add_argument(
        "--shard-threads",
        type=int,
        default=None,
        help="NUMBA_NUM_THREADS of each shard actor (runtime_env); default: the process default (all cores)",
    )
    ap.add_argument("--address", default=None, help="ray.init(address=...) of a running cluster ('auto', ...)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--path", type=Path, default=None, help="directory for the shards (shared FS on a cluster)")
    ap.add_argument("--keep", action="store_true", help="keep the shard directories")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    shard_counts = [int(s) for s in args.shards.split(",") if s.strip()]
    n = args.n if args.n is not None else (20_000 if args.quick else 100_000)
    nq = args.nq if args.nq is not None else (300 if args.quick else 1000)

    import ray

    from spann_vectorstore import Collection
    from spann_vectorstore.distributed import ShardedCollection

    if args.synthetic is None and (args.data / "base.npy").exists():
        xb, xq, gt = bench.load_real(args.data)
        dataset = "shared-data"
    else:
        xb, xq, gt = synthetic_dataset(args.synthetic or n, 384, nq, seed=0, noise=0.7)
        dataset = "synthetic"
    if n < len(xb):
        xb = xb[:n]
        gt = exact_topk(xb, xq[:nq], K)[0]
    n, xq, gt = len(xb), xq[:nq], gt[:nq]
    nq = len(xq)
    n_single = min(args.single or nq, nq)
    log(f"data: {dataset}, {n:,} x {xb.shape[1]}, {nq} queries ({n_single} timed one by one)")

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    cluster = {"resources": ray.cluster_resources(), "nodes": len([x for x in ray.nodes() if x["Alive"]])}
    worker_threads = ray.get(ray.remote(num_cpus=0)(lambda: __import__("numba").get_num_threads()).remote())
    info = bench.machine_info(args)
    info |= {"ray": ray.__version__, "ray_address": args.address, "cluster": cluster}
    info["worker_numba_threads"] = worker_threads
    log(f"ray: {cluster}")
    set_threads(args.threads)

    actor_options = None
    if args.shard_threads:
        actor_options = {"runtime_env": {"env_vars": {"NUMBA_NUM_THREADS": str(args.shard_threads)}}}
    root = args.path or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    rows: list[dict[str, Any]] = []
    direct: dict[str, Any] | None = None
    try:
        for s in shard_counts:
            path = root / f"s{s}"
            shutil.rmtree(path, ignore_errors=True)
            t0 = time.perf_counter()
            sc = ShardedCollection(path, s, metric="ip", actor_options=actor_options)
            start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for b in range(0, n, args.add_batch):
                e = min(n, b + args.add_batch)
                sc.add(xb[b:e], ids=[str(i) for i in range(b, e)])
            ingest_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sc.close()
            close_s = time.perf_counter() - t0
            copy = None
            if s == 1:  # the direct baseline: the same files, opened in the driver
                copy = root / "direct"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(path / "shard-0", copy, ignore=shutil.ignore_patterns("LOCK"))
            t0 = time.perf_counter()
            sc = ShardedCollection.open(path, actor_options=actor_options)
            reopen_s = time.perf_counter() - t0
            st = sc.stats()
            log(f"S={s}: ingest {ingest_s:.1f}s ({n / ingest_s:,.0f} vec/s), reopen {reopen_s:.1f}s")

            fan = []
            for i in range(330):
                t0 = time.perf_counter()
                ray.get([a.ping.remote() for a in sc.actors])
                if i >= 30:
                    fan.append(time.perf_counter() - t0)
            row: dict[str, Any] = {
                "shards": s,
                "start_s": start_s,
                "ingest_s": ingest_s,
                "ingest_vectors_per_s": n / ingest_s,
                "close_s": close_s,
                "reopen_s": reopen_s,
                "shard_counts": [x["count"] for x in st["shards"]],
                "shard_heads": [x["index"]["heads"] if x["index"] else 0 for x in st["shards"]],
                "fanout_noop_ms": float(np.median(fan) * 1e3),
                "fanout_noop_p99_ms": float(np.percentile(fan, 99) * 1e3),
                "loadavg_1m": os.getloadavg()[0],
            }

            def sharded_one(q, sc=sc):
                return sc.search(q, K)

            if copy is not None:
                coll = Collection(copy)

                def direct_one(q, coll=coll):
                    return coll.search(q, K)

                (lat_s, lat_d), (ids_single, _) = timed([sharded_one, direct_one], xq[:n_single], args.warmup)
                direct = {"method": "direct Collection (same files as the 1-shard collection)"} | summary(lat_d)
                direct["qps_batch"], ids_d = batch_qps(lambda x, c=coll: c.search(x, K), xq, args.batch_repeats)
                direct["recall_at_10"] = recall_at_k(as_rows(ids_d), gt, K)
                direct["qps_concurrent"] = concurrent_qps(direct_one, xq, args.clients)
                coll.close()
            else:
                (lat_s,), (ids_single,) = timed([sharded_one], xq[:n_single], args.warmup)
            row |= summary(lat_s)
            row["recall_at_10_single"] = recall_at_k(as_rows(ids_single), gt[:n_single], K)
            row["qps_batch"], ids_b = batch_qps(lambda x, sc=sc: sc.search(x, K), xq, args.batch_repeats)
            row["recall_at_10"] = recall_at_k(as_rows(ids_b), gt, K)
            row["qps_concurrent"] = concurrent_qps(sharded_one, xq, args.clients)
            if copy is not None and direct is not None:
                row["overhead_vs_direct_p50_ms"] = row["p50_ms"] - direct["p50_ms"]
                row["overhead_vs_direct_mean_ms"] = row["mean_ms"] - direct["mean_ms"]
            sc.close()
            rows.append(row)
            log(
                f"S={s}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, batch {row['qps_batch']:,.0f} QPS, "
                f"{args.clients} clients {row['qps_concurrent']:,.0f} QPS, recall {row['recall_at_10']:.3f}, "
                f"no-op fan-out {row['fanout_noop_ms']:.2f} ms"
            )
    finally:
        if not args.keep and args.path is None:
            shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()

    info["loadavg_end"] = os.getloadavg()
    out = {
        "benchmark": "distributed",
        "machine": info,
        "config": {
            "dataset": dataset,
            "n": n,
            "dim": int(xb.shape[1]),
            "nq": nq,
            "n_single": n_single,
            "k": K,
            "metric": "ip",
            "collection": "defaults (bits=1, default n_probe, index_threshold 4096, rebuild_growth 2)",
            "add_batch": args.add_batch,
            "clients": args.clients,
            "threads_direct": args.threads,
            "shard_numba_threads": args.shard_threads or worker_threads,
        },
        "direct": direct,
        "sharded": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    file = args.out_dir / f"distributed-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    file.write_text(json.dumps(out, indent=2) + "\n")

    print(f"\n{dataset}: {n:,} x {xb.shape[1]}, {nq} queries, k={K}; machine load {info['loadavg_start']}")
    head = f"{'config':<10}{'p50 ms':>9}{'p99 ms':>9}{'QPS 1-by-1':>11}{'batch QPS':>11}"
    print(head + f"{f'{args.clients} clients':>11}{'recall':>8}{'no-op fan-out':>15}{'ingest s':>10}")
    table = ([("direct", direct)] if direct else []) + [(f"{r['shards']} shard(s)", r) for r in rows]
    for name, r in table:
        fan = f"{r['fanout_noop_ms']:.2f} ms" if "fanout_noop_ms" in r else "-"
        ing = f"{r['ingest_s']:.1f}" if "ingest_s" in r else "-"
        print(
            f"{name:<10}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['qps_single']:>11,.0f}{r['qps_batch']:>11,.0f}"
            f"{r['qps_concurrent']:>11,.0f}{r['recall_at_10']:>8.3f}{fan:>15}{ing:>10}"
        )
    one = next((r for r in rows if r["shards"] == 1 and "overhead_vs_direct_p50_ms" in r), None)
    if one:
        print(
            f"fan-out overhead per query (1 shard vs direct, interleaved): p50 +{one['overhead_vs_direct_p50_ms']:.2f} "
            f"ms, mean +{one['overhead_vs_direct_mean_ms']:.2f} ms"
        )
    print(f"results: {file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
