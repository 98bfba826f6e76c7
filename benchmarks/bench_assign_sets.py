"""Same replica sets as brute force (issue 20): how often the grouped candidate search gives a row exactly the
replica set that scoring every head gives, and how close it is when not.

For a data set: heads as a build makes them (``hierarchical_heads`` at the default head ratio, grouped by
``HeadTable``), then for a sample of rows the RNG-rule replica sets from (a) every head scored (brute force)
and (b) the members of the row's ``--groups`` nearest head groups, for each ``candidates`` value. Reported:
the fraction of rows with the identical set, with the identical nearest head, and the mean Jaccard overlap;
and the time per row of each.

    python benchmarks/bench_assign_sets.py --data ../shared/data --forced
    python benchmarks/bench_assign_sets.py --data /tmp/spann-scale/data-1000000-384-0

``--forced``: group even below ``GROUPED_MIN_HEADS`` (../shared/data has ~2.5k heads at the default ratio:
its builds score every head). Results: ``benchmarks/results/assign-sets-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sets(x, heads, groups, candidates, n_groups, replicas, rng_factor):
    from spann_vectorstore import _kernels as K
    from spann_vectorstore import clustering as CL

    out = np.empty((x.shape[0], replicas), np.int64)
    t = time.perf_counter()
    for s, e, ci, cd in CL.nearest_candidates(x, heads, candidates, groups=groups, n_groups=n_groups):
        K.rng_select(ci, cd, heads, replicas, rng_factor, out[s:e])
    return out, time.perf_counter() - t


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    same = np.mean([set(r[r >= 0]) == set(q[q >= 0]) for r, q in zip(a, b)])
    jac = np.mean([len(set(r[r >= 0]) & set(q[q >= 0])) / len(set(r[r >= 0]) | set(q[q >= 0])) for r, q in zip(a, b)])
    return {"same_set": float(same), "same_nearest": float(np.mean(a[:, 0] == b[:, 0])), "jaccard": float(jac)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a directory with base.npy")
    ap.add_argument("--sample", type=int, default=20000)
    ap.add_argument("--candidates", default="64,32")
    ap.add_argument("--groups", default="16,24,32")
    ap.add_argument("--forced", action="store_true", help="group below GROUPED_MIN_HEADS too")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from spann_vectorstore import clustering as CL
    from spann_vectorstore._heads import HeadTable
    from spann_vectorstore.index import SpannIndex, auto_head_ratio

    if args.forced:
        CL.GROUPED_MIN_HEADS = 2
    x = np.load(Path(args.data) / "base.npy", mmap_mode="r")
    if x.dtype != np.float32:  # ../shared/data is float16: converted as a build converts it
        x = np.asarray(x, np.float32)
    n, d = x.shape
    defaults = SpannIndex(d, metric="ip").params
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    target = max(1, round(1 / auto_head_ratio(n)))
    heads = CL.hierarchical_heads(x, target_size=target, rng=rng)
    table = HeadTable(d, args.seed)
    table.reset(heads)
    print(f"{n} x {d}: {len(heads)} heads, {table.n_groups} groups ({time.perf_counter() - t:.0f} s)", flush=True)
    sample = np.asarray(x[np.sort(rng.choice(n, min(args.sample, n), replace=False))], np.float32)
    rows = []
    for cand in [int(c) for c in args.candidates.split(",")]:
        brute, tb = sets(sample, heads, None, cand, 0, defaults["replica_count"], defaults["rng_factor"])
        for g in [int(v) for v in args.groups.split(",")]:
            grouped, tg = sets(sample, heads, table.groups, cand, g, defaults["replica_count"], defaults["rng_factor"])
            row = {"candidates": cand, "groups": g, **compare(grouped, brute)}
            row.update(brute_us_per_row=1e6 * tb / len(sample), grouped_us_per_row=1e6 * tg / len(sample))
            row["replicas_brute"] = float((brute >= 0).sum(1).mean())
            row["replicas_grouped"] = float((grouped >= 0).sum(1).mean())
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "data": str(args.data),
        "n": n,
        "dim": d,
        "heads": len(heads),
        "head_groups": table.n_groups,
        "sample": len(sample),
        "forced": args.forced,
        "rows": rows,
    }
    res = ROOT / "benchmarks" / "results" / f"assign-sets-{time.strftime('%Y%m%d-%H%M%S')}.json"
    res.write_text(json.dumps(out, indent=1))
    print("wrote", res)


if __name__ == "__main__":
    main()
