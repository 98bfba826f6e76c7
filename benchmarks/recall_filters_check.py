"""Recheck of bench_recall's filtered rows on ../shared/data after the filtered depth became interpolated in log
selectivity: target_recall and fixed n_probe under 1% and 30% random filters (same filters as bench_recall).
Writes benchmarks/results/recall-filters-<time>.json. Needs /tmp/ab/idx100k (SpannIndex.build over base.npy, saved)."""

import json
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from spann_vectorstore import SpannIndex
from spann_vectorstore.evaluation import exact_topk, recall_at_k

idx = SpannIndex.load("/tmp/ab/idx100k", progress=False)
xb = np.load("/work/shared/data/base.npy").astype(np.float32)
q = np.load("/work/shared/data/queries.npy").astype(np.float32)
idx.calibrate()
rng = np.random.default_rng(11)
out = {}
for frac in (0.01, 0.30):
    allowed = np.flatnonzero(rng.random(len(xb)) < frac)
    ft, _ = exact_topk(xb, q, 10, "ip", allowed=allowed)
    for t in (0.9, 0.95, 0.99):
        r = idx.search(q, 10, target_recall=t, allowed_ids=allowed)
        out[f"{frac} {t}"] = (recall_at_k(r.ids, ft, 10), float(r.stats["postings"].mean()))
    for npr in (11, 16, 23, 32, 45, 64):
        r = idx.search(q, 10, n_probe=npr, allowed_ids=allowed)
        out[f"{frac} fixed {npr}"] = (recall_at_k(r.ids, ft, 10), float(r.stats["postings"].mean()))
print(json.dumps(out, indent=0))
name = f"/work/main/benchmarks/results/recall-filters-{time.strftime('%Y%m%d-%H%M%S')}.json"
with open(name, "w") as f:
    json.dump({"recall_and_postings": out}, f, indent=1)
print("wrote", name)
