"""Bring your own embeddings: inner-product search over precomputed 768-d vectors loaded from a ``.npy``.

This is how a Cohere (or OpenAI, or any API) user brings vectors they already paid for: save them once,
load them (memory-mapped, so a file larger than RAM is fine), add them in slices with their ids, texts and
metadata, and search with ``metric="ip"`` (dot product, the score these models are compared by). The
vectors here are seeded stand-ins (clustered like real topic embeddings, 768-d), so the script runs
offline; the recall of the index is checked against exact inner-product search with numpy.

Run: python examples/cohere_style_ip.py [WORKDIR]

With a real Cohere client the only changes are where the vectors come from::

    resp = co.embed(texts=texts, model="embed-english-v3.0", input_type="search_document")
    np.save("embeddings.npy", np.asarray(resp.embeddings, dtype=np.float32))
    query = co.embed(texts=[q], model="embed-english-v3.0", input_type="search_query").embeddings[0]
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spann_vectorstore import Collection
from spann_vectorstore.evaluation import exact_topk, recall_at_k

N, D, NQ, K = 10_000, 768, 200, 10
work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="spann-cohere-"))
work.mkdir(parents=True, exist_ok=True)

# 1. Stand-in for embeddings computed elsewhere: 200 topics, unit-norm vectors, saved as float32 .npy.
rng = np.random.default_rng(42)
topics = rng.standard_normal((200, D)).astype(np.float32)
labels = rng.integers(0, len(topics), N + NQ)
vectors = topics[labels] + 0.9 * rng.standard_normal((N + NQ, D)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
np.save(work / "embeddings.npy", vectors[:N])
queries = vectors[N:]  # held out: new questions about the same topics

# 2. Load (memory-mapped) and add in slices with ids, texts and metadata.
emb = np.load(work / "embeddings.npy", mmap_mode="r")
t0 = time.perf_counter()
with Collection(work / "index", metric="ip", bits=2) as col:
    for s in range(0, N, 2500):
        rows = range(s, min(N, s + 2500))
        col.add(
            np.asarray(emb[s : s + 2500]),
            texts=[f"document {i}" for i in rows],
            metadatas=[{"topic": int(labels[i]), "row": i} for i in rows],
            ids=[f"doc-{i}" for i in rows],
        )
    heads = col.stats()["index"]["heads"]
    print(f"added {col.count():,} vectors of {D}-d in {time.perf_counter() - t0:.1f} s ({heads} postings)")

    # 3. Search (one batch call) and compare with exact inner product.
    t0 = time.perf_counter()
    results = col.search(queries, k=K)
    ms = (time.perf_counter() - t0) * 1000 / NQ
    found = np.array([[int(h.id.removeprefix("doc-")) for h in hits] for hits in results])
    exact, _ = exact_topk(np.asarray(emb), queries, K, "ip")
    recall = recall_at_k(found, exact, K)
    print(f"recall@{K} against exact inner-product search: {recall:.3f} ({NQ} queries, {ms:.2f} ms per query)")
    assert recall >= 0.9, f"recall@{K} {recall:.3f} < 0.9"

    top = results[0][0]
    print(f"query 0: top hit {top.id} (score {top.score:.3f}, topic {top.metadata['topic']})")
    same_topic = col.search(queries[1], k=3, filter={"topic": int(labels[N + 1])})
    print("filtered to query 1's topic:", [(h.id, round(h.score, 3)) for h in same_topic])
