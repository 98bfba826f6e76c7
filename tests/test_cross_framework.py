"""One directory, both frameworks (issue 17): documents written through LangChain are read, filtered and
deleted through LlamaIndex and the other way round; each sees clean metadata and its own ids
(:mod:`spann_vectorstore.interop`). Stores written before (same layout) read the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_spann import SPANNVectorStore as LCStore
from llama_index.core.schema import Document as LIDocument
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import node_to_metadata_dict
from llama_index.vector_stores.spann import SPANNVectorStore as LIStore

from spann_vectorstore import Collection
from spann_vectorstore.interop import LLAMA_INDEX_KEYS, carry_over, clean_metadata, ref_doc_filter

WORDS = ["apple", "banana", "cherry", "river", "mountain", "ocean"]


class WordEmbedding(Embeddings):
    """One axis per known word (unit vectors, exact scores), unknown text -> the mean direction."""

    def _vec(self, text: str) -> list[float]:
        v = np.array([1.0 if w in text else 0.0 for w in WORDS])
        v = v if v.any() else np.ones(len(WORDS))
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


EMB = WordEmbedding()


def _li_nodes() -> list[TextNode]:
    """Two source documents split into nodes, as a LlamaIndex pipeline would leave them."""
    nodes = []
    for doc_id, words, meta in (
        ("docA", ["apple", "banana"], {"topic": "fruit"}),
        ("docB", ["river", "ocean"], {"topic": "water", "doc_id": "user-value"}),
    ):
        for i, w in enumerate(words):
            nodes.append(
                TextNode(
                    id_=f"{doc_id}-{i}",
                    text=f"{w} text",
                    embedding=EMB.embed_query(w),
                    metadata={**meta, "i": i},
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)},
                )
            )
    return nodes


def _lc_docs() -> list[Document]:
    return [
        Document(id=f"lc-{w}", page_content=f"{w} text", metadata={"source": f"{w}.md", "n": n})
        for n, w in enumerate(["cherry", "mountain", "apple"])
    ]


@pytest.fixture(params=["shared", "reopened"])
def mode(request):
    return request.param


def _other(first, path, make, mode):
    """The second framework's store: over the same Collection object, or after closing and reopening."""
    if mode == "shared":
        return make(collection=first.collection)
    first.close()
    return make(path)


def test_langchain_writes_llama_index_reads_filters_deletes(tmp_path, mode):
    lc = LCStore(EMB, persist_directory=tmp_path)
    lc.add_documents(_lc_docs())
    li = _other(lc, tmp_path, lambda p=None, **kw: LIStore(p, **kw), mode)

    nodes = {n.node_id: n for n in li.get_nodes()}
    assert set(nodes) == {"lc-cherry", "lc-mountain", "lc-apple"}
    node = nodes["lc-apple"]
    assert node.ref_doc_id == "lc-apple"  # a plain document is its own reference document
    assert node.metadata == {"source": "apple.md", "n": 2} and node.get_content() == "apple text"
    assert node.embedding is not None

    q = VectorStoreQuery(query_embedding=EMB.embed_query("apple"), similarity_top_k=3)
    assert li.query(q).ids[0] == "lc-apple"
    filt = MetadataFilters(filters=[MetadataFilter(key="n", operator=FilterOperator.GTE, value=1)])
    res = li.query(VectorStoreQuery(query_embedding=EMB.embed_query("apple"), similarity_top_k=3, filters=filt))
    assert res.ids == ["lc-apple", "lc-mountain"]
    res = li.query(
        VectorStoreQuery(
            query_embedding=EMB.embed_query("apple"), similarity_top_k=3, doc_ids=["lc-mountain", "lc-cherry"]
        )
    )
    assert set(res.ids) == {"lc-mountain", "lc-cherry"}
    res = li.query(VectorStoreQuery(query_str="cherry", similarity_top_k=3, mode=VectorStoreQueryMode.TEXT_SEARCH))
    assert res.ids == ["lc-cherry"]

    li.delete("lc-mountain")  # delete_ref_doc's store call
    li.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="source", value="cherry.md")]))
    assert [n.node_id for n in li.get_nodes()] == ["lc-apple"]
    li.close()
    if mode == "shared":
        lc.close()


def test_llama_index_writes_langchain_reads_filters_deletes(tmp_path, mode):
    li = LIStore(tmp_path)
    li.add(_li_nodes())
    lc = _other(li, tmp_path, lambda p=None, **kw: LCStore(EMB, persist_directory=p, **kw), mode)

    docs = lc.similarity_search("banana", k=4)
    assert docs[0].id == "docA-1" and docs[0].page_content == "banana text"
    for d in docs:
        assert not set(d.metadata) & {"_node_content", "_node_type", "document_id", "ref_doc_id"}
    by_id = {d.id: d for d in docs}
    assert by_id["docA-1"].metadata == {"topic": "fruit", "i": 1}
    assert by_id["docB-0"].metadata == {"topic": "water", "doc_id": "user-value", "i": 0}  # the user's own key
    got = lc.get(where={"topic": "water"})
    assert sorted(got["ids"]) == ["docB-0", "docB-1"]
    assert all(set(m) == {"topic", "doc_id", "i"} for m in got["metadatas"])
    assert {d.id for d in lc.similarity_search("ocean", k=4, filter={"topic": "fruit"})} == {"docA-0", "docA-1"}
    assert {d.id for d in lc.get_by_ids(["docA-0", "docB-1"])} == {"docA-0", "docB-1"}
    doc, rel = lc.similarity_search_with_relevance_scores("river", k=1)[0]
    assert doc.id == "docB-0" and doc.metadata["topic"] == "water" and rel == pytest.approx(1.0)

    # a LangChain update keeps the node's reference document: LlamaIndex can still delete it by docB
    lc.update_document("docB-1", Document(page_content="ocean waves", metadata={"topic": "sea"}))
    assert lc.get_by_ids(["docB-1"])[0].metadata == {"topic": "sea"}
    lc.delete(["docA-0"])
    lc.delete(filter={"topic": "fruit"})
    assert sorted(lc.get()["ids"]) == ["docB-0", "docB-1"]

    li2 = LIStore(collection=lc.collection)
    updated = li2.get_nodes(node_ids=["docB-1"])[0]
    assert updated.ref_doc_id == "docB" and updated.metadata == {"topic": "sea"}
    assert updated.get_content() == "ocean waves"
    li2.delete("docB")
    assert lc.get()["ids"] == []
    lc.close()
    if mode == "shared":
        li.close()


def test_langchain_sees_no_llama_internals_through_any_read(tmp_path):
    li = LIStore(tmp_path)
    li.add(_li_nodes())
    lc = LCStore(EMB, collection=li.collection)
    internals = {"_node_content", "_node_type", "document_id", "ref_doc_id"}
    reads = [
        lc.similarity_search("apple", k=4),
        [d for d, _ in lc.similarity_search_with_score("apple", k=4)],
        lc.similarity_search_by_vector(EMB.embed_query("apple"), k=4),
        lc.max_marginal_relevance_search("apple", k=2, fetch_k=4),
        lc.similarity_search("apple", k=4, filter=lambda d: "_node_content" not in d.metadata),
        lc.get_by_ids(["docA-0", "docB-1"]),
        lc.as_retriever(search_kwargs={"k": 4}).invoke("apple"),
    ]
    for docs in reads:
        assert docs
        for d in docs:
            assert not set(d.metadata) & internals
    # the callable filter saw clean documents: it passed all four
    assert len(reads[4]) == 4
    li.close()


def test_same_ids_both_ways_and_mixed_store(tmp_path):
    """Both frameworks write into one directory; each lists every row with its own view."""
    lc = LCStore(EMB, persist_directory=tmp_path)
    lc.add_documents(_lc_docs())
    li = LIStore(collection=lc.collection)
    li.add(_li_nodes())
    assert len(lc.get()["ids"]) == 7
    nodes = li.get_nodes()
    assert {n.ref_doc_id for n in nodes} == {"docA", "docB", "lc-cherry", "lc-mountain", "lc-apple"}
    res = li.query(
        VectorStoreQuery(query_embedding=EMB.embed_query("apple"), similarity_top_k=7, doc_ids=["docA", "lc-apple"])
    )
    assert set(res.ids) == {"docA-0", "docA-1", "lc-apple"}
    li.delete("docA")
    li.delete("lc-apple")
    assert sorted(lc.get()["ids"]) == ["docB-0", "docB-1", "lc-cherry", "lc-mountain"]
    lc.close()


def test_store_written_by_the_previous_code_reads_in_both(tmp_path):
    """Rows laid out as the adapters wrote them before this change (LlamaIndex: node_to_metadata_dict with
    remove_text; LangChain: the metadata as given), written with the bare Collection."""
    node = TextNode(
        id_="old-node",
        text="apple pie",
        metadata={"k": "v"},
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="old-doc")},
    )
    with Collection(tmp_path) as c:
        c.add(
            np.array([EMB.embed_query("apple"), EMB.embed_query("river")], dtype=np.float32),
            ["apple pie", "river bank"],
            [node_to_metadata_dict(node, remove_text=True, flat_metadata=False), {"source": "r.md"}],
            ["old-node", "old-plain"],
        )
    with LCStore(EMB, persist_directory=tmp_path) as lc:
        docs = {d.id: d for d in lc.similarity_search("apple", k=2)}
        assert docs["old-node"].metadata == {"k": "v"} and docs["old-plain"].metadata == {"source": "r.md"}
    with LIStore(tmp_path) as li:
        nodes = {n.node_id: n for n in li.get_nodes()}
        assert nodes["old-node"].ref_doc_id == "old-doc" and nodes["old-plain"].ref_doc_id == "old-plain"
        li.delete("old-doc")
        li.delete("old-plain")
        assert li.get_nodes() == []


def test_llama_index_documents_through_an_index_then_langchain(tmp_path):
    """VectorStoreIndex ingestion (ref_doc_id from Document ids), LangChain reads and deletes by filter,
    LlamaIndex's delete_ref_doc removes the rest."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding

    class LI(BaseEmbedding):
        def _get_text_embedding(self, text):
            return EMB.embed_query(text)

        def _get_query_embedding(self, query):
            return EMB.embed_query(query)

        async def _aget_query_embedding(self, query):
            return EMB.embed_query(query)

    store = LIStore(tmp_path)
    index = VectorStoreIndex.from_documents(
        [
            LIDocument(id_="d1", text="apple and banana", metadata={"src": "1"}),
            LIDocument(id_="d2", text="river and ocean", metadata={"src": "2"}),
        ],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LI(),
    )
    lc = LCStore(EMB, collection=store.collection)
    hits = lc.similarity_search("river", k=2)
    assert hits[0].page_content == "river and ocean" and hits[0].metadata == {"src": "2"}
    index.delete_ref_doc("d2")
    assert [d.page_content for d in lc.similarity_search("river", k=2)] == ["apple and banana"]
    lc.delete(filter={"src": "1"})
    assert store.get_nodes() == []
    store.close()


def test_interop_helpers():
    md = node_to_metadata_dict(
        TextNode(
            id_="n",
            text="t",
            metadata={"doc_id": "mine", "a": 1},
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="R")},
        ),
        remove_text=True,
        flat_metadata=False,
    )
    assert md["doc_id"] == "R"  # LlamaIndex overwrites the user's key at the top level
    assert clean_metadata(md) == {"doc_id": "mine", "a": 1}
    plain = {"doc_id": "x", "_node_type": "mine"}
    assert clean_metadata(plain) is plain  # no _node_content: a plain row, kept as is
    new = carry_over(md, {"b": 2})
    assert new["ref_doc_id"] == "R" and json.loads(new["_node_content"])["metadata"] == {"b": 2}
    assert clean_metadata(new) == {"b": 2}
    assert carry_over(plain, {"b": 2}) == {"b": 2}
    assert set(LLAMA_INDEX_KEYS) == set(md) - {"doc_id", "a"} | {"doc_id"}
    assert ref_doc_filter(["a"])["$or"][1] == {"$and": [{"_node_content": {"$exists": False}}, {"$id": {"$in": ["a"]}}]}
