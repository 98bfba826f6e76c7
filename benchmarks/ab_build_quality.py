"""Search quality of an index built by an older package copy against one built by the working tree, both
loaded and searched by the working tree, interleaved query by query (3 passes, order alternating): replicas,
posting sizes, recall@10, p50 and codes scanned at n_probe 8 and 16. Data: a bench_scale.py directory.

    git archive adbba6e spann_vectorstore | tar -x -C /tmp/ab_old
    python benchmarks/ab_build_quality.py   # writes benchmarks/results/ab-build-quality-<date>.json
"""
import sys, time, json, os, subprocess, numpy as np
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = "/tmp/spann-scale/data-1000000-384-0"
B = r'''
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from spann_vectorstore import SpannIndex
x = np.load(sys.argv[2] + "/base.npy")
SpannIndex(384, metric="ip", progress=False).build(x).save(sys.argv[3])
'''
for name, root in (("old", "/tmp/ab_old"), ("new", ROOT)):
    if not os.path.exists(f"/tmp/s8/idx1m_{name}/MANIFEST.json"):
        subprocess.run([sys.executable, "-c", B, root, D, f"/tmp/s8/idx1m_{name}"], check=True, env=os.environ | {"SPANN_COLD_START": "compile"})
sys.path.insert(0, ROOT)
from spann_vectorstore import SpannIndex
idx = {n: SpannIndex.load(f"/tmp/s8/idx1m_{n}") for n in ("old", "new")}
xq = np.load(D + "/queries.npy"); gt = np.load(D + "/truth.npy")[:, :10]
out = {}
for n, i in idx.items():
    st = i.stats(); out[n] = {"replicas_avg": st["replicas_avg"], "posting_size_avg": st["posting_size_avg"], "posting_size_max": st["posting_size_max"], "heads": st["heads"]}
for npr in (8, 16):
    ts = {"old": [], "new": []}; ids = {"old": [], "new": []}; ent = {"old": [], "new": []}
    for n in idx: idx[n].search(xq[:100], 10, n_probe=npr)
    for rep in range(3):
        for q in xq:
            for n in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                t = time.perf_counter(); r = idx[n].search(q, 10, n_probe=npr); ts[n].append(time.perf_counter() - t)
                if rep == 0: ids[n].append(r.ids[0]); ent[n].append(r.stats["entries"][0])
    for n in idx:
        out[n][f"n_probe {npr}"] = {"recall": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids[n], gt)])), "p50_ms": float(np.median(ts[n]) * 1e3), "entries_mean": float(np.mean(ent[n]))}
print(json.dumps(out, indent=1))
fn = os.path.join(ROOT, "benchmarks", "results", time.strftime("ab-build-quality-%Y%m%d-%H%M%S.json"))
json.dump({"kind": "ab-build-quality", "data": D, "old": "/tmp/ab_old", **out}, open(fn, "w"), indent=1)
