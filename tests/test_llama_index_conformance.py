"""LlamaIndex store behaviours users of the Chroma/Qdrant stores expect (issue 17): id restrictions through the
index, queries without an embedding, ``doc_ids=[]``, ``get_nodes`` embeddings, MMR prefetch arguments."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.spann import SPANNVectorStore

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango"]


def make_nodes(n: int, dim: int = 16, seed: int = 0) -> list[TextNode]:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    nodes = []
    for i in range(n):
        node = TextNode(
            id_=f"n{i:05d}", text=f"{WORDS[i % 6]} text {i}", metadata={"grp": i % 3}, embedding=x[i].tolist()
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"d{i % 10}")
        nodes.append(node)
    return nodes


@pytest.fixture(scope="module")
def big():
    nodes = make_nodes(6000)
    store = SPANNVectorStore(bits=4, index_threshold=1000)
    store.add(nodes)
    store.collection.wait_for_index()
    assert store.collection.stats()["indexed"]
    yield store, nodes
    store.close()


def test_node_ids_go_through_the_index(big):
    store, nodes = big
    q = nodes[0].embedding
    some = [n.node_id for n in nodes[::2]]  # 3,000 ids
    x = np.array([n.embedding for n in nodes[::2]], dtype=np.float32)
    best = [some[i] for i in np.argsort(-(x @ np.asarray(q, dtype=np.float32)))[:5]]
    res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, node_ids=some))
    assert set(res.ids) <= set(some) and len(res.ids) == 5
    assert len(set(res.ids) & set(best)) >= 4
    # through the index's allowed ids, never by reading the stored vectors back (that took ~240 ms a query)
    col = store.collection
    reads = []
    real_get = col.get
    col.get = lambda *a, **kw: reads.append(kw) or real_get(*a, **kw)
    try:
        store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5, node_ids=some))
    finally:
        del col.get
    assert not any(kw.get("include_vectors") for kw in reads), reads
    # with doc_ids and filters, all ANDed
    res = store.query(
        VectorStoreQuery(
            query_embedding=q,
            similarity_top_k=50,
            node_ids=some,
            doc_ids=["d0", "d3"],
            filters=MetadataFilters(filters=[MetadataFilter(key="grp", value=0, operator=FilterOperator.NE)]),
        )
    )
    assert len(res.ids) == 50
    for n in res.nodes:
        assert n.node_id in set(some) and n.ref_doc_id in ("d0", "d3") and n.metadata["grp"] != 0


@pytest.mark.parametrize("mode", ["text_search", "sparse", "hybrid"])
def test_node_ids_restrict_text_and_hybrid_modes(big, mode):
    store, nodes = big
    some = [n.node_id for n in nodes[5:200:7]]
    res = store.query(
        VectorStoreQuery(
            query_str="banana cherry",
            query_embedding=nodes[1].embedding,
            similarity_top_k=4,
            node_ids=some,
            mode=VectorStoreQueryMode(mode),
        )
    )
    assert len(res.ids) == 4 and set(res.ids) <= set(some)


def test_query_without_embedding_returns_matching_nodes_like_chroma():
    with SPANNVectorStore() as store:
        nodes = make_nodes(30)
        store.add(nodes)
        f = MetadataFilters(filters=[MetadataFilter(key="grp", value=1)])
        res = store.query(VectorStoreQuery(filters=f, similarity_top_k=4))
        assert res.ids == ["n00001", "n00004", "n00007", "n00010"]  # insertion order
        assert res.similarities is None and [n.node_id for n in res.nodes] == res.ids
        res = store.query(VectorStoreQuery(doc_ids=["d2"], node_ids=["n00012", "n00002", "n00003"], similarity_top_k=5))
        assert res.ids == ["n00002", "n00012"]
        with pytest.raises(ValueError, match="query_embedding"):  # MMR still needs one
            store.query(VectorStoreQuery(filters=f, mode=VectorStoreQueryMode.MMR))


def test_empty_doc_ids_match_nothing_empty_node_ids_everything():
    with SPANNVectorStore() as store:
        nodes = make_nodes(20)
        store.add(nodes)
        q = nodes[0].embedding
        assert store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3, doc_ids=[])).ids == []
        for mode in ("text_search", "hybrid"):
            args = {"query_str": "apple", "query_embedding": q, "mode": VectorStoreQueryMode(mode), "doc_ids": []}
            assert store.query(VectorStoreQuery(**args)).ids == []
        all_ = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
        assert store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3, node_ids=[])).ids == all_.ids


def test_get_nodes_returns_embeddings():
    with SPANNVectorStore() as store:
        nodes = make_nodes(5)
        store.add(nodes)
        got = store.get_nodes(["n00003", "n00001"])
        assert [n.node_id for n in got] == ["n00003", "n00001"]
        for n in got:
            np.testing.assert_allclose(n.embedding, nodes[int(n.node_id[1:])].embedding, rtol=1e-6)
        assert all(n.embedding is not None for n in store.get_nodes())


def test_mmr_prefetch_k_and_factor_cannot_coexist():
    with SPANNVectorStore() as store:
        nodes = make_nodes(20)
        store.add(nodes)
        query = VectorStoreQuery(query_embedding=nodes[0].embedding, similarity_top_k=3, mode="mmr")
        with pytest.raises(ValueError, match="'mmr_prefetch_factor' and 'mmr_prefetch_k' cannot coexist"):
            store.query(query, mmr_prefetch_k=10, mmr_prefetch_factor=2)
        assert len(store.query(query, mmr_prefetch_k=10).ids) == 3
        assert len(store.query(query, mmr_prefetch_factor=2).ids) == 3
