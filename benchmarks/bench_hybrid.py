"""Benchmark hybrid retrieval through ``Collection``: quality on real labels, speed, ingest cost of the text index.

Run from the repository root with the project venv::

    .venv/bin/python benchmarks/bench_hybrid.py            # quality (1,000 queries) + speed on 100k docs
    .venv/bin/python benchmarks/bench_hybrid.py --quick    # 300 queries, 20k docs for speed

1. Quality on ``../shared/data/hybrid`` (20,000 Debian package descriptions, 1,000 synopsis queries with one
   relevant document each): MRR@10, hit@1 and hit@10 of dense, text (BM25) and hybrid search through the
   Collection at default settings, hybrid with each fusion (dbsf, relative, rrf) and 50 candidates per leg, and
   text and hybrid with FTS5's BM25 parameters (k1 1.2, b 0.75) for reference. Nothing is tuned on these
   queries: the defaults were chosen on the first half, and both halves are reported.
2. Speed on ``../shared/data`` (the first ``--n`` base vectors with their texts): p50/p99 of single queries for
   dense, text and hybrid, interleaved query by query (load on the shared machine hits all alike; a query's
   new words are tokenized afresh by text and by hybrid, see ``speed``), and the ratio hybrid/dense; ingest
   rate (batches of 1,000) with the text index and without it (the path a Python without FTS5 takes), as a
   ratio, alternating the two ingests over ``--rounds`` rounds.

Results are written to ``benchmarks/results/hybrid-<stamp>.json``. Exits 0 with a message when data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SPANN_COLD_START", "compile")  # steady-state search: no exact answers during compiles

import numpy as np

from spann_vectorstore import Collection, fulltext
from spann_vectorstore._bm25 import FTS5_B, FTS5_K1, BM25Index

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def metrics(ranked: list[list[str]], rel: list[str]) -> dict[str, float]:
    ranks = [r.index(g) + 1 if g in r[:10] else 0 for r, g in zip(ranked, rel)]
    return {
        "mrr10": float(np.mean([1 / x if x else 0.0 for x in ranks])),
        "hit1": float(np.mean([x == 1 for x in ranks])),
        "hit10": float(np.mean([x > 0 for x in ranks])),
    }


def quality(n_queries: int) -> dict:
    h = DATA / "hybrid"
    docs = (h / "docs.txt").read_text().split("\n")[:20000]
    queries = (h / "queries.txt").read_text().split("\n")[:n_queries]
    xb = np.load(h / "doc_emb.npy").astype(np.float32)
    xq = np.load(h / "query_emb.npy").astype(np.float32)[:n_queries]
    rel = [str(i) for i in np.load(h / "qrels.npy")[:n_queries]]
    col = Collection(None, progress=False)
    col.add(xb, texts=docs, ids=[str(i) for i in range(len(docs))])
    runs = {
        "dense": col.search(xq, k=10),
        "text": col.text_search(queries, k=10),
        "hybrid (default: dbsf, alpha 0.5)": col.hybrid_search(queries, xq, k=10),
        "hybrid relative": col.hybrid_search(queries, xq, k=10, fusion="relative"),
        "hybrid rrf": col.hybrid_search(queries, xq, k=10, fusion="rrf"),
        "hybrid candidates 50": col.hybrid_search(queries, xq, k=10, candidates=50),
    }
    # references: BM25 with FTS5's own parameters (k1 1.2, b 0.75) instead of the default k1 0.9, b 0.4
    with col._bm25_lock, col._db_lock:
        col._bm25 = BM25Index.from_db(col._db, k1=FTS5_K1, b=FTS5_B)
    runs["text, FTS5's k1 1.2 b 0.75"] = col.text_search(queries, k=10)
    runs["hybrid, FTS5's k1 1.2 b 0.75"] = col.hybrid_search(queries, xq, k=10)
    out = {}
    half = n_queries // 2
    for name, hits in runs.items():
        ranked = [[x.id for x in hs] for hs in hits]
        out[name] = metrics(ranked, rel)
        out[name]["mrr10_halves"] = [
            metrics(ranked[:half], rel[:half])["mrr10"],
            metrics(ranked[half:], rel[half:])["mrr10"],
        ]
        print(f"{name:36s} " + " ".join(f"{k} {v:.3f}" for k, v in out[name].items() if k != "mrr10_halves"))
    col.close()
    return out


def speed(n: int, n_queries: int, rounds: int) -> dict:
    xb = np.load(DATA / "base.npy")[:n].astype(np.float32)
    texts = (DATA / "texts.txt").read_text().split("\n")
    xq = np.load(DATA / "queries.npy").astype(np.float32)[:n_queries]
    qtext = texts[100_000 : 100_000 + n_queries]
    texts = texts[:n]
    ids = [str(i) for i in range(n)]
    ingest = {"with_text_index": [], "without": []}
    real_available = fulltext.available
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode in ("with_text_index", "without") if r % 2 == 0 else ("without", "with_text_index"):
                fulltext.available = real_available if mode == "with_text_index" else (lambda: False)
                path = Path(tmp) / f"{mode}-{r}"
                col = Collection(path, progress=False, rebuild_growth=None)
                t0 = time.perf_counter()
                for s in range(0, n, 1000):
                    col.add(xb[s : s + 1000], texts=texts[s : s + 1000], ids=ids[s : s + 1000])
                ingest[mode].append(n / (time.perf_counter() - t0))
                col.close()
        fulltext.available = real_available
        col = Collection.open(Path(tmp) / "with_text_index-0", progress=False)
        col.optimize()  # an index built over everything, as after an ingest
        for i in range(20):  # warm up (compilation, caches)
            col.search(xq[i], k=10), col.text_search(qtext[i], k=10), col.hybrid_search(qtext[i], xq[i], k=10)
        lat = {"dense": [], "text": [], "hybrid": []}
        term_cache = col._bm25._term_tokens
        for i in range(n_queries):
            # the words of a query first seen by one mode are tokenized (an SQLite call) in that call only: the
            # other mode's call of the same query must not find them cached, so they are forgotten in between
            # (words of earlier queries stay cached, as in a stream of queries); text and hybrid alternate first.
            # Words of the documents need no SQLite call in either mode (their tokens are learned when the
            # documents are indexed, BM25Index.learn_words), so only this query cache is forgotten
            calls = [
                ("dense", lambda i=i: col.search(xq[i], k=10)),
                ("text", lambda i=i: col.text_search(qtext[i], k=10)),
                ("hybrid", lambda i=i: col.hybrid_search(qtext[i], xq[i], k=10)),
            ]
            if i % 2:
                calls[1], calls[2] = calls[2], calls[1]
            known = set(term_cache)
            for name, call in calls:
                for t in [t for t in term_cache if t not in known]:
                    del term_cache[t]
                t0 = time.perf_counter()
                call()
                lat[name].append(time.perf_counter() - t0)
        col.close()
    out = {
        "n": n,
        "queries": n_queries,
        "ingest_vectors_per_s": {k: float(np.median(v)) for k, v in ingest.items()},
        "ingest_ratio_with_over_without": float(np.median(ingest["with_text_index"]) / np.median(ingest["without"])),
    }
    for name, v in lat.items():
        out[f"{name}_p50_ms"] = float(np.percentile(v, 50) * 1000)
        out[f"{name}_p99_ms"] = float(np.percentile(v, 99) * 1000)
    out["hybrid_over_dense_p50"] = out["hybrid_p50_ms"] / out["dense_p50_ms"]
    out["hybrid_over_dense_median_of_per_query_ratios"] = float(
        np.median(np.array(lat["hybrid"]) / np.array(lat["dense"]))
    )
    out["text_over_dense_p50"] = out["text_p50_ms"] / out["dense_p50_ms"]
    for k, v in out.items():
        print(f"{k}: {v}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None, help="base rows for the speed part (default 100,000)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating ingest rounds with and without the text index")
    args = ap.parse_args()
    if not (DATA / "hybrid" / "docs.txt").exists() or not (DATA / "texts.txt").exists():
        print(f"{DATA} is absent: nothing to measure")
        return
    n = args.n or (20_000 if args.quick else 100_000)
    result = {
        "quality": quality(300 if args.quick else 1000),
        "speed": speed(n, 200 if args.quick else 1000, args.rounds),
    }
    out = ROOT / "benchmarks" / "results" / f"hybrid-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
