"""Search-time posting limit (issue 19): single-query p50/p99 latency and recall@10 with and without a cap on
the entries read per posting, at fixed ``n_probe`` and at the calibrated default target.

Two sets: ``../shared/data`` as built (postings within 4x the mean: the build caps them), and a skewed one:
an index built on ``--skew-base`` synthetic vectors that then grows by ``add`` with as many vectors again from
a few "hot" clusters only, so the postings there grow towards the split size (5x the build's mean), the
long postings a posting limit is for. Its queries come from the grown mix (half from the hot clusters).

Per set, one index (postings ordered by distance to their head) is searched with each limit (``posting_limit``
per call; ``none`` reads every entry); the default target is calibrated once per limit (a copy of the index
with that limit, calibration measured with it in force). Latency: each query's time is the median over
``--rounds`` interleaved rounds (every configuration once per round), then p50/p99 over queries.

    python benchmarks/bench_posting_limit.py --data ../shared/data --skew-base 100000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spann_vectorstore import SpannIndex
from spann_vectorstore.evaluation import exact_topk, recall_at_k, synthetic_dataset

FACTORS = (None, 3.0, 2.0, 1.5)  # posting limits in build mean posting lengths (None: no limit)


def skewed_set(n: int, d: int, nq: int, hot: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(base, grow, queries)``: ``base`` from ``synthetic_dataset`` (n vectors around n/1000 equal clusters),
    ``grow`` n more vectors around a fraction ``hot`` of those clusters, queries half from each."""
    base, q0, _ = synthetic_dataset(n, d, nq, seed=seed, k_truth=1)
    rng = np.random.default_rng(seed + 1)
    # the clusters' centres, recovered as the normalised means of the base around a few seeds would be
    # approximate; instead draw fresh hot centres near base vectors (a base vector is its cluster's centre
    # plus noise, so its neighbourhood is that cluster)
    n_hot = max(1, round(hot * max(1, n // 1000)))
    centres = base[rng.choice(n, n_hot, replace=False)]
    scale = np.float32(0.7 / np.sqrt(d))

    def draw(m: int) -> np.ndarray:
        x = centres[rng.integers(0, n_hot, m)] + scale * rng.standard_normal((m, d), dtype=np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    grow = draw(n)
    queries = np.concatenate([q0[: nq // 2], draw(nq - nq // 2)])
    return base, grow, queries


def latencies(idx: SpannIndex, q: np.ndarray, configs: dict[str, dict], rounds: int) -> dict[str, np.ndarray]:
    """Per query, the median over rounds of its single-query time (s), per configuration; rounds interleave
    the configurations so load hits all alike."""
    times = {name: np.zeros((rounds, len(q))) for name in configs}
    for kw in configs.values():  # warm: compiled kernels, pages of the vectors, plans
        for x in q[:50]:
            idx.search(x, 10, **kw)
    clock = time.perf_counter
    for r in range(rounds):
        for name, kw in configs.items():
            t = times[name][r]
            for i, x in enumerate(q):
                t0 = clock()
                idx.search(x, 10, **kw)
                t[i] = clock() - t0
    return {name: np.median(t, axis=0) for name, t in times.items()}


def run(name: str, idx: SpannIndex, q: np.ndarray, truth: np.ndarray, rounds: int) -> dict:
    sizes = idx._arena.size
    mean = idx._build_mean
    out: dict = {
        "set": name,
        "count": len(idx),
        "heads": idx.n_heads,
        "build_mean_posting": mean,
        "posting_size": {
            "mean": float(sizes.mean()),
            "p99": float(np.percentile(sizes, 99)),
            "max": int(sizes.max()),
            "over_3x_build_mean": float((sizes > 3 * mean).mean()),
            "over_2x_build_mean": float((sizes > 2 * mean).mean()),
        },
        "ordered_before_save": idx._arena.ordered(),  # the save below compacts: every posting ordered
        "rows": [],
    }
    print(name, json.dumps(out["posting_size"]), flush=True)
    limits = {f: (None if f is None else max(32, math.ceil(f * mean))) for f in FACTORS}
    # the default target per limit: calibrated on a copy of the index with that limit in force
    targets = {}
    with tempfile.TemporaryDirectory() as tmp:
        idx.save(tmp)
        for f, lim in limits.items():
            cp = SpannIndex.load(tmp, mmap=False)
            cp.params["posting_limit"] = lim
            cp.calibrate()
            targets[f] = cp.stats()["calibration"]
    configs: dict[str, dict] = {}
    meta: dict[str, dict] = {}
    for f, lim in limits.items():
        pl = lim if lim is not None else 2**40
        label = "none" if f is None else f"{f:g}x"
        for npr in (16, 32):
            configs[f"{label} n_probe {npr}"] = {"n_probe": npr, "posting_limit": pl}
            meta[f"{label} n_probe {npr}"] = {"limit_factor": f, "limit": lim, "n_probe": npr, "max_dist_ratio": 1.5}
        cal = targets[f]
        mdr = cal["max_dist_ratio_at_target"]
        mdr = math.inf if mdr is None else mdr  # stats() reports no pruning as None; search(None) = the default
        key = f"{label} target {cal['target_recall']}"
        configs[key] = {"n_probe": cal["n_probe_at_target"], "max_dist_ratio": mdr, "posting_limit": pl}
        meta[key] = {"limit_factor": f, "limit": lim, "n_probe": cal["n_probe_at_target"]}
        meta[key]["max_dist_ratio"] = None if math.isinf(mdr) else mdr
        meta[key]["target"] = cal["target_recall"]
    lat = latencies(idx, q, configs, rounds)
    for key, kw in configs.items():
        res = idx.search(q, 10, **kw)
        row = {
            "config": key,
            **meta[key],
            "recall": recall_at_k(res.ids, truth, 10),
            "p50_ms": float(np.percentile(lat[key], 50) * 1e3),
            "p99_ms": float(np.percentile(lat[key], 99) * 1e3),
            "mean_ms": float(lat[key].mean() * 1e3),
            "entries_mean": float(res.stats["entries"].mean()),
            "entries_p99": float(np.percentile(res.stats["entries"], 99)),
            "exact_p99": float(np.percentile(res.stats["exact"], 99)),
        }
        out["rows"].append(row)
        print(name, json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="directory with base.npy, queries.npy (../shared/data)")
    ap.add_argument("--skew-base", type=int, default=0, help="skewed set: base size (grows 2x by hot adds)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--hot", type=float, default=0.02, help="fraction of clusters the growth goes to")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    if args.data:
        d = Path(args.data)
        xb = np.load(d / "base.npy").astype(np.float32)
        xq = np.load(d / "queries.npy").astype(np.float32)[: args.queries]
        truth, _ = exact_topk(xb, xq, 10, "ip")
        t0 = time.perf_counter()
        idx = SpannIndex(xb.shape[1], progress=False).build(xb)
        r = run(f"{d.name} {xb.shape[0]}x{xb.shape[1]}", idx, xq, truth, args.rounds)
        results.append(r | {"build_s": time.perf_counter() - t0})
    if args.skew_base:
        n = args.skew_base
        base, grow, xq = skewed_set(n, args.dim, args.queries, args.hot, seed=5)
        idx = SpannIndex(args.dim, progress=False).build(base)
        t0 = time.perf_counter()
        for s in range(0, n, 1000):
            idx.add(grow[s : s + 1000], np.arange(n + s, n + min(n, s + 1000)))
        add_s = time.perf_counter() - t0
        truth, _ = exact_topk(np.concatenate([base, grow]), xq, 10, "ip")
        name = f"synthetic {n}x{args.dim} grown 2x by adds to {args.hot:.0%} of clusters"
        results.append(run(name, idx, xq, truth, args.rounds) | {"add_s": add_s})
    doc = {"results": results, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.out:
        out = Path(args.out) / f"posting-limit-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(doc, indent=1, default=float))
        print("wrote", out)


if __name__ == "__main__":
    main()
