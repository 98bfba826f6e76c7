"""Same-process A/B of two versions of the package's index on one saved snapshot.

Copy the two package versions to ``DIR/sv_a`` and ``DIR/sv_b`` (all imports in the package are relative), e.g.
``git archive <rev> spann_vectorstore | tar -x -C /tmp/a && mv /tmp/a/spann_vectorstore DIR/sv_a``; both load
the same snapshot (written by either; the format is shared) and answer the same queries, alternating per query
(single) and per round (batch), so machine load hits both alike. Reports sums of per-query minima over the
rounds and medians of per-round ratios; also checks that each version gives the same ids single and batch.

    python benchmarks/ab_index.py DIR SNAPSHOT --data ../shared/data --n-probe 30 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("packages", help="directory holding sv_a/ and sv_b/")
    ap.add_argument("snapshot", help="an index snapshot directory (SpannIndex.save)")
    ap.add_argument("--data", required=True, help="directory with queries.npy (and gt.npy for recall)")
    ap.add_argument("--n-probe", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None, help="directory for the JSON result")
    args = ap.parse_args()
    sys.path.insert(0, args.packages)
    from sv_a.index import SpannIndex as IndexA
    from sv_b.index import SpannIndex as IndexB

    q = np.load(Path(args.data) / "queries.npy").astype(np.float32)
    ia, ib = IndexA.load(args.snapshot), IndexB.load(args.snapshot)
    npr = args.n_probe
    for idx in (ia, ib):  # compile and warm
        for i in range(50):
            idx.search(q[i], 10, n_probe=npr)
        idx.search(q, 10, n_probe=npr)
    res: dict = {"n_probe": npr, "queries": len(q), "rounds": args.rounds}
    batch = [idx.search(q, 10, n_probe=npr).ids for idx in (ia, ib)]
    res["same_ids_a_b"] = float((batch[0] == batch[1]).mean())
    for name, idx, b in (("a", ia, batch[0]), ("b", ib, batch[1])):
        single = np.stack([idx.search(q[i], 10, n_probe=npr).ids[0] for i in range(len(q))])
        res[f"single_equals_batch_{name}"] = float((single == b).all(axis=1).mean())
    gt = Path(args.data) / "gt.npy"
    if gt.exists():
        truth = np.load(gt)[:, :10]
        res["recall_at_10_b"] = float(np.mean([len(set(r) & set(t)) / 10 for r, t in zip(batch[1], truth)]))
    ta, tb = np.full(len(q), np.inf), np.full(len(q), np.inf)
    for rnd in range(args.rounds):
        for i in range(len(q)):
            pair = ((ia, ta), (ib, tb)) if (i + rnd) % 2 else ((ib, tb), (ia, ta))
            for idx, t in pair:
                t0 = time.perf_counter()
                idx.search(q[i], 10, n_probe=npr)
                t[i] = min(t[i], time.perf_counter() - t0)
    res["single_ms_total"] = {"a": ta.sum() * 1e3, "b": tb.sum() * 1e3}
    res["single_b_over_a"] = float(tb.sum() / ta.sum())
    ba, bb = [], []
    for rnd in range(2 * args.rounds - 1):
        for idx, acc in ((ia, ba), (ib, bb)) if rnd % 2 else ((ib, bb), (ia, ba)):
            t0 = time.perf_counter()
            idx.search(q, 10, n_probe=npr)
            acc.append(time.perf_counter() - t0)
    res["batch_ms_min"] = {"a": min(ba) * 1e3, "b": min(bb) * 1e3}
    res["batch_b_over_a_median"] = float(np.median(np.array(bb) / np.array(ba)))
    print(json.dumps(res, indent=1))
    if args.out:
        out = Path(args.out) / f"ab-index-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(res, indent=1))
        print("wrote", out)


if __name__ == "__main__":
    main()
