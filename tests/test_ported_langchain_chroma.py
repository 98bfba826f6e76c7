"""Ported from langchain-chroma's integration tests:
langchain-ai/langchain, libs/partners/chroma/tests/integration_tests/test_vectorstores.py at commit
03aa9d65fd861fff4c709f8ca56b52a9ede9c74a (fake embeddings: fake_embeddings.py at
98c035a497a80c66d7097611eb947e71c40794e0).

Changed: construction (``Chroma`` -> ``SPANNVectorStore`` with ``metric="l2"``, Chroma's default space, so
scores are the same squared L2 distances; the ``client`` fixture is a directory, a Chroma collection a named
collection in it) and fixtures. Where the semantics differ the test is kept with the assertion adapted and a
one-line ``# differs:`` comment. Not ported: ``test_init_from_client_settings`` (no client settings),
``test_chroma_with_persistence_with_client_settings`` (same as ``test_chroma_with_persistence`` without
client settings), ``test_chroma_legacy_batching`` (a Chroma server version check).
"""

from __future__ import annotations

import os.path
import tempfile
import uuid
from collections.abc import Generator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.embeddings.fake import FakeEmbeddings as Fak
from langchain_spann import SPANNVectorStore as Chroma

from spann_vectorstore import Collection


# --- fixtures: fake_embeddings.py ------------------------------------------------------------------------------
class FakeEmbeddings(Embeddings):
    """Fake embeddings functionality for testing."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] * 9 + [float(i)] for i in range(len(texts))]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return [1.0] * 9 + [0.0]

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


class ConsistentFakeEmbeddings(FakeEmbeddings):
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


L2 = {"metric": "l2"}  # construction: Chroma's default distance


@pytest.fixture()
def client(tmp_path) -> Generator[Path, None, None]:
    # fixture: a directory of named collections stands for a Chroma client
    yield tmp_path


def _create_collection(client: Path, name: str) -> None:
    Collection(client, name=name).close()  # fixture: client.create_collection(name)


# --- tests ----------------------------------------------------------------------------------------------------
def test_chroma() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = Chroma.from_texts(collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), **L2)
    output = docsearch.similarity_search("foo", k=1)

    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id is not None


def test_from_documents() -> None:
    """Test init using .from_documents."""
    documents = [
        Document(page_content="foo"),
        Document(page_content="bar"),
        Document(page_content="baz"),
    ]
    docsearch = Chroma.from_documents(documents=documents, embedding=FakeEmbeddings(), **L2)
    output = docsearch.similarity_search("foo", k=1)

    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id is not None


def test_chroma_with_ids() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), ids=ids, **L2
    )
    output = docsearch.similarity_search("foo", k=1)

    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id == "id_0"


async def test_chroma_async() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = Chroma.from_texts(collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), **L2)
    output = await docsearch.asimilarity_search("foo", k=1)

    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id is not None


async def test_chroma_async_with_ids() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), ids=ids, **L2
    )
    output = await docsearch.asimilarity_search("foo", k=1)

    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id == "id_0"


def test_chroma_with_metadatas() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": str(i)} for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), metadatas=metadatas, **L2
    )
    output = docsearch.similarity_search("foo", k=1)
    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].metadata == {"page": "0"}
    assert output[0].id is not None


def test_chroma_with_metadatas_and_ids() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": str(i)} for i in range(len(texts))]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection",
        texts=texts,
        embedding=FakeEmbeddings(),
        metadatas=metadatas,
        ids=ids,
        **L2,
    )
    output = docsearch.similarity_search("foo", k=1)
    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].metadata == {"page": "0"}
    assert output[0].id == "id_0"


def test_chroma_with_metadatas_with_scores_and_ids() -> None:
    """Test end to end construction and scored search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": str(i)} for i in range(len(texts))]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection",
        texts=texts,
        embedding=FakeEmbeddings(),
        metadatas=metadatas,
        ids=ids,
        **L2,
    )
    output = docsearch.similarity_search_with_score("foo", k=1)
    docsearch.delete_collection()
    assert output == [(Document(page_content="foo", metadata={"page": "0"}, id="id_0"), 0.0)]


def test_chroma_with_metadatas_with_vectors() -> None:
    """Test end to end construction and scored search."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": str(i)} for i in range(len(texts))]
    embeddings = ConsistentFakeEmbeddings()
    docsearch = Chroma.from_texts(
        collection_name="test_collection", texts=texts, embedding=embeddings, metadatas=metadatas, **L2
    )
    vec_1 = embeddings.embed_query(texts[0])
    output = docsearch.similarity_search_with_vectors("foo", k=1)
    docsearch.delete_collection()
    doc = output[0][0]
    assert doc.page_content == "foo"
    assert doc.metadata == {"page": "0"}
    assert doc.id is not None
    assert (output[0][1] == vec_1).all()


def test_chroma_with_metadatas_with_scores_using_vector() -> None:
    """Test end to end construction and scored search, using embedding vector."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": str(i)} for i in range(len(texts))]
    ids = [f"id_{i}" for i in range(len(texts))]
    embeddings = FakeEmbeddings()

    docsearch = Chroma.from_texts(
        collection_name="test_collection",
        texts=texts,
        embedding=embeddings,
        metadatas=metadatas,
        ids=ids,
        **L2,
    )
    embedded_query = embeddings.embed_query("foo")
    output = docsearch.similarity_search_by_vector_with_relevance_scores(embedding=embedded_query, k=1)
    docsearch.delete_collection()
    # differs: relevance scores here (1.0 = identical, higher is better); Chroma's method returns the distance 0.0
    assert output == [(Document(page_content="foo", metadata={"page": "0"}, id="id_0"), 1.0)]


def test_chroma_search_filter() -> None:
    """Test end to end construction and search with metadata filtering."""
    texts = ["far", "bar", "baz"]
    metadatas = [{"first_letter": f"{text[0]}"} for text in texts]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection",
        texts=texts,
        embedding=FakeEmbeddings(),
        metadatas=metadatas,
        ids=ids,
        **L2,
    )
    output1 = docsearch.similarity_search("far", k=1, filter={"first_letter": "f"})
    output2 = docsearch.similarity_search("far", k=1, filter={"first_letter": "b"})
    docsearch.delete_collection()
    assert output1 == [Document(page_content="far", metadata={"first_letter": "f"}, id="id_0")]
    assert output2 == [Document(page_content="bar", metadata={"first_letter": "b"}, id="id_1")]


def test_chroma_search_filter_with_scores() -> None:
    """Test end to end construction and scored search with metadata filtering."""
    texts = ["far", "bar", "baz"]
    metadatas = [{"first_letter": f"{text[0]}"} for text in texts]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test_collection",
        texts=texts,
        embedding=FakeEmbeddings(),
        metadatas=metadatas,
        ids=ids,
        **L2,
    )
    output1 = docsearch.similarity_search_with_score("far", k=1, filter={"first_letter": "f"})
    output2 = docsearch.similarity_search_with_score("far", k=1, filter={"first_letter": "b"})
    docsearch.delete_collection()
    assert output1 == [(Document(page_content="far", metadata={"first_letter": "f"}, id="id_0"), 0.0)]
    assert output2 == [(Document(page_content="bar", metadata={"first_letter": "b"}, id="id_1"), 1.0)]


def test_chroma_with_persistence() -> None:
    """Test end to end construction and search, with persistence."""
    with tempfile.TemporaryDirectory() as chroma_persist_dir:
        collection_name = "test_collection"
        texts = ["foo", "bar", "baz"]
        ids = [f"id_{i}" for i in range(len(texts))]

        docsearch = Chroma.from_texts(
            collection_name=collection_name,
            texts=texts,
            embedding=FakeEmbeddings(),
            persist_directory=chroma_persist_dir,
            ids=ids,
            **L2,
        )

        try:
            output = docsearch.similarity_search("foo", k=1)
            assert output == [Document(page_content="foo", id="id_0")]

            assert os.path.exists(chroma_persist_dir)

            # differs: one writer per collection, so the first store is closed before the directory is reopened
            docsearch.close()
            # Get a new VectorStore from the persisted directory
            docsearch = Chroma(
                collection_name=collection_name,
                embedding=FakeEmbeddings(),
                persist_directory=chroma_persist_dir,
            )
            output = docsearch.similarity_search("foo", k=1)
            assert output == [Document(page_content="foo", id="id_0")]

            # Clean up
            docsearch.delete_collection()
        finally:
            docsearch.close()  # construction: releases the files (Chroma stops its client here)


def test_chroma_mmr() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    docsearch = Chroma.from_texts(collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), **L2)
    output = docsearch.max_marginal_relevance_search("foo", k=1)
    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id is not None


def test_chroma_mmr_by_vector() -> None:
    """Test end to end construction and search."""
    texts = ["foo", "bar", "baz"]
    embeddings = FakeEmbeddings()
    docsearch = Chroma.from_texts(collection_name="test_collection", texts=texts, embedding=embeddings, **L2)
    embedded_query = embeddings.embed_query("foo")
    output = docsearch.max_marginal_relevance_search_by_vector(embedded_query, k=1)
    docsearch.delete_collection()
    assert len(output) == 1
    assert output[0].page_content == "foo"
    assert output[0].id is not None


def test_chroma_with_include_parameter() -> None:
    """Test end to end construction and include parameter."""
    texts = ["foo", "bar", "baz"]
    docsearch = Chroma.from_texts(collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), **L2)
    output1 = docsearch.get(include=["embeddings"])
    output2 = docsearch.get()
    docsearch.delete_collection()
    assert output1["embeddings"] is not None
    assert output2["embeddings"] is None


def _peek_embedding(docsearch: Chroma, document_id: str) -> list[float]:
    # fixture: Chroma's collection.peek()["embeddings"][index of id]
    return docsearch.get(ids=[document_id], include=["embeddings"])["embeddings"][0]


def test_chroma_update_document() -> None:
    """Test the update_document function. Uses an external document id."""
    embedding = ConsistentFakeEmbeddings()
    initial_content = "foo"
    document_id = "doc1"
    original_doc = Document(page_content=initial_content, metadata={"page": "0"})
    docsearch = Chroma.from_documents(
        collection_name="test_collection", documents=[original_doc], embedding=embedding, ids=[document_id], **L2
    )
    old_embedding = _peek_embedding(docsearch, document_id)

    updated_content = "updated foo"
    updated_doc = Document(page_content=updated_content, metadata={"page": "0"})
    docsearch.update_document(document_id=document_id, document=updated_doc)
    output = docsearch.similarity_search(updated_content, k=1)
    new_embedding = _peek_embedding(docsearch, document_id)

    docsearch.delete_collection()
    assert output == [Document(page_content=updated_content, metadata={"page": "0"}, id=document_id)]
    assert list(new_embedding) == list(embedding.embed_documents([updated_content])[0])
    assert list(new_embedding) != list(old_embedding)


def test_chroma_update_document_with_id() -> None:
    """Test the update_document function. Uses an internal document id."""
    embedding = ConsistentFakeEmbeddings()
    initial_content = "foo"
    document_id = "doc1"
    original_doc = Document(page_content=initial_content, metadata={"page": "0"}, id=document_id)
    docsearch = Chroma.from_documents(
        collection_name="test_collection", documents=[original_doc], embedding=embedding, **L2
    )
    old_embedding = _peek_embedding(docsearch, document_id)

    updated_content = "updated foo"
    updated_doc = Document(page_content=updated_content, metadata={"page": "0"}, id=document_id)
    docsearch.update_document(document_id=document_id, document=updated_doc)
    output = docsearch.similarity_search(updated_content, k=1)
    new_embedding = _peek_embedding(docsearch, document_id)

    docsearch.delete_collection()
    assert output == [Document(page_content=updated_content, metadata={"page": "0"}, id=document_id)]
    assert list(new_embedding) == list(embedding.embed_documents([updated_content])[0])
    assert list(new_embedding) != list(old_embedding)


def test_chroma_with_relevance_score_custom_normalization_fn() -> None:
    """Test searching with relevance score and custom normalization function."""
    texts = ["foo", "bar", "baz"]
    metadatas = [{"page": str(i)} for i in range(len(texts))]
    ids = [f"id_{i}" for i in range(len(texts))]
    docsearch = Chroma.from_texts(
        collection_name="test1_collection",
        texts=texts,
        embedding=FakeEmbeddings(),
        metadatas=metadatas,
        ids=ids,
        relevance_score_fn=lambda d: d * 0,
        metric="l2",  # construction: collection_metadata={"hnsw:space": "l2"}
    )
    output = docsearch.similarity_search_with_relevance_scores("foo", k=3)
    docsearch.delete_collection()
    assert output == [
        (Document(page_content="foo", metadata={"page": "0"}, id="id_0"), 0.0),
        (Document(page_content="bar", metadata={"page": "1"}, id="id_1"), 0.0),
        (Document(page_content="baz", metadata={"page": "2"}, id="id_2"), 0.0),
    ]


def test_init_from_client(client: Path) -> None:
    # construction: an existing Collection stands for a client; the embedding model is required here
    Chroma(FakeEmbeddings(), collection=Collection(client, name="langchain")).close()


def test_chroma_add_documents_no_metadata() -> None:
    db = Chroma(FakeEmbeddings(), **L2)
    db.add_documents([Document(page_content="foo")])

    db.delete_collection()


def test_chroma_add_documents_mixed_metadata() -> None:
    db = Chroma(FakeEmbeddings(), **L2)
    docs = [
        Document(page_content="foo", id="0"),
        Document(page_content="bar", metadata={"baz": 1}, id="1"),
    ]
    ids = ["0", "1"]
    actual_ids = db.add_documents(docs)
    search = db.similarity_search("foo bar")
    db.delete_collection()

    assert actual_ids == ids
    assert sorted(search, key=lambda d: d.page_content) == sorted(docs, key=lambda d: d.page_content)


MAX_BATCH = 1000  # fixture: client.get_max_batch_size() -> the store's default batch_size


def test_chroma_large_batch(client: Path) -> None:
    embedding_function = Fak(size=255)
    docs = ["This is a test document"] * (MAX_BATCH + 100)
    db = Chroma.from_texts(
        persist_directory=client,
        collection_name="my_collection",
        texts=docs,
        embedding=embedding_function,
        ids=[str(uuid.uuid4()) for _ in range(len(docs))],
        **L2,
    )
    assert db.collection.count() == len(docs)  # added: what the server test checked implicitly
    db.delete_collection()


def test_chroma_large_batch_update(client: Path) -> None:
    embedding_function = Fak(size=255)
    docs = ["This is a test document"] * (MAX_BATCH + 100)
    ids = [str(uuid.uuid4()) for _ in range(len(docs))]
    db = Chroma.from_texts(
        persist_directory=client,
        collection_name="my_collection",
        texts=docs,
        embedding=embedding_function,
        ids=ids,
        **L2,
    )
    new_docs = [
        Document(page_content="This is a new test document", metadata={"doc_id": f"{i}"}) for i in range(len(docs) - 10)
    ]
    new_ids = [_id for _id in ids[: len(new_docs)]]
    db.update_documents(ids=new_ids, documents=new_docs)
    assert db.get(ids=new_ids[-1:])["metadatas"] == [{"doc_id": f"{len(new_docs) - 1}"}]  # added check

    db.delete_collection()


def test_create_collection_if_not_exist_default(client: Path) -> None:
    """Tests existing behaviour without the new create_collection_if_not_exists flag."""
    texts = ["foo", "bar", "baz"]
    docsearch = Chroma.from_texts(
        collection_name="test_collection", texts=texts, embedding=FakeEmbeddings(), persist_directory=client, **L2
    )
    assert "test_collection" in Collection.list_collections(client)
    docsearch.delete_collection()


def test_create_collection_if_not_exist_true_existing(client: Path) -> None:
    """Tests create_collection_if_not_exists=True and collection already existing."""
    _create_collection(client, "test_collection")
    vectorstore = Chroma(
        persist_directory=client,
        collection_name="test_collection",
        embedding=FakeEmbeddings(),
        create_collection_if_not_exists=True,
    )
    assert "test_collection" in Collection.list_collections(client)
    vectorstore.delete_collection()


def test_create_collection_if_not_exist_false_existing(client: Path) -> None:
    """Tests create_collection_if_not_exists=False and collection already existing."""
    _create_collection(client, "test_collection")
    vectorstore = Chroma(
        persist_directory=client,
        collection_name="test_collection",
        embedding=FakeEmbeddings(),
        create_collection_if_not_exists=False,
    )
    assert "test_collection" in Collection.list_collections(client)
    vectorstore.delete_collection()


def test_create_collection_if_not_exist_false_non_existing(client: Path) -> None:
    """Tests create_collection_if_not_exists=False and collection not-existing, should raise."""
    with pytest.raises(Exception, match="does not exist"):
        Chroma(
            persist_directory=client,
            collection_name="test_collection",
            embedding=FakeEmbeddings(),
            create_collection_if_not_exists=False,
        )


def test_create_collection_if_not_exist_true_non_existing(client: Path) -> None:
    """Tests create_collection_if_not_exists=True and collection non-existing."""
    vectorstore = Chroma(
        persist_directory=client,
        collection_name="test_collection",
        embedding=FakeEmbeddings(),
        create_collection_if_not_exists=True,
    )
    assert "test_collection" in Collection.list_collections(client)
    vectorstore.delete_collection()


def test_collection_none_after_delete(client: Path) -> None:
    vectorstore = Chroma(persist_directory=client, collection_name="test_collection", embedding=FakeEmbeddings(), **L2)

    assert "test_collection" in Collection.list_collections(client)
    vectorstore.delete_collection()
    # differs: no `_chroma_collection` attribute; the dropped collection is gone from the directory instead
    assert "test_collection" not in Collection.list_collections(client)
    with pytest.raises(Exception, match=r"does not exist|no collection"):
        Collection.open(client, name="test_collection")
    with pytest.raises(Exception):  # noqa: B017
        vectorstore.similarity_search("foo")


def test_reset_collection(client: Path) -> None:
    """Tests ensure_collection method."""
    vectorstore = Chroma(persist_directory=client, collection_name="test_collection", embedding=FakeEmbeddings(), **L2)
    vectorstore.add_documents([Document(page_content="foo")])
    assert vectorstore.collection.count() == 1
    vectorstore.reset_collection()
    assert vectorstore.collection is not None
    assert "test_collection" in Collection.list_collections(client)
    assert vectorstore.collection.name == "test_collection"
    assert vectorstore.collection.count() == 0
    # Clean up
    vectorstore.delete_collection()


def test_delete_where_clause(client: Path) -> None:
    """Tests delete_where_clause method."""
    vectorstore = Chroma(persist_directory=client, collection_name="test_collection", embedding=FakeEmbeddings(), **L2)
    vectorstore.add_documents(
        [
            Document(page_content="foo", metadata={"test": "bar"}),
            Document(page_content="bar", metadata={"test": "foo"}),
        ]
    )
    assert vectorstore.collection.count() == 2
    vectorstore.delete(where={"test": "bar"})
    assert vectorstore.collection.count() == 1
    # Clean up
    vectorstore.delete_collection()


def test_chroma_handles_none_page_content() -> None:
    """Stored documents without text (Chroma: `_results_to_docs_and_scores` over mock results)."""
    # fixture: rows written with text None through the Collection stand for Chroma's mock query results
    store = Chroma(FakeEmbeddings(), **L2)
    vectors = FakeEmbeddings().embed_documents(["a", "b", "c"])
    import numpy as np

    store.collection.add(
        np.array(vectors, dtype=np.float32),
        ["valid content", None, "another valid content"],
        [{"key": "value1"}, {"key": "value2"}, {"key": "value3"}],
        ["id1", "id2", "id3"],
    )
    docs_and_scores = store.similarity_search_with_score("q", k=3)
    # differs: a document without text comes back with page_content "" (Chroma drops it)
    assert len(docs_and_scores) == 3
    assert docs_and_scores[0][0].page_content == "valid content"
    assert docs_and_scores[1][0].page_content == ""
    assert docs_and_scores[2][0].page_content == "another valid content"
    assert docs_and_scores[0][0].id == "id1"
    assert docs_and_scores[2][0].id == "id3"
    store.close()


def test_chroma_handles_none_page_content_with_vectors() -> None:
    """Stored documents without text, with their vectors (Chroma: `_results_to_docs_and_vectors`)."""
    import numpy as np

    store = Chroma(FakeEmbeddings(), **L2)
    store.collection.add(
        np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], dtype=np.float32),
        ["valid content", None, "another valid content"],
        [{"key": "value1"}, {"key": "value2"}, {"key": "value3"}],
        ["id1", "id2", "id3"],
    )
    got = store.get(include=["documents", "embeddings"])
    docs_and_vectors = list(zip(got["ids"], got["documents"], got["embeddings"]))
    # differs: get() keeps the document without text (None), Chroma's helper drops it
    assert len(docs_and_vectors) == 3
    assert docs_and_vectors[0][1] == "valid content"
    assert docs_and_vectors[1][1] is None
    assert docs_and_vectors[2][1] == "another valid content"
    assert docs_and_vectors[0][0] == "id1"
    assert docs_and_vectors[2][0] == "id3"
    assert docs_and_vectors[0][2] == pytest.approx([0.1, 0.2])
    assert docs_and_vectors[2][2] == pytest.approx([0.5, 0.6])
    store.close()
