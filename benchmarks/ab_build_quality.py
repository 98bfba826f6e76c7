"""Search quality of an index built by an older package copy against one built by the working tree, both
loaded and searched by the working tree, interleaved query by query (3 passes, order alternating): replicas,
posting sizes, recall@10, p50 and codes scanned at n_probe 8 and 16. Data: a bench_scale.py directory.

    git archive adbba6e spann_vectorstore | tar -x -C /tmp/ab_old
    python benchmarks/ab_build_quality.py [DATA_DIR] [OLD_PACKAGE_PARENT] [WORK_DIR]

Writes ``benchmarks/results/ab-build-quality-<date>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = r"""
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from spann_vectorstore import SpannIndex
x = np.load(sys.argv[2] + "/base.npy")
SpannIndex(x.shape[1], metric="ip", progress=False).build(x).save(sys.argv[3])
"""


def main() -> None:
    data = sys.argv[1] if len(sys.argv) > 1 else "/tmp/spann-scale/data-1000000-384-0"
    old = sys.argv[2] if len(sys.argv) > 2 else "/tmp/ab_old"
    work = sys.argv[3] if len(sys.argv) > 3 else "/tmp/s8"
    env = os.environ | {"SPANN_COLD_START": "compile"}
    for name, root in (("old", old), ("new", ROOT)):
        if not os.path.exists(f"{work}/idx1m_{name}/MANIFEST.json"):
            subprocess.run([sys.executable, "-c", BUILD, root, data, f"{work}/idx1m_{name}"], check=True, env=env)
    sys.path.insert(0, ROOT)
    from spann_vectorstore import SpannIndex

    idx = {n: SpannIndex.load(f"{work}/idx1m_{n}") for n in ("old", "new")}
    xq = np.load(data + "/queries.npy")
    gt = np.load(data + "/truth.npy")[:, :10]
    out = {}
    for n, i in idx.items():
        st = i.stats()
        out[n] = {key: st[key] for key in ("replicas_avg", "posting_size_avg", "posting_size_max", "heads")}
    for npr in (8, 16):
        ts = {"old": [], "new": []}
        ids = {"old": [], "new": []}
        ent = {"old": [], "new": []}
        for n in idx:
            idx[n].search(xq[:100], 10, n_probe=npr)
        for rep in range(3):
            for q in xq:
                for n in ("old", "new") if rep % 2 == 0 else ("new", "old"):
                    t = time.perf_counter()
                    r = idx[n].search(q, 10, n_probe=npr)
                    ts[n].append(time.perf_counter() - t)
                    if rep == 0:
                        ids[n].append(r.ids[0])
                        ent[n].append(r.stats["entries"][0])
        for n in idx:
            rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids[n], gt)]))
            out[n][f"n_probe {npr}"] = {
                "recall": rec,
                "p50_ms": float(np.median(ts[n]) * 1e3),
                "entries_mean": float(np.mean(ent[n])),
            }
    print(json.dumps(out, indent=1))
    fn = os.path.join(ROOT, "benchmarks", "results", time.strftime("ab-build-quality-%Y%m%d-%H%M%S.json"))
    with open(fn, "w") as f:
        json.dump({"kind": "ab-build-quality", "data": data, "old": old, **out}, f, indent=1)


if __name__ == "__main__":
    main()
