"""Ported from langchain-qdrant's ``QdrantVectorStore`` integration tests, langchain-ai/langchain,
libs/partners/qdrant/tests/integration_tests/:
  qdrant_vector_store/test_search.py          @ 12be049ec63a500d8c6aac5eb90404f857cf4927
  qdrant_vector_store/test_add_texts.py       @ 0e210a35ad301a95a7bdad7adb2611a2bab4725f
  qdrant_vector_store/test_add_documents.py   @ 8121d9b29597b9fbfdb70001bce923ad28e0134f
  qdrant_vector_store/test_from_texts.py      @ 0e210a35ad301a95a7bdad7adb2611a2bab4725f
  qdrant_vector_store/test_from_existing.py   @ 0e210a35ad301a95a7bdad7adb2611a2bab4725f
  qdrant_vector_store/test_mmr.py             @ 1ac6561e68407197e02f6070923951987244dbb7
  qdrant_vector_store/test_async_search.py    @ fe7e258836ad872dac530bcf6e142fb8ef9fa709
  qdrant_vector_store/test_async_add_texts.py @ 386b035edbd683042babbae6cbf4757af3ce0249
  qdrant_vector_store/test_async_delete.py    @ 250843baa00e59f14cb4c24d68cde3e8a09a305d
  qdrant_vector_store/test_async_mmr.py       @ f66a525cc692c1f8ed05003be9c76fcb27f81210
  common.py (fixtures)                        @ 06259d780f2934731ed5f74b2fba2443143ddb6a

Changed: construction (``QdrantVectorStore`` -> ``SPANNVectorStore`` with ``metric="cosine"``, Qdrant's
default distance here, ``"l2"`` for ``Distance.EUCLID``; a server ``location`` is a directory with named
collections, ``:memory:`` is in-memory) and fixtures. Qdrant-only parameters are dropped from the
parametrisation: ``location`` (one local store), ``vector_name``/``sparse_vector_name`` (one vector per
document), ``content_payload_key``/``metadata_payload_key`` (no payload keys), ``sparse_embedding`` (the
sparse leg is BM25 over the text, no sparse model). Qdrant ``models.Filter`` conditions are written as the
equivalent core filter dict. Where semantics differ the assertion is adapted with a ``# differs:`` comment.
Not ported: ``test_from_texts_passed_optimizers_config_and_on_disk_payload`` (Qdrant server options),
``test_qdrant_from_texts_stores_embeddings_as_named_vectors`` (named vectors), ``test_async_bench.py``
(a benchmark).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_spann import RetrievalMode
from langchain_spann import SPANNVectorStore as QdrantVectorStore


# --- fixtures: common.py / fixtures.py -------------------------------------------------------------------------
def assert_documents_equals(actual: list[Document], expected: list[Document]) -> None:
    assert len(actual) == len(expected)
    for actual_doc, expected_doc in zip(actual, expected, strict=False):
        assert actual_doc.page_content == expected_doc.page_content
        # fixture: Qdrant puts `_id` and `_collection_name` in the metadata; here the id is Document.id
        assert actual_doc.id is not None
        assert actual_doc.metadata == expected_doc.metadata


class ConsistentFakeEmbeddings(Embeddings):
    """Fake embeddings which remember all the texts seen so far to return consistent vectors."""

    def __init__(self, dimensionality: int = 10) -> None:
        self.known_texts: list[str] = []
        self.dimensionality = dimensionality

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out_vectors = []
        for text in texts:
            if text not in self.known_texts:
                self.known_texts.append(text)
            vector = [1.0] * (self.dimensionality - 1) + [float(self.known_texts.index(text))]
            out_vectors.append(vector)
        return out_vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def retrieval_modes(*, dense: bool = True, sparse: bool = True, hybrid: bool = True) -> list[RetrievalMode]:
    modes = []
    if dense:
        modes.append(RetrievalMode.DENSE)
    if sparse:
        modes.append(RetrievalMode.SPARSE)
    if hybrid:
        modes.append(RetrievalMode.HYBRID)
    return modes


COSINE = {"metric": "cosine"}  # construction: Qdrant's Distance.COSINE
EUCLID = {"metric": "l2"}  # construction: Distance.EUCLID


@pytest.fixture()
def location(tmp_path) -> Path:
    return tmp_path  # fixture: a Qdrant server location -> a directory of named collections


# === test_search.py ===========================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
@pytest.mark.parametrize("batch_size", [1, 64])
def test_similarity_search(retrieval_mode: RetrievalMode, batch_size: int) -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), batch_size=batch_size, retrieval_mode=retrieval_mode, **COSINE
    )
    output = docsearch.similarity_search("foo", k=1)
    assert_documents_equals(actual=output, expected=[Document(page_content="foo")])


@pytest.mark.parametrize("batch_size", [1, 64])
def test_similarity_search_by_vector(batch_size: int) -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), batch_size=batch_size, **COSINE)
    embeddings = ConsistentFakeEmbeddings().embed_query("foo")
    output = docsearch.similarity_search_by_vector(embeddings, k=1)
    assert_documents_equals(output, [Document(page_content="foo")])


@pytest.mark.parametrize("batch_size", [1, 64])
def test_similarity_search_with_score_by_vector(batch_size: int) -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), batch_size=batch_size, **COSINE)
    embeddings = ConsistentFakeEmbeddings().embed_query("foo")
    output = docsearch.similarity_search_with_score_by_vector(embeddings, k=1)
    assert len(output) == 1
    document, score = output[0]
    assert_documents_equals([document], [Document(page_content="foo")])
    assert score >= 0


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_similarity_search_filters(retrieval_mode: RetrievalMode) -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **COSINE
    )

    qdrant_filter = {"page": 1}  # models.FieldCondition(key="metadata.page", match=MatchValue(value=1))
    output = docsearch.similarity_search("foo", k=1, filter=qdrant_filter)

    if retrieval_mode == RetrievalMode.SPARSE:
        # differs: BM25 returns only documents holding a query word ("bar" has no "foo"); Qdrant's fake
        # sparse vectors overlap for every text
        assert output == []
        return
    assert_documents_equals(
        actual=output,
        expected=[Document(page_content="bar", metadata={"page": 1, "metadata": {"page": 2, "pages": [3, -1]}})],
    )


def test_similarity_relevance_search_no_threshold() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), metadatas=metadatas, **COSINE)
    output = docsearch.similarity_search_with_relevance_scores("foo", k=3, score_threshold=None)
    assert len(output) == 3
    for i in range(len(output)):
        assert round(output[i][1], 2) >= 0
        assert round(output[i][1], 2) <= 1


def test_relevance_search_with_threshold() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), metadatas=metadatas, **COSINE)

    score_threshold = 0.99
    kwargs = {"score_threshold": score_threshold}
    output = docsearch.similarity_search_with_relevance_scores("foo", k=3, **kwargs)
    assert len(output) == 1
    assert all(score >= score_threshold for _, score in output)


def test_relevance_search_with_threshold_and_filter() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), metadatas=metadatas, **COSINE)
    score_threshold = 0.99  # for almost exact match
    negative_filter = {"page": 1}
    kwargs = {"filter": negative_filter, "score_threshold": score_threshold}
    output = docsearch.similarity_search_with_relevance_scores("foo", k=3, **kwargs)
    assert len(output) == 0
    positive_filter = {"page": 0}
    kwargs = {"filter": positive_filter, "score_threshold": score_threshold}
    output = docsearch.similarity_search_with_relevance_scores("foo", k=3, **kwargs)
    assert len(output) == 1
    assert all(score >= score_threshold for _, score in output)


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_similarity_search_filters_with_qdrant_filters(retrieval_mode: RetrievalMode) -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "details": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **COSINE
    )

    # the content condition is Chroma-style where_document; the metadata conditions are the core filter
    qdrant_filter = {"page": 1, "details.page": 2, "details.pages": {"$contains": 3}}
    output = docsearch.similarity_search("foo", k=1, filter=qdrant_filter, where_document={"$contains": "bar"})
    if retrieval_mode == RetrievalMode.SPARSE:
        assert output == []  # differs: BM25 returns only documents holding a query word
        return
    assert_documents_equals(
        actual=output,
        expected=[Document(page_content="bar", metadata={"page": 1, "details": {"page": 2, "pages": [3, -1]}})],
    )


def test_embeddings_property_sparse_mode() -> None:
    """Test the embeddings property in SPARSE mode."""
    texts = ["test document"]
    embedding = ConsistentFakeEmbeddings()
    # differs: an embedding model is required in every mode (each document keeps a dense vector), so the
    # property returns it rather than None
    vectorstore = QdrantVectorStore.from_texts(
        texts, embedding=embedding, retrieval_mode=RetrievalMode.SPARSE, **COSINE
    )
    assert vectorstore.embeddings is embedding


def test_embeddings_property_dense_mode() -> None:
    """Test that embeddings property returns embedding object in DENSE mode."""
    texts = ["test document"]
    embedding = ConsistentFakeEmbeddings()
    vectorstore = QdrantVectorStore.from_texts(texts, embedding=embedding, retrieval_mode=RetrievalMode.DENSE, **COSINE)
    assert vectorstore.embeddings is embedding


def _sparse_store() -> QdrantVectorStore:
    # construction: a dense model is required in every mode (see test_embeddings_property_sparse_mode)
    return QdrantVectorStore.from_texts(
        ["test document"], embedding=ConsistentFakeEmbeddings(), retrieval_mode=RetrievalMode.SPARSE, **COSINE
    )


def test_as_retriever_sparse_mode() -> None:
    """Test that as_retriever() works in SPARSE mode."""
    vectorstore = _sparse_store()
    docs = [
        Document(page_content="Python programming", metadata={"topic": "programming"}),
        Document(page_content="Machine learning", metadata={"topic": "AI"}),
        Document(page_content="Data analysis", metadata={"topic": "data"}),
    ]
    vectorstore.add_documents(docs)

    retriever = vectorstore.as_retriever()
    results = retriever.invoke("programming")

    assert len(results) > 0
    assert all(isinstance(doc, Document) for doc in results)

    assert hasattr(retriever, "tags")
    assert isinstance(retriever.tags, list)
    assert "SPANNVectorStore" in retriever.tags  # construction: the class name


def test_as_retriever_sparse_mode_with_search_kwargs() -> None:
    """Test as_retriever() with custom search_kwargs in SPARSE mode."""
    vectorstore = _sparse_store()
    docs = [
        Document(page_content="Python programming", metadata={"topic": "programming"}),
        Document(page_content="Machine learning", metadata={"topic": "AI"}),
        Document(page_content="Data analysis", metadata={"topic": "data"}),
    ]
    vectorstore.add_documents(docs)

    retriever = vectorstore.as_retriever(search_kwargs={"k": 1})
    results = retriever.invoke("programming")

    assert len(results) == 1
    assert isinstance(results[0], Document)


# === test_add_texts.py ========================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_qdrant_add_documents_extends_existing_collection(retrieval_mode: RetrievalMode) -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), retrieval_mode=retrieval_mode, **COSINE)

    new_texts = ["foobar", "foobaz"]
    docsearch.add_documents([Document(page_content=content) for content in new_texts])
    output = docsearch.similarity_search("foobar", k=1)
    assert_documents_equals(output, [Document(page_content="foobar")])


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
@pytest.mark.parametrize("batch_size", [1, 64])
def test_qdrant_add_texts_returns_all_ids(retrieval_mode: RetrievalMode, batch_size: int) -> None:
    """Test end to end Qdrant.add_texts returns unique ids."""
    docsearch = QdrantVectorStore.from_texts(
        ["foobar"], ConsistentFakeEmbeddings(), retrieval_mode=retrieval_mode, batch_size=batch_size, **COSINE
    )

    ids = docsearch.add_texts(["foo", "bar", "baz"])
    assert 3 == len(ids)
    assert 3 == len(set(ids))
    assert 3 == len(docsearch.get_by_ids(ids))


def test_qdrant_add_texts_stores_duplicated_texts(location: Path) -> None:
    """Test end to end Qdrant.add_texts stores duplicated texts separately."""
    collection_name = uuid.uuid4().hex
    # construction: client.recreate_collection(size=10, COSINE) + QdrantVectorStore(client, collection_name, ...)
    vec_store = QdrantVectorStore(
        ConsistentFakeEmbeddings(), persist_directory=location, collection_name=collection_name, dim=10, **COSINE
    )
    ids = vec_store.add_texts(["abc", "abc"], [{"a": 1}, {"a": 2}])

    assert 2 == len(set(ids))
    assert 2 == vec_store.collection.count()


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
@pytest.mark.parametrize("batch_size", [1, 64])
def test_qdrant_add_texts_stores_ids(location: Path, retrieval_mode: RetrievalMode, batch_size: int) -> None:
    """Test end to end Qdrant.add_texts stores provided ids."""
    # differs: ids are strings (Qdrant also takes unsigned integers: 432 is "432" here)
    ids = ["fa38d572-4c31-4579-aedc-1960d79df6df", "432", "432145435"]
    collection_name = uuid.uuid4().hex
    vec_store = QdrantVectorStore.from_texts(
        ["abc", "def", "ghi"],
        ConsistentFakeEmbeddings(),
        ids=ids,
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        batch_size=batch_size,
        **COSINE,
    )

    assert 3 == vec_store.collection.count()
    stored_ids = vec_store.get()["ids"]
    assert set(ids) == set(stored_ids)
    assert 3 == len(vec_store.get_by_ids(ids))


# === test_add_documents.py ====================================================================================
async def test_qdrant_vector_store_aadd_documents_with_custom_ids() -> None:
    """Regression test for #32283: `aadd_documents` with custom ids must not raise."""
    docsearch = QdrantVectorStore.from_texts(["foo"], ConsistentFakeEmbeddings(), **COSINE)
    documents = [
        Document(page_content="Hello world"),
        Document(page_content="Goodbye world"),
    ]
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]

    returned_ids = await docsearch.aadd_documents(documents, ids=ids)

    assert returned_ids == ids
    output = docsearch.similarity_search("Hello world", k=1)
    assert output[0].page_content == "Hello world"


# === test_from_texts.py =======================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_vectorstore_from_texts(location: Path, retrieval_mode: RetrievalMode) -> None:
    """Test end to end Qdrant.from_texts stores texts."""
    collection_name = uuid.uuid4().hex

    vec_store = QdrantVectorStore.from_texts(
        ["Lorem ipsum dolor sit amet", "Ipsum dolor sit amet"],
        ConsistentFakeEmbeddings(),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    )

    assert 2 == vec_store.collection.count()


@pytest.mark.parametrize("batch_size", [1, 64])
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_qdrant_from_texts_stores_ids(location: Path, batch_size: int, retrieval_mode: RetrievalMode) -> None:
    """Test end to end Qdrant.from_texts stores provided ids."""
    collection_name = uuid.uuid4().hex
    ids = ["fa38d572-4c31-4579-aedc-1960d79df6df", "786"]  # differs: ids are strings (786 -> "786")
    vec_store = QdrantVectorStore.from_texts(
        ["abc", "def"],
        ConsistentFakeEmbeddings(),
        ids=ids,
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        batch_size=batch_size,
        **COSINE,
    )

    assert 2 == vec_store.collection.count()
    stored_ids = [doc.id for doc in vec_store.get_by_ids(ids)]
    assert set(ids) == set(stored_ids)


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_qdrant_from_texts_reuses_same_collection(location: Path, retrieval_mode: RetrievalMode) -> None:
    """Test if Qdrant.from_texts reuses the same collection"""
    collection_name = uuid.uuid4().hex
    embeddings = ConsistentFakeEmbeddings()
    vec_store = QdrantVectorStore.from_texts(
        ["lorem", "ipsum", "dolor", "sit", "amet"],
        embeddings,
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    )
    vec_store.close()  # construction: `del vec_store`; one writer per collection, so its lock is released here

    vec_store = QdrantVectorStore.from_texts(
        ["foo", "bar"],
        embeddings,
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    )

    assert 7 == vec_store.collection.count()


@pytest.mark.parametrize("retrieval_mode", retrieval_modes(sparse=False))
def test_qdrant_from_texts_raises_error_on_different_dimensionality(
    location: Path, retrieval_mode: RetrievalMode
) -> None:
    """Test if Qdrant.from_texts raises an exception if dimensionality does not match"""
    collection_name = uuid.uuid4().hex
    QdrantVectorStore.from_texts(
        ["lorem", "ipsum", "dolor", "sit", "amet"],
        ConsistentFakeEmbeddings(dimensionality=10),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    ).close()  # construction: released before the second open (one writer per collection)

    with pytest.raises(ValueError, match="dimension 5 but this store holds 10"):
        QdrantVectorStore.from_texts(
            ["foo", "bar"],
            ConsistentFakeEmbeddings(dimensionality=5),
            collection_name=collection_name,
            persist_directory=location,
            retrieval_mode=retrieval_mode,
            **COSINE,
        )


@pytest.mark.parametrize("retrieval_mode", retrieval_modes(sparse=False))
def test_qdrant_from_texts_raises_error_on_different_distance(location: Path, retrieval_mode: RetrievalMode) -> None:
    """Test if Qdrant.from_texts raises an exception if distance does not match"""
    collection_name = uuid.uuid4().hex
    QdrantVectorStore.from_texts(
        ["lorem", "ipsum", "dolor", "sit", "amet"],
        ConsistentFakeEmbeddings(),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    ).close()  # construction: released before the second open

    with pytest.raises(ValueError, match="created with metric='cosine'"):
        QdrantVectorStore.from_texts(
            ["foo", "bar"],
            ConsistentFakeEmbeddings(),
            collection_name=collection_name,
            persist_directory=location,
            retrieval_mode=retrieval_mode,
            **EUCLID,
        )


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_qdrant_from_texts_recreates_collection_on_force_recreate(
    location: Path, retrieval_mode: RetrievalMode
) -> None:
    collection_name = uuid.uuid4().hex
    vec_store = QdrantVectorStore.from_texts(
        ["lorem", "ipsum", "dolor", "sit", "amet"],
        ConsistentFakeEmbeddings(dimensionality=10),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    )
    # differs: no force_recreate=True; the collection is dropped (delete_collection) and created again
    vec_store.delete_collection()
    vec_store = QdrantVectorStore.from_texts(
        ["foo", "bar"],
        ConsistentFakeEmbeddings(dimensionality=5),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    )

    assert 2 == vec_store.collection.count()


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_qdrant_from_texts_stores_metadatas(retrieval_mode: RetrievalMode) -> None:
    """Test end to end construction and search."""
    texts = ["fabrin", "barizda"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **COSINE
    )
    output = docsearch.similarity_search("fabrin", k=1)
    assert_documents_equals(output, [Document(page_content="fabrin", metadata={"page": 0})])


# === test_from_existing.py ====================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
def test_qdrant_from_existing_collection_uses_same_collection(location: Path, retrieval_mode: RetrievalMode) -> None:
    """Test if the QdrantVectorStore.from_existing_collection reuses the collection."""
    collection_name = uuid.uuid4().hex
    docs = ["foo"]
    QdrantVectorStore.from_texts(
        docs,
        embedding=ConsistentFakeEmbeddings(),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        **COSINE,
    ).close()  # construction: released before the second open

    # construction: from_existing_collection -> the constructor with create_collection_if_not_exists=False
    qdrant = QdrantVectorStore(
        ConsistentFakeEmbeddings(),
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        create_collection_if_not_exists=False,
    )
    qdrant.add_texts(["baz", "bar"])

    assert 3 == qdrant.collection.count()


# === test_mmr.py ==============================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes(sparse=False))
def test_qdrant_mmr_search(retrieval_mode: RetrievalMode) -> None:
    """Test end to end construction and MRR search."""
    filter = {"page": 2}  # models.FieldCondition(key="metadata.page", match=MatchValue(value=2))

    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **EUCLID
    )
    output = docsearch.max_marginal_relevance_search("foo", k=2, fetch_k=3, lambda_mult=0.0)
    assert_documents_equals(
        output,
        [
            Document(page_content="foo", metadata={"page": 0}),
            Document(page_content="baz", metadata={"page": 2}),
        ],
    )

    output = docsearch.max_marginal_relevance_search("foo", k=2, fetch_k=3, lambda_mult=0.0, filter=filter)
    assert_documents_equals(output, [Document(page_content="baz", metadata={"page": 2})])


@pytest.mark.parametrize("retrieval_mode", retrieval_modes(dense=False, hybrid=False))
def test_invalid_qdrant_mmr_with_sparse(retrieval_mode: RetrievalMode) -> None:
    """Test end to end construction and MRR search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **EUCLID
    )
    # differs: MMR works in sparse mode (BM25 candidates, diversity from their stored dense vectors); Qdrant
    # raises because its sparse-only collection has no dense vectors
    output = docsearch.max_marginal_relevance_search("foo", k=2, fetch_k=3, lambda_mult=0.0)
    assert_documents_equals(output, [Document(page_content="foo", metadata={"page": 0})])


# === test_async_search.py =====================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
@pytest.mark.parametrize("batch_size", [1, 64])
async def test_async_similarity_search(retrieval_mode: RetrievalMode, batch_size: int) -> None:
    """Test async similarity search."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), batch_size=batch_size, retrieval_mode=retrieval_mode, **COSINE
    )
    output = await docsearch.asimilarity_search("foo", k=1)
    assert_documents_equals(actual=output, expected=[Document(page_content="foo")])


@pytest.mark.parametrize("batch_size", [1, 64])
async def test_async_similarity_search_by_vector(batch_size: int) -> None:
    """Test async similarity search by vector."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), batch_size=batch_size, **COSINE)
    embeddings = ConsistentFakeEmbeddings().embed_query("foo")
    output = await docsearch.asimilarity_search_by_vector(embeddings, k=1)
    assert_documents_equals(output, [Document(page_content="foo")])


@pytest.mark.parametrize("batch_size", [1, 64])
async def test_async_similarity_search_with_score_by_vector(batch_size: int) -> None:
    """Test async similarity search with score by vector."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), batch_size=batch_size, **COSINE)
    embeddings = ConsistentFakeEmbeddings().embed_query("foo")
    output = await docsearch.asimilarity_search_with_score_by_vector(embeddings, k=1)
    assert len(output) == 1
    document, score = output[0]
    assert_documents_equals([document], [Document(page_content="foo")])
    assert score >= 0


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
async def test_async_similarity_search_filters(retrieval_mode: RetrievalMode) -> None:
    """Test async similarity search with filters."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **COSINE
    )
    output = await docsearch.asimilarity_search("foo", k=1, filter={"page": 1})
    if retrieval_mode == RetrievalMode.SPARSE:
        assert output == []  # differs: BM25 returns only documents holding a query word
        return
    assert_documents_equals(
        actual=output,
        expected=[Document(page_content="bar", metadata={"page": 1, "metadata": {"page": 2, "pages": [3, -1]}})],
    )


async def test_async_relevance_search_no_threshold() -> None:
    """Test async relevance search without threshold."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), metadatas=metadatas, **COSINE)
    output = await docsearch.asimilarity_search_with_score("foo", k=3)
    assert len(output) == 3
    for _, score in output:
        assert score >= 0


async def test_async_relevance_search_with_threshold() -> None:
    """Test async relevance search with score threshold."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i, "metadata": {"page": i + 1, "pages": [i + 2, -1]}} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), metadatas=metadatas, **COSINE)

    score_threshold = 0.99
    output = await docsearch.asimilarity_search_with_score("foo", k=3, score_threshold=score_threshold)
    assert len(output) == 1
    assert all(score >= score_threshold for _, score in output)


# === test_async_add_texts.py ==================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
async def test_async_add_documents_extends_existing_collection(retrieval_mode: RetrievalMode) -> None:
    """Test async add_documents extends existing collection."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), retrieval_mode=retrieval_mode, **COSINE)

    new_texts = ["foobar", "foobaz"]
    await docsearch.aadd_documents([Document(page_content=content) for content in new_texts])
    output = await docsearch.asimilarity_search("foobar", k=1)
    assert_documents_equals(output, [Document(page_content="foobar")])


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
@pytest.mark.parametrize("batch_size", [1, 64])
async def test_async_add_texts_returns_all_ids(retrieval_mode: RetrievalMode, batch_size: int) -> None:
    """Test async add_texts returns unique ids."""
    docsearch = QdrantVectorStore.from_texts(
        ["foobar"], ConsistentFakeEmbeddings(), retrieval_mode=retrieval_mode, batch_size=batch_size, **COSINE
    )

    ids = await docsearch.aadd_texts(["foo", "bar", "baz"])
    assert len(ids) == 3
    assert len(set(ids)) == 3
    docs = await docsearch.aget_by_ids(ids)
    assert len(docs) == 3


async def test_async_add_texts_stores_duplicated_texts(location: Path) -> None:
    """Test async add_texts stores duplicated texts separately."""
    collection_name = uuid.uuid4().hex
    # construction: client.recreate_collection(size=10, COSINE) + QdrantVectorStore(client, collection_name, ...)
    vec_store = QdrantVectorStore(
        ConsistentFakeEmbeddings(), persist_directory=location, collection_name=collection_name, dim=10, **COSINE
    )
    ids = await vec_store.aadd_texts(["abc", "abc"], [{"a": 1}, {"a": 2}])

    assert len(set(ids)) == 2
    assert vec_store.collection.count() == 2


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
@pytest.mark.parametrize("batch_size", [1, 64])
async def test_async_add_texts_stores_ids(location: Path, retrieval_mode: RetrievalMode, batch_size: int) -> None:
    """Test async add_texts stores provided ids."""
    ids = ["fa38d572-4c31-4579-aedc-1960d79df6df", "432", "432145435"]  # differs: ids are strings
    collection_name = uuid.uuid4().hex
    vec_store = QdrantVectorStore.from_texts(
        ["abc", "def", "ghi"],
        ConsistentFakeEmbeddings(),
        ids=ids,
        collection_name=collection_name,
        persist_directory=location,
        retrieval_mode=retrieval_mode,
        batch_size=batch_size,
        **COSINE,
    )

    assert vec_store.collection.count() == 3
    stored_ids = vec_store.get()["ids"]
    assert set(ids) == set(stored_ids)
    docs = await vec_store.aget_by_ids(ids)
    assert len(docs) == 3


# === test_async_delete.py =====================================================================================
IDS = [
    "fa38d572-4c31-4579-aedc-1960d79df6d1",
    "fa38d572-4c31-4579-aedc-1960d79df6d2",
    "fa38d572-4c31-4579-aedc-1960d79df6d3",
]


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
async def test_async_delete(retrieval_mode: RetrievalMode) -> None:
    """Test async delete functionality."""
    texts = ["foo", "bar", "baz"]
    ids = IDS
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), ids=ids, retrieval_mode=retrieval_mode, **COSINE
    )
    assert docsearch.collection.count() == 3
    result = await docsearch.adelete(ids=[ids[0]])
    assert result is True
    assert docsearch.collection.count() == 2
    result = await docsearch.adelete(ids=[ids[1], ids[2]])
    assert result is True
    assert docsearch.collection.count() == 0


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
async def test_async_get_by_ids(retrieval_mode: RetrievalMode) -> None:
    """Test async get_by_ids functionality."""
    texts = ["foo", "bar", "baz"]
    ids = IDS
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), ids=ids, metadatas=metadatas, retrieval_mode=retrieval_mode, **COSINE
    )
    docs = await docsearch.aget_by_ids(ids)
    assert len(docs) == 3
    contents = {doc.page_content for doc in docs}
    assert contents == {"foo", "bar", "baz"}

    docs = await docsearch.aget_by_ids([ids[0], ids[2]])
    assert len(docs) == 2
    contents = {doc.page_content for doc in docs}
    assert contents == {"foo", "baz"}


async def test_async_delete_and_get_by_ids_with_int_ids(location: Path) -> None:
    """Test async delete and get_by_ids with integer IDs."""
    collection_name = uuid.uuid4().hex
    vec_store = QdrantVectorStore(
        ConsistentFakeEmbeddings(), persist_directory=location, collection_name=collection_name, dim=10, **COSINE
    )

    # differs: ids are strings; integers are refused (Qdrant accepts unsigned integers)
    with pytest.raises(TypeError, match="ids must be strings"):
        await vec_store.aadd_texts(["foo", "bar", "baz"], metadatas=[{"page": i} for i in range(3)], ids=[1, 2, 3])
    int_ids = ["1", "2", "3"]
    await vec_store.aadd_texts(["foo", "bar", "baz"], metadatas=[{"page": i} for i in range(3)], ids=int_ids)
    assert vec_store.collection.count() == 3
    docs = await vec_store.aget_by_ids(int_ids)
    assert len(docs) == 3
    result = await vec_store.adelete(ids=["1", "2"])
    assert result is True
    assert vec_store.collection.count() == 1


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
async def test_async_get_by_ids_empty_list(retrieval_mode: RetrievalMode) -> None:
    """Test async get_by_ids with empty list returns empty list."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(texts, ConsistentFakeEmbeddings(), retrieval_mode=retrieval_mode, **COSINE)
    docs = await docsearch.aget_by_ids([])
    assert len(docs) == 0


@pytest.mark.parametrize("retrieval_mode", retrieval_modes())
async def test_async_get_by_ids_nonexistent(retrieval_mode: RetrievalMode) -> None:
    """Test async get_by_ids with nonexistent IDs returns empty list."""
    texts = ["foo", "bar", "baz"]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), ids=IDS, retrieval_mode=retrieval_mode, **COSINE
    )
    nonexistent_ids = ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"]
    docs = await docsearch.aget_by_ids(nonexistent_ids)
    assert len(docs) == 0


# === test_async_mmr.py ========================================================================================
@pytest.mark.parametrize("retrieval_mode", retrieval_modes(sparse=False))
async def test_async_mmr_search(retrieval_mode: RetrievalMode) -> None:
    """Test async MMR search."""
    filter_ = {"page": 2}
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **EUCLID
    )
    output = await docsearch.amax_marginal_relevance_search("foo", k=2, fetch_k=3, lambda_mult=0.0)
    # differs: the async MMR picks what the sync one does (foo, baz, as in test_qdrant_mmr_search);
    # langchain-qdrant's async path expects (foo, bar)
    assert_documents_equals(
        output,
        [
            Document(page_content="foo", metadata={"page": 0}),
            Document(page_content="baz", metadata={"page": 2}),
        ],
    )

    output = await docsearch.amax_marginal_relevance_search("foo", k=2, fetch_k=3, lambda_mult=0.0, filter=filter_)
    assert_documents_equals(output, [Document(page_content="baz", metadata={"page": 2})])


@pytest.mark.parametrize("retrieval_mode", retrieval_modes(sparse=False))
async def test_async_mmr_search_by_vector(retrieval_mode: RetrievalMode) -> None:
    """Test async MMR search by vector."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **EUCLID
    )
    embedding = ConsistentFakeEmbeddings().embed_query("foo")
    output = await docsearch.amax_marginal_relevance_search_by_vector(embedding, k=2, fetch_k=3, lambda_mult=0.0)
    # differs: (foo, baz) as the sync MMR; langchain-qdrant's async path expects (foo, bar)
    assert_documents_equals(
        output,
        [
            Document(page_content="foo", metadata={"page": 0}),
            Document(page_content="baz", metadata={"page": 2}),
        ],
    )


@pytest.mark.parametrize("retrieval_mode", retrieval_modes(sparse=False))
async def test_async_mmr_search_with_score_by_vector(retrieval_mode: RetrievalMode) -> None:
    """Test async MMR search with score by vector."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **EUCLID
    )
    embedding = ConsistentFakeEmbeddings().embed_query("foo")
    output = await docsearch.amax_marginal_relevance_search_with_score_by_vector(
        embedding, k=2, fetch_k=3, lambda_mult=0.0
    )
    assert len(output) == 2
    for doc, score in output:
        assert isinstance(doc, Document)
        assert isinstance(score, float)


@pytest.mark.parametrize("retrieval_mode", retrieval_modes(dense=False, hybrid=False))
async def test_async_invalid_mmr_with_sparse(retrieval_mode: RetrievalMode) -> None:
    """Test async MMR with sparse-only mode."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": i} for i in range(len(texts))]
    docsearch = QdrantVectorStore.from_texts(
        texts, ConsistentFakeEmbeddings(), metadatas=metadatas, retrieval_mode=retrieval_mode, **EUCLID
    )
    # differs: MMR works in sparse mode (see test_invalid_qdrant_mmr_with_sparse); Qdrant raises
    output = await docsearch.amax_marginal_relevance_search("foo", k=2, fetch_k=3, lambda_mult=0.0)
    assert_documents_equals(output, [Document(page_content="foo", metadata={"page": 0})])
