"""Quickstart: a persistent Collection with metadata filters, offline, in about 20 lines.

Run: python examples/quickstart.py [DIR]. Vectors here are random unit vectors standing in for embeddings
(see the README for sentence-transformers, LangChain and LlamaIndex usage).
"""

import sys
import tempfile

import numpy as np

from spann_vectorstore import Collection

path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="spann-quickstart-")
rng = np.random.default_rng(0)
vectors = rng.standard_normal((20_000, 64)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
texts = [f"chunk {i}" for i in range(len(vectors))]
metas = [{"source": f"doc{i // 100}.md", "year": 2000 + i % 25} for i in range(len(vectors))]

with Collection(path, metric="ip", bits=2) as col:  # the SPANN index is built once 4,096 documents exist
    col.add(vectors, texts, metas, ids=[f"c{i}" for i in range(len(vectors))])
    query = vectors[123] + 0.05 * rng.standard_normal(64).astype(np.float32)
    for hit in col.search(query, k=3):
        print(f"{hit.score:.3f}  {hit.id}  {hit.text}  {hit.metadata}")
    recent = col.search(query, k=3, filter={"year": {"$gte": 2020}, "source": {"$in": ["doc1.md", "doc7.md"]}})
    print("filtered:", [(h.id, h.metadata["year"], h.metadata["source"]) for h in recent])
    col.delete(ids=["c123"])

with Collection.open(path) as col:  # everything acknowledged is still there after a restart
    print("reopened:", col.count(), "documents; top hit now", col.search(query, k=1)[0].id)
