"""Ported from the LlamaIndex Qdrant vector store's tests, run-llama/llama_index,
llama-index-integrations/vector_stores/llama-index-vector-stores-qdrant/tests/:
  test_vector_stores_qdrant.py @ 09063e868bed9c8e2e306ca30dad6a029b90c7ca
  conftest.py (fixtures)       @ 10d1854b5eb7e47c7c8f4ddf871c4f68d87ed4c8

Changed: construction (``QdrantVectorStore("test", client=QdrantClient(":memory:"), aclient=...)`` ->
``SPANNVectorStore(collection_name="test", metric="cosine")``, Qdrant's default distance; the hybrid fixture
needs no ``enable_hybrid``/fastembed model: BM25 over the text is the sparse leg) and fixtures. Where the
semantics differ the assertion is adapted with a ``# differs:`` comment. ``test_filter_conditions`` checked
Qdrant's private filter builder; it checks our translation (``metadata_filters_to_dict``) of the same
filters instead. Not ported (Qdrant internals or a Qdrant server/cluster): ``test_parse_query_result``, the
custom-sharding, shard-key and payload-index tests, ``test_sparse_vector_name_*``.
"""

import numpy as np
import pytest
import pytest_asyncio
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.spann import SPANNVectorStore as QdrantVectorStore
from llama_index.vector_stores.spann import metadata_filters_to_dict

from spann_vectorstore import Collection


# --- conftest.py ----------------------------------------------------------------------------------------------
@pytest_asyncio.fixture
async def vector_store() -> QdrantVectorStore:
    vector_store = QdrantVectorStore(collection_name="test", metric="cosine")

    nodes = [
        TextNode(
            text="test1",
            id_="11111111-1111-1111-1111-111111111111",
            embedding=[1.0, 0.0],
            metadata={"some_key": 1},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-0")},
        ),
        TextNode(
            text="test2",
            id_="22222222-2222-2222-2222-222222222222",
            embedding=[0.0, 1.0],
            metadata={"some_key": 2},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-0")},
        ),
        TextNode(
            text="test3",
            id_="33333333-3333-3333-3333-333333333333",
            embedding=[1.0, 1.0],
            metadata={"some_key": "3"},
        ),
    ]

    vector_store.add(nodes)

    # in-memory client does not share data between instances
    await vector_store.async_add(nodes)

    return vector_store


@pytest_asyncio.fixture
async def hybrid_vector_store() -> QdrantVectorStore:
    # construction: enable_hybrid=True, fastembed_sparse_model="Qdrant/bm25" are not needed; metric "ip":
    # the test queries with a zero vector, which has no cosine similarity here (ValueError), Qdrant scores it 0
    vector_store = QdrantVectorStore(collection_name="test", metric="ip")

    nodes = [
        TextNode(
            text="test1",
            id_="11111111-1111-1111-1111-111111111111",
            embedding=[1.0, 0.0],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-0")},
        ),
        TextNode(
            text="test2",
            id_="22222222-2222-2222-2222-222222222222",
            embedding=[0.0, 1.0],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="test-0")},
        ),
        TextNode(
            text="test3",
            id_="33333333-3333-3333-3333-333333333333",
            embedding=[1.0, 1.0],
        ),
    ]

    vector_store.add(nodes)

    # in-memory client does not share data between instances
    await vector_store.async_add(nodes)

    return vector_store


ALL_IDS = [
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
]


# --- test_vector_stores_qdrant.py -----------------------------------------------------------------------------
def test_class():
    names_of_base_classes = [b.__name__ for b in QdrantVectorStore.__mro__]
    assert BasePydanticVectorStore.__name__ in names_of_base_classes


def test_delete__and_get_nodes(vector_store: QdrantVectorStore) -> None:
    vector_store.delete_nodes(node_ids=["11111111-1111-1111-1111-111111111111"])

    existing_nodes = vector_store.get_nodes(node_ids=ALL_IDS)
    assert len(existing_nodes) == 2


def test_clear(vector_store: QdrantVectorStore) -> None:
    vector_store.clear()
    # differs: clear() empties the collection and keeps it (Qdrant deletes the collection, so get_nodes raises
    # "Collection test not found")
    assert vector_store.get_nodes(node_ids=ALL_IDS) == []


@pytest.mark.asyncio
async def test_adelete_and_aget(vector_store: QdrantVectorStore) -> None:
    await vector_store.adelete_nodes(node_ids=["11111111-1111-1111-1111-111111111111"])

    existing_nodes = await vector_store.aget_nodes(node_ids=ALL_IDS)
    assert len(existing_nodes) == 2


@pytest.mark.asyncio
async def test_aclear(vector_store: QdrantVectorStore) -> None:
    await vector_store.aclear()
    # differs: the collection stays, empty (see test_clear)
    assert await vector_store.aget_nodes(node_ids=ALL_IDS) == []


@pytest.mark.asyncio
async def test_get_with_embedding(vector_store: QdrantVectorStore) -> None:
    existing_nodes = await vector_store.aget_nodes(node_ids=ALL_IDS)

    assert all(node.embedding is not None for node in existing_nodes)


def test_filter_conditions():
    """Test AND, OR, and NOT filter conditions."""
    # construction: Qdrant's private _build_subfilter -> our translation to the core filter language

    # Test AND condition
    and_filter = MetadataFilters(
        filters=[
            MetadataFilter(key="category", value="books", operator=FilterOperator.EQ),
            MetadataFilter(key="price", value=10, operator=FilterOperator.GT),
        ],
        condition=FilterCondition.AND,
    )
    filter_and = metadata_filters_to_dict(and_filter)
    assert filter_and == {"$and": [{"category": {"$eq": "books"}}, {"price": {"$gt": 10}}]}

    # Test OR condition
    or_filter = MetadataFilters(
        filters=[
            MetadataFilter(key="category", value="books", operator=FilterOperator.EQ),
            MetadataFilter(key="category", value="electronics", operator=FilterOperator.EQ),
        ],
        condition=FilterCondition.OR,
    )
    filter_or = metadata_filters_to_dict(or_filter)
    assert filter_or == {"$or": [{"category": {"$eq": "books"}}, {"category": {"$eq": "electronics"}}]}

    # Test NOT condition
    not_filter = MetadataFilters(
        filters=[
            MetadataFilter(key="category", value="books", operator=FilterOperator.EQ),
        ],
        condition="not",
    )
    filter_not = metadata_filters_to_dict(not_filter)
    assert filter_not == {"$not": {"category": {"$eq": "books"}}}

    # Test AND with NOT condition
    and_not_filter = MetadataFilters(
        filters=[
            MetadataFilter(key="category", value="books", operator=FilterOperator.EQ),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="price", value=50, operator=FilterOperator.EQ),
                ],
                condition="not",
            ),
        ],
        condition=FilterCondition.AND,
    )
    filter_and_not = metadata_filters_to_dict(and_not_filter)
    assert filter_and_not == {"$and": [{"category": {"$eq": "books"}}, {"$not": {"price": {"$eq": 50}}}]}


def test_filters_with_types(vector_store: QdrantVectorStore) -> None:
    results = vector_store.get_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="some_key", value=[1, 2], operator=FilterOperator.IN)])
    )
    assert len(results) == 2

    results = vector_store.get_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="some_key", value=[1, 2], operator=FilterOperator.NIN)])
    )
    assert len(results) == 1

    results = vector_store.get_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="some_key", value=["3"], operator=FilterOperator.IN)])
    )
    assert len(results) == 1


def test_hybrid_vector_store_query(
    hybrid_vector_store: QdrantVectorStore,
) -> None:
    query = VectorStoreQuery(
        query_embedding=[0.0, 0.0],
        query_str="test1",
        similarity_top_k=1,
        sparse_top_k=1,
        hybrid_top_k=2,
        mode=VectorStoreQueryMode.HYBRID,
    )
    results = hybrid_vector_store.query(query)
    # differs: one candidate count for both legs (sparse_top_k=1): the dense leg's best for a zero query
    # (ties broken by id) is test1, as is the text leg's, so the fused list holds 1 node; Qdrant's dense leg
    # (similarity_top_k=1) picked another node and returned 2
    assert len(results.nodes) == 1 and results.nodes[0].get_content() == "test1"
    query.sparse_top_k = 2  # added: with two candidates per leg, hybrid_top_k=2 nodes come back
    assert len(hybrid_vector_store.query(query).nodes) == 2

    # disable hybrid, and it should still work
    # construction: no enable_hybrid flag (the query mode decides)
    query.mode = VectorStoreQueryMode.DEFAULT
    results = hybrid_vector_store.query(query)
    assert len(results.nodes) == 1


@pytest.mark.asyncio
async def test_async_query_initializes_with_async_client_only() -> None:
    """A store over a collection that already holds a row (written without the store) answers aquery."""
    # construction: an AsyncQdrantClient collection with a named dense vector and one point with payload
    # {"text": "hello"} -> a Collection with one plain row
    collection = Collection(name="async_init_test", metric="cosine")
    collection.add(np.array([[1.0, 0.0]], dtype=np.float32), ["hello"], [{}], ["11111111-1111-1111-1111-111111111111"])

    store = QdrantVectorStore(collection=collection)

    query = VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=1)
    result = await store.aquery(query)

    assert result is not None
    assert len(result.nodes) == 1
    assert getattr(result.nodes[0], "text", None) == "hello"
