"""Same-conditions A/B of the index build: an older copy of the package against the working tree, alternating.

    git archive adbba6e spann_vectorstore | tar -x -C /tmp/ab_old     # the package before session 8
    python benchmarks/ab_build.py /tmp/spann-scale/data-1000000-384-0 2 /tmp/ab_old

Each build runs in a fresh process (default parameters, metric ip) over ``base.npy`` of a ``bench_scale.py``
data directory, then single-query recall@10 and p50 at n_probe 8 and 16 against its ``truth.npy``; new and
old alternate so both see the same machine. Results: ``benchmarks/results/ab-build-<date>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

NEW = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from spann_vectorstore import SpannIndex
x = np.load(sys.argv[2] + "/base.npy")
xq = np.load(sys.argv[2] + "/queries.npy")
gt = np.load(sys.argv[2] + "/truth.npy")[:, :10]
t = time.perf_counter()
idx = SpannIndex(x.shape[1], metric="ip", progress=False).build(x)
out = {"build_s": time.perf_counter() - t, "heads": idx.n_heads}
for npr in (8, 16):
    ts, ids = [], []
    for q in xq:
        t0 = time.perf_counter()
        ids.append(idx.search(q, 10, n_probe=npr).ids[0])
        ts.append(time.perf_counter() - t0)
    rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)]))
    out[f"n_probe {npr}"] = {"recall": rec, "p50_ms": float(np.median(ts) * 1e3)}
print(json.dumps(out))
"""


def main() -> None:
    data = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    old = sys.argv[3] if len(sys.argv) > 3 else "/tmp/ab_old"
    rows = []
    for r in range(rounds):
        for name, root in (("new", NEW), ("old", old)):
            env = os.environ | {"SPANN_COLD_START": "compile"}
            p = subprocess.run([sys.executable, "-c", CHILD, root, data], capture_output=True, text=True, env=env)
            row = {
                "code": name,
                "round": r,
                "load": os.getloadavg()[0],
                **json.loads(p.stdout.strip().splitlines()[-1]),
            }
            print(row, flush=True)
            rows.append(row)
    out = os.path.join(NEW, "benchmarks", "results", time.strftime("ab-build-%Y%m%d-%H%M%S.json"))
    with open(out, "w") as f:
        json.dump({"kind": "ab-build", "data": data, "old": old, "rows": rows}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
