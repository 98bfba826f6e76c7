"""Ported from the LlamaIndex Chroma vector store's tests, run-llama/llama_index,
llama-index-integrations/vector_stores/llama-index-vector-stores-chroma/tests/:
  test_chromadb.py              @ 01922fb3e4a8cb13136705e5eb98219994c9d4b4
  test_mmr.py                   @ 0a6ebbd5b9c8ab9e54c5eb79f7d358d673bc302c
  test_vector_stores_chroma.py  @ 45beaebf5b58573d2de85f742d8e573f748bcbac
  test_vector_memory_chroma.py  @ b0f9e21752b28b2cf32cfd65de710afec5acbb19

Changed: construction (a Chroma client/collection -> a ``Collection``, named when Chroma's is;
``ChromaVectorStore(chroma_collection=c)`` / ``from_collection(c)`` -> ``SPANNVectorStore(collection=c)``;
``from_params(persist_dir=..., collection_name=...)`` -> ``SPANNVectorStore(persist_dir, collection_name=...)``;
``metric="l2"``, Chroma's default space) and fixtures (rows Chroma's tests write with ``collection.add`` are
written with ``Collection.add``; the fake Chroma collections of test_vector_stores_chroma.py become rows with
no text). Not ported: ``test_instance_creation_from_http_params`` (a Chroma server).
"""

import json
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.embeddings.mock_embed_model import MockEmbedding
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import VectorMemory
from llama_index.core.schema import ImageNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from llama_index.vector_stores.spann import SPANNVectorStore as ChromaVectorStore

from spann_vectorstore import Collection

COLLECTION_NAME = "llama_collection"


# === test_chromadb.py =========================================================================================
def test_instance_creation_from_collection() -> None:
    collection = Collection(name=COLLECTION_NAME, metric="l2")  # construction: chroma_client.get_or_create_collection
    store = ChromaVectorStore(collection=collection)  # construction: ChromaVectorStore.from_collection(collection)
    assert isinstance(store, ChromaVectorStore)


def test_instance_creation_from_persist_dir(tmp_path: Path) -> None:
    # construction: from_params(persist_dir="./data", collection_name=..., collection_kwargs={})
    store = ChromaVectorStore(str(tmp_path / "data"), collection_name=COLLECTION_NAME, metric="l2")
    assert isinstance(store, ChromaVectorStore)
    store.close()


@pytest.fixture()
def vector_store() -> Generator[ChromaVectorStore, None, None]:
    collection = Collection(name=COLLECTION_NAME, metric="l2")
    yield ChromaVectorStore(collection=collection)
    collection.close()  # construction: chroma_client.delete_collection(name=COLLECTION_NAME)


@pytest.fixture(scope="session")
def node_embeddings() -> list[TextNode]:
    return [
        TextNode(
            text="lorem ipsum",
            id_="c330d77f-90bd-4c51-9ed2-57d8d693b3b0",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-0")},
            metadata={
                "author": "Stephen King",
                "theme": "Friendship",
            },
            embedding=[1.0, 0.0, 0.0],
        ),
        TextNode(
            text="lorem ipsum",
            id_="c3d1e1dd-8fb4-4b8f-b7ea-7fa96038d39d",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-1")},
            metadata={
                "director": "Francis Ford Coppola",
                "theme": "Mafia",
            },
            embedding=[0.0, 1.0, 0.0],
        ),
        TextNode(
            text="lorem ipsum",
            id_="c3ew11cd-8fb4-4b8f-b7ea-7fa96038d39d",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-2")},
            metadata={
                "director": "Christopher Nolan",
            },
            embedding=[0.0, 0.0, 1.0],
        ),
        TextNode(
            text="I was taught that the way of progress was neither swift nor easy.",
            id_="0b31ae71-b797-4e88-8495-031371a7752e",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="text-3")},
            metadata={
                "author": "Marie Curie",
            },
            embedding=[0.0, 0.0, 0.9],
        ),
        TextNode(
            text=("The important thing is not to stop questioning." + " Curiosity has its own reason for existing."),
            id_="bd2e080b-159a-4030-acc3-d98afd2ba49b",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="text-4")},
            metadata={
                "author": "Albert Einstein",
            },
            embedding=[0.0, 0.0, 0.5],
        ),
        TextNode(
            text=("I am no bird; and no net ensnares me;" + " I am a free human being with an independent will."),
            id_="f658de3b-8cef-4d1c-8bed-9a263c907251",
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="text-5")},
            metadata={
                "author": "Charlotte Bronte",
            },
            embedding=[0.0, 0.0, 0.3],
        ),
    ]


@pytest.mark.asyncio()
@pytest.mark.parametrize("use_async", [True, False])
async def test_add_to_chromadb_and_query(
    vector_store: ChromaVectorStore,
    node_embeddings: list[TextNode],
    use_async: bool,
) -> None:
    if use_async:
        await vector_store.async_add(node_embeddings, index_id="42")
        res = await vector_store.aquery(
            VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=1), index_id="42"
        )
    else:
        vector_store.add(node_embeddings, index_id="42")
        res = vector_store.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=1), index_id="42")
    assert res.nodes
    assert res.nodes[0].get_content() == "lorem ipsum"


@pytest.mark.asyncio()
@pytest.mark.parametrize("use_async", [True, False])
async def test_add_to_chromadb_and_query_by_metafilters_only(
    vector_store: ChromaVectorStore,
    node_embeddings: list[TextNode],
    use_async: bool,
) -> None:
    filters = MetadataFilters(
        filters=[MetadataFilter(key="author", value="Marie Curie", operator=FilterOperator.EQ)],
        condition=FilterCondition.AND,
    )

    if use_async:
        await vector_store.async_add(node_embeddings, index_id="42")
        res = await vector_store.aquery(VectorStoreQuery(filters=filters, similarity_top_k=1), index_id="42")
    else:
        vector_store.add(node_embeddings, index_id="42")
        res = vector_store.query(VectorStoreQuery(filters=filters, similarity_top_k=1), index_id="42")

    assert res.nodes[0].get_content() == "I was taught that the way of progress was neither swift nor easy."


def test_get_nodes(vector_store: ChromaVectorStore, node_embeddings: list[TextNode]) -> None:
    vector_store.add(node_embeddings, index_id="42")
    res = vector_store.get_nodes(
        node_ids=[
            "c330d77f-90bd-4c51-9ed2-57d8d693b3b0",
            "c3d1e1dd-8fb4-4b8f-b7ea-7fa96038d39d",
            "c3ew11cd-8fb4-4b8f-b7ea-7fa96038d39d",
        ],
        index_id="42",
    )
    assert len(res) == 3
    assert res[0].get_content() == "lorem ipsum"
    assert res[1].get_content() == "lorem ipsum"
    assert res[2].get_content() == "lorem ipsum"


def test_delete_nodes(vector_store: ChromaVectorStore, node_embeddings: list[TextNode]) -> None:
    vector_store.add(node_embeddings, index_id="42")
    vector_store.delete_nodes(
        node_ids=[
            "c330d77f-90bd-4c51-9ed2-57d8d693b3b0",
            "c3d1e1dd-8fb4-4b8f-b7ea-7fa96038d39d",
        ],
        index_id="42",
    )
    res = vector_store.get_nodes(
        node_ids=[
            "c330d77f-90bd-4c51-9ed2-57d8d693b3b0",
            "c3d1e1dd-8fb4-4b8f-b7ea-7fa96038d39d",
            "c3ew11cd-8fb4-4b8f-b7ea-7fa96038d39d",
        ],
        index_id="42",
    )
    assert len(res) == 1
    assert res[0].get_content() == "lorem ipsum"
    assert res[0].id_ == "c3ew11cd-8fb4-4b8f-b7ea-7fa96038d39d"


def test_clear(vector_store: ChromaVectorStore, node_embeddings: list[TextNode]) -> None:
    vector_store.add(node_embeddings, index_id="42")
    vector_store.clear(index_id="42")
    res = vector_store.get_nodes(
        node_ids=[
            "c330d77f-90bd-4c51-9ed2-57d8d693b3b0",
            "c3d1e1dd-8fb4-4b8f-b7ea-7fa96038d39d",
            "c3ew11cd-8fb4-4b8f-b7ea-7fa96038d39d",
        ],
        index_id="42",
    )
    assert len(res) == 0


# === test_mmr.py ==============================================================================================
def _build_simple_collection() -> Collection:
    # fixture: chromadb.EphemeralClient().get_or_create_collection(name) + col.add(...)
    name = f"chroma_mmr_test_{uuid.uuid4().hex[:8]}"
    col = Collection(name=name, metric="l2")

    embeddings = [
        [1.0, 0.0, 0.0],
        [0.9, 0.1, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.9, 0.1],
        [0.0, 0.0, 1.0],
    ]
    ids = [f"id_{i}" for i in range(len(embeddings))]
    documents = [f"doc_{i}" for i in range(len(embeddings))]
    metadatas = [{"label": f"m{i}"} for i in range(len(embeddings))]  # non-empty

    col.add(np.array(embeddings, dtype=np.float32), documents, metadatas, ids)
    return col


def test_chroma_mmr_happy_path_returns_k_results():
    col = _build_simple_collection()
    vs = ChromaVectorStore(collection=col)  # construction: ChromaVectorStore.from_collection(col)

    query = VectorStoreQuery(
        query_embedding=[1.0, 0.0, 0.0],
        similarity_top_k=2,
        mode=VectorStoreQueryMode.MMR,
    )

    # Should not raise and should return exactly top_k results
    res = vs.query(query, mmr_threshold=0.5)

    # Either nodes or ids must be populated
    if res.ids is not None:
        assert len(res.ids) == 2
    elif res.nodes is not None:
        assert len(res.nodes) == 2
    else:
        pytest.fail("VectorStoreQueryResult must contain ids or nodes")


def test_chroma_mmr_conflicting_prefetch_params_raises():
    col = _build_simple_collection()
    vs = ChromaVectorStore(collection=col)

    query = VectorStoreQuery(
        query_embedding=[1.0, 0.0, 0.0],
        similarity_top_k=2,
        mode=VectorStoreQueryMode.MMR,
    )

    with pytest.raises(ValueError):
        vs.query(query, mmr_threshold=0.5, mmr_prefetch_k=16, mmr_prefetch_factor=2.0)


# === test_vector_stores_chroma.py =============================================================================
def test_class():
    names_of_base_classes = [b.__name__ for b in ChromaVectorStore.__mro__]
    assert BasePydanticVectorStore.__name__ in names_of_base_classes


def _build_metadata(node: ImageNode) -> dict[str, Any]:
    metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=True)
    # Mimic ChromaVectorStore.add: replace None values with empty strings
    for key, value in list(metadata.items()):
        if value is None:
            metadata[key] = ""
    return metadata


def _store_with_textless_image_node(node: ImageNode) -> ChromaVectorStore:
    # fixture: Chroma's fake collection returning documents=[None] -> a stored row with text None
    col = Collection(metric="l2")
    col.add(np.array([node.embedding], dtype=np.float32), [None], [_build_metadata(node)], [node.node_id])
    return ChromaVectorStore(collection=col)


def test_query_rehydrates_image_nodes_with_missing_documents() -> None:
    node = ImageNode(
        text="",
        image_url="http://example.com/image.png",
        id_="image-node-id",
        embedding=[0.1, 0.2, 0.3],
    )
    store = _store_with_textless_image_node(node)

    # construction: store._query(query_embeddings=..., n_results=1, where={}) -> the public query
    result = store.query(VectorStoreQuery(query_embedding=[0.1, 0.2, 0.3], similarity_top_k=1))

    assert result.nodes is not None
    assert isinstance(result.nodes[0], ImageNode)
    assert result.nodes[0].image_url == node.image_url


def test_get_handles_missing_document_text() -> None:
    node = ImageNode(
        text="",
        image_url="http://example.com/image.png",
        id_="image-node-id",
        embedding=[0.1, 0.2, 0.3],
    )
    store = _store_with_textless_image_node(node)

    # construction: store._get(limit=1, where={}) -> a query without embedding (Chroma's _get path)
    result = store.query(VectorStoreQuery(similarity_top_k=1))

    assert result.nodes is not None
    assert isinstance(result.nodes[0], ImageNode)
    assert result.nodes[0].image_url == node.image_url


# === test_vector_memory_chroma.py =============================================================================
def _node_to_chroma_metadata(node: TextNode) -> dict[str, Any]:
    """Chroma-safe metadata preserving the full node in _node_content."""
    node_dict = node.model_dump(mode="json")
    node_dict["text"] = ""
    node_dict["embedding"] = None

    return {
        "_node_content": json.dumps(node_dict, ensure_ascii=False),
        "_node_type": node.class_name(),
        "document_id": node.ref_doc_id or "None",
        "doc_id": node.ref_doc_id or "None",
        "ref_doc_id": node.ref_doc_id or "None",
    }


def test_vector_memory_get_ignores_document_nodes_without_sub_dicts() -> None:
    collection_name = f"vector-memory-{uuid.uuid4()}"
    collection = Collection(name=collection_name, metric="l2")  # construction: get_or_create_collection

    vector_store = ChromaVectorStore(collection=collection)
    embed_model = MockEmbedding(embed_dim=3)

    doc_node = TextNode(
        id_="doc-node",
        text="normal document chunk",
        metadata={"source": "doc.txt"},
        embedding=[0.0, 0.0, 1.0],
    )

    chat_msg = ChatMessage.from_str("hello from chat", "user")
    chat_node = TextNode(
        id_="chat-node",
        text="hello from chat",
        metadata={"sub_dicts": [chat_msg.model_dump()]},
        embedding=[0.0, 1.0, 0.0],
    )

    collection.add(  # fixture: collection.add(ids=, embeddings=, documents=, metadatas=)
        np.array([doc_node.get_embedding(), chat_node.get_embedding()], dtype=np.float32),
        [doc_node.text, chat_node.text],
        [_node_to_chroma_metadata(doc_node), _node_to_chroma_metadata(chat_node)],
        [doc_node.node_id, chat_node.node_id],
    )

    mem = VectorMemory.from_defaults(
        vector_store=vector_store,
        embed_model=embed_model,
        retriever_kwargs={"similarity_top_k": 2},
    )

    # added: the store returns both rows written with Chroma's metadata layout
    assert {n.node_id for n in vector_store.get_nodes()} == {"doc-node", "chat-node"}
    # Should not raise KeyError even if a retrieved node lacks `sub_dicts`.
    try:
        result = mem.get("any query")
    except KeyError:  # differs: the pinned llama-index-core's VectorMemory.get lacks the upstream fix
        pytest.xfail("llama-index-core's VectorMemory.get indexes metadata['sub_dicts'] of every node")

    assert len(result) == 1
    assert result[0].content == "hello from chat"
