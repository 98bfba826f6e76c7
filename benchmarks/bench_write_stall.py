"""Searches while a writer adds (issue 20, "writes block searches"): how long single searches wait while
batches of documents go in and the Collection writes its index snapshots, for one or more versions of the
package on the same store (an A/B across commits).

    python benchmarks/bench_write_stall.py --n 500000 --code .,/tmp/ab_base

Data: ``evaluation.synthetic_source`` (384-d, inner product), texts ``"document <i>"``, metadata
``{"tier": i % 10}``. A store of ``--n`` documents is made once (batches of 10,000, then ``optimize()``) in
``--work``; each version in ``--code`` (a directory holding ``spann_vectorstore/``) runs in its own process
on a fresh copy of it, alternating ``--rounds`` times:

* one thread searches without pause (one query per call, queries from the held-out set), recording each
  search's latency;
* the main thread adds ``--adds`` new documents in batches of ``--batch`` with ``snapshot_every`` set to
  ``--snapshot-every``, so the adds write ``adds / snapshot_every`` snapshots of the whole index.

Reported per run: search latency p50/p99/max, searches over 100 ms and over 1 s, the writer's documents/s,
the slowest add, the number of snapshots written. JSON: ``benchmarks/results/write-stall-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def prepare(work: Path, n: int, dim: int, adds: int) -> Path:
    """The store of n documents (made with this checkout's package) and the data for the runs."""
    sys.path.insert(0, str(ROOT))
    from spann_vectorstore import Collection
    from spann_vectorstore.evaluation import synthetic_source

    store = work / f"store-{n}-{dim}"
    if (store / "done").exists():
        return store
    shutil.rmtree(store, ignore_errors=True)
    draw = synthetic_source(n + adds, dim, seed=0)
    x, q = draw(n + adds), draw(1000)
    np.save(work / f"extra-{n}-{dim}.npy", x[n:])
    np.save(work / f"queries-{n}-{dim}.npy", q)
    t0 = time.perf_counter()
    # documents first (no index), then one build: adds into a tiny early index would split for minutes
    big = 10**9
    col = Collection(store / "c", dim=dim, metric="ip", snapshot_every=big, index_threshold=big, rebuild_growth=None)
    step = 10_000
    for s in range(0, n, step):
        e = min(n, s + step)
        col.add(x[s:e], texts=[f"document {i}" for i in range(s, e)], metadatas=[{"tier": i % 10} for i in range(s, e)],
                ids=[str(i) for i in range(s, e)])  # fmt: skip
    col.optimize()
    col.close()
    (store / "done").write_text("")
    log(f"store of {n} documents made in {time.perf_counter() - t0:.0f} s")
    return store


def child(store: Path, extra: Path, queries: Path, batch: int, snapshot_every: int) -> dict:
    from spann_vectorstore import Collection

    xa = np.load(extra)
    xq = np.load(queries)
    col = Collection(store, snapshot_every=snapshot_every, rebuild_growth=None)
    for q in xq[:200]:
        col.search(q, k=10)  # warm
    lat: list[float] = []
    stop = threading.Event()

    def searcher() -> None:
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            col.search(xq[i % len(xq)], k=10)
            lat.append(time.perf_counter() - t)
            i += 1

    th = threading.Thread(target=searcher)
    th.start()
    time.sleep(1.0)
    add_s = []
    snaps = 0
    snap_dir = (store / "index" / "MANIFEST.json").read_text()
    t0 = time.perf_counter()
    n0 = len(col)
    for s in range(0, len(xa), batch):
        e = min(len(xa), s + batch)
        t = time.perf_counter()
        col.add(xa[s:e], texts=[f"new {i}" for i in range(s, e)], metadatas=[{"tier": 99}] * (e - s),
                ids=[f"new-{i}" for i in range(s, e)])  # fmt: skip
        add_s.append(time.perf_counter() - t)
        m = (store / "index" / "MANIFEST.json").read_text()
        if m != snap_dir:
            snaps += 1
            snap_dir = m
    wall = time.perf_counter() - t0
    time.sleep(1.0)
    stop.set()
    th.join()
    col.close()
    a = np.array(lat)
    return {
        "docs_before": n0,
        "added": len(xa),
        "snapshots": snaps,
        "writer_docs_per_s": len(xa) / wall,
        "add_max_s": float(max(add_s)),
        "add_p50_s": float(np.median(add_s)),
        "searches": len(a),
        "search_p50_ms": float(np.percentile(a, 50) * 1e3),
        "search_p99_ms": float(np.percentile(a, 99) * 1e3),
        "search_max_ms": float(a.max() * 1e3),
        "searches_over_100ms": int((a > 0.1).sum()),
        "searches_over_1s": int((a > 1.0).sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--adds", type=int, default=40_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--snapshot-every", type=int, default=10_000)
    p.add_argument("--code", default=".", help="comma-separated package trees to compare (A/B)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--work", default="/tmp/spann-stall")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        store, extra, queries, batch, every = args.child
        print(json.dumps(child(Path(store), Path(extra), Path(queries), int(batch), int(every))))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = prepare(work, args.n, args.dim, args.adds)
    extra, queries = work / f"extra-{args.n}-{args.dim}.npy", work / f"queries-{args.n}-{args.dim}.npy"
    codes = [str(Path(c).resolve()) for c in args.code.split(",")]
    out = {"kind": "write-stall", "n": args.n, "dim": args.dim, "adds": args.adds, "batch": args.batch,
           "snapshot_every": args.snapshot_every, "cores": os.cpu_count(), "runs": []}  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"write-stall-{stamp}.json"
    for r in range(args.rounds):
        for code in codes:
            run_dir = work / "run"
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(store / "c", run_dir)
            rev = subprocess.run(["git", "-C", code, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
            env = os.environ | {"PYTHONPATH": code, "SPANN_COLD_START": "compile"}
            load = os.getloadavg()[0]
            res = subprocess.run(
                [sys.executable, __file__, "--child", str(run_dir), str(extra), str(queries), str(args.batch),
                 str(args.snapshot_every)], env=env, cwd=code, stdout=subprocess.PIPE, text=True, check=True,
            )  # fmt: skip
            row = {"round": r, "code": code, "rev": rev.stdout.strip(), "load": load}
            row |= json.loads(res.stdout.strip().splitlines()[-1])
            out["runs"].append(row)
            log(
                f"round {r} {row['rev']}: search p50 {row['search_p50_ms']:.2f} ms p99 {row['search_p99_ms']:.1f} "
                f"max {row['search_max_ms']:.0f} ms, >1 s: {row['searches_over_1s']}, writer "
                f"{row['writer_docs_per_s']:.0f} docs/s, slowest add {row['add_max_s']:.1f} s, "
                f"{row['snapshots']} snapshots"
            )
            path.write_text(json.dumps(out, indent=1))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
